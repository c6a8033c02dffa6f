"""What the nodes say to each other over NATS (nats-py), under ``[cluster] stream``:

- ``<stream>.frames``: the live feed's frames, in a JetStream stream. Each node publishes
  the frames of what it produced (the calls of the links it leads, what its API did),
  once; every node follows the stream and gives each frame to its viewers, numbered by
  the stream's own sequence, so a client resumes on any node exactly where it was. The
  stream keeps frames for the replay window (``[server] ws_replay_seconds``).
- ``<stream>.cmd.<link>``: a command (dial, transfer, ...) for the node that leads a link
  (request and reply; only the leader listens).
- ``<stream>.notice.<kind>``: something every node should hear at once (a token was
  revoked: close its live connections; an SMS was queued: wake the outbox).
- ``<stream>.state``: a node that starts asks the others for the feed's current state.

Payloads are JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig

log = logging.getLogger("cti.cluster")

NODE_HEADER = "Cti-Node"
PUBLISH_QUEUE = 100_000  # frames waiting for NATS before the feed is told it lost some

Frame = dict[str, Any]  # {"k": kind, "a": audience or None, "d": data, "c": call event}
Deliver = Callable[[int, Frame], None]  # (stream seq, frame)
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def subject_token(name: str) -> str:
    """A link's name as one NATS subject token ("a.b" would be two)."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", name):
        return name
    return "x" + name.encode().hex()


class Messaging:
    def __init__(self, url: str, stream: str, node: str, replay_seconds: float) -> None:
        self.url = url
        self.stream = stream
        self.node = node
        self.replay_seconds = max(replay_seconds, 60.0)
        self.stream_id = ""  # the stream's identity: a recreated stream is a new one
        self.nc: Client | None = None
        self.published = 0
        self.lost = 0  # frames that could not be published (NATS gone too long)
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(PUBLISH_QUEUE)
        self._publisher: asyncio.Task[None] | None = None
        self._subscriptions: list[Any] = []
        self._notices: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def connect(self) -> None:
        self.nc = await nats.connect(
            self.url,
            name=f"cti {self.node}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=self._error,
            disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected,
        )
        js = self.nc.jetstream()
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self.stream}.frames"],
            max_age=self.replay_seconds * 2,  # a resume needs at most the replay window
        )
        try:
            info = await js.add_stream(config)
        except Exception:  # there already, perhaps with other limits: use it as it is
            info = await js.stream_info(self.stream)
        created = str(info.created or "")
        self.stream_id = hashlib.sha256(f"{self.stream}:{created}".encode()).hexdigest()[:16]
        self._publisher = asyncio.get_running_loop().create_task(self._publish_loop())

    async def close(self) -> None:
        if self._publisher is not None:
            if self.connected:  # let what was queued go out first
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2):
                        await self._outbox.join()
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
        for sub in self._subscriptions:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    # -- the live feed's frames --------------------------------------------------------

    def publish_frame(
        self, kind: str, audience: frozenset[str] | None, data: Any, call_event: bool
    ) -> None:
        """Queue a frame for the stream; they go out in order, never waited for here."""
        frame = {"k": kind, "a": sorted(audience) if audience is not None else None}
        frame |= {"d": data, "c": call_event}
        try:
            self._outbox.put_nowait((f"{self.stream}.frames", orjson.dumps(frame)))
        except asyncio.QueueFull:
            self.lost += 1  # /healthz cluster.nats.frames_lost

    async def _publish_loop(self) -> None:
        assert self.nc is not None
        js = self.nc.jetstream()
        headers = {NODE_HEADER: self.node}
        while True:
            subject, payload = await self._outbox.get()
            while True:
                try:
                    await js.publish(subject, payload, headers=headers, timeout=2)
                    self.published += 1
                    self._outbox.task_done()
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # NATS away: keep the order, try again
                    log.warning("could not publish a live frame to NATS; retrying: %s", e)
                    await asyncio.sleep(0.5)

    async def follow_frames(self, deliver: Deliver, since: datetime | None = None) -> None:
        """Give every frame of the stream from ``since`` (default: the replay window
        back) to ``deliver``, in order, from now on."""
        assert self.nc is not None
        start = since or datetime.now(UTC) - timedelta(seconds=self.replay_seconds)

        async def on_message(msg: Msg) -> None:
            try:
                deliver(msg.metadata.sequence.stream, orjson.loads(msg.data))
            except Exception:
                log.exception("skipped a live frame from NATS")

        sub = await self.nc.jetstream().subscribe(
            f"{self.stream}.frames",
            cb=on_message,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start),
            idle_heartbeat=2.0,
        )
        self._subscriptions.append(sub)

    # -- commands for a link's leader ----------------------------------------------------

    async def serve(self, link: str, handler: Handler) -> Any:
        """Answer the commands for ``link`` (while this node leads it); returns what
        ``unserve`` takes."""
        assert self.nc is not None

        async def on_request(msg: Msg) -> None:
            try:
                reply = await handler(orjson.loads(msg.data))
            except Exception as e:
                log.exception("a command from another node failed")
                reply = {"error": "internal", "message": str(e)[:300]}
            await msg.respond(orjson.dumps(reply))

        return await self.nc.subscribe(f"{self.stream}.cmd.{subject_token(link)}", cb=on_request)

    async def unserve(self, served: Any) -> None:
        with contextlib.suppress(Exception):
            await served.unsubscribe()

    async def command(
        self, link: str, request: dict[str, Any], seconds: float
    ) -> dict[str, Any] | None:
        """The leader's reply to a command; None when no node leads ``link`` now."""
        assert self.nc is not None
        subject = f"{self.stream}.cmd.{subject_token(link)}"
        try:
            msg = await self.nc.request(subject, orjson.dumps(request), timeout=seconds)
        except (NoRespondersError, NatsTimeout):
            return None
        return orjson.loads(msg.data)

    # -- notices to every node -----------------------------------------------------------

    def notify(self, kind: str, data: dict[str, Any] | None = None) -> bool:
        """Tell every node (this one too), without waiting; False when NATS is away."""
        if self.nc is None or not self.nc.is_connected:
            return False
        payload = orjson.dumps({"from": self.node, **(data or {})})
        task = asyncio.get_running_loop().create_task(
            self.nc.publish(f"{self.stream}.notice.{kind}", payload)
        )
        self._notices.add(task)  # held until sent: the loop keeps only a weak reference
        task.add_done_callback(self._notices.discard)
        return True

    async def on_notice(self, kind: str, handler: Callable[[dict[str, Any]], None]) -> None:
        assert self.nc is not None

        async def on_message(msg: Msg) -> None:
            try:
                handler(orjson.loads(msg.data))
            except Exception:
                log.exception("a notice from another node failed")

        self._subscriptions.append(
            await self.nc.subscribe(f"{self.stream}.notice.{kind}", cb=on_message)
        )

    # -- the feed's state, for a node that starts ---------------------------------------

    async def serve_state(self, state: Callable[[], dict[str, Any]]) -> None:
        assert self.nc is not None

        async def on_request(msg: Msg) -> None:
            if (msg.headers or {}).get(NODE_HEADER) == self.node:
                return  # our own question
            await msg.respond(orjson.dumps(state()))

        self._subscriptions.append(await self.nc.subscribe(f"{self.stream}.state", cb=on_request))

    async def ask_state(self, seconds: float) -> dict[str, Any] | None:
        """Another node's state of the feed (with the seq it is at); None: nobody."""
        assert self.nc is not None
        try:
            msg = await self.nc.request(
                f"{self.stream}.state", b"", timeout=seconds, headers={NODE_HEADER: self.node}
            )
        except (NoRespondersError, NatsTimeout):
            return None
        return orjson.loads(msg.data)

    # -- connection events ----------------------------------------------------------------

    async def _error(self, error: Exception) -> None:
        log.warning("NATS: %s", error)

    async def _disconnected(self) -> None:
        log.warning("NATS is unreachable; reconnecting")

    async def _reconnected(self) -> None:
        log.warning("NATS is reachable again")
