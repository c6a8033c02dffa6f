"""SMS over the API: queue a message, follow it, list sent and received ones."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field, field_validator
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import aliased

from cti.auth import Principal
from cti.clients.models import Client
from cti.db.models import SmsMessage
from cti.directory import builtin_client_id, match_of
from cti.domain import Role, SmsStatus, utcnow
from cti.http.api import Api, json_response, principal, read_body, read_query
from cti.http.errors import ApiError
from cti.http.keys import SERVICE_KEY
from cti.modem import SmsTextError
from cti.phone import to_e164
from cti.sms import SmsOutbox, new_sms
from cti.wakes import SMS


class SmsRequest(BaseModel):
    to: str = Field(min_length=1, max_length=40, description="The number, as written")
    text: str = Field(min_length=1, max_length=4000)
    modem: str | None = Field(None, max_length=64, description="Send through this modem only")

    @field_validator("to")
    @classmethod
    def _one_line(cls, to: str) -> str:
        if any(ord(ch) < 32 for ch in to):
            raise ValueError("a phone number has no control characters")
        return to


class SmsQueued(BaseModel):
    id: str
    status: Literal["queued"] = "queued"
    to: str = Field(description="E.164")
    parts: int
    encoding: str = Field(description="gsm7 or ucs2")


class SmsQuery(BaseModel):
    direction: Literal["in", "out"] | None = None
    status: SmsStatus | None = None
    number: str | None = Field(None, max_length=40)
    before: AwareDatetime | None = Field(None, description="Older than this (paging)")
    limit: int = Field(50, ge=1, le=200)


class SmsList(BaseModel):
    messages: list[dict[str, Any]]


def sms_dict(message: SmsMessage, client_name: str | None, outbox: SmsOutbox) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": message.id,
        "direction": message.direction,
        "modem": message.modem,
        "number": message.number,
        "text": message.text,
        "status": message.status,
        "reason": message.reason,
        "parts": message.parts,
        "encoding": _encoding(outbox, message.text),
        "client": None
        if message.client_id is None
        else {"id": str(message.client_id), "name": client_name},
        "created_at": when(message.created_at),
        "sent_at": when(message.sent_at),
        "delivered_at": when(message.delivered_at),
    }


def _encoding(outbox: SmsOutbox, text: str) -> str | None:
    """How the text goes (or would go) out: as the modems split texts (cti.modem)."""
    try:
        counted = outbox.parts_needed(text)
    except SmsTextError:
        return None
    return None if counted is None else counted[0]


def _visible(who: Principal) -> Any:
    """Everyone sees what they sent, the answers to it (received after it), and what was
    routed to their phone when it arrived; supervisors everything. Never by a field an
    editor can change later (a client's manager)."""
    if who.sees_everything:
        return True
    mine = aliased(SmsMessage)
    answers = and_(
        SmsMessage.direction == "in",
        exists().where(
            mine.user_id == who.user_id,
            mine.direction == "out",
            mine.number == SmsMessage.number,
            mine.created_at <= SmsMessage.created_at,
        ),
    )
    visible = [SmsMessage.user_id == who.user_id, answers]
    if who.extension is not None:
        visible.append(
            and_(SmsMessage.direction == "in", SmsMessage.routed_extension == who.extension)
        )
    return or_(*visible)


def _select(who: Principal) -> Any:
    query = select(SmsMessage, Client.name).outerjoin(Client, Client.id == SmsMessage.client_id)
    visible = _visible(who)
    return query if visible is True else query.where(visible)


class Modem(BaseModel):
    name: str
    identity: dict[str, str] = Field(description="maker, model, imei, imsi")
    status: dict[str, Any] = Field(
        description="ready, signal_dbm, signal_bars (0-4), registration, operator"
    )


class ModemList(BaseModel):
    modems: list[Modem]


def add_routes(api: Api) -> None:
    @api.operation(
        "GET",
        "/api/modems",
        summary="The GSM modems: identity, signal, registration",
        tag="sms",
        response=ModemList,
        roles=(Role.SUPERVISOR,),
    )
    async def modems(request: web.Request) -> web.Response:
        links = request.app[SERVICE_KEY].modems.values()
        found = [
            Modem(name=n.name, identity=n.modem.identity, status=n.modem.status) for n in links
        ]
        return json_response(ModemList(modems=found))

    @api.operation(
        "POST",
        "/api/sms",
        summary="Send an SMS through a GSM modem (stored before this answers)",
        tag="sms",
        body=SmsRequest,
        response=SmsQueued,
        status=202,
        roles=(Role.SALES, Role.OPERATOR, Role.SUPERVISOR),
        errors=(429, 503),
    )
    async def send(request: web.Request) -> web.Response:
        body = await read_body(request, SmsRequest)
        service = request.app[SERVICE_KEY]
        settings = service.config.sms
        if not service.sends_sms:
            raise ApiError(503, "no GSM modem is configured", reason="no_modem")
        if body.modem is not None and body.modem not in service.modem_names:
            raise ApiError(422, f"modem: no modem {body.modem!r}")
        number = to_e164(body.to, service.config.phone.default_region)
        if number is None:
            raise ApiError(422, "to: not a valid phone number", reason="not_a_phone_number")
        try:
            counted = service.sms_outbox.parts_needed(body.text, body.modem)
        except SmsTextError as e:
            raise ApiError(422, f"text: {e}") from None
        if counted is None:  # no modem to ask, and the outbox was given no codec
            raise ApiError(503, "no GSM modem is configured", reason="no_modem")
        encoding, parts = counted
        if parts > settings.max_parts:
            raise ApiError(
                422,
                f"text: needs {parts} SMS parts; at most {settings.max_parts} are allowed",
                reason="too_many_parts",
                details={"parts": parts, "max": settings.max_parts},
            )
        who = principal(request)
        now = utcnow()
        match = await match_of(service.directory, number)
        async with service.sessions() as session:
            sent_lately = await session.scalar(
                select(func.count())
                .select_from(SmsMessage)
                .where(
                    SmsMessage.user_id == who.user_id,
                    SmsMessage.created_at > now - timedelta(hours=1),
                )
            )
            if sent_lately >= settings.per_user_per_hour:
                raise ApiError(
                    429,
                    f"at most {settings.per_user_per_hour} SMS an hour per user",
                    headers={"Retry-After": "600"},
                    reason="sms_rate_limited",
                    details={"max": settings.per_user_per_hour},
                )
            message = new_sms(
                number,
                body.text,
                user_id=who.user_id,
                client_id=builtin_client_id(match),
                requested_modem=body.modem,
                parts=parts,
                now=now,
            )
            message.status_report = settings.status_reports
            session.add(message)
            await session.commit()
        service.wakes(SMS)  # the outbox of the node that leads a modem sends it
        return json_response(
            SmsQueued(id=message.id, to=number, parts=parts, encoding=encoding), status=202
        )

    @api.operation("GET", "/api/sms/{sms_id}", summary="One SMS", tag="sms", errors=(404,))
    async def get_one(request: web.Request) -> web.Response:
        sms_id = request.match_info["sms_id"]
        service = request.app[SERVICE_KEY]
        async with service.sessions() as session:
            row = (
                await session.execute(_select(principal(request)).where(SmsMessage.id == sms_id))
            ).first()
        if row is None:
            raise ApiError(404, f"no SMS {sms_id!r}")
        return json_response(sms_dict(*row, service.sms_outbox))

    @api.operation(
        "GET",
        "/api/sms",
        summary="Sent and received SMS, newest first",
        tag="sms",
        query=SmsQuery,
        response=SmsList,
    )
    async def list_sms(request: web.Request) -> web.Response:
        query = read_query(request, SmsQuery)
        service = request.app[SERVICE_KEY]
        statement = _select(principal(request))
        if query.direction is not None:
            statement = statement.where(SmsMessage.direction == query.direction)
        if query.status is not None:
            statement = statement.where(SmsMessage.status == query.status.value)
        if query.number is not None:
            number = to_e164(query.number, service.config.phone.default_region) or query.number
            statement = statement.where(SmsMessage.number == number)
        if query.before is not None:
            statement = statement.where(SmsMessage.created_at < query.before)
        statement = statement.order_by(SmsMessage.created_at.desc(), SmsMessage.id.desc())
        async with service.sessions() as session:
            rows = (await session.execute(statement.limit(query.limit))).all()
        messages = [sms_dict(*row, service.sms_outbox) for row in rows]
        return json_response(SmsList(messages=messages))
