"""The live WebSocket (/ws): the frames of the live feed a user may see (docs/websocket.md).

Authentication: an ``Authorization: Bearer`` header, or (browsers cannot set headers on a
WebSocket) a first frame ``{"type": "auth", "token": "..."}`` within AUTH_TIMEOUT seconds.
A token is never taken from the URL, where proxies and access logs would keep it. The
URL may carry ``stream`` and ``last_seq`` (not secrets) to resume after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from cti.auth import Principal
from cti.domain import ROLES_SEEING_ALL
from cti.http.keys import SERVICE_KEY
from cti.live import LiveFeed, Viewer, json_dumps

if TYPE_CHECKING:
    from cti.service import Service

AUTH_TIMEOUT = 10.0
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
    stream, last_seq = _resume_point(request)
    call_events = request.query.get("events") == "calls"

    heartbeat = service.config.server.ws_heartbeat_seconds
    # Protocol pings find dead peers; the JSON heartbeat lets a browser notice a dead server.
    # No compression: the live feed writes its pre-encoded frames to the socket itself.
    ws = web.WebSocketResponse(heartbeat=heartbeat, max_msg_size=64 * 1024, compress=False)
    await ws.prepare(request)
    if who is None:
        who = await _authenticate_first_frame(ws, service)
        if who is None:
            return ws

    feed: LiveFeed = service.live
    viewer, resumed = feed.attach(
        sees_all=who.role in ROLES_SEEING_ALL,
        extension=who.extension,
        stream=stream,
        last_seq=last_seq,
        call_events=call_events,
    )
    try:
        hello = {
            "type": "hello",
            "seq": viewer.seq,
            "stream": feed.stream,
            "resumed": resumed,
            "user": who.to_dict(),
            "heartbeat": heartbeat,
            "features": service.features(who),
        }
        await ws.send_str(json_dumps(hello))
        if not resumed:
            await ws.send_str(feed.resync_frame(viewer, "gap" if stream else "connect"))
        viewer.transport = request.transport  # from now on frames may go straight out
        sender = asyncio.create_task(_send_frames(ws, feed, viewer, heartbeat))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and _frame(msg.data).get("type") == "ping":
                    viewer.pong_wanted = True
                    viewer.wakeup.set()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
    finally:
        feed.detach(viewer)
    return ws


async def _send_frames(
    ws: web.WebSocketResponse, feed: LiveFeed, viewer: Viewer, heartbeat: float
) -> None:
    """Send what the viewer has waiting, in order; a resync when it fell behind. While
    this is sending, new frames queue behind (``viewer.sending``), keeping their order."""
    try:
        while not ws.closed:
            viewer.sending = True
            if viewer.lagged:
                await ws.send_str(feed.resync_frame(viewer, "lagged"))
            elif viewer.pending:
                frame = viewer.pending.popleft()
                viewer.seq = frame.seq
                await ws.send_str(frame.text)
            elif viewer.pong_wanted:
                viewer.pong_wanted = False
                await ws.send_str(json_dumps({"type": "pong", "seq": viewer.seq}))
            else:
                viewer.sending = False
                viewer.wakeup.clear()
                try:
                    async with asyncio.timeout(heartbeat):
                        await viewer.wakeup.wait()
                except TimeoutError:
                    await ws.send_str(json_dumps({"type": "heartbeat", "seq": viewer.seq}))
    except ConnectionError:
        return  # the peer went away; the receive loop ends the handler


def _resume_point(request: web.Request) -> tuple[str | None, int | None]:
    stream = request.query.get("stream")
    try:
        last_seq = int(request.query.get("last_seq", ""))
    except ValueError:
        last_seq = None
    if stream is None or not stream.isalnum() or len(stream) > 64 or last_seq is None:
        return None, None
    return stream, last_seq


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
