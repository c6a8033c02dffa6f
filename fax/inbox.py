"""Received faxes: from the call that carried one to a fax document people can read.

A call the PBX adapter classified as a fax (``Call.fax``: pages, the TIFF's name as the
PBX wrote it, the sender's station id, received or failed) becomes one ``FaxDocument``
once it ended, however often the call is written (the call id is unique among faxes).
Its TIFF is taken from ``[fax] incoming_dir`` (the PBX's folder as mounted here; names
under ``pbx_dir`` are mapped as for recordings), copied once into ``[fax] dir``, and a
PDF and a first-page thumbnail are made of it. Until the file is there the fax is
``pending`` (``retry_pending`` looks again); after ``missing_after_seconds`` it is
``missing``, logged once. The sender's number is looked up in the directory: the
client's responsible manager reads it, else the fax group; it goes into the client's
history, and ``fax.received`` tells their desks.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from cti.clients.models import Activity
from cti.config import FaxConfig
from cti.db.models import FaxDocument
from cti.directory import Directory, builtin_client_id, match_of
from cti.domain import utcnow
from cti.events import DomainEvent, FaxReceived
from cti.paths import inside
from fax.images import NotAFax, render

log = logging.getLogger("cti.fax")

UPLOAD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.tiff?")  # e.g. 1795361425.85.tif


def search_text(fax: FaxDocument) -> str:
    """What the faxes page's search looks in: number, station and client, casefolded."""
    parts = (fax.number, fax.remote_station, fax.client_name)
    return " ".join(p for p in parts if p).casefold()[:400]


class FaxInbox:
    def __init__(
        self,
        sessions: async_sessionmaker,
        root: Path,
        options: FaxConfig,
        directory: Directory,
        publish: Callable[[DomainEvent], None],
    ) -> None:
        self.sessions = sessions
        self.root = root
        self.options = options
        self.directory = directory
        self.publish = publish
        self.incoming = Path(options.incoming_dir) if options.incoming_dir else None
        self._pbx_dir = PurePosixPath(options.pbx_dir) if options.pbx_dir else None
        self.missing_after = timedelta(seconds=options.missing_after_seconds)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    # -- from calls ------------------------------------------------------------------

    async def after_write(self, calls: list[dict[str, Any]]) -> None:
        """CallStore hook: a fax document for each fax call that has just ended."""
        ended = [c for c in calls if c.get("fax") and c.get("ended_at") and c["direction"]]
        if not ended:
            return
        async with self.sessions() as session:
            known = set(
                await session.scalars(
                    select(FaxDocument.call_id).where(
                        FaxDocument.call_id.in_([c["id"] for c in ended])
                    )
                )
            )
        for call in ended:
            if call["id"] not in known:
                await self._receive(call)

    async def _receive(self, call: dict[str, Any]) -> None:
        fax = call["fax"]
        number = call.get("external_number")
        match = await match_of(self.directory, number) if number else None
        manager = match.manager.extension if match and match.manager else None
        readers = [manager] if manager else list(self.options.group_extensions)
        document = FaxDocument(
            direction="in",
            call_id=call["id"],
            number=number,
            remote_station=fax.get("remote_station"),
            pages=fax.get("pages"),
            status="pending" if fax.get("status") != "failed" else "failed",
            error=fax.get("error") or (None if fax.get("status") != "failed" else "no page came"),
            client_id=builtin_client_id(match),
            client_name=match.client_name if match else None,
            assignee_extension=readers[0] if len(readers) == 1 else None,
            tiff=fax.get("file"),  # as the PBX named it, until it is copied in
            at=datetime.fromisoformat(call["ended_at"]),
        )
        document.search = search_text(document)
        async with self.sessions() as session:
            session.add(document)
            try:
                await session.flush()
            except IntegrityError:
                return  # another write of the same call got there first
            if document.client_id is not None:
                session.add(
                    Activity(
                        client_id=document.client_id,
                        kind="fax",
                        ref=call["id"],
                        at=document.at,
                        summary={"fax_id": document.id, "pages": document.pages},
                    )
                )
            await session.commit()
        if document.status == "pending":
            await self._take_file(document.id)
        else:
            self._announce(document, readers)

    # -- the file ----------------------------------------------------------------------

    @property
    def uploads(self) -> Path:
        """Where the dialplan's uploads of received TIFFs land (POST /api/faxes/incoming)."""
        return self.root / "uploads"

    def source_of(self, announced: str | None) -> Path | None:
        """The PBX's TIFF as this host sees it: uploaded by the dialplan (by its name),
        or under ``incoming_dir``, by its path below ``pbx_dir`` (or its name alone);
        never outside those folders."""
        if not announced or "\x00" in announced:
            return None
        uploaded = self.uploads / PurePosixPath(announced).name
        if UPLOAD_NAME.fullmatch(uploaded.name) and uploaded.is_file():
            return uploaded
        if self.incoming is None:
            return None
        path = PurePosixPath(announced)
        if self._pbx_dir is not None and path.is_relative_to(self._pbx_dir):
            path = path.relative_to(self._pbx_dir)
        elif path.is_absolute():
            path = PurePosixPath(path.name)
        if path.suffix.lower() not in (".tif", ".tiff"):
            return None
        return inside(self.incoming, str(path))

    async def _take_file(self, fax_id: int) -> None:
        async with self.sessions() as session:
            document = await session.get(FaxDocument, fax_id)
            if document is None or document.status != "pending":
                return
            source = self.source_of(document.tiff)
            if source is None or not source.is_file():
                if utcnow() >= document.at + self.missing_after:
                    document.status, document.error = "missing", "the TIFF never arrived"
                    log.warning(
                        "a received fax's file never arrived",
                        extra={"fields": {"fax": fax_id, "file": document.tiff}},
                    )
                    await session.commit()
                return
            month = document.at.strftime("%Y/%m")
            relative = f"{month}/fax-{fax_id}"
            try:
                pages = await asyncio.to_thread(self._store, source, self.root / relative)
            except NotAFax as e:
                document.status, document.error = "failed", str(e)[:300]
            else:
                document.tiff, document.pdf = f"{relative}.tif", f"{relative}.pdf"
                document.thumbnail = f"{relative}.png"
                document.pages, document.resolution = pages.pages, pages.resolution
                document.size = (self.root / document.tiff).stat().st_size
                document.status = "received"
            await session.commit()
            readers = [document.assignee_extension] if document.assignee_extension else []
            self._announce(document, readers or list(self.options.group_extensions))

    def _store(self, source: Path, stem: Path) -> Any:
        stem.parent.mkdir(parents=True, exist_ok=True)
        tiff = stem.with_suffix(".tif")
        shutil.copyfile(source, tiff)
        try:
            return render(
                tiff,
                stem.with_suffix(".pdf"),
                stem.with_suffix(".png"),
                max_pages=self.options.max_pages,
            )
        except NotAFax:
            tiff.unlink(missing_ok=True)
            raise

    async def retry_pending(self) -> None:
        """Periodic: look again for the files of faxes still pending."""
        async with self.sessions() as session:
            pending = list(
                await session.scalars(select(FaxDocument.id).where(FaxDocument.status == "pending"))
            )
        for fax_id in pending:
            await self._take_file(fax_id)

    async def purge(self, days: int) -> int:
        """Retention: delete the files of faxes older than ``days``, keeping the row (who
        sent what, when) marked deleted; returns how many."""
        cutoff = utcnow() - timedelta(days=days)
        async with self.sessions() as session:
            old = list(
                await session.scalars(
                    select(FaxDocument).where(
                        FaxDocument.at < cutoff, FaxDocument.deleted_at.is_(None)
                    )
                )
            )
            for document in old:
                for relative in (document.tiff, document.pdf, document.thumbnail):
                    if relative and document.size:
                        (self.root / relative).unlink(missing_ok=True)
                document.deleted_at = utcnow()
            await session.commit()
        if old:
            log.info("faxes deleted by retention", extra={"fields": {"faxes": len(old)}})
        return len(old)

    def _announce(self, document: FaxDocument, readers: list[str]) -> None:
        log.info(
            "fax received",
            extra={
                "fields": {"fax": document.id, "status": document.status, "pages": document.pages}
            },
        )
        self.publish(
            FaxReceived(
                fax_id=document.id,
                call_id=document.call_id,
                number=document.number,
                remote_station=document.remote_station,
                pages=document.pages,
                status=document.status,
                client_name=document.client_name,
                assignee_extensions=tuple(readers),
                at=document.at,
            )
        )
