"""The live WebSocket (/ws): domain events a user may see, as JSON frames.

Authentication: an ``Authorization: Bearer`` header, or (browsers cannot set headers on a
WebSocket) a first frame ``{"type": "auth", "token": "..."}`` within AUTH_TIMEOUT seconds.
A token is never taken from the URL, where proxies and access logs would keep it.

Frames: ``{"type": ..., "seq": n, "data": {...}}``, ``seq`` increasing per connection.
A client that falls behind gets ``{"type": "resync", ...}``: it should reload state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from cti.auth import Principal
from cti.bus import SubscriberLagged, SubscriptionClosed
from cti.http.api import json_dumps
from cti.http.keys import SERVICE_KEY

if TYPE_CHECKING:
    from cti.service import Service

AUTH_TIMEOUT = 10.0
HEARTBEAT = 30.0
QUEUE_SIZE = 1000
CLOSE_UNAUTHORIZED = 4401  # application close codes mirror HTTP statuses


def bearer_token(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


async def websocket(request: web.Request) -> web.WebSocketResponse:
    service = request.app[SERVICE_KEY]
    who: Principal | None = None
    token = bearer_token(request.headers.get("Authorization"))
    if token is not None:
        who = await service.authenticator.authenticate(token)
        if who is None:
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Bearer"})

    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=64 * 1024)
    await ws.prepare(request)
    if who is None:
        who = await _authenticate_first_frame(ws, service)
        if who is None:
            return ws

    subscription = service.bus.subscribe(maxsize=QUEUE_SIZE, name="websocket")
    seq = 0

    async def send(kind: str, **fields: object) -> None:
        nonlocal seq
        seq += 1
        await ws.send_str(json_dumps({"type": kind, "seq": seq, **fields}))

    async def forward() -> None:
        while True:
            try:
                event = await subscription.get()
            except SubscriberLagged as lag:
                await send("resync", dropped=lag.dropped)
                continue
            except SubscriptionClosed:
                await ws.close()
                return
            if who.sees_event(event):
                await send(event.type, data=event.to_dict())

    await send("hello", user=who.to_dict())
    forwarder = asyncio.create_task(forward())
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and _frame_type(msg.data) == "ping":
                await send("pong")
    finally:
        subscription.close()
        forwarder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await forwarder
    return ws


async def _authenticate_first_frame(
    ws: web.WebSocketResponse, service: Service
) -> Principal | None:
    who = None
    try:
        msg = await ws.receive(timeout=AUTH_TIMEOUT)
        if msg.type == WSMsgType.TEXT:
            frame = _frame(msg.data)
            token = frame.get("token") if frame.get("type") == "auth" else None
            if isinstance(token, str):
                who = await service.authenticator.authenticate(token)
    except TimeoutError:
        pass
    if who is None:
        await ws.close(code=CLOSE_UNAUTHORIZED, message=b"authentication required")
    return who


def _frame(text: str) -> dict:
    try:
        frame = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return frame if isinstance(frame, dict) else {}


def _frame_type(text: str) -> object:
    return _frame(text).get("type")
