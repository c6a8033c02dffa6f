"""A stand-in for Mango Office, for tests and the demo, written from the VPBX API's
documented shapes: its API (``/vpbx/commands/...``, signed forms checked, each command
kept) and its webhooks (signed events posted to the service), with event sequences of
the documented kinds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

import aiohttp
from aiohttp import web

from pbx_adapters.cloud.mango.sign import BadSignature, signed_form, verified_payload
from pbx_adapters.cloud.standin import StandInServer

Event = tuple[str, dict[str, Any]]  # (webhook path, payload)


class MangoStandIn(StandInServer):
    def __init__(self, api_key: str, api_salt: str) -> None:
        super().__init__()
        self.api_key, self.api_salt = api_key, api_salt
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self._entries = itertools.count(1)

    @property
    def url(self) -> str:
        """The API's address, as ``api_url`` wants it."""
        return f"{self.base_url}/vpbx/"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/vpbx/commands/{name:.*}", self._command)

    async def post(self, path: str, payload: dict[str, Any], *, forged: bool = False) -> int:
        """Post one webhook to the service, signed (or signed with another salt)."""
        form = signed_form(self.api_key, "forged" if forged else self.api_salt, payload)
        async with aiohttp.ClientSession() as http:
            async with http.post(self.webhook_url + path, data=form) as response:
                return response.status

    async def play(self, events: list[Event], pause: float = 0.0) -> list[int]:
        statuses = []
        for path, payload in events:
            statuses.append(await self.post(path, payload))
            if pause:
                await asyncio.sleep(pause)
        return statuses

    async def _command(self, request: web.Request) -> web.Response:
        try:
            payload = verified_payload(await request.read(), self.api_key, self.api_salt)
        except BadSignature:
            return web.json_response({"result": 3102}, status=401)
        name = request.match_info["name"]
        self.commands.append((name, payload))
        if name == "callback":
            self.later(self._play_callback(payload))
        return web.json_response({"result": 1000})

    async def _play_callback(self, command: dict[str, Any]) -> None:
        entry = f"cb{next(self._entries)}"
        events = click_to_dial(
            entry, command["from"]["extension"], command["to_number"], _now(), command["command_id"]
        )
        with contextlib.suppress(aiohttp.ClientError):
            await asyncio.sleep(0.05)
            await self.play(events[:2])
            await self.post(
                "result/callback", {"command_id": command["command_id"], "result": 1000}
            )
            await self.play(events[2:], pause=0.05)


def _now() -> int:
    return int(time.time())


# -- the documented kinds of calls, as Mango posts them ---------------------------------


def _event(entry: str, seq: int, at: int, state: str, leg: str, **fields: Any) -> Event:
    payload = {"entry_id": entry, "call_id": leg, "timestamp": at, "seq": seq, "call_state": state}
    return "events/call", {**payload, **fields}


def _summary(
    entry: str, direction: int, start: int, end: int, answered: bool, **extra: Any
) -> Event:
    return "events/summary", {
        "entry_id": entry,
        "call_direction": direction,
        "create_time": start,
        "forward_time": start + 1,
        "talk_time": start + 6 if answered else 0,
        "end_time": end,
        "entry_result": 1 if answered else 0,
        "disconnect_reason": 1110 if answered else 1120,
        **extra,
    }


def inbound(
    entry: str, caller: str, extensions: list[str], at: int, *, answered_by: str | None,
    line: str = "74951000000", queue: bool = False, transfer_to: str | None = None,
) -> list[Event]:  # fmt: skip
    """A call from ``caller`` ringing ``extensions`` (through the IVR, or a queue), taken
    by ``answered_by`` (None: nobody), then perhaps passed on to ``transfer_to``."""
    source = {"number": caller}
    where = "queue" if queue else "ivr"
    events = [
        _event(
            entry,
            1,
            at,
            "Appeared",
            f"{entry}-in",
            location=where,
            **{
                "from": source,
                "to": {"line_number": line, "acd_group": "sales" if queue else None},
            },
        )
    ]
    seq = 2
    for ext in extensions:
        events.append(
            _event(
                entry,
                seq,
                at + 2,
                "Appeared",
                f"{entry}-{ext}",
                location="abonent",
                **{"from": source, "to": {"extension": ext, "line_number": line}},
            )
        )
        seq += 1
    end = at + 2 + (40 if answered_by else 20)
    for ext in extensions:
        leg = f"{entry}-{ext}"
        to = {"extension": ext, "line_number": line}
        if ext == answered_by:
            events.append(
                _event(
                    entry,
                    seq,
                    at + 6,
                    "Connected",
                    leg,
                    location="abonent",
                    **{"from": source, "to": to},
                )
            )
        else:
            events.append(
                _event(
                    entry,
                    seq,
                    at + (6 if answered_by else 22),
                    "Disconnected",
                    leg,
                    location="abonent",
                    disconnect_reason=1120,
                    **{"from": source, "to": to},
                )
            )
        seq += 1
    if transfer_to:
        to = {"extension": transfer_to, "line_number": line}
        events.append(
            _event(
                entry,
                seq,
                at + 20,
                "Appeared",
                f"{entry}-{transfer_to}",
                location="abonent",
                **{"from": source, "to": to},
            )
        )
        events.append(
            _event(
                entry,
                seq + 1,
                at + 24,
                "Connected",
                f"{entry}-{transfer_to}",
                location="abonent",
                **{"from": source, "to": to},
            )
        )
        events.append(
            _event(
                entry,
                seq + 2,
                at + 24,
                "Disconnected",
                f"{entry}-{answered_by}",
                location="abonent",
                **{"from": source, "to": {"extension": answered_by}},
            )
        )
        seq += 3
        end += 30
    last = transfer_to or answered_by
    if last:
        events.append(
            _event(
                entry,
                seq,
                end,
                "Disconnected",
                f"{entry}-{last}",
                location="abonent",
                disconnect_reason=1110,
                **{"from": source, "to": {"extension": last, "line_number": line}},
            )
        )
        seq += 1
    events.append(
        _event(
            entry,
            seq,
            end,
            "Disconnected",
            f"{entry}-in",
            location=where,
            **{"from": source, "to": {"line_number": line}},
        )
    )
    events.append(
        _summary(
            entry, 1, at, end, answered_by is not None, **{"from": source, "line_number": line}
        )
    )
    return events


def click_to_dial(entry: str, extension: str, number: str, at: int, command_id: str) -> list[Event]:
    """Mango rings the operator's ``extension``, then calls ``number`` from it."""
    me = {"extension": extension}
    return [
        _event(
            entry,
            1,
            at,
            "Appeared",
            f"{entry}-op",
            location="abonent",
            command_id=command_id,
            **{"from": {"number": "callback"}, "to": me},
        ),
        _event(
            entry,
            2,
            at + 3,
            "Connected",
            f"{entry}-op",
            location="abonent",
            command_id=command_id,
            **{"from": {"number": "callback"}, "to": me},
        ),
        _event(
            entry,
            3,
            at + 3,
            "Appeared",
            f"{entry}-out",
            location="abonent",
            **{"from": me, "to": {"number": number}},
        ),
        _event(
            entry,
            4,
            at + 9,
            "Connected",
            f"{entry}-out",
            location="abonent",
            **{"from": me, "to": {"number": number}},
        ),
        _event(
            entry,
            5,
            at + 60,
            "Disconnected",
            f"{entry}-out",
            location="abonent",
            **{"from": me, "to": {"number": number}},
        ),
        _event(
            entry,
            6,
            at + 60,
            "Disconnected",
            f"{entry}-op",
            location="abonent",
            **{"from": {"number": "callback"}, "to": me},
        ),
        _summary(entry, 2, at, at + 60, True, **{"from": me, "to": {"number": number}}),
    ]
