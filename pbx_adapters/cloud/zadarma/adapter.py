"""The Zadarma (and Novofon) adapter: its notifications in, its API out.

Webhooks at ``/pbx/<name>/`` (the URL given in the dashboard): ``?zd_echo=X`` (the
URL check) is answered with X; every notification is refused unless its ``Signature``
holds, and when its call started longer ago than ``max_event_age_seconds``.
Click-to-dial is ``GET /v1/request/callback/`` (Zadarma rings the extension, then the
number); it returns no call id, so the outgoing call that follows from that extension
to that number within ``originate_timeout`` is taken as it. After NOTIFY_RECORD the
recording is fetched through the API (``record_delay_seconds`` later, as Zadarma
advises) into the recordings folder and attached to the call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from cti.calls import Call
from cti.domain import Direction
from cti.events import OriginateResult
from cti.pbx import (
    DialPlaced,
    PbxContext,
    PbxRefused,
    PbxUnsupported,
    WebhookRequest,
    WebhookResponse,
)
from cti.phone import to_e164
from pbx_adapters.cloud.adapter import CloudAdapter
from pbx_adapters.cloud.api import call_api
from pbx_adapters.cloud.zadarma.book import ZadarmaBook
from pbx_adapters.cloud.zadarma.settings import ZadarmaSettings
from pbx_adapters.cloud.zadarma.sign import (
    SIGNED_FIELDS,
    api_authorization,
    api_query,
    signature_holds,
)

log = logging.getLogger("cti.zadarma")

CALLBACK = "/v1/request/callback/"
RECORD = "/v1/pbx/record/request/"


class ZadarmaAdapter(CloudAdapter):
    def __init__(self, settings: ZadarmaSettings, context: PbxContext) -> None:
        zone = ZoneInfo(settings.time_zone or context.time_zone)
        super().__init__(settings, context, ZadarmaBook(settings.name, context.region, zone))
        self.zadarma = settings
        self.book: ZadarmaBook
        self._originates: dict[str, tuple[DialPlaced, str]] = {}  # request id: (dial, digits)
        self._fetches: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        for task in list(self._fetches):
            task.cancel()
        await asyncio.gather(*self._fetches, return_exceptions=True)
        await super().stop()

    async def webhook(self, request: WebhookRequest) -> WebhookResponse:
        if request.method == "GET" and "zd_echo" in request.query:
            return WebhookResponse(200, request.query["zd_echo"][:200])
        if request.method != "POST":
            return self.refuse("not a POST", 405)
        try:
            fields = dict(parse_qsl(request.body.decode(), max_num_fields=40))
        except (UnicodeDecodeError, ValueError):
            return self.refuse("not a form", 400)
        secret = self.zadarma.api_secret.get_secret_value()
        signature = request.headers.get("Signature", "")
        if fields.get("event") not in SIGNED_FIELDS or not signature_holds(
            secret, fields, signature
        ):
            return self.refuse("bad signature")
        now = self.context.clock()
        if fields["event"] != "NOTIFY_RECORD" and not fields.get("call_start"):
            return self.refuse("no call_start", 400)
        if "call_start" in fields:
            try:
                started = self.book.call_start(fields)
            except ValueError:
                return self.refuse("call_start is not a time", 400)
            if (now - started).total_seconds() > self.zadarma.max_event_age_seconds:
                return self.refuse("an old event (a replay?)", 409)
        if "pbx_call_id" not in fields:
            return self.refuse("no pbx_call_id", 400)
        fresh = not self.book.heard(fields)
        events = self.book.notify(fields, now)
        self._match_originates()
        self.publish(events)
        if fresh and fields["event"] == "NOTIFY_RECORD" and fields.get("call_id_with_rec"):
            self._fetch_later(fields["pbx_call_id"], fields["call_id_with_rec"])
        return WebhookResponse(200, "")

    # -- click-to-dial ---------------------------------------------------------------

    async def dial(self, extension: str, number: str) -> DialPlaced:
        e164 = to_e164(number, self.context.region)
        digits = e164[1:] if e164 else number
        placed = DialPlaced(uuid.uuid4().hex, extension, digits)
        await self._api("GET", CALLBACK, {"from": extension, "to": digits})
        self._originates[placed.request_id] = (placed, digits)
        asyncio.get_running_loop().call_later(
            self.zadarma.originate_timeout, self._originate_timed_out, placed.request_id
        )
        return placed

    def _match_originates(self) -> None:
        """The outgoing call a click-to-dial started: from its extension, to its number."""
        for request_id, (placed, digits) in list(self._originates.items()):
            for entry in self.book.entries.values():
                call = entry.call
                if (
                    call is not None
                    and entry.originate_id is None
                    and call.direction is Direction.OUTBOUND
                    and call.caller_extension == placed.extension
                    and (call.external_number or "").lstrip("+").endswith(digits[-10:])
                ):
                    entry.originate_id = call.originate_id = request_id
                    del self._originates[request_id]
                    self.context.bus.publish_nowait(
                        OriginateResult(
                            request_id=request_id,
                            extension=placed.extension,
                            number=placed.number,
                            success=True,
                        )
                    )
                    break

    def _originate_timed_out(self, request_id: str) -> None:
        entry = self._originates.pop(request_id, None)
        if entry is None:
            return
        placed, _ = entry
        self.context.bus.publish_nowait(
            OriginateResult(
                request_id=request_id,
                extension=placed.extension,
                number=placed.number,
                success=False,
                code="no_answer",
                reason="no call followed the callback request",
            )
        )

    # -- recordings ------------------------------------------------------------------

    def _fetch_later(self, pbx_call_id: str, record_id: str) -> None:
        entry = self.book.entries.get(pbx_call_id)
        known = entry.call if entry is not None else None
        task = asyncio.get_running_loop().create_task(self._fetch(pbx_call_id, record_id, known))
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)

    async def _fetch(self, pbx_call_id: str, record_id: str, known: Call | None) -> None:
        await asyncio.sleep(self.zadarma.record_delay_seconds)
        folder = self.context.recordings_dir
        entry = self.book.entries.get(pbx_call_id)
        call = entry.call if entry is not None and entry.call is not None else known
        if folder is None or call is None:
            log.warning("%s: recording %s is of no call heard of", self.name, record_id)
            return
        try:
            answer = json.loads(await self._api("GET", RECORD, {"call_id": record_id}))
            link = answer.get("link") or (answer.get("links") or [None])[0]
            if not link:
                raise PbxRefused(f"Zadarma gave no link for recording {record_id}")
            async with self.api().get(link) as response:
                response.raise_for_status()
                data = await response.read()
        except Exception as e:
            log.warning("%s: cannot fetch recording %s: %s", self.name, record_id, e)
            return
        path = Path(folder) / "zadarma" / f"{pbx_call_id}-{record_id}.mp3"
        await asyncio.to_thread(_write, path, data)
        if str(path) not in call.recordings:
            call.recordings.append(str(path))
        self.context.store.save([call])

    # -- the rest --------------------------------------------------------------------

    async def _api(self, method: str, path: str, params: dict[str, str]) -> str:
        key = self.zadarma.api_key.get_secret_value()
        secret = self.zadarma.api_secret.get_secret_value()
        return await call_api(
            self.api(),
            method,
            f"{self.zadarma.api_url}{path}?{api_query(params)}",
            headers={"Authorization": api_authorization(key, secret, path, params)},
            seconds=self.zadarma.request_timeout,
            attempts=self.zadarma.request_attempts,
            what="Zadarma",
        )

    async def transfer(self, call_id: str, extension: str, *, attended: bool = False) -> None:
        raise PbxUnsupported("Zadarma's API has no command to transfer a call")

    async def hang_up(self, call_id: str) -> None:
        raise PbxUnsupported("Zadarma's API has no command to hang up a call")

    async def start_recording(self, call_id: str) -> None:
        raise PbxUnsupported("Zadarma records calls as its dashboard says, not on command")

    async def stop_recording(self, call_id: str) -> None:
        raise PbxUnsupported("Zadarma records calls as its dashboard says, not on command")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(path)
