"""Call recordings over the API: a call's list, the audio itself, and who listened.

Supervisors (and admins) may hear every recording; operators and sales staff those of
calls they were on. The client names a recording by its id only, never by a path, and
every fetch is written to the audit before a byte is sent.

A browser's <audio> cannot send the bearer token, and a token never goes in a URL. So the
page asks for a media grant (``POST /api/recordings/{id}/grant``, with the token): a
short-lived HttpOnly cookie, valid for that one recording's URL only, signed by this
process and tied to the token it was asked with (it ends when that token ends), which
``GET /api/recordings/{id}`` takes instead of the token. The browser then streams the
audio itself, with the Range requests it needs to seek.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cti.auth import Principal
from cti.calls import Call
from cti.db.models import CallRecord, Recording, RecordingListen
from cti.domain import RecordingState, Role
from cti.http.api import Api, CookieAuth, json_response, path_id, principal
from cti.http.errors import ApiError
from cti.http.keys import SERVICE_KEY
from cti.http.ws import bearer_token

log = logging.getLogger("cti.http.recordings")

LISTENERS = (Role.OPERATOR, Role.SALES, Role.SUPERVISOR)
GRANT_COOKIE = "media_grant"
GRANT_SECONDS = 600  # a media grant's life; the page asks for a new one well before
_GRANT_VALUE = re.compile(
    r"([0-9]{1,18})\.([0-9]{1,18})\.([0-9]{1,18})\.([0-9]{1,12})\.[A-Za-z0-9_-]{43}"
)


def _clock() -> float:
    return time.time()


@dataclass(frozen=True, slots=True)
class MediaGrant:
    """Who may fetch which recording until when, by the token they asked with."""

    recording_id: int
    user_id: int
    token_id: int
    expires: int  # Unix seconds

    def signed(self, key: bytes) -> str:
        """The cookie's value: the fields and their HMAC-SHA256 under ``key``."""
        body = f"{self.recording_id}.{self.user_id}.{self.token_id}.{self.expires}"
        return f"{body}.{_signature(key, body)}"

    @classmethod
    def read(cls, key: bytes, value: str) -> MediaGrant | None:
        """The grant in a cookie's value; None unless ``key`` signed it (expired or not)."""
        if _GRANT_VALUE.fullmatch(value) is None:
            return None
        body, _, signature = value.rpartition(".")
        if not hmac.compare_digest(signature, _signature(key, body)):
            return None
        recording_id, user_id, token_id, expires = (int(part) for part in body.split("."))
        return cls(recording_id, user_id, token_id, expires)


def _signature(key: bytes, body: str) -> str:
    digest = hmac.new(key, b"media-grant:" + body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class RecordingOut(BaseModel):
    id: int
    created_at: datetime
    size: int | None = Field(description="Bytes; None while not available")
    content_type: str
    source: str = Field(description='"pbx" (the PBX announced it) or "watched" (dropped)')
    state: RecordingState = Field(
        description='"pending": not there yet (the call goes on, or ended less than '
        '[recordings] missing_after_seconds ago); "available"; "missing": never came, or '
        'holds no audio (an empty file, a WAV with only its header); "deleted": retention '
        "removed it, or its file, once there, has gone from the folder"
    )
    available: bool = Field(description='The file is there to fetch: state "available"')
    deleted: bool = Field(description='Deleted (by retention, or from the folder): "deleted"')


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


class GrantOut(BaseModel):
    url: str = Field(description="The recording's URL, which now takes the cookie")
    expires_at: AwareDatetime = Field(description="When the cookie ends")
    expires_in: int = Field(description="Seconds the cookie lasts: ask again before")


def _recording_id(request: web.Request) -> int:
    return path_id(request, "recording_id", "recording")


async def _listenable(session: AsyncSession, who: Principal, recording_id: int) -> Recording:
    """The recording, if ``who`` may hear it: 404 when there is none (or no longer), 403
    for a call they were not on."""
    recording = await session.get(Recording, recording_id)
    if recording is None:
        raise ApiError(404, f"no recording {recording_id}")
    call = Call.from_dict((await session.get_one(CallRecord, recording.call_id)).details)
    if not who.sees(call.participants()):  # ringing is not being on the call
        raise ApiError(403, "this recording is of a call you were not on")
    if recording.deleted_at is not None:
        raise ApiError(404, "this recording was deleted (retention)")
    return recording


def add_routes(api: Api) -> None:
    async def from_grant(request: web.Request, value: str) -> Principal:
        # The key is the database's: a grant from any node works on every node.
        grant = MediaGrant.read(request.app[SERVICE_KEY].media_key, value)
        if grant is None:
            raise ApiError(401, "the media grant is not valid; ask for a new one")
        if grant.expires <= _clock():
            raise ApiError(401, "the media grant has expired; ask for a new one")
        if grant.recording_id != _recording_id(request):
            raise ApiError(403, "the media grant is for another recording")
        who = await request.app[SERVICE_KEY].authenticator.by_token_id(grant.token_id)
        if who is None or who.user_id != grant.user_id:
            raise ApiError(401, "the session the media grant was given to has ended")
        return who

    media_grant = CookieAuth(
        GRANT_COOKIE,
        f"A media grant from POST /api/recordings/{{recording_id}}/grant: for that one "
        f"recording, {GRANT_SECONDS // 60} minutes, while the token it was asked with lasts",
        from_grant,
    )

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
            if call is None or not principal(request).sees(extensions):
                raise ApiError(404, f"no call {call_id!r}")  # as GET /api/calls/{call_id}
            rows = (
                await session.scalars(
                    select(Recording).where(Recording.call_id == call_id).order_by(Recording.id)
                )
            ).all()
        found = []
        for row in rows:
            known = service.recordings.store.state_of(row, call)
            found.append(
                RecordingOut(
                    id=row.id,
                    created_at=row.created_at,
                    size=known.size,
                    content_type=row.content_type,
                    source=row.source,
                    state=known.state,
                    available=known.state == "available",
                    deleted=known.state == "deleted",
                )
            )
        return json_response(RecordingList(recordings=found))

    @api.operation(
        "POST",
        "/api/recordings/{recording_id}/grant",
        summary="A media grant: a cookie that lets this browser's <audio> fetch the "
        "recording itself, with Range requests, without the token in the URL",
        tag="recordings",
        roles=LISTENERS,
        response=GrantOut,
        errors=(404,),
    )
    async def grant(request: web.Request) -> web.Response:
        recording_id = _recording_id(request)
        service = request.app[SERVICE_KEY]
        who = principal(request)
        async with service.sessions() as session:
            await _listenable(session, who, recording_id)
        token = bearer_token(request.headers.get("Authorization")) or ""
        found = await service.authenticator.session_of(token)
        if found is None:  # revoked since the middleware looked
            raise ApiError(
                401, "the API token is not valid (unknown, revoked or its user disabled)"
            )
        token_id = found[0]
        expires = int(_clock()) + GRANT_SECONDS
        url = f"/api/recordings/{recording_id}"
        response = json_response(
            GrantOut(
                url=url,
                expires_at=datetime.fromtimestamp(expires, UTC),
                expires_in=GRANT_SECONDS,
            )
        )
        response.set_cookie(
            GRANT_COOKIE,
            MediaGrant(recording_id, who.user_id, token_id, expires).signed(service.media_key),
            max_age=GRANT_SECONDS,
            path=url,  # this recording's URLs only; /grant and /listens still want the token
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    @api.operation(
        "GET",
        "/api/recordings/{recording_id}",
        summary="A recording's audio (Range requests welcome); the token, or a media grant",
        tag="recordings",
        roles=LISTENERS,
        errors=(404,),
        cookie=media_grant,
    )
    async def fetch(request: web.Request) -> web.StreamResponse:
        recording_id = _recording_id(request)
        service = request.app[SERVICE_KEY]
        who = principal(request)
        async with service.sessions() as session:
            recording = await _listenable(session, who, recording_id)
            file = service.recordings.store.file_of(recording.path)
            if file is None:
                log.warning(
                    "a recording's path leads out of the recordings folder; refused",
                    extra={"fields": {"recording": recording_id}},
                )
                raise ApiError(404, "this recording's file is not available")
            if not service.recordings.store.has_audio(file):
                call = await session.get_one(CallRecord, recording.call_id)
                state = service.recordings.store.state_of(recording, call).state
                if state == "deleted":
                    # Not retention (that sets deleted_at and is refused before): someone
                    # or something removed the file from the recordings folder.
                    log.warning(
                        "a recording's file was removed from the recordings folder",
                        extra={"fields": {"recording": recording_id, "path": recording.path}},
                    )
                    raise ApiError(
                        404, "this recording was deleted: its file is no longer in the folder"
                    )
                if state == "missing":
                    raise ApiError(404, "this recording never arrived (no file, or no audio)")
                raise ApiError(404, "this recording is not available yet")
            if not recording.size:  # it has arrived: remembered, so a removal shows as such
                recording.size = file.stat().st_size
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
