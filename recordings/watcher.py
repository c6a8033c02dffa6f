"""Recordings an external recorder drops into ``[recordings] watch_dir``.

Every ``watch_seconds`` the folder's top level is listed; an audio file whose size and
time did not change since the last look is matched to a call:

1. its name holds a reference to the call that the PBX's adapter recognises (Asterisk:
   the Linkedid, e.g. ``1795361335.42``), or
2. its name ends in ``-<number>-<YYYYMMDD-HHMMSS>.<ext>`` (local time of this host) or
   ``-<number>.<ext>`` (then the file's modification time counts): the call with that
   outside number that was going on at that time, give or take ``match_seconds``.

A matched file moves under ``dir/<yyyy>/<mm>/``; an unmatched one stays where it is,
logged once, and is tried again at each look (its call may not be stored yet).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from cti.db.models import CallRecord
from cti.phone import to_e164
from recordings.store import CONTENT_TYPES, RecordingStore

log = logging.getLogger("cti.recordings.watcher")

NUMBER_TIME = re.compile(r"-(?P<number>\+?\d{3,20})(?:-(?P<date>\d{8})-(?P<time>\d{6}))?\.\w+$")


class RecordingWatcher:
    def __init__(
        self,
        store: RecordingStore,
        folder: Path,
        *,
        every: float,
        match_seconds: float,
        region: str,
        calls_named_by: Callable[[str], list[str]],
    ) -> None:
        self.store = store
        self.folder = folder
        self.every = every
        self.window = timedelta(seconds=match_seconds)
        self.region = region
        self.calls_named_by = calls_named_by  # the PBX adapters' reading of a file name
        self._last: dict[str, tuple[int, int]] = {}  # name -> (size, mtime) at the last look
        self._unmatched: set[str] = set()  # logged already

    async def scan(self) -> None:
        """One look at the folder."""
        seen: dict[str, tuple[int, int]] = {}
        try:
            entries = [e for e in os.scandir(self.folder) if e.is_file(follow_symlinks=False)]
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if entry.name.startswith(".") or Path(entry.name).suffix.lower() not in CONTENT_TYPES:
                continue
            stat = entry.stat(follow_symlinks=False)
            seen[entry.name] = state = (stat.st_size, stat.st_mtime_ns)
            if self._last.get(entry.name) != state:
                continue  # new or still being written: next time
            mtime = datetime.fromtimestamp(stat.st_mtime, UTC)
            match = await self.match(entry.name, mtime)
            if match is None:
                if entry.name not in self._unmatched:
                    self._unmatched.add(entry.name)
                    log.warning(
                        "a dropped recording matches no call; left in place",
                        extra={"fields": {"file": entry.name}},
                    )
                continue
            call_id, started_at = match
            path = await self.store.attach_file(call_id, started_at, Path(entry.path))
            del seen[entry.name]
            log.info(
                "dropped recording attached", extra={"fields": {"call": call_id, "path": path}}
            )
        self._last = seen
        self._unmatched &= seen.keys()

    async def match(self, name: str, mtime: datetime) -> tuple[str, datetime] | None:
        """The call (id, start) a file of this name and time belongs to, if any."""
        async with self.store.sessions() as session:
            ids = self.calls_named_by(name)
            if ids:
                rows = await session.execute(
                    select(CallRecord.id, CallRecord.started_at).where(CallRecord.id.in_(ids))
                )
                found = {row.id: row for row in rows}
                for call_id in ids:  # the adapters' likeliest first
                    if call_id in found:
                        return call_id, found[call_id].started_at
            found = NUMBER_TIME.search(name)
            number = to_e164(found["number"], self.region) if found else None
            if found is None or number is None:
                return None
            at = mtime
            if found["date"]:
                try:
                    at = datetime.strptime(found["date"] + found["time"], "%Y%m%d%H%M%S")
                except ValueError:
                    return None
                at = at.astimezone(UTC)  # a naive time is this host's local time
            rows = await session.execute(
                select(CallRecord.id, CallRecord.started_at, CallRecord.ended_at).where(
                    CallRecord.external_number == number,
                    CallRecord.started_at <= at + self.window,
                    CallRecord.ended_at >= at - self.window,
                )
            )
            calls = rows.all()
        if not calls:
            return None
        # The call whose start or end is nearest that time.
        best = min(calls, key=lambda c: min(abs(c.started_at - at), abs(c.ended_at - at)))
        return best.id, best.started_at
