"""The live WebSocket (/ws): the frames of the live feed a user may see (docs/websocket.md).

Authentication: an ``Authorization: Bearer`` header, or (browsers cannot set headers on a
WebSocket) a first frame ``{"type": "auth", "token": "..."}`` within AUTH_TIMEOUT seconds.
A token is never taken from the URL, where proxies and access logs would keep it. The
URL may carry ``stream`` and ``last_seq`` (not secrets) to resume after a reconnect.
The connection closes (4401) soon after its token ends (``cti.sockets``).

A client sends little (the auth frame, a ping now and then): frames are at most
MAX_CLIENT_FRAME bytes and ``[server] ws_client_frames_per_second`` (with a burst of
FRAME_BURST); a client that sends more is closed (1008), as is one that sends binary.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from cti.auth import Principal
from cti.feed import Viewer, json_dumps
from cti.http.keys import SERVICE_KEY
from cti.live import LiveFeed
from cti.sockets import CLOSE_UNAUTHORIZED

if TYPE_CHECKING:
    from cti.service import Service

log = logging.getLogger("cti.http.ws")

AUTH_TIMEOUT = 10.0
MAX_CLIENT_FRAME = 4096  # bytes: an auth frame with its token fits many times over
FRAME_BURST = 20  # frames a client may send at once before the rate applies
CLOSE_POLICY = 1008
DEAD_PEER_HEARTBEATS = 3  # a connection that acknowledges nothing for this long is dropped


def bearer_token(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


class FrameRate:
    """A token bucket: ``rate`` frames a second on average, ``burst`` at once."""

    __slots__ = ("burst", "clock", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: int, clock=time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.last = clock()

    def allow(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


async def websocket(request: web.Request) -> web.WebSocketResponse:
    service = request.app[SERVICE_KEY]
    found: tuple[int, Principal] | None = None
    token = bearer_token(request.headers.get("Authorization"))
    if token is not None:
        found = await service.authenticator.session_of(token)
        if found is None:
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Bearer"})
    stream, last_seq = _resume_point(request)
    call_events = request.query.get("events") == "calls"

    # No protocol pings (a timer or two for each connection): the feed's heartbeat frames
    # let a browser notice a dead server, and their being left unacknowledged lets the
    # kernel drop a dead browser (TCP_USER_TIMEOUT, below). No compression: the live feed
    # writes its pre-encoded frames to the socket itself.
    ws = web.WebSocketResponse(heartbeat=None, max_msg_size=MAX_CLIENT_FRAME, compress=False)
    await ws.prepare(request)
    if found is None:
        found = await _authenticate_first_frame(ws, service)
        if found is None:
            return ws
    token_id, who = found
    service.sockets.add(ws, token_id)
    try:
        await _stream(request, ws, service, who, stream, last_seq, call_events)
    finally:
        service.sockets.remove(ws)
    return ws


async def _stream(
    request: web.Request,
    ws: web.WebSocketResponse,
    service: Service,
    who: Principal,
    stream: str | None,
    last_seq: int | None,
    call_events: bool,
) -> None:
    heartbeat = service.config.server.ws_heartbeat_seconds
    feed: LiveFeed = service.live
    await feed.ready_for(stream, last_seq)  # from a node that was ahead of this one
    viewer, resumed = feed.attach(
        sees_all=who.sees_everything,
        extension=who.extension,
        stream=stream,
        last_seq=last_seq,
        call_events=call_events,
    )
    try:
        await _greet(ws, service, who, viewer, resumed, "gap" if stream else "connect")
        if request.transport is None:
            return  # the peer went away while it was greeted
        _drop_when_unacknowledged(request.transport, DEAD_PEER_HEARTBEATS * heartbeat)
        feed.start_sending(viewer, request.transport, heartbeat)  # frames go straight out
        rate = FrameRate(service.config.server.ws_client_frames_per_second, FRAME_BURST)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT or not rate.allow():
                log.warning(
                    "closed a live connection that sent too much",
                    extra={"fields": {"user": who.username, "remote": request.remote}},
                )
                await ws.close(code=CLOSE_POLICY, message=b"too many or unexpected frames")
                break
            if _frame(msg.data).get("type") == "ping":
                feed.pong(viewer)
    finally:
        feed.detach(viewer)


def _drop_when_unacknowledged(transport: asyncio.BaseTransport, seconds: float) -> None:
    """Have the kernel close the connection when what was sent stays unacknowledged this
    long (a browser that vanished: the heartbeats go unanswered), where TCP can."""
    sock = transport.get_extra_info("socket")
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if sock is not None and option is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))


async def _greet(
    ws: web.WebSocketResponse,
    service: Service,
    who: Principal,
    viewer: Viewer,
    resumed: bool,
    reason: str,
) -> None:
    """``hello``, and the current state unless the connection resumed (in a function of
    its own: what it builds is not kept for as long as the connection lasts)."""
    feed: LiveFeed = service.live
    hello = {
        "type": "hello",
        "seq": viewer.seq,
        "stream": feed.stream,
        "resumed": resumed,
        "user": who.to_dict(),
        "heartbeat": service.config.server.ws_heartbeat_seconds,
        "features": service.features(who),
        # For showing times and numbers: the office's time zone (the user's own, in
        # user.time_zone, wins) and the region of numbers written without a country.
        "office": {
            "time_zone": service.config.server.time_zone,
            "region": service.config.phone.default_region,
        },
    }
    await ws.send_str(json_dumps(hello))
    if not resumed:
        await ws.send_str(feed.resync_frame(viewer, reason))


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
) -> tuple[int, Principal] | None:
    found = None
    try:
        msg = await ws.receive(timeout=AUTH_TIMEOUT)
        if msg.type == WSMsgType.TEXT:
            frame = _frame(msg.data)
            token = frame.get("token") if frame.get("type") == "auth" else None
            if isinstance(token, str):
                found = await service.authenticator.session_of(token)
    except TimeoutError:
        pass
    if found is None:
        await ws.close(code=CLOSE_UNAUTHORIZED, message=b"authentication required")
    return found


def _frame(text: str) -> dict:
    """A client's frame as a JSON object; {} for anything else (nested too deeply too)."""
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return frame if isinstance(frame, dict) else {}
