"""Faxes over the API: the inbox, one fax, and its pages as PDF, TIFF or thumbnail.

Who may read which, in the style of recordings: supervisors, admins and receptionists
(who pass paper on) every fax; operators and sales staff the faxes for them: their
clients' (the fax's reader is the client's responsible manager) and, when the sender has
no manager, the fax group's (``[fax] group_extensions``). Every opening of a fax's pages
is written to its audit (``GET /api/faxes/{id}/views``) before a byte is sent.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

from aiohttp import BodyPartReader, web
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from cti.auth import Principal
from cti.db.models import FaxDocument, FaxView
from cti.domain import Role
from cti.http.api import Api, json_response, path_id, principal, read_query
from cti.http.errors import ApiError
from cti.http.keys import SERVICE_KEY
from cti.paths import inside
from cti.phone import to_e164

READERS = (Role.RECEPTIONIST, Role.OPERATOR, Role.SALES, Role.SUPERVISOR)
SENDERS = READERS
MAX_FILES = 10
RESOLUTIONS = ("fine", "normal")
FILES: dict[str, tuple[str, str]] = {  # what → (column, content type)
    "pdf": ("pdf", "application/pdf"),
    "tiff": ("tiff", "image/tiff"),
    "thumbnail": ("thumbnail", "image/png"),
}


class FaxQuery(BaseModel):
    direction: Literal["in", "out"] | None = None
    status: str | None = Field(None, max_length=12)
    number: str | None = Field(None, max_length=40, description="The other side, E.164")
    q: str | None = Field(None, max_length=100, description="In the number or client's name")
    before: AwareDatetime | None = Field(None, description="Older than this (paging)")
    limit: int = Field(50, ge=1, le=500)


def fax_out(fax: FaxDocument) -> dict[str, Any]:
    files = {what: f"/api/faxes/{fax.id}/{what}" for what, (column, _) in FILES.items()}
    return {
        "id": fax.id,
        "direction": fax.direction,
        "call_id": fax.call_id,
        "number": fax.number,
        "remote_station": fax.remote_station,
        "pages": fax.pages,
        "resolution": fax.resolution,
        "status": fax.status,
        "error": fax.error,
        "client": None
        if fax.client_name is None
        else {"id": fax.client_id, "name": fax.client_name},
        "assignee_extension": fax.assignee_extension,
        "at": fax.at.isoformat(),
        "created_by": fax.created_by,
        "dials": fax.dials,
        "tries": fax.tries,
        "next_at": fax.next_at.isoformat() if fax.next_at else None,
        "files": {
            what: url for what, url in files.items() if getattr(fax, FILES[what][0]) and fax.size
        },
    }


def _scope(who: Principal, group: list[str]) -> Any:
    """The faxes ``who`` may read, as a filter (None: all)."""
    if who.sees_everything:
        return None
    if who.extension is None:
        return FaxDocument.id.is_(None)  # nothing
    mine = FaxDocument.assignee_extension == who.extension
    if who.extension in group:
        return or_(mine, FaxDocument.assignee_extension.is_(None))
    return mine


async def _readable(
    session: AsyncSession, who: Principal, fax_id: int, group: list[str]
) -> FaxDocument:
    fax = await session.get(FaxDocument, fax_id)
    if fax is None:
        raise ApiError(404, f"no fax {fax_id}")
    scope = _scope(who, group)
    if scope is not None:
        allowed = await session.scalar(
            select(FaxDocument.id).where(FaxDocument.id == fax_id, scope)
        )
        if allowed is None:
            raise ApiError(403, "this fax is for someone else")
    if fax.deleted_at is not None:
        raise ApiError(404, "this fax was deleted (retention)")
    return fax


async def _checked_id(request: web.Request) -> int:
    """The path's fax id, once the caller may read that fax (else 403/404)."""
    service = request.app[SERVICE_KEY]
    fax_id = path_id(request, "fax_id", "fax")
    async with service.sessions() as session:
        await _readable(session, principal(request), fax_id, service.config.fax.group_extensions)
    return fax_id


def _file(root: Path, relative: str) -> Path | None:
    """A fax file the service wrote, under its folder; nothing else."""
    target = inside(root, relative)
    return target if target is not None and target.is_file() else None


async def _uploads(
    request: web.Request, folder: Path, max_bytes: int
) -> tuple[dict[str, str], list[Path]]:
    """A multipart form's fields and files (saved in ``folder``), within the limits."""
    if not request.content_type.startswith("multipart/form-data"):
        raise ApiError(415, "send multipart/form-data: number, files (file), resolution")
    reader = await request.multipart()
    fields: dict[str, str] = {}
    files: list[Path] = []
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise ApiError(422, "nested multipart is not taken")
        if part.filename is None:
            value = await part.read(decode=True)
            if len(value) > 200:
                raise ApiError(422, f"{part.name}: too long")
            fields[part.name or ""] = value.decode("utf-8", "replace")
            continue
        if len(files) >= MAX_FILES:
            raise ApiError(422, f"at most {MAX_FILES} files in one fax")
        path = folder / f"{len(files)}.upload"
        with path.open("wb") as out:
            while chunk := await part.read_chunk(1 << 16):
                total += len(chunk)
                if total > max_bytes:
                    raise ApiError(413, f"the files are over {max_bytes // (1 << 20)} MB")
                out.write(chunk)
        files.append(path)
    return fields, files


class IncomingQuery(BaseModel):
    file: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.tiff?$",
        description="The TIFF's name as ReceiveFAX wrote it, e.g. 1795361425.85.tif",
    )


def add_routes(api: Api) -> None:
    @api.operation(
        "POST",
        "/api/faxes/incoming",
        summary="The dialplan uploads a received fax's TIFF (the body), when the service "
        "cannot mount the PBX's fax folder; the fax call then finds it by its name",
        tag="faxes",
        query=IncomingQuery,
        roles=(Role.RECEPTIONIST, Role.SUPERVISOR),
        status=201,
        errors=(413, 422),
    )
    async def upload_received(request: web.Request) -> web.Response:
        service = request.app[SERVICE_KEY]
        name = read_query(request, IncomingQuery).file
        folder = service.faxes.inbox.uploads
        folder.mkdir(parents=True, exist_ok=True)
        max_bytes = int(service.config.fax.max_upload_mb * (1 << 20))
        part = folder / f".{name}.part"
        total = 0
        with part.open("wb") as out:
            async for chunk in request.content.iter_chunked(1 << 16):
                total += len(chunk)
                if total > max_bytes:
                    out.close()
                    part.unlink(missing_ok=True)
                    raise ApiError(413, f"over {max_bytes // (1 << 20)} MB")
                out.write(chunk)
        if not total:
            part.unlink(missing_ok=True)
            raise ApiError(422, "the body is the TIFF: it was empty")
        part.replace(folder / name)
        await service.faxes.inbox.retry_pending()  # its call may have ended already
        return json_response({"file": name, "size": total}, status=201)

    @api.operation(
        "POST",
        "/api/faxes",
        summary="Send a fax: multipart/form-data with number, one or more files (PDF, PNG, "
        "JPEG, TIFF), resolution (fine or normal) and paper (a4 or letter); 202 once queued",
        tag="faxes",
        roles=SENDERS,
        status=202,
        errors=(413, 415, 422, 503),
    )
    async def send_fax(request: web.Request) -> web.Response:
        service = request.app[SERVICE_KEY]
        outbox = service.faxes.outbox
        if not outbox.can_send:
            raise ApiError(503, "no PBX here sends faxes", reason="no_fax_line")
        who = principal(request)
        max_bytes = int(service.config.fax.max_upload_mb * (1 << 20))
        with tempfile.TemporaryDirectory(prefix="cti-upload-") as scratch:
            fields, files = await _uploads(request, Path(scratch), max_bytes)
            number = to_e164(fields.get("number", ""), service.config.phone.default_region)
            if number is None:
                raise ApiError(422, "number: not a valid phone number", reason="not_a_phone_number")
            resolution = fields.get("resolution") or "fine"
            if resolution not in RESOLUTIONS:
                raise ApiError(422, "resolution: fine or normal")
            if not files:
                raise ApiError(422, "files: attach at least one document")
            paper = fields.get("paper") or None
            if paper not in (None, "a4", "letter"):
                raise ApiError(422, "paper: a4 or letter")
            try:
                job = await outbox.submit(
                    number,
                    files,
                    resolution,  # type: ignore[arg-type]
                    username=who.username,
                    extension=who.extension,
                    paper=paper,  # type: ignore[arg-type]
                )
            except ValueError as e:  # the document cannot be a fax: why, in words
                raise ApiError(422, str(e)) from None
        return json_response(fax_out(job), status=202)

    @api.operation(
        "POST",
        "/api/faxes/{fax_id}/retry",
        summary="Queue a failed (or cancelled) fax again, its counters reset",
        tag="faxes",
        roles=SENDERS,
        errors=(403, 404, 409),
    )
    async def retry_fax(request: web.Request) -> web.Response:
        service = request.app[SERVICE_KEY]
        fax_id = await _checked_id(request)
        job = await service.faxes.outbox.retry(fax_id)
        if job is None:
            raise ApiError(409, "only a sent fax that failed or was cancelled can be retried")
        return json_response(fax_out(job))

    @api.operation(
        "DELETE",
        "/api/faxes/{fax_id}",
        summary="Cancel a fax still waiting to be sent",
        tag="faxes",
        roles=SENDERS,
        errors=(403, 404, 409),
    )
    async def cancel_fax(request: web.Request) -> web.Response:
        service = request.app[SERVICE_KEY]
        fax_id = await _checked_id(request)
        job = await service.faxes.outbox.cancel(fax_id)
        if job is None:
            raise ApiError(409, "this fax is not waiting to be sent (it is dialling, or done)")
        return json_response(fax_out(job))

    @api.operation(
        "GET",
        "/api/faxes",
        summary="Faxes, newest first: all for supervisors and receptionists, else your own "
        "and the fax group's",
        tag="faxes",
        query=FaxQuery,
        roles=READERS,
    )
    async def list_faxes(request: web.Request) -> web.Response:
        query = read_query(request, FaxQuery)
        service = request.app[SERVICE_KEY]
        statement = select(FaxDocument).order_by(FaxDocument.at.desc(), FaxDocument.id.desc())
        scope = _scope(principal(request), service.config.fax.group_extensions)
        if scope is not None:
            statement = statement.where(scope)
        for column, value in (
            (FaxDocument.direction, query.direction),
            (FaxDocument.status, query.status),
            (FaxDocument.number, query.number),
        ):
            if value is not None:
                statement = statement.where(column == value)
        if query.q:
            needle = " ".join(query.q.split()).casefold()
            statement = statement.where(FaxDocument.search.contains(needle, autoescape=True))
        if query.before is not None:
            statement = statement.where(FaxDocument.at < query.before)
        async with service.sessions() as session:
            faxes = await session.scalars(statement.limit(query.limit))
            return json_response({"faxes": [fax_out(fax) for fax in faxes]})

    @api.operation(
        "GET",
        "/api/faxes/{fax_id}",
        summary="One fax: who sent it, whose client, pages, status and its files",
        tag="faxes",
        roles=READERS,
        errors=(403, 404),
    )
    async def get_fax(request: web.Request) -> web.Response:
        service = request.app[SERVICE_KEY]
        fax_id = path_id(request, "fax_id", "fax")
        async with service.sessions() as session:
            fax = await _readable(
                session, principal(request), fax_id, service.config.fax.group_extensions
            )
            return json_response(fax_out(fax))

    for what, (column, content_type) in FILES.items():
        _add_file_route(api, what, column, content_type)

    @api.operation(
        "GET",
        "/api/faxes/{fax_id}/views",
        summary="Who opened a fax's pages, newest first",
        tag="faxes",
        roles=(Role.SUPERVISOR,),
        errors=(404,),
    )
    async def views(request: web.Request) -> web.Response:
        fax_id = path_id(request, "fax_id", "fax")
        async with request.app[SERVICE_KEY].sessions() as session:
            if await session.get(FaxDocument, fax_id) is None:
                raise ApiError(404, f"no fax {fax_id}")
            rows = await session.scalars(
                select(FaxView)
                .where(FaxView.fax_id == fax_id)
                .order_by(FaxView.at.desc(), FaxView.id.desc())
            )
            return json_response(
                {
                    "views": [
                        {
                            "at": v.at.isoformat(),
                            "username": v.username,
                            "what": v.what,
                            "remote": v.remote,
                        }
                        for v in rows
                    ]
                }
            )


def _add_file_route(api: Api, what: str, column: str, content_type: str) -> None:
    @api.operation(
        "GET",
        f"/api/faxes/{{fax_id}}/{what}",
        summary=f"A fax's pages as {what.upper() if what != 'thumbnail' else 'a thumbnail'}",
        tag="faxes",
        roles=READERS,
        errors=(403, 404),
    )
    async def fetch(request: web.Request) -> web.StreamResponse:
        service = request.app[SERVICE_KEY]
        fax_id = path_id(request, "fax_id", "fax")
        who = principal(request)
        async with service.sessions() as session:
            fax = await _readable(session, who, fax_id, service.config.fax.group_extensions)
            relative = getattr(fax, column)
            file = _file(service.config.fax_dir, relative) if relative and fax.size else None
            if file is None:
                if fax.status == "pending":
                    raise ApiError(404, "this fax's file has not arrived from the PBX yet")
                if fax.size:
                    raise ApiError(404, "this fax's file was deleted from the fax folder")
                raise ApiError(404, f"this fax has no file ({fax.status})")
            session.add(
                FaxView(
                    fax_id=fax_id,
                    user_id=who.user_id,
                    username=who.username,
                    what=what,
                    remote=(request.remote or "")[:64] or None,
                )
            )
            await session.commit()
        return web.FileResponse(
            file,
            headers={
                "Content-Type": content_type,
                "Content-Disposition": f'inline; filename="fax-{fax_id}{file.suffix}"',
                "Cache-Control": "private",
            },
        )
