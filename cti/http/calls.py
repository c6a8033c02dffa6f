"""The call log, line states, click-to-dial and blind transfer over the API."""

from __future__ import annotations

import base64
import binascii
import contextlib
import csv
import io
import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cti.calls import Call
from cti.callstore import CallFilter, find_calls, recording_counts, walk_calls
from cti.clients.models import Phone
from cti.db.models import CallRecord, User
from cti.directory import Directory, client_summary, lookup_many
from cti.domain import Direction, LineState, Outcome, Role
from cti.http.api import MAX_ID, Api, json_response, principal, read_body, read_query
from cti.http.errors import ApiError
from cti.http.keys import SERVICE_KEY
from cti.pbx import PbxAdapter, PbxCallNotFound, PbxLinkDown, PbxRefused, PbxUnsupported
from cti.phone import NotAPhoneNumber, dialable, to_e164

log = logging.getLogger("cti.http.calls")

MAX_PAGE = 200
EXPORT_PAGE = 1000  # calls read (and enriched) at a time while an export streams


class CallFilters(BaseModel):
    since: AwareDatetime | None = Field(None, description="Calls started at or after (ISO 8601)")
    until: AwareDatetime | None = Field(None, description="Calls started before (ISO 8601)")
    extension: str | None = Field(
        None, pattern=r"^[0-9]{1,10}$", description="Calls that rang, were placed or answered by it"
    )
    direction: Direction | None = None
    outcome: Outcome | None = None
    missed: bool | None = None
    number: str | None = Field(None, max_length=40, description="The outside party's number")
    client_id: int | None = Field(
        None, ge=1, le=MAX_ID, description="Calls with one of this built-in client's numbers"
    )


class CallQuery(CallFilters):
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(None, max_length=200, description="next_cursor of the last page")


class ExportQuery(CallFilters):
    tz: str = Field(
        "UTC", max_length=64, description="IANA time zone of started_at, e.g. Europe/Moscow"
    )


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


class CallCommand(BaseModel):
    pbx: str | None = Field(None, max_length=64, description="Default: the one with the call")


class RecordingCommand(CallCommand):
    record: bool = Field(description="true: start recording; false: stop")


class CommandAccepted(BaseModel):
    call_id: str
    status: Literal["requested"] = "requested"


class TransferAccepted(BaseModel):
    call_id: str
    extension: str
    status: Literal["requested"] = "requested"


def _encode_cursor(call: dict[str, Any]) -> str:
    raw = f"{call['started_at']}|{call['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        started, call_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(started), call_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(422, "cursor: not a cursor this API gave out") from None


async def _call_filter(session: AsyncSession, query: CallFilters, region: str) -> CallFilter:
    number = None
    if query.number is not None:
        number = to_e164(query.number, region)
        if number is None:
            raise ApiError(422, "number: not a valid phone number", reason="not_a_phone_number")
    numbers = None
    if query.client_id is not None:
        found = await session.scalars(
            select(Phone.number).where(Phone.client_id == query.client_id)
        )
        numbers = tuple(sorted(set(found)))  # none (or no such client): no calls
    return CallFilter(
        since=query.since,
        until=query.until,
        extension=query.extension,
        direction=query.direction,
        outcome=query.outcome,
        missed=query.missed,
        number=number,
        numbers=numbers,
    )


def _public(call: dict[str, Any]) -> dict[str, Any]:
    """A stored call as the API shows it: without the PBX's own file paths (its
    recordings, a fax's file, its own references). Recordings are listed by id:
    /api/calls/{id}/recordings."""
    shown = {key: value for key, value in call.items() if key not in ("recordings", "pbx_ref")}
    if shown.get("fax"):
        fax = shown["fax"]
        shown["fax"] = {  # what is known of it; never its file
            key: fax[key]
            for key in ("pages", "status", "remote_station")
            if fax.get(key) is not None
        }
    return shown


async def _enrich(
    session: AsyncSession, directory: Directory, calls: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The page's calls as the API shows them, with their client (and its manager) as
    the directory knows it and how many recordings each has; nothing stored."""
    clients = await lookup_many(directory, (c.get("external_number") for c in calls))
    counts = await recording_counts(session, (c["id"] for c in calls))
    return [
        {
            **_public(call),
            "client": client_summary(clients.get(call.get("external_number") or "")),
            "recording_count": counts.get(call["id"], 0),
        }
        for call in calls
    ]


EXPORT_COLUMNS = (
    "started_at",
    "direction",
    "number",
    "caller_name",
    "client",
    "rang",
    "answered_by",
    "wait_seconds",
    "talk_seconds",
    "outcome",
    "missed",
    "transfers",
    "recordings",
    "call_id",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    """Text as a spreadsheet shows it: a cell that would start a formula (a caller ID name
    is whatever the caller's network sent) gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _export_row(call: dict[str, Any], tz: ZoneInfo) -> list[str]:
    started = datetime.fromisoformat(call["started_at"]).astimezone(tz)
    number = call.get("external_number") or ""
    rang = dict.fromkeys(leg["extension"] for leg in call.get("legs") or ())
    transfers = [
        f"{t.get('from') or '?'}→{t.get('to') or '?'}" for t in call.get("transfers") or ()
    ]
    outcome = call.get("outcome") or ("in_progress" if call.get("in_progress") else "")
    return [
        started.isoformat(timespec="seconds"),
        call.get("direction") or "",
        # An E.164 number is data, not a formula, whatever its "+" says.
        number if number.lstrip("+").isdigit() else _cell(number),
        _cell(call.get("external_name")),
        _cell((call.get("client") or {}).get("name")),
        ", ".join(rang),
        call.get("answered_by") or "",
        _seconds(call.get("wait_seconds")),
        _seconds(call.get("talk_seconds")),
        outcome,
        "true" if call.get("missed") else "false",
        ", ".join(transfers),
        str(call.get("recording_count", 0)),
        _cell(call["id"]),
    ]


def _csv_lines(rows: Iterable[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode("utf-8")


def add_routes(api: Api) -> None:
    @api.operation(
        "GET",
        "/api/calls",
        summary="The call log, newest first, each call with its built-in client",
        tag="calls",
        query=CallQuery,
        response=CallPage,
    )
    async def list_calls(request: web.Request) -> web.Response:
        query = read_query(request, CallQuery)
        service = request.app[SERVICE_KEY]
        before = _decode_cursor(query.cursor) if query.cursor else None
        async with service.sessions() as session:
            flt = await _call_filter(session, query, service.config.phone.default_region)
            calls = await find_calls(
                session,
                flt,
                visible_to_extension=principal(request).call_scope,
                limit=query.limit + 1,
                before=before,
            )
            page, more = calls[: query.limit], len(calls) > query.limit
            page = await _enrich(session, service.directory, page)
        return json_response(
            CallPage(calls=page, next_cursor=_encode_cursor(page[-1]) if more else None)
        )

    @api.operation(
        "GET",
        "/api/calls/export",
        summary="The call log as CSV (UTF-8 with a BOM): every call the filters match, "
        "newest first, streamed",
        tag="calls",
        query=ExportQuery,
    )
    async def export_calls(request: web.Request) -> web.StreamResponse:
        query = read_query(request, ExportQuery)
        try:
            tz = ZoneInfo(query.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ApiError(422, f"tz: no time zone {query.tz!r}") from None
        service = request.app[SERVICE_KEY]
        async with service.sessions() as session:
            flt = await _call_filter(session, query, service.config.phone.default_region)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": 'attachment; filename="calls.csv"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            }
        )
        await response.prepare(request)
        written = 0
        try:
            await response.write("\ufeff".encode() + _csv_lines([list(EXPORT_COLUMNS)]))
            async for calls in walk_calls(
                service.sessions,
                flt,
                visible_to_extension=principal(request).call_scope,
                page=EXPORT_PAGE,
            ):
                async with service.sessions() as session:
                    calls = await _enrich(session, service.directory, calls)
                await response.write(_csv_lines(_export_row(call, tz) for call in calls))
                written += len(calls)
        except ConnectionResetError:
            return response  # the client went away
        except Exception:
            # The status line is gone already: cut the connection, so the client sees an
            # unfinished download rather than a file that looks complete.
            log.exception("the call export failed after %d calls", written)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response

    @api.operation(
        "GET",
        "/api/calls/{call_id}",
        summary="One call with its legs, its built-in client and how many recordings it has",
        tag="calls",
        errors=(404,),
    )
    async def get_call(request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        service = request.app[SERVICE_KEY]
        async with service.sessions() as session:
            record = await session.get(CallRecord, call_id)
            if record is None or not principal(request).sees(
                Call.from_dict(record.details).extensions()
            ):
                # The same answer whether or not it exists.
                raise ApiError(404, f"no call {call_id!r}")
            [call] = await _enrich(session, service.directory, [record.details])
        return json_response(call)

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
            for name, pbx in service.pbx.items()
            for ext, state in sorted((await _lines_of(pbx)).items())
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
        errors=(502, 503),
    )
    async def dial(request: web.Request) -> web.Response:
        body = await read_body(request, DialRequest)
        who = principal(request)
        extension = body.extension or who.extension
        if extension is None:
            raise ApiError(
                422, "extension: you have no phone of your own; name one", reason="no_extension"
            )
        if extension != who.extension and not who.has_role(Role.SUPERVISOR):
            raise ApiError(
                403, "you may only dial from your own extension", reason="not_your_phone"
            )
        service = request.app[SERVICE_KEY]
        pbx = service.pbx.get(body.pbx) if body.pbx else next(iter(service.pbx.values()), None)
        if pbx is None:
            raise ApiError(
                503,
                "no PBX is configured" if not body.pbx else f"no PBX {body.pbx!r}",
                reason="no_pbx",
            )
        try:
            dialable(body.number, service.config.phone.default_region)
            placed = await pbx.dial(extension, body.number)
        except NotAPhoneNumber as e:
            raise ApiError(422, f"number: {e}", reason="not_a_phone_number") from None
        except PbxLinkDown as e:
            raise ApiError(503, str(e), reason="pbx_down") from None
        except PbxRefused as e:
            raise ApiError(502, f"the PBX refused the call: {e}", reason="dial_refused") from None
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
        pbx = await _pbx_with_live_call(request, call_id, body.pbx)
        with _pbx_errors(call_id, "transfer"):
            await pbx.transfer(call_id, body.extension)
        return json_response(
            TransferAccepted(call_id=call_id, extension=body.extension), status=202
        )

    @api.operation(
        "POST",
        "/api/calls/{call_id}/hangup",
        summary="End a live call",
        tag="calls",
        body=CallCommand,
        response=CommandAccepted,
        status=202,
        roles=(Role.OPERATOR, Role.SALES, Role.RECEPTIONIST, Role.SUPERVISOR),
        errors=(404, 409, 502, 503),
    )
    async def hang_up(request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        body = await read_body(request, CallCommand)
        pbx = await _pbx_with_live_call(request, call_id, body.pbx)
        with _pbx_errors(call_id, "hang-up"):
            await pbx.hang_up(call_id)
        return json_response(CommandAccepted(call_id=call_id), status=202)

    @api.operation(
        "POST",
        "/api/calls/{call_id}/recording",
        summary="Start or stop recording a live call (the file is attached as usual)",
        tag="calls",
        body=RecordingCommand,
        response=CommandAccepted,
        status=202,
        roles=(Role.OPERATOR, Role.SALES, Role.RECEPTIONIST, Role.SUPERVISOR),
        errors=(404, 409, 502, 503),
    )
    async def record(request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        body = await read_body(request, RecordingCommand)
        pbx = await _pbx_with_live_call(request, call_id, body.pbx)
        with _pbx_errors(call_id, "recording"):
            if body.record:
                await pbx.start_recording(call_id)
            else:
                await pbx.stop_recording(call_id)
        return json_response(CommandAccepted(call_id=call_id), status=202)


async def _pbx_with_live_call(request: web.Request, call_id: str, name: str | None) -> PbxAdapter:
    """The PBX that follows ``call_id`` now, for a command on it by this user: 404 for a
    call they may not see (whether or not it exists), 409 for one that is over."""
    service = request.app[SERVICE_KEY]
    who = principal(request)
    candidates: list[PbxAdapter] = list(service.pbx.values())
    if name is not None:
        if name not in service.pbx:
            raise ApiError(422, f"pbx: no PBX {name!r}")
        candidates = [service.pbx[name]]
    for pbx in candidates:
        find = getattr(pbx, "find_live_call", None)  # led by another node: asked there
        with _pbx_errors(call_id, "find"):
            call = await find(call_id) if find is not None else pbx.live_call(call_id)
        if call is not None:
            if not who.sees(call.extensions()):
                break
            return pbx
    else:
        async with service.sessions() as session:
            record = await session.get(CallRecord, call_id)
        if record is not None and who.sees(Call.from_dict(record.details).extensions()):
            raise ApiError(409, f"call {call_id!r} is not in progress", reason="call_over")
    raise ApiError(404, f"no call {call_id!r}")


async def _lines_of(pbx: PbxAdapter) -> Mapping[str, LineState]:
    """A PBX's lines; asked of the node that leads it, when that is another."""
    current = getattr(pbx, "current_lines", None)
    return await current() if current is not None else pbx.lines()


@contextlib.contextmanager
def _pbx_errors(call_id: str, what: str) -> Iterator[None]:
    """A PBX's failure to carry out a command, as the API answers it."""
    try:
        yield
    except PbxLinkDown as e:
        raise ApiError(503, str(e), reason="pbx_down") from None
    except PbxCallNotFound:
        raise ApiError(
            409, f"call {call_id!r} has no party to {what} now", reason="call_over"
        ) from None
    except PbxUnsupported as e:
        raise ApiError(409, str(e), reason="not_supported") from None
    except PbxRefused as e:
        reason = what.replace("-", "_") + "_refused"
        raise ApiError(502, f"the PBX refused the {what}: {e}", reason=reason) from None
