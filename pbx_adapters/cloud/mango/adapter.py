"""The Mango Office adapter: its webhooks in, its VPBX API commands out.

Webhooks (``/pbx/<name>/events/call``, ``/events/summary``, ``/result/callback``; Mango
appends these to the URL it is given) are refused before anything else unless signed
with the VPBX's key and salt, and when their event is older than
``max_event_age_seconds``. Commands are signed forms to ``<api_url>commands/...``:
click-to-dial (``callback``: Mango rings the operator's extension, then the number; how
it went comes to ``result/callback``), transfer, hang-up and starting a recording.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from cti.events import OriginateResult
from cti.pbx import (
    DialPlaced,
    PbxCallNotFound,
    PbxContext,
    PbxRefused,
    PbxUnsupported,
    WebhookRequest,
    WebhookResponse,
)
from cti.phone import to_e164
from pbx_adapters.cloud.adapter import CloudAdapter
from pbx_adapters.cloud.api import call_api
from pbx_adapters.cloud.mango.book import SUCCESS, MangoBook, event_time
from pbx_adapters.cloud.mango.settings import MangoSettings
from pbx_adapters.cloud.mango.sign import BadSignature, signed_form, verified_payload

log = logging.getLogger("cti.mango")

OK = WebhookResponse(200, "")
RESULT_TIMEOUT = 120.0  # a click-to-dial Mango never said the result of has failed
# The field of each webhook that says when its event happened.
EVENT_TIME = {"events/call": "timestamp", "events/summary": "end_time"}


class MangoAdapter(CloudAdapter):
    def __init__(self, settings: MangoSettings, context: PbxContext) -> None:
        super().__init__(
            settings, context, MangoBook(settings.name, context.region, settings.end_after_seconds)
        )
        self.mango = settings
        self.book: MangoBook
        self._originates: dict[str, DialPlaced] = {}  # by command_id

    async def webhook(self, request: WebhookRequest) -> WebhookResponse:
        if request.method != "POST":
            return self.refuse("not a POST", 405)
        try:
            payload = verified_payload(
                request.body,
                self.mango.api_key.get_secret_value(),
                self.mango.api_salt.get_secret_value(),
            )
        except BadSignature as e:
            return self.refuse(str(e))
        path = request.path.strip("/")
        now = self.context.clock().timestamp()
        if path in EVENT_TIME:
            when = event_time(payload.get(EVENT_TIME[path]))
            if when is None:  # kept, it would leave its call with no time to build on
                return self.refuse(f"no {EVENT_TIME[path]} in the event", 400)
            if now - when.timestamp() > self.mango.max_event_age_seconds:
                return self.refuse("an old event (a replay?)", 409)
        try:
            if path == "events/call":
                self.publish(self.book.event(payload, now))
            elif path == "events/summary":
                self.publish(self.book.summary(payload, now))
            elif path == "result/callback":
                self._callback_result(payload)
        except (KeyError, TypeError, ValueError) as e:
            return self.refuse(f"a {path} without its fields: {e}", 400)
        return OK  # other events (recordings, DTMF, SMS) are not read

    def _callback_result(self, payload: dict[str, Any]) -> None:
        placed = self._originates.pop(str(payload["command_id"]), None)
        if placed is None:
            return
        result = int(payload.get("result") or 0)
        self.context.bus.publish_nowait(
            OriginateResult(
                request_id=placed.request_id,
                extension=placed.extension,
                number=placed.number,
                success=result == SUCCESS,
                code="" if result == SUCCESS else "refused",
                reason="" if result == SUCCESS else f"Mango answered {result}",
            )
        )

    async def _command(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        form = signed_form(
            self.mango.api_key.get_secret_value(), self.mango.api_salt.get_secret_value(), payload
        )
        text = await call_api(
            self.api(),
            "POST",
            f"{self.mango.api_url}commands/{name}",
            data=form,
            seconds=self.mango.request_timeout,
            attempts=self.mango.request_attempts,
            what="Mango",
        )
        try:
            answer = json.loads(text or "{}")
        except ValueError:
            answer = {}
        result = int(answer.get("result") or SUCCESS) if isinstance(answer, dict) else SUCCESS
        if result != SUCCESS:
            raise PbxRefused(f"Mango refused {name}: result {result}")
        return answer

    async def dial(self, extension: str, number: str) -> DialPlaced:
        e164 = to_e164(number, self.context.region)
        digits = e164[1:] if e164 else number
        command_id = uuid.uuid4().hex
        placed = DialPlaced(command_id, extension, digits)
        payload: dict[str, Any] = {
            "command_id": command_id,
            "from": {"extension": extension},
            "to_number": digits,
        }
        if self.mango.line_number:
            payload["line_number"] = self.mango.line_number
        self._originates[command_id] = placed
        try:
            await self._command("callback", payload)
        except Exception:
            self._originates.pop(command_id, None)
            raise
        asyncio.get_running_loop().call_later(
            RESULT_TIMEOUT, self._callback_result, {"command_id": command_id, "result": 0}
        )
        return placed

    async def transfer(self, call_id: str, extension: str, *, attended: bool = False) -> None:
        call = self._live(call_id)
        leg = self.book.leg_of(call_id, call.answered_by)
        await self._command(
            "transfer",
            {
                "command_id": uuid.uuid4().hex,
                "call_id": leg,
                "method": "hold" if attended else "blind",
                "to_number": extension,
                "initiator": call.answered_by or "",
            },
        )

    async def hang_up(self, call_id: str) -> None:
        self._live(call_id)
        leg = self.book.leg_of(call_id)
        await self._command("call/hangup", {"command_id": uuid.uuid4().hex, "call_id": leg})

    async def start_recording(self, call_id: str) -> None:
        call = self._live(call_id)
        await self._command(
            "recording/start",
            {
                "command_id": uuid.uuid4().hex,
                "call_id": self.book.leg_of(call_id, call.answered_by),
                "call_party_number": call.answered_by or "",
            },
        )

    async def stop_recording(self, call_id: str) -> None:
        raise PbxUnsupported("Mango's API has no command to stop a recording")

    def _live(self, call_id: str):
        call = self.book.live(call_id)
        if call is None:
            raise PbxCallNotFound(f"no live call {call_id!r} on PBX {self.name}")
        return call
