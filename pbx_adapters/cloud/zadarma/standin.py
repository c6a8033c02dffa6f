"""A stand-in for Zadarma (and Novofon), for tests, written from the documented shapes:
its API (``/v1/request/callback/``, ``/v1/pbx/record/request/`` and the recording's
download link, each request's Authorization checked) and its notifications (posted
to the service, signed), with sequences of the documented kinds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from pbx_adapters.cloud.standin import StandInServer
from pbx_adapters.cloud.zadarma.sign import api_authorization, webhook_signature

Notification = dict[str, str]
RECORDING = b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 64  # a tiny MP3


class ZadarmaStandIn(StandInServer):
    def __init__(self, key: str, secret: str, time_zone: str = "Europe/Moscow") -> None:
        super().__init__()
        self.key, self.secret = key, secret
        self.time_zone = time_zone  # the account's: call_start is its wall clock
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.call_start = ""  # "YYYY-MM-DD HH:MM:SS" for the calls it plays
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        """The API's address, as ``api_url`` wants it."""
        return self.base_url

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/request/callback/", self._callback)
        app.router.add_get("/v1/pbx/record/request/", self._record)
        app.router.add_get("/records/{name}", self._download)

    async def post(self, fields: Notification, *, forged: bool = False) -> int:
        secret = "forged" if forged else self.secret
        headers = {"Signature": webhook_signature(secret, fields)}
        async with aiohttp.ClientSession() as http:
            async with http.post(self.webhook_url, data=fields, headers=headers) as response:
                return response.status

    async def play(self, notifications: list[Notification], pause: float = 0.0) -> list[int]:
        statuses = []
        for fields in notifications:
            statuses.append(await self.post(fields))
            if pause:
                await asyncio.sleep(pause)
        return statuses

    def _authorized(self, request: web.Request) -> bool:
        params = dict(request.query)
        expected = api_authorization(self.key, self.secret, request.path, params)
        return request.headers.get("Authorization", "") == expected

    async def _callback(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"status": "error", "message": "Not authorized"}, status=401)
        params = dict(request.query)
        self.requests.append(("callback", params))
        call_id = f"out{next(self._ids)}"
        now = datetime.now(ZoneInfo(self.time_zone))
        start = self.call_start or now.strftime("%Y-%m-%d %H:%M:%S")
        self.later(self._play_later(outbound(call_id, params["from"], params["to"], start)))
        return web.json_response({"status": "success", "from": params["from"], "to": params["to"]})

    async def _play_later(self, notifications: list[Notification]) -> None:
        with contextlib.suppress(aiohttp.ClientError):
            await asyncio.sleep(0.05)
            await self.play(notifications, pause=0.05)

    async def _record(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"status": "error", "message": "Not authorized"}, status=401)
        record = request.query.get("call_id", "")
        self.requests.append(("record", dict(request.query)))
        return web.json_response(
            {"status": "success", "link": f"{self.url}/records/{record}.mp3", "lifetime_till": ""}
        )

    async def _download(self, request: web.Request) -> web.Response:
        return web.Response(body=RECORDING, content_type="audio/mpeg")


# -- the documented kinds of calls, as Zadarma notifies them ----------------------------


def inbound(
    call_id: str, caller: str, extensions: list[str], start: str, *, answered_by: str | None,
    did: str = "74951000000", transfer_to: str | None = None, recorded: bool = False,
    disposition: str = "",
) -> list[Notification]:  # fmt: skip
    base = {"pbx_call_id": call_id, "caller_id": caller, "called_did": did, "call_start": start}
    out = [{"event": "NOTIFY_START", **base}]
    out += [{"event": "NOTIFY_INTERNAL", **base, "internal": ext} for ext in extensions]
    last = answered_by
    if answered_by:
        answer = {"caller_id": caller, "destination": answered_by, "call_start": start}
        out.append(
            {"event": "NOTIFY_ANSWER", "pbx_call_id": call_id, "internal": answered_by, **answer}
        )
    if transfer_to:
        out.append({"event": "NOTIFY_INTERNAL", **base, "internal": transfer_to})
        answer = {"caller_id": caller, "destination": transfer_to, "call_start": start}
        out.append(
            {"event": "NOTIFY_ANSWER", "pbx_call_id": call_id, "internal": transfer_to, **answer}
        )
        last = transfer_to
    rec = f"rec-{call_id}" if recorded else ""
    out.append(
        {
            "event": "NOTIFY_END", **base, "internal": last or "",
            "duration": "45" if answered_by else "0",
            "disposition": disposition or ("answered" if answered_by else "no answer"),
            "status_code": "16" if answered_by else "19",
            "is_recorded": "1" if recorded else "0", "call_id_with_rec": rec,
        }
    )  # fmt: skip
    if recorded:
        out.append({"event": "NOTIFY_RECORD", "pbx_call_id": call_id, "call_id_with_rec": rec})
    return out


def outbound(call_id: str, extension: str, number: str, start: str) -> list[Notification]:
    base = {
        "pbx_call_id": call_id,
        "internal": extension,
        "destination": number,
        "call_start": start,
    }
    return [
        {"event": "NOTIFY_OUT_START", **base},
        {
            "event": "NOTIFY_OUT_END", **base, "caller_id": extension, "duration": "30",
            "disposition": "answered", "status_code": "16", "is_recorded": "0",
            "call_id_with_rec": "",
        },
    ]  # fmt: skip
