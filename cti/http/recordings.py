"""Call recordings over the API: a call's list, the audio itself, and who listened.

Supervisors (and admins) may hear every recording; operators and sales staff those of
calls they were on. The client names a recording by its id only, never by a path, and
every fetch is written to the audit before a byte is sent.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select

from cti.calls import Call
from cti.db.models import CallRecord, Recording, RecordingListen
from cti.domain import Role
from cti.http.api import Api, json_response, principal
from cti.http.calls import _sees
from cti.http.errors import ApiError
from cti.http.keys import SERVICE_KEY

log = logging.getLogger("cti.http.recordings")

LISTENERS = (Role.OPERATOR, Role.SALES, Role.SUPERVISOR)


class RecordingOut(BaseModel):
    id: int
    created_at: datetime
    size: int | None = Field(description="Bytes; None while not available")
    content_type: str
    source: str = Field(description='"pbx" (the PBX announced it) or "watched" (dropped)')
    available: bool = Field(description="The file is there to fetch (not yet while recording)")
    deleted: bool = Field(description="Deleted by retention")


class RecordingList(BaseModel):
    recordings: list[RecordingOut]


class ListenOut(BaseModel):
    at: datetime
    user_id: int | None
    username: str
    remote: str | None
    range: str | None = Field(description="The Range header of the request, if any")


class ListenList(BaseModel):
    listens: list[ListenOut]


def _recording_id(request: web.Request) -> int:
    raw = request.match_info["recording_id"]
    if not re.fullmatch(r"[0-9]{1,18}", raw):
        raise ApiError(404, f"no recording {raw!r}")
    return int(raw)


def add_routes(api: Api) -> None:
    @api.operation(
        "GET",
        "/api/calls/{call_id}/recordings",
        summary="A call's recordings",
        tag="recordings",
        roles=LISTENERS,
        response=RecordingList,
        errors=(404,),
    )
    async def list_recordings(request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        service = request.app[SERVICE_KEY]
        async with service.sessions() as session:
            call = await session.get(CallRecord, call_id)
            extensions = Call.from_dict(call.details).extensions() if call else ()
            if call is None or not _sees(principal(request), extensions):
                raise ApiError(404, f"no call {call_id!r}")  # as GET /api/calls/{call_id}
            rows = (
                await session.scalars(
                    select(Recording).where(Recording.call_id == call_id).order_by(Recording.id)
                )
            ).all()
        found = []
        for row in rows:
            file = None if row.deleted_at else service.recordings.store.file_of(row.path)
            stat = file.stat() if file is not None and file.is_file() else None
            found.append(
                RecordingOut(
                    id=row.id,
                    created_at=row.created_at,
                    size=stat.st_size if stat else None,
                    content_type=row.content_type,
                    source=row.source,
                    available=stat is not None,
                    deleted=row.deleted_at is not None,
                )
            )
        return json_response(RecordingList(recordings=found))

    @api.operation(
        "GET",
        "/api/recordings/{recording_id}",
        summary="A recording's audio (Range requests welcome)",
        tag="recordings",
        roles=LISTENERS,
        errors=(404,),
    )
    async def fetch(request: web.Request) -> web.StreamResponse:
        recording_id = _recording_id(request)
        service = request.app[SERVICE_KEY]
        who = principal(request)
        async with service.sessions() as session:
            recording = await session.get(Recording, recording_id)
            if recording is None:
                raise ApiError(404, f"no recording {recording_id}")
            call = Call.from_dict((await session.get_one(CallRecord, recording.call_id)).details)
            if not _sees(who, call.participants()):  # ringing is not being on the call
                raise ApiError(403, "this recording is of a call you were not on")
            if recording.deleted_at is not None:
                raise ApiError(404, "this recording was deleted (retention)")
            file = service.recordings.store.file_of(recording.path)
            if file is None:
                log.warning(
                    "a recording's path leads out of the recordings folder; refused",
                    extra={"fields": {"recording": recording_id}},
                )
                raise ApiError(404, "this recording's file is not available")
            if not file.is_file():
                raise ApiError(404, "this recording is not available yet")
            session.add(
                RecordingListen(
                    recording_id=recording_id,
                    user_id=who.user_id,
                    username=who.username,
                    remote=(request.remote or "")[:64] or None,
                    range_header=request.headers.get("Range", "")[:200] or None,
                )
            )
            await session.commit()
        suffix = re.sub(r"[^A-Za-z0-9.]", "", file.suffix)
        return web.FileResponse(
            file,
            headers={
                "Content-Type": recording.content_type,
                "Content-Disposition": f'inline; filename="recording-{recording_id}{suffix}"',
                "Cache-Control": "private",
            },
        )

    @api.operation(
        "GET",
        "/api/recordings/{recording_id}/listens",
        summary="Who fetched a recording, newest first",
        tag="recordings",
        roles=(Role.SUPERVISOR,),
        response=ListenList,
        errors=(404,),
    )
    async def listens(request: web.Request) -> web.Response:
        recording_id = _recording_id(request)
        service = request.app[SERVICE_KEY]
        async with service.sessions() as session:
            if await session.get(Recording, recording_id) is None:
                raise ApiError(404, f"no recording {recording_id}")
            rows = await session.scalars(
                select(RecordingListen)
                .where(RecordingListen.recording_id == recording_id)
                .order_by(RecordingListen.at.desc(), RecordingListen.id.desc())
            )
            found = [
                ListenOut(
                    at=row.at,
                    user_id=row.user_id,
                    username=row.username,
                    remote=row.remote,
                    range=row.range_header,
                )
                for row in rows
            ]
        return json_response(ListenList(listens=found))
