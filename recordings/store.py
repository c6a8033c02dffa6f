"""Attaching recording files to calls, and finding them again safely.

A ``Recording`` row names its file relative to ``[recordings] dir``; ``file_of`` turns that
into a file only if it stays inside the folder (no absolute path, ``..``, NUL, or symlink
pointing out), so no row, however it was written, can serve or delete anything else.

A recording is ``available`` once its file holds audio (an empty file, or a WAV with a
header and no samples, is no recording); until then it is ``pending`` while its call goes
on and for ``[recordings] missing_after_seconds`` after it ends, then ``missing``
(``missing.py`` logs each such one once); ``deleted`` once retention took it. The row's
``size`` is None until that is settled: the file's bytes, or 0 for a file that never came.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import struct
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import bindparam, insert, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.config import RecordingsConfig
from cti.db.models import CallRecord, Recording
from cti.domain import RecordingState, utcnow
from cti.paths import inside as inside_folder

log = logging.getLogger("cti.recordings")

WAV_HEADER_MAX = 4096  # bytes read to find a WAV's data chunk (MixMonitor's: 44 or 60)

# The files served and attached: audio only, by extension (MixMonitor's formats included).
CONTENT_TYPES = {
    ".wav": "audio/wav",
    ".opus": "audio/ogg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".gsm": "audio/x-gsm",
    ".ulaw": "audio/basic",
    ".alaw": "audio/x-alaw-basic",
    ".g722": "audio/G722",
}


def content_type_of(path: str | Path) -> str:
    return CONTENT_TYPES.get(PurePosixPath(path).suffix.lower(), "application/octet-stream")


def inside(root: Path, relative: str) -> Path | None:
    """The audio file ``relative`` names under ``root`` (symlinks resolved); None when it
    is absolute, has ``..`` or NUL, leads out of ``root`` or is not an audio file."""
    target = inside_folder(root, relative)
    if target is None:
        return None
    audio = (PurePosixPath(relative).suffix.lower(), target.suffix.lower())
    return target if all(suffix in CONTENT_TYPES for suffix in audio) else None


def has_audio(file: Path) -> bool:
    """The file is there and holds audio: not empty, and for a WAV, more than its header
    (MixMonitor writes the header first and fills in its sizes only at the end, so the
    bytes after the ``data`` chunk's header count, not the size it states)."""
    try:
        size = file.stat().st_size if file.is_file() else 0
        if size == 0:
            return False
        with file.open("rb") as f:
            head = f.read(WAV_HEADER_MAX)
    except OSError:
        return False
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return True  # not a WAV (or not one we read): not empty is enough
    at = 12
    while at + 8 <= len(head):
        chunk, length = head[at : at + 4], struct.unpack_from("<I", head, at + 4)[0]
        if chunk == b"data":
            return size > at + 8
        at += 8 + length + length % 2  # chunks are padded to an even length
    return size > len(head)  # no data chunk in what was read: audio only if there is more


State = RecordingState


@dataclass(frozen=True, slots=True)
class FileState:
    state: State
    size: int | None  # bytes, when available


HANDLED_MEMORY = 20_000  # announced recordings remembered: more than the calls in progress
PREPARE_STEP = 5  # new files looked at between two turns of the loop


# The recordings of these calls, and those with these paths (any call's), in one query;
# built once, as it runs in every batch that brings a new file.
_ATTACHED = select(Recording.call_id, Recording.path).where(
    or_(
        Recording.call_id.in_(bindparam("calls", expanding=True)),
        Recording.path.in_(bindparam("paths", expanding=True)),
    )
)
_ATTACH = insert(Recording)


@dataclass
class Announced:
    """What a batch of calls announced, for ``RecordingStore.write``."""

    # call id -> {file relative to dir: its size, None while it has no audio}
    wanted: dict[str, dict[str, int | None]] = field(default_factory=dict)
    started: dict[str, datetime] = field(default_factory=dict)
    # (call id, file as the PBX named it) -> attached (True) or refused (False)
    handled: dict[tuple[str, str], bool] = field(default_factory=dict)
    with_files: set[str] = field(default_factory=set)  # attached before this batch


def _stem(path: str) -> str:
    """A recording's identity: transcoding changes only its extension."""
    return str(PurePosixPath(path).with_suffix(""))


class RecordingStore:
    @staticmethod
    def has_audio(file: Path) -> bool:
        return has_audio(file)

    def __init__(self, sessions: async_sessionmaker, root: Path, options: RecordingsConfig) -> None:
        self.sessions = sessions
        self.root = root.resolve()
        self.options = options
        self._pbx_dir = PurePosixPath(options.pbx_dir) if options.pbx_dir else None
        self.missing_after = timedelta(seconds=options.missing_after_seconds)
        self._refused: set[tuple[str, str]] = set()  # (call, path) logged as refused
        # (call, file as the PBX named it) already attached (True) or refused as outside
        # the folder (False), oldest first.
        self._handled: dict[tuple[str, str], bool] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._transcoding: set[int] = set()
        self._no_ffmpeg_logged = False

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def file_of(self, relative: str) -> Path | None:
        return inside(self.root, relative)

    def audio_of(self, relative: str) -> Path | None:
        """The file ``relative`` names if it is inside ``dir`` and holds audio."""
        file = self.file_of(relative)
        return file if file is not None and has_audio(file) else None

    def state_of(
        self, recording: Recording, call: CallRecord, now: datetime | None = None
    ) -> FileState:
        """What a listener is told about a recording of ``call``: see the module's text."""
        if recording.deleted_at is not None:
            return FileState("deleted", None)
        file = self.audio_of(recording.path)
        if file is not None:
            try:
                return FileState("available", file.stat().st_size)
            except OSError:  # gone just now
                pass
        if recording.size:  # it had arrived, with audio: its file was removed since
            return FileState("deleted", None)
        if call.in_progress or (now or utcnow()) < self.given_up_at(call):
            return FileState("pending", None)
        return FileState("missing", None)

    def given_up_at(self, call: CallRecord) -> datetime:
        """When a recording of ``call`` that has not come counts as missing."""
        return (call.ended_at or call.started_at) + self.missing_after

    def from_pbx(self, announced: str) -> str | None:
        """Where a file the PBX names is, relative to ``dir``: under ``pbx_dir`` (or
        ``dir`` itself) the same relative path, elsewhere its name alone."""
        path = PurePosixPath(announced)
        for base in (self._pbx_dir, PurePosixPath(self.root)):
            if base is not None and path.is_relative_to(base):
                path = path.relative_to(base)
                break
        else:
            if path.is_absolute():
                path = PurePosixPath(path.name)
        relative = str(path)
        return relative if len(relative) <= 500 and self.file_of(relative) else None

    # -- CallFollower: in the transaction that stores the calls -------------------------

    async def prepare(self, calls: list[dict[str, Any]]) -> Announced | None:
        """The files each call announced that are new since it was last written, found
        in the folder (a file still being recorded is attached too: serving checks that
        it exists). What was attached is remembered, so the next writes of the call cost
        no query."""
        found = Announced()
        for call in calls:
            for announced in call.get("recordings") or ():
                key = (call["id"], announced)
                if key in self._handled:
                    if self._handled[key]:
                        found.with_files.add(call["id"])
                    continue
                if len(found.handled) % PREPARE_STEP == PREPARE_STEP - 1:
                    await asyncio.sleep(0)  # the file checks are on the loop: let it turn
                relative = self.from_pbx(announced)
                found.handled[key] = relative is not None
                if relative is not None:
                    file = self.audio_of(relative)
                    size = file.stat().st_size if file else None  # None: not yet
                    found.wanted.setdefault(call["id"], {})[relative] = size
                    found.started[call["id"]] = datetime.fromisoformat(call["started_at"])
                else:
                    self._refuse(call["id"], announced, "outside the recordings folder")
        return found if found.handled or found.with_files else None

    def write(
        self, conn: Connection, calls: list[dict[str, Any]], found: Announced
    ) -> Callable[[], None]:
        """Attach the files each call announced, once each, however often the call is
        written."""
        written = {call["id"] for call in calls}  # (a node of several writes only its own)
        found.wanted = {k: v for k, v in found.wanted.items() if k in written}
        if found.wanted:
            self._attach_announced(conn, found)

        def committed() -> None:
            self._handled.update(found.handled)
            while len(self._handled) > HANDLED_MEMORY:
                del self._handled[next(iter(self._handled))]
            if self.options.transcode == "opus":
                with_files = found.with_files | set(found.wanted)
                ended = [c["id"] for c in calls if c["id"] in with_files and not c["in_progress"]]
                if ended:
                    self._spawn(self._transcode_later(ended))

        return committed

    def _attach_announced(self, conn: Connection, found: Announced) -> None:
        every = {relative for paths in found.wanted.values() for relative in paths}
        rows = conn.execute(_ATTACHED, {"calls": list(found.wanted), "paths": sorted(every)}).all()
        known = {(call_id, _stem(path)) for call_id, path in rows if call_id in found.wanted}
        taken = {path for _, path in rows if path in every}
        new = []
        for call_id, paths in found.wanted.items():
            for relative, size in paths.items():
                if (call_id, _stem(relative)) in known:
                    continue
                if relative in taken:
                    self._refuse(call_id, relative, "already another call's recording")
                    continue
                taken.add(relative)
                new.append(
                    {
                        "call_id": call_id,
                        "path": relative,
                        "content_type": content_type_of(relative),
                        "size": size,
                        "created_at": found.started[call_id],
                        "source": "pbx",
                    }
                )
        if new:
            conn.execute(_ATTACH, new)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refuse(self, call_id: str, path: str, why: str) -> None:
        if (call_id, path) not in self._refused:  # the call is written again and again
            self._refused.add((call_id, path))
            log.warning(
                "a recording %s is ignored", why, extra={"fields": {"call": call_id, "path": path}}
            )

    async def attach_file(self, call_id: str, started_at: datetime, source: Path) -> str:
        """Move a dropped file to ``dir/<yyyy>/<mm>/`` (or to where the PBX said the call's
        recording of that name would be, if it is missing) and attach it to the call.
        Returns its path relative to ``dir``."""
        async with self.sessions() as session:
            rows = await session.scalars(select(Recording).where(Recording.call_id == call_id))
            twin = next(
                (
                    row
                    for row in rows
                    if row.deleted_at is None
                    and PurePosixPath(row.path).name == source.name
                    and (file := self.file_of(row.path)) is not None
                    and not has_audio(file)  # not there, or no audio in it
                ),
                None,
            )
            if twin is not None:
                relative = twin.path
            else:
                relative = await self._free_name(session, started_at, source.name)
            target = self.root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(shutil.move, source, target)
            size = target.stat().st_size if has_audio(target) else None  # None: not yet
            if twin is not None:
                twin.size = size
            else:
                session.add(
                    Recording(
                        call_id=call_id,
                        path=relative,
                        content_type=content_type_of(relative),
                        size=size,
                        created_at=started_at,
                        source="watched",
                    )
                )
            await session.commit()
        if self.options.transcode == "opus":
            await self._transcode_later([call_id])
        return relative

    async def _free_name(self, session: AsyncSession, started_at: datetime, name: str) -> str:
        """``<yyyy>/<mm>/<name>``, numbered if a file or a row has that path already."""
        folder = PurePosixPath(f"{started_at:%Y}", f"{started_at:%m}")
        stem, suffix = PurePosixPath(name).stem, PurePosixPath(name).suffix
        relative, n = str(folder / name), 0
        while (self.root / relative).exists() or await session.scalar(
            select(Recording.id).where(Recording.path == relative)
        ):
            n += 1
            relative = str(folder / f"{stem}-{n}{suffix}")
        return relative

    # -- transcoding: optional, off the call writer's path ----------------------------

    async def _transcode_later(self, call_ids: list[str]) -> None:
        async with self.sessions() as session:
            ids = await session.scalars(
                select(Recording.id).where(
                    Recording.call_id.in_(call_ids),
                    Recording.content_type == "audio/wav",
                    Recording.deleted_at.is_(None),
                )
            )
            for recording_id in ids:
                if recording_id not in self._transcoding:
                    self._transcoding.add(recording_id)
                    self._spawn(self._transcode(recording_id))

    async def _transcode(self, recording_id: int) -> None:
        try:
            async with self.sessions() as session:
                recording = await session.get(Recording, recording_id)
            if recording is None or self.file_of(recording.path) is None:
                return
            source = self.root / recording.path  # a symlink stays one: its target is kept
            if not has_audio(source) or source.with_suffix(".opus").exists():
                return
            target = await self._to_opus(source)
            if target is None:
                return
            async with self.sessions() as session:
                recording = await session.get(Recording, recording_id)
                if recording is None:  # the call was deleted meanwhile
                    target.unlink(missing_ok=True)
                    return
                recording.path = str(PurePosixPath(recording.path).with_suffix(".opus"))
                recording.content_type = "audio/ogg"
                recording.size = target.stat().st_size
                await session.commit()
            source.unlink(missing_ok=True)
        except Exception:
            log.exception("transcoding a recording failed; it stays as it was")
        finally:
            self._transcoding.discard(recording_id)

    async def _to_opus(self, source: Path) -> Path | None:
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            if not self._no_ffmpeg_logged:
                self._no_ffmpeg_logged = True
                log.warning("[recordings] transcode = opus needs ffmpeg; recordings stay WAV")
            return None
        target = source.with_suffix(".opus")
        process = await asyncio.create_subprocess_exec(
            ffmpeg,
            *("-nostdin", "-loglevel", "error", "-y", "-i", str(source)),
            *("-c:a", "libopus", "-b:a", "24k", str(target)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, errors = await process.communicate()
        except asyncio.CancelledError:  # the service stops
            process.kill()
            target.unlink(missing_ok=True)
            raise
        if process.returncode != 0:
            target.unlink(missing_ok=True)
            log.warning(
                "ffmpeg could not transcode a recording; it stays WAV: %s",
                errors.decode(errors="replace").strip()[-300:],
            )
            return None
        return target
