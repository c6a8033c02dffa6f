"""The call log, line states, click-to-dial and blind transfer over the API."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field, field_validator
from sqlalchemy import select

from cti.auth import Principal
from cti.calls import Call
from cti.callstore import CallFilter, find_calls
from cti.db.models import CallRecord, User
from cti.domain import ROLES_SEEING_ALL, Direction, LineState, Outcome, Role
from cti.http.api import Api, json_response, principal, read_body, read_query
from cti.http.errors import ApiError
from cti.http.keys import SERVICE_KEY
from cti.phone import NotAPhoneNumber, dialable, to_e164
from pbx_adapters.asterisk.adapter import AsteriskAdapter, CallNotFound, LinkDown, TransferRefused

MAX_PAGE = 200


class CallQuery(BaseModel):
    since: AwareDatetime | None = Field(None, description="Calls started at or after (ISO 8601)")
    until: AwareDatetime | None = Field(None, description="Calls started before (ISO 8601)")
    extension: str | None = Field(
        None, pattern=r"^[0-9]{1,10}$", description="Calls that rang, were placed or answered by it"
    )
    direction: Direction | None = None
    outcome: Outcome | None = None
    missed: bool | None = None
    number: str | None = Field(None, max_length=40, description="The outside party's number")
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(None, max_length=200, description="next_cursor of the last page")


class CallPage(BaseModel):
    calls: list[dict[str, Any]]
    next_cursor: str | None


class Line(BaseModel):
    extension: str
    state: LineState | None = Field(description="None: no PBX has reported this phone yet")
    pbx: str | None
    user: str | None = None


class LineList(BaseModel):
    lines: list[Line]


class DialRequest(BaseModel):
    number: str = Field(min_length=1, max_length=40)
    extension: str | None = Field(
        None, pattern=r"^[0-9]{1,10}$", description="The phone to ring first (default: your own)"
    )
    pbx: str | None = Field(None, max_length=64)

    @field_validator("number")
    @classmethod
    def _printable(cls, number: str) -> str:
        if any(ch in number for ch in "\r\n\x00"):
            raise ValueError("a phone number has no line breaks")
        return number


class DialAccepted(BaseModel):
    request_id: str
    extension: str
    number: str = Field(description="The digits sent to the PBX")
    status: Literal["queued"] = "queued"


class TransferRequest(BaseModel):
    extension: str = Field(pattern=r"^[0-9]{1,10}$", description="Where the caller goes")
    pbx: str | None = Field(None, max_length=64, description="Default: the one with the call")


class TransferAccepted(BaseModel):
    call_id: str
    extension: str
    status: Literal["requested"] = "requested"


def _visibility(who: Principal) -> str | bool | None:
    return True if who.role in ROLES_SEEING_ALL else who.extension


def _sees(who: Principal, extensions: tuple[str, ...]) -> bool:
    """Whether ``who`` may see (and act on) a call that involved ``extensions``."""
    visible = _visibility(who)
    return visible is True or (visible is not None and visible in extensions)


def _encode_cursor(call: dict[str, Any]) -> str:
    raw = f"{call['started_at']}|{call['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        started, call_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(started), call_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(422, "cursor: not a cursor this API gave out") from None


def add_routes(api: Api) -> None:
    @api.operation(
        "GET",
        "/api/calls",
        summary="The call log, newest first",
        tag="calls",
        query=CallQuery,
        response=CallPage,
    )
    async def list_calls(request: web.Request) -> web.Response:
        query = read_query(request, CallQuery)
        service = request.app[SERVICE_KEY]
        number = None
        if query.number is not None:
            number = to_e164(query.number, service.config.phone.default_region)
            if number is None:
                raise ApiError(422, "number: not a valid phone number")
        flt = CallFilter(
            since=query.since,
            until=query.until,
            extension=query.extension,
            direction=query.direction,
            outcome=query.outcome,
            missed=query.missed,
            number=number,
        )
        before = _decode_cursor(query.cursor) if query.cursor else None
        async with service.sessions() as session:
            calls = await find_calls(
                session,
                flt,
                visible_to_extension=_visibility(principal(request)),
                limit=query.limit + 1,
                before=before,
            )
        page, more = calls[: query.limit], len(calls) > query.limit
        return json_response(
            CallPage(calls=page, next_cursor=_encode_cursor(page[-1]) if more else None)
        )

    @api.operation(
        "GET", "/api/calls/{call_id}", summary="One call with its legs", tag="calls", errors=(404,)
    )
    async def get_call(request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        service = request.app[SERVICE_KEY]
        async with service.sessions() as session:
            record = await session.get(CallRecord, call_id)
        if record is None or not _sees(
            principal(request), Call.from_dict(record.details).extensions()
        ):
            raise ApiError(404, f"no call {call_id!r}")  # the same answer whether or not it exists
        return json_response(record.details)

    @api.operation(
        "GET",
        "/api/lines",
        summary="Every known extension's line state, and users' phones not reported yet",
        tag="calls",
        response=LineList,
    )
    async def lines(request: web.Request) -> web.Response:
        service = request.app[SERVICE_KEY]
        async with service.sessions() as session:
            rows = await session.execute(
                select(User.extension, User.display_name).where(User.extension.is_not(None))
            )
            names = {extension: name for extension, name in rows}
        found = [
            Line(extension=ext, state=state, pbx=name, user=names.get(ext))
            for name, adapter in service.pbx.items()
            for ext, state in sorted(adapter.lines().items())
        ]
        # Users' phones the PBX has not mentioned yet still belong on the colleagues panel.
        reported = {line.extension for line in found}
        found += [
            Line(extension=ext, state=None, pbx=None, user=name)
            for ext, name in sorted(names.items())
            if ext not in reported
        ]
        return json_response(LineList(lines=found))

    @api.operation(
        "POST",
        "/api/calls",
        summary="Click-to-dial: ring your phone, then dial the number from it",
        tag="calls",
        body=DialRequest,
        response=DialAccepted,
        status=202,
        roles=(Role.OPERATOR, Role.SALES, Role.RECEPTIONIST, Role.SUPERVISOR),
        errors=(503,),
    )
    async def dial(request: web.Request) -> web.Response:
        body = await read_body(request, DialRequest)
        who = principal(request)
        extension = body.extension or who.extension
        if extension is None:
            raise ApiError(422, "extension: you have no phone of your own; name one")
        if extension != who.extension and not who.has_role(Role.SUPERVISOR):
            raise ApiError(403, "you may only dial from your own extension")
        service = request.app[SERVICE_KEY]
        adapter = service.pbx.get(body.pbx) if body.pbx else next(iter(service.pbx.values()), None)
        if adapter is None:
            raise ApiError(503, "no PBX is configured" if not body.pbx else f"no PBX {body.pbx!r}")
        try:
            dialable(body.number, service.config.phone.default_region)
            placed = await adapter.originate(extension, body.number)
        except NotAPhoneNumber as e:
            raise ApiError(422, f"number: {e}") from None
        except LinkDown as e:
            raise ApiError(503, str(e)) from None
        return json_response(
            DialAccepted(request_id=placed.request_id, extension=extension, number=placed.number),
            status=202,
        )

    @api.operation(
        "POST",
        "/api/calls/{call_id}/transfer",
        summary="Blind transfer: send the outside party of a live call to an extension",
        tag="calls",
        body=TransferRequest,
        response=TransferAccepted,
        status=202,
        roles=(Role.OPERATOR, Role.SALES, Role.RECEPTIONIST, Role.SUPERVISOR),
        errors=(404, 409, 502, 503),
    )
    async def transfer(request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        body = await read_body(request, TransferRequest)
        service = request.app[SERVICE_KEY]
        who = principal(request)
        adapters: list[AsteriskAdapter] = list(service.pbx.values())
        if body.pbx is not None:
            if body.pbx not in service.pbx:
                raise ApiError(422, f"pbx: no PBX {body.pbx!r}")
            adapters = [service.pbx[body.pbx]]
        adapter: AsteriskAdapter | None = None
        call: Call | None = None
        for candidate in adapters:  # the PBX whose tracker follows the call
            call = candidate.live_call(call_id)
            if call is not None:
                adapter = candidate
                break
        if adapter is None or call is None:
            # Not in progress: a 409 for a call the user may see, else the same 404 as
            # get_call, whether or not it exists.
            async with service.sessions() as session:
                record = await session.get(CallRecord, call_id)
            if record is not None and _sees(who, Call.from_dict(record.details).extensions()):
                raise ApiError(409, f"call {call_id!r} is not in progress")
            raise ApiError(404, f"no call {call_id!r}")
        if not _sees(who, call.extensions()):
            raise ApiError(404, f"no call {call_id!r}")
        try:
            await adapter.transfer(call_id, body.extension)
        except LinkDown as e:
            raise ApiError(503, str(e)) from None
        except CallNotFound:
            raise ApiError(409, f"call {call_id!r} has no party to transfer now") from None
        except TransferRefused as e:
            raise ApiError(502, f"the PBX refused the transfer: {e}") from None
        return json_response(
            TransferAccepted(call_id=call_id, extension=body.extension), status=202
        )
