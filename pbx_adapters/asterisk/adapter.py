"""The Asterisk AMI adapter: panoramisk for the connection, our parser and tracker for
the event stream.

panoramisk's ``Manager`` logs in, sends actions and matches their responses. We give
it our own protocol class: bytes go to the sans-I/O ``AmiParser`` (which keeps UTF-8
characters and frames whole across TCP reads), event frames go straight to the
``CallTracker``, and only responses to our own actions go through panoramisk's message
objects. On top of it: backoff on reconnect, a ping that notices a dead link, state
reload after every (re)connect, and actions that are never re-sent behind our back.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from cti.backoff import Backoff
from cti.calls import Call
from cti.domain import LineState
from cti.events import DomainEvent, OriginateResult
from cti.pbx import (
    DialPlaced,
    PbxCallNotFound,
    PbxContext,
    PbxError,
    PbxLinkDown,
    PbxRefused,
    PbxUnsupported,
)
from cti.phone import dialable, to_e164
from pbx_adapters.asterisk.channels import ChannelMap
from pbx_adapters.asterisk.faxsend import FaxSender
from pbx_adapters.asterisk.frames import AmiParser, Frame, encode_action
from pbx_adapters.asterisk.recovery import READ_TIMEOUT, CdrRecovery
from pbx_adapters.asterisk.settings import AsteriskSettings
from pbx_adapters.asterisk.tracker import CallTracker, linkedids_in

log = logging.getLogger("cti.asterisk")


class _ReconnectNoise(logging.Filter):
    """panoramisk logs every failed reconnect attempt, "Connection lost" at error level;
    the link registry logs the link going down and coming back instead, once each."""

    NOISE = ("Connection lost", "Not able to connect", "Not able to reconnect")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return message not in self.NOISE and not message.startswith("Try to connect again")


_panoramisk_log = logging.getLogger("cti.asterisk.panoramisk")
_panoramisk_log.addFilter(_ReconnectNoise())

STATE_LOAD_TIMEOUT = 10.0
ACTION_TIMEOUT = 10.0  # seconds to wait for the response to a command (Redirect)
# OriginateResponse's Reason (Asterisk's AST_CONTROL_* of the operator's phone): the
# code the desk words in its own language, and the words for the log.
ORIGINATE_REASONS = {
    "0": ("unreachable", "the phone could not be reached"),
    "1": ("unavailable", "the phone is unavailable"),
    "3": ("no_answer", "the phone did not answer"),
    "5": ("busy", "the phone is busy"),
    "8": ("congested", "the line is congested"),
}


# What the adapter reads besides the tracker's events; everything else is skipped unread.
KEPT_EVENTS = CallTracker("", ChannelMap()).events | {
    "OriginateResponse",
    "SendFAX",
    "FullyBooted",
    "Shutdown",
}


def keep_alive(sock: socket.socket | None, idle: float) -> None:
    """TCP keepalive on the AMI socket, so the kernel too notices a peer that vanished
    (the ping covers the application; this, a NAT that dropped the connection)."""
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", idle), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):  # Linux; elsewhere the system's defaults stay
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), max(1, int(value)))


class _Protocol(AMIProtocol):
    """panoramisk's protocol with our parser in front."""

    factory: AmiManager

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.parser = AmiParser(events=KEPT_EVENTS, needles=CallTracker.NEEDLES)

    def data_received(self, data: bytes) -> None:
        self.last_data_at = time.monotonic()  # the link talks: it is alive (see ping)
        frames = self.parser.feed(data)
        if self.parser.errors:
            for error in self.parser.errors:
                log.warning("AMI stream: %s", error)
            self.parser.errors.clear()
        for frame in frames:
            action_id = frame.get("ActionID")
            if action_id is not None and action_id in self.responses:
                self.handle_message(Message(frame))
            elif frame.get("Event") == "Shutdown":
                self.connection_lost(None)
            else:
                self.factory.adapter.frame_received(frame)

    def send(self, data: Any, as_list: bool | None = False) -> asyncio.Future:
        # panoramisk writes field values verbatim: a CR/LF in one would smuggle a second
        # action onto the socket. Refuse before anything is written.
        encode_action(dict(data))
        return super().send(data, as_list=as_list)


class AmiManager(Manager):
    """panoramisk's Manager with backoff, a checked keep-alive and no silent re-sends."""

    def __init__(self, adapter: AsteriskAdapter, config: AsteriskSettings) -> None:
        super().__init__(
            host=config.host,
            port=config.port,
            username=config.username,
            secret=config.secret.get_secret_value(),
            protocol_factory=_Protocol,
            ping_delay=config.ping_interval,
            ping_interval=config.ping_interval,
            reconnect_timeout=1,
            # Nothing is re-sent after a reconnect: a repeated Originate would ring twice.
            forgetable_actions=(
                "ping",
                "login",
                "originate",
                "redirect",
                "hangup",
                "mixmonitor",
                "stopmixmonitor",
                "coreshowchannels",
                "devicestatelist",
                "extensionstatelist",
                "logoff",
            ),
            loop=asyncio.get_running_loop(),
            log=_panoramisk_log,
        )
        self.ping_delay = self.ping_interval = config.ping_interval  # panoramisk int()s them
        self.ping_timeout = min(config.ping_timeout, config.ping_interval)
        self.backoff = Backoff(first=1.0, most=config.reconnect_max_seconds)
        self.reconnect_timeout = self.backoff.first / 2
        self.adapter = adapter
        self.stopping = False
        self._ping_future: asyncio.Future | None = None
        self._ping_sent_at = 0.0

    def connect(
        self, run_forever: bool = False, on_startup: Any = None, on_shutdown: Any = None
    ) -> Any:
        if self.stopping:
            return None
        return super().connect()

    def connection_made(self, f: asyncio.Future) -> None:
        if f.cancelled():
            return
        error = f.exception()
        if error is not None:
            self._back_off()
            self.loop.create_task(self.adapter.link_state(False, f"cannot connect: {error}"))
        elif self.stopping:  # stopped while connecting
            f.result()[0].close()
            return
        else:
            keep_alive(f.result()[0].get_extra_info("socket"), self.ping_interval)
        super().connection_made(f)

    def login(self, future: asyncio.Future) -> bool:
        ok = super().login(future)
        if ok:
            self.backoff.reset()
            self.reconnect_timeout = self.backoff.first / 2
            self.loop.create_task(self.adapter.logged_in())
        else:
            self.adapter.down_reason = "authentication failed"
            self.loop.create_task(self.adapter.link_state(False, "authentication failed"))
            if self.protocol is not None:  # connection_lost backs off and retries
                self.protocol.transport.close()
        return ok

    def ping(self) -> None:
        """Keep-alive that notices a link that died without a FIN (cable, NAT, firewall):
        a Ping unanswered within ``ping_timeout`` drops the connection, and the state
        reload after the reconnect says what happened meanwhile."""
        pending = self._ping_future
        if pending is not None and not pending.done() and self._ping_overdue(pending):
            return  # dropped: the reconnect starts pinging again
        self.pinger = self.loop.call_later(self.ping_interval, self.ping)
        if self.authenticated:
            future = self._ping_future = self.protocol.send({"Action": "Ping"})
            self._ping_sent_at = time.monotonic()
            self.loop.call_later(self.ping_timeout, self._ping_overdue, future)

    def _ping_overdue(self, future: asyncio.Future) -> bool:
        """The Ping is still unanswered: drop a silent link (True), forgive a talking one."""
        if future is not self._ping_future or future.done() or self.protocol is None:
            return False
        self._ping_future = None
        if getattr(self.protocol, "last_data_at", 0.0) > self._ping_sent_at:
            # Bytes came since the Ping: the link is alive and its answer is only late (a
            # busy service or PBX). Only a link that says nothing at all is dead.
            return False
        log.warning("AMI ping unanswered for %.1f s: reconnecting", self.ping_timeout)
        self.protocol.transport.abort()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.authenticated = False
        self._ping_future = None
        self.adapter.connection_lost()
        if self.stopping:
            return
        self._back_off()
        super().connection_lost(exc)

    def _back_off(self) -> None:
        self.reconnect_timeout = self.backoff.next_delay()

    def close(self) -> None:
        self.stopping = True
        super().close()


class AsteriskAdapter:
    """One configured Asterisk: its link, its calls and its commands."""

    def __init__(self, config: AsteriskSettings, context: PbxContext) -> None:
        self.config = config
        self.name = config.name
        self.region = context.region
        self.bus = context.bus
        self.links = context.links
        self.store = context.store
        self.clock = context.clock
        channel_map = ChannelMap(config.extension_channels, config.trunk_channels)
        self.tracker = CallTracker(
            config.name,
            channel_map,
            region=context.region,
            inbound_contexts=config.inbound_contexts,
            max_calls=config.max_calls,
            max_channels=config.max_channels,
        )
        self.manager: AmiManager | None = None
        self.link_up = asyncio.Event()
        self._resyncing: list[Frame] | None = None  # frames held back during a state load
        self.down_reason = ""  # why the link last failed, when we know better than "lost"
        self._originates: dict[str, DialPlaced] = {}
        self.fax_sender = FaxSender()
        self.cdr = CdrRecovery(config, channel_map, context.region) if config.cdr_url else None
        self.link_lost_at: datetime | None = None  # the last frame before the link went down
        self._background: set[asyncio.Task[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.link_up.is_set()

    async def start(self, restore: list[Call] | None = None) -> None:
        if restore:
            self.tracker.restore(restore)
        self.manager = AmiManager(self, self.config)
        self.manager.connect()

    async def stop(self) -> None:
        if self.manager is not None:
            self.manager.close()
        self.link_up.clear()
        self.store.save(self.tracker.take_changed())
        for task in list(self._background):
            task.cancel()
        if self.cdr is not None:
            await self.cdr.close()

    async def link_state(self, up: bool, detail: str) -> None:
        await self.links.report(self.name, up, detail)

    def connection_lost(self) -> None:
        for attempt in self.fax_sender.link_lost():
            self.bus.publish_nowait(attempt)
        if self.link_up.is_set():
            self.link_lost_at = self.tracker.last_frame_at or self.clock()
        self.link_up.clear()
        self._resyncing = None
        reason = self.down_reason or "connection lost"
        asyncio.get_running_loop().create_task(self.link_state(False, reason))

    async def logged_in(self) -> None:
        """Load the PBX's current state, holding live events back until it is applied."""
        assert self.manager is not None
        self._resyncing = []
        try:
            async with asyncio.timeout(STATE_LOAD_TIMEOUT):
                channels = await self._list("CoreShowChannels", "CoreShowChannel")
                devices = await self._list("DeviceStateList", "DeviceStateChange")
                hints = await self._list("ExtensionStateList", "ExtensionStatus")
        except (TimeoutError, PbxLinkDown, ConnectionError) as e:
            log.warning("AMI state load failed: %r; reconnecting", e)
            self._resyncing = None
            if self.manager.protocol is not None:
                self.manager.protocol.transport.close()
            return
        now = self.clock()
        records = await self._cdr_records(channels, now)
        events = self.tracker.resync(channels, now, records)
        for frame in [*devices, *hints]:
            events += self.tracker.feed(frame, now)
        held, self._resyncing = self._resyncing or [], None
        self._emit(events)
        for frame in held:
            self.frame_received(frame)
        self.link_up.set()
        self.down_reason = ""
        await self.link_state(True, f"connected to Asterisk {self._version()}".strip())
        log.debug(
            "AMI state loaded", extra={"fields": {"pbx": self.name, "channels": len(channels)}}
        )
        if records and self.cdr is not None:
            self._spawn(self.cdr.store_unseen(records, self.tracker.follows, self.store, self.bus))

    async def _cdr_records(self, channels: list[Frame], now: datetime) -> dict[str, Call]:
        """The CDR's calls (by Linkedid) since the link went down, or since the lookback
        at start-up; nothing when there is no CDR or it does not answer in time."""
        if self.cdr is None:
            return {}
        since = self.cdr.window_start(self.tracker.vanished(channels), self.link_lost_at, now)
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                return await self.cdr.records(since)
        except TimeoutError:
            log.warning("the CDR did not answer in %.0f s; not read this time", READ_TIMEOUT)
            return {}

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _version(self) -> str:
        protocol = self.manager.protocol if self.manager else None
        parser = getattr(protocol, "parser", None)
        return f"(AMI {parser.version})" if parser and parser.version else ""

    async def _list(self, action: str, item_event: str) -> list[Frame]:
        assert self.manager is not None
        # panoramisk gathers the list when the response says "EventList: start"; an
        # Error response comes back alone.
        reply = await self.manager.send_action({"Action": action})
        messages = reply if isinstance(reply, list) else [reply]
        if messages and messages[0].get("Response") == "Error":
            # Older PBXs lack some lists (ExtensionStateList came with Asterisk 13).
            return []
        return [dict(m.items()) for m in messages if m.get("Event") == item_event]

    # -- the event stream ------------------------------------------------------------

    def frame_received(self, frame: Frame) -> None:
        if self._resyncing is not None:
            self._resyncing.append(frame)
            return
        if frame.get("Event") == "OriginateResponse":
            self._originate_answered(frame)
        elif (attempt := self.fax_sender.feed(frame)) is not None:
            self.bus.publish_nowait(attempt)
        self._emit(self.tracker.feed(frame, self.clock()))

    def _emit(self, events: list[DomainEvent]) -> None:
        for event in events:
            self.bus.publish_nowait(event)
        self.store.save(self.tracker.take_changed())

    def lines(self) -> Mapping[str, LineState]:
        return MappingProxyType(self.tracker.lines)  # a view: looked up per pop, never copied

    def live_call(self, call_id: str) -> Call | None:
        """The call as tracked now, if it is in progress on this PBX."""
        state = self.tracker.calls.get(call_id)
        return state.call if state is not None else None

    def calls_named_by(self, file_name: str) -> list[str]:
        """MixMonitor and ReceiveFAX name files after a Uniqueid; the root channel's is
        the call's Linkedid. (Ids without the PBX's name: calls stored before 0.4.)"""
        return [
            call_id
            for linkedid in linkedids_in(file_name)
            for call_id in (self.tracker.call_id(linkedid), linkedid)
        ]

    # -- commands --------------------------------------------------------------------

    def _require_link(self) -> AmiManager:
        if not self.connected or self.manager is None:
            raise PbxLinkDown(f"PBX {self.name} is not connected")
        return self.manager

    async def dial(self, extension: str, number: str) -> DialPlaced:
        """Ring the operator's own phone, then dial ``number`` from it. Returns at once;
        the result arrives as an ``OriginateResult`` event."""
        manager = self._require_link()
        digits = dialable(
            number, self.region, dial_format=self.config.dial_format, prefix=self.config.dial_prefix
        )
        request = DialPlaced(uuid.uuid4().hex, extension, digits)
        action = {
            "Action": "Originate",
            "ActionID": f"cti-originate-{request.request_id}",
            "Channel": self.config.originate_channel.format(extension=extension),
            "Context": self.config.originate_context,
            "Exten": digits,
            "Priority": "1",
            "CallerID": f"{digits} <{digits}>",
            "Timeout": str(self.config.originate_timeout * 1000),
            "Async": "true",
            "Variable": f"CTI_REQUEST_ID={request.request_id}",
        }
        encode_action(action)  # raises UnsafeAction before anything is sent
        self.tracker.expect_originate(
            extension, to_e164(number, self.region) or number, request.request_id
        )
        self._originates[action["ActionID"]] = request
        future = manager.send_action(action)
        future.add_done_callback(lambda f: self._originate_done(action["ActionID"], f))
        return request

    async def transfer(self, call_id: str, extension: str, *, attended: bool = False) -> None:
        """Blind transfer: send the outside party of a live call to ``extension`` (AMI
        ``Redirect``). Returns once the PBX accepted it; the move itself shows up as the
        tracker's ``call.transferred``. (An attended transfer is the phone's to start:
        AMI's ``Atxfer`` needs the operator's channel to be the one that dials.)"""
        if attended:
            raise PbxUnsupported("attended transfer is started from the phone on Asterisk")
        self._require_link()
        channel = self.tracker.transfer_target(call_id)
        if channel is None:
            raise PbxCallNotFound(f"no live call {call_id!r} on PBX {self.name}")
        action = {
            "Action": "Redirect",
            "Channel": channel,
            "Exten": extension,
            "Context": self.config.transfer_context,
            "Priority": "1",
        }
        log.info(
            "blind transfer",
            extra={"fields": {"pbx": self.name, "call": call_id, "extension": extension}},
        )
        self.tracker.expect_redirect(call_id, extension)  # before the PBX's events can come
        try:
            await self._command(action, "the transfer")
        except PbxError:
            self.tracker.expect_redirect(call_id, None)  # it did not happen
            raise

    async def hang_up(self, call_id: str) -> None:
        """End a live call: hang up its first channel (the PBX ends the bridge)."""
        await self._command(
            {"Action": "Hangup", "Channel": self._channel_of(call_id)}, "the hang-up"
        )

    async def start_recording(self, call_id: str) -> None:
        """MixMonitor on the call's channel; the file is announced as usual
        (``MixMonitorStart``) and attached to the call like any other recording."""
        channel = self._channel_of(call_id)
        await self._command({"Action": "MixMonitor", "Channel": channel}, "the recording")

    async def stop_recording(self, call_id: str) -> None:
        channel = self._channel_of(call_id)
        await self._command({"Action": "StopMixMonitor", "Channel": channel}, "the recording")

    @property
    def sends_faxes(self) -> bool:
        return bool(self.config.fax_channel)

    async def send_fax(self, number: str, file: str, request_id: str) -> None:
        """Originate the far end into ``fax_context`` with ``FAXFILE`` set; the result
        comes as a ``FaxAttempt`` (``FaxSender``)."""
        if not self.config.fax_channel:
            raise PbxUnsupported(f"PBX {self.name} sends no faxes: set its fax_channel")
        if "," in file:
            raise PbxRefused("a fax file's path may not hold a comma (AMI splits on it)")
        manager = self._require_link()
        digits = dialable(
            number, self.region, dial_format=self.config.dial_format, prefix=self.config.dial_prefix
        )
        action_id = f"cti-fax-{request_id}-{uuid.uuid4().hex[:8]}"
        action = {
            "Action": "Originate",
            "ActionID": action_id,
            "Channel": self.config.fax_channel.format(number=digits),
            "Context": self.config.fax_context,
            "Exten": "s",
            "Priority": "1",
            "Timeout": str(self.config.fax_timeout * 1000),
            "Async": "true",
            "Variable": f"FAXFILE={file},CTI_FAX_ID={request_id}",
        }
        encode_action(action)  # raises UnsafeAction before anything is sent
        self.fax_sender.expect(action_id, request_id)
        log.info("sending a fax", extra={"fields": {"pbx": self.name, "fax": request_id}})
        future = manager.send_action(action)
        future.add_done_callback(lambda f: self._originate_done(action_id, f))

    def _fax_dialled(self, frame: Frame) -> Any:
        action_id = frame.get("ActionID", "")
        if frame.get("Response") == "Success":
            return self.fax_sender.answered(action_id, frame.get("Uniqueid", ""))
        code, reason = ORIGINATE_REASONS.get(frame.get("Reason", ""), ("failed", "failed"))
        return self.fax_sender.dial_failed(action_id, code, f"the fax number: {reason}")

    def _channel_of(self, call_id: str) -> str:
        self._require_link()
        channel = self.tracker.any_channel(call_id)
        if channel is None:
            raise PbxCallNotFound(f"no live call {call_id!r} on PBX {self.name}")
        return channel

    async def _command(self, action: dict[str, str], what: str) -> None:
        """Send one action and wait for its answer; PbxRefused with the PBX's message."""
        manager = self._require_link()
        action = {**action, "ActionID": f"cti-{action['Action'].lower()}-{uuid.uuid4().hex}"}
        encode_action(action)  # raises UnsafeAction before anything is sent
        try:
            # Actions are never re-sent after a reconnect, so an answer may never come.
            async with asyncio.timeout(ACTION_TIMEOUT):
                reply = await manager.send_action(action)
        except TimeoutError:
            raise PbxLinkDown(f"PBX {self.name} did not answer {what}") from None
        if reply.get("Response") != "Success":
            raise PbxRefused(reply.get("Message") or f"the PBX refused {what}")

    def _originate_done(self, action_id: str, future: asyncio.Future) -> None:
        """panoramisk resolves an async Originate (click-to-dial or a fax) with
        [response, OriginateResponse]."""
        if future.cancelled() or future.exception() is not None:
            self._originate_failed(action_id, "link_down", "the PBX link dropped")
            return
        replies = future.result()
        replies = replies if isinstance(replies, list) else [replies]
        if replies[0].get("Response") != "Success":
            self._originate_failed(action_id, "refused", replies[0].get("Message") or "refused")
            return
        for reply in replies[1:]:
            if reply.get("Event") == "OriginateResponse":
                self._originate_answered(dict(reply.items()))

    def _originate_answered(self, frame: Frame) -> None:
        if self.fax_sender.owns(frame.get("ActionID", "")):
            if (failed := self._fax_dialled(frame)) is not None:
                self.bus.publish_nowait(failed)
            return
        if frame.get("Response") == "Success":
            self._originate_result(frame.get("ActionID", ""), "", "")
            return
        code, reason = ORIGINATE_REASONS.get(frame.get("Reason", ""), ("failed", "failed"))
        self._originate_result(frame.get("ActionID", ""), code, reason)

    def _originate_failed(self, action_id: str, code: str, reason: str) -> None:
        """The Originate never reached anyone: a fax's attempt, or click-to-dial's result."""
        if self.fax_sender.owns(action_id):
            failed = self.fax_sender.dial_failed(action_id, code, reason)
            if failed is not None:
                self.bus.publish_nowait(failed)
            return
        self._originate_result(action_id, code, reason)

    def _originate_result(self, action_id: str, code: str, reason: str) -> None:
        """``code`` "": the operator's phone answered; else why not (DIAL_FAILURES)."""
        ok = not code
        request = self._originates.pop(action_id, None)
        if request is None:
            return
        log.info(
            "click-to-dial %s",
            "answered" if ok else f"failed: {reason}",
            extra={"fields": {"request": request.request_id, "extension": request.extension}},
        )
        self.bus.publish_nowait(
            OriginateResult(
                request_id=request.request_id,
                extension=request.extension,
                number=request.number,
                success=ok,
                reason=reason,
                code=code,
            )
        )
