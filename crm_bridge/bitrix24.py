"""Bitrix24 through an inbound webhook: who is calling, and the call in the CRM afterwards.

Every method is ``POST {webhook}{method}.json`` with a JSON body; Bitrix24 answers
``{"result": ..., "time": ...}`` or, with a 4xx/5xx status, ``{"error": "CODE",
"error_description": "..."}``. The webhook URL contains its key: it is never logged and
never part of an error message (errors name the method and Bitrix24's code only).

Lookup: ``crm.duplicate.findbycomm`` for CONTACT, then COMPANY, then LEAD (Bitrix24
normalizes the stored and the asked phone itself, so the E.164 number is sent once),
then ``crm.contact.get`` / ``crm.company.get`` / ``crm.lead.get`` and ``user.get`` for
the responsible user. Write-back: ``telephony.externalcall.register`` when a call starts
and ``telephony.externalcall.finish`` when it ends. See docs/crm_connectors.md.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from crm_bridge.http_client import LazySession, read_limited
from cti.directory import Match, ResponsibleManager, search_by_number
from cti.phone import to_e164

if TYPE_CHECKING:
    from cti.config import CrmConfig

log = logging.getLogger("crm_bridge.bitrix24")

MAX_ANSWER_BYTES = 4 * 1024 * 1024
USER_CACHE_SECONDS = 600.0
ENTITY_TYPES = ("CONTACT", "COMPANY", "LEAD")
IDS_TRIED = 3  # of the ids findbycomm returns (oldest first), in case some are gone

# Documented system errors that a later retry may get past; the rest need a person.
RETRYABLE_CODES = frozenset(
    {
        "QUERY_LIMIT_EXCEEDED",
        "OPERATION_TIME_LIMIT",
        "INTERNAL_SERVER_ERROR",
        "ERROR_UNEXPECTED_ANSWER",
    }
)

# telephony.externalcall.finish STATUS_CODE (the docs' "call result codes").
STATUS_CODES = {
    "answered": "200",
    "no_answer": "304",  # missed
    "abandoned": "304",
    "busy": "486",
    "failed": "603",
}
CALL_TYPES = {"outbound": 1, "inbound": 2}


class Bitrix24Error(Exception):
    """Bitrix24 refused a method, or could not be asked. Never carries the webhook URL."""

    def __init__(self, method: str, code: str, description: str = "", status: int | None = None):
        self.method = method
        self.code = code
        self.description = description
        self.status = status
        super().__init__(
            f"{method}: {code or 'error'}" + (f": {description}" if description else "")
        )

    @property
    def retryable(self) -> bool:
        """Worth retrying later (limits, server trouble, the network); False for errors in
        the request, the webhook's permissions or the portal's plan."""
        if self.code in RETRYABLE_CODES or self.code == "TRANSPORT":
            return True
        return self.status is not None and (self.status >= 500 or self.status == 429)

    @property
    def not_found(self) -> bool:
        return self.description.strip().lower() == "not found"


class Bitrix24Client:
    """Calls REST methods through an inbound webhook with one shared session."""

    def __init__(self, webhook: str, *, timeout_seconds: float = 10.0) -> None:
        parts = urlsplit(webhook)
        if parts.scheme not in ("https", "http") or not parts.netloc or "/rest/" not in parts.path:
            raise ValueError("bitrix24_webhook must look like https://<portal>/rest/<user>/<key>/")
        self._webhook = webhook if webhook.endswith("/") else webhook + "/"
        prefix = parts.path[: parts.path.index("/rest/")]
        self.portal_url = f"{parts.scheme}://{parts.netloc}{prefix}"
        self.timeout_seconds = timeout_seconds
        self._http = LazySession(timeout_seconds)

    def __repr__(self) -> str:
        return f"Bitrix24Client(portal={self.portal_url!r})"

    async def close(self) -> None:
        await self._http.close()

    async def call(self, method: str, params: Mapping[str, Any]) -> Any:
        """The method's ``result``; raises ``Bitrix24Error`` (timeouts: ``TimeoutError``)."""
        try:
            async with self._http.session().post(
                f"{self._webhook}{method}.json", json=params, allow_redirects=False
            ) as resp:
                status = resp.status
                body = await read_limited(resp, MAX_ANSWER_BYTES)
        except aiohttp.ClientError as exc:
            raise Bitrix24Error(method, "TRANSPORT", type(exc).__name__) from None
        if body is None:
            raise Bitrix24Error(method, "BAD_ANSWER", "answer too long", status)
        try:
            answer = json.loads(body) if body.strip() else None
        except ValueError:
            answer = None
        if isinstance(answer, dict) and "error" in answer:
            error = Bitrix24Error(
                method, str(answer["error"]), str(answer.get("error_description") or ""), status
            )
            log.info(
                "Bitrix24 refused a method",
                extra={"fields": {"method": method, "code": error.code, "status": status}},
            )
            raise error
        if not 200 <= status < 300:
            raise Bitrix24Error(method, f"HTTP {status}", "", status)
        if not isinstance(answer, dict) or "result" not in answer:
            raise Bitrix24Error(method, "BAD_ANSWER", "no result in the answer", status)
        return answer["result"]


def _full_name(entity: Mapping[str, Any]) -> str:
    parts = (entity.get("NAME"), entity.get("LAST_NAME"))
    return " ".join(str(p).strip() for p in parts if p and str(p).strip())


def _int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


class Bitrix24Directory:
    """``Directory`` over Bitrix24's CRM. ``users`` maps extensions to Bitrix24 user ids
    (used in reverse for a manager whose profile has no inner number)."""

    def __init__(
        self,
        client: Bitrix24Client,
        *,
        users: Mapping[str, int] | None = None,
        region: str = "RU",
        clock: Any = time.monotonic,
    ) -> None:
        self.client = client
        self.extensions = {user_id: ext for ext, user_id in (users or {}).items()}
        self.region = region
        self._clock = clock
        self._managers: dict[int, tuple[float, ResponsibleManager]] = {}

    @classmethod
    def from_config(cls, config: CrmConfig, region: str = "RU") -> Bitrix24Directory:
        return cls(_client_from_config(config), users=config.bitrix24_users, region=region)

    async def close(self) -> None:
        await self.client.close()

    async def lookup(self, number: str) -> Match | None:
        for entity_type in ENTITY_TYPES:
            found = await self.client.call(
                "crm.duplicate.findbycomm",
                {"entity_type": entity_type, "type": "PHONE", "values": [number]},
            )
            # An empty PHP array arrives as [] rather than {}.
            ids = found.get(entity_type) if isinstance(found, dict) else None
            for entity_id in (ids or [])[:IDS_TRIED]:
                match = await self._match(entity_type, int(entity_id))
                if match is not None:
                    return match
        return None

    async def search(self, text: str, limit: int = 20) -> list[Match]:
        """A phone number only: searching names is not implemented for Bitrix24."""
        return await search_by_number(self, text, self.region, limit)

    async def _get(self, entity_type: str, entity_id: int) -> dict[str, Any] | None:
        try:
            result = await self.client.call(f"crm.{entity_type.lower()}.get", {"id": entity_id})
        except Bitrix24Error as exc:
            if exc.not_found:  # deleted since the duplicate index saw it
                return None
            raise
        return result if isinstance(result, dict) else None

    async def _match(self, entity_type: str, entity_id: int) -> Match | None:
        entity = await self._get(entity_type, entity_id)
        if entity is None:
            return None
        if entity_type == "CONTACT":
            return await self._contact(entity, entity_id)
        if entity_type == "COMPANY":
            return Match(
                client_id=f"company:{entity_id}",
                client_name=str(entity.get("TITLE") or "").strip() or f"Company #{entity_id}",
                kind="company",
                manager=await self._manager(entity.get("ASSIGNED_BY_ID")),
                crm_url=self._url("company", entity_id),
            )
        return await self._lead(entity, entity_id)

    async def _contact(self, contact: dict[str, Any], contact_id: int) -> Match:
        name = _full_name(contact) or f"Contact #{contact_id}"
        company_id = _int(contact.get("COMPANY_ID"))
        company = await self._get("COMPANY", company_id) if company_id else None
        if company is not None and company_id is not None:
            manager_id = company.get("ASSIGNED_BY_ID") or contact.get("ASSIGNED_BY_ID")
            return Match(
                client_id=f"company:{company_id}",
                client_name=str(company.get("TITLE") or "").strip() or f"Company #{company_id}",
                kind="company",
                contact_name=name,
                manager=await self._manager(manager_id),
                crm_url=self._url("contact", contact_id),
            )
        return Match(
            client_id=f"contact:{contact_id}",
            client_name=name,
            kind="person",
            manager=await self._manager(contact.get("ASSIGNED_BY_ID")),
            crm_url=self._url("contact", contact_id),
        )

    async def _lead(self, lead: dict[str, Any], lead_id: int) -> Match:
        person = _full_name(lead) or None
        company = str(lead.get("COMPANY_TITLE") or "").strip() or None
        title = str(lead.get("TITLE") or "").strip() or f"Lead #{lead_id}"
        return Match(
            client_id=f"lead:{lead_id}",
            client_name=company or person or title,
            kind="company" if company else "person",
            contact_name=person if company else None,
            manager=await self._manager(lead.get("ASSIGNED_BY_ID")),
            tags=("lead",),
            crm_url=self._url("lead", lead_id),
        )

    def _url(self, kind: str, entity_id: int) -> str:
        return f"{self.client.portal_url}/crm/{kind}/details/{entity_id}/"

    async def _manager(self, user_id_value: Any) -> ResponsibleManager | None:
        user_id = _int(user_id_value)
        if user_id is None:
            return None
        cached = self._managers.get(user_id)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        try:
            users = await self.client.call("user.get", {"filter": {"ID": user_id}})
        except Bitrix24Error as exc:
            if exc.retryable:
                raise
            # e.g. a webhook without the "user" scope: a caller's client still matters more.
            log.warning("Bitrix24 user.get refused", extra={"fields": {"code": exc.code}})
            users = []
        user = users[0] if isinstance(users, list) and users else {}
        inner = str(user.get("UF_PHONE_INNER") or "").strip() or None
        phone = user.get("PERSONAL_MOBILE") or user.get("WORK_PHONE")
        manager = ResponsibleManager(
            name=_full_name(user) or f"Bitrix24 user {user_id}",
            extension=inner or self.extensions.get(user_id),
            phone=to_e164(str(phone), self.region) if phone else None,
            user_id=None,  # ResponsibleManager.user_id is a CTI user, not a Bitrix24 one
        )
        if len(self._managers) > 1000:
            self._managers.clear()
        self._managers[user_id] = (self._clock() + USER_CACHE_SECONDS, manager)
        return manager


class Bitrix24CallReporter:
    """Writes calls into Bitrix24 telephony. Both methods raise on API errors (the caller
    retries from its outbox; ``Bitrix24Error.retryable`` says whether that can help)."""

    def __init__(self, client: Bitrix24Client, users: Mapping[str, int]) -> None:
        self.client = client
        self.users = dict(users)
        self.last_skip_reason: str | None = None
        self._registered: OrderedDict[str, str] = OrderedDict()  # our call id -> CALL_ID

    @classmethod
    def from_config(cls, config: CrmConfig) -> Bitrix24CallReporter:
        return cls(_client_from_config(config), config.bitrix24_users)

    async def close(self) -> None:
        await self.client.close()

    def user_for(self, call: Mapping[str, Any]) -> int | None:
        """The Bitrix24 user of the answering, placing or first rung extension."""
        legs = [leg.get("extension") for leg in call.get("legs") or () if not leg.get("originate")]
        for extension in (call.get("answered_by"), call.get("caller_extension"), *legs):
            if extension and extension in self.users:
                return self.users[extension]
        return None

    def _skip(self, call: Mapping[str, Any], reason: str) -> None:
        self.last_skip_reason = reason
        log.info(
            "call not reported to Bitrix24",
            extra={"fields": {"call": call.get("id"), "reason": reason}},
        )

    async def call_started(self, call: Mapping[str, Any]) -> str | None:
        """Register the call; its Bitrix24 CALL_ID, or None when the call is skipped.

        Registering the same call id twice in this process returns the first CALL_ID;
        across restarts Bitrix24 itself returns it for 30 minutes (same EXTERNAL_CALL_ID,
        number, type and user), but the caller should store the CALL_ID it gets."""
        call_type = CALL_TYPES.get(str(call.get("direction")))
        number = call.get("external_number")
        user_id = self.user_for(call)
        if call_type is None:
            self._skip(call, "not an inbound or outbound call")
            return None
        if not number or not str(number).startswith("+"):
            self._skip(call, "no external number in E.164")
            return None
        if user_id is None:
            self._skip(call, "no Bitrix24 user for the call's extensions (bitrix24_users)")
            return None
        call_key = str(call["id"])
        known = self._registered.get(call_key)
        if known is not None:
            return known
        params: dict[str, Any] = {
            "USER_ID": user_id,
            "PHONE_NUMBER": number,
            "TYPE": call_type,
            "CRM_CREATE": 0,
            "SHOW": 0,
            "EXTERNAL_CALL_ID": call_key,
        }
        started = _iso_with_zone(call.get("started_at"))
        if started:
            params["CALL_START_DATE"] = started
        result = await self.client.call("telephony.externalcall.register", params)
        call_id = result.get("CALL_ID") if isinstance(result, dict) else None
        if not call_id:
            raise Bitrix24Error("telephony.externalcall.register", "BAD_ANSWER", "no CALL_ID")
        self._registered[call_key] = str(call_id)
        while len(self._registered) > 10_000:
            self._registered.popitem(last=False)
        self.last_skip_reason = None
        return str(call_id)

    async def call_finished(self, call: Mapping[str, Any], call_id: str) -> None:
        """Finish a registered call: duration and result code (records the CRM activity)."""
        user_id = self.user_for(call)
        if user_id is None:
            self._skip(call, "no Bitrix24 user for the call's extensions (bitrix24_users)")
            return
        talk = call.get("talk_seconds") or 0
        outcome = call.get("outcome")
        status = STATUS_CODES.get(str(outcome)) if outcome else ("200" if talk else "304")
        await self.client.call(
            "telephony.externalcall.finish",
            {
                "CALL_ID": call_id,
                "USER_ID": user_id,
                "DURATION": round(float(talk)),
                "STATUS_CODE": status or "OTHER",
            },
        )
        self._registered.pop(str(call.get("id")), None)


def _iso_with_zone(value: Any) -> str | None:
    """ISO 8601 with a UTC offset, as register's CALL_START_DATE requires."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat(timespec="seconds")


def _client_from_config(config: CrmConfig) -> Bitrix24Client:
    if config.bitrix24_webhook is None:
        raise ValueError('bitrix24_webhook is required when type = "bitrix24"')
    return Bitrix24Client(
        config.bitrix24_webhook.get_secret_value(),
        # Lookups are bounded by timeout_ms in the resilience layer; this is a backstop.
        timeout_seconds=max(config.timeout_ms / 1000 * 2, 5.0),
    )
