"""An AMI simulator: a real TCP server that speaks the Asterisk Manager Interface and
replays recorded Asterisk 20 event streams (``*.ami`` transcripts) to its clients.

It answers the actions a CTI client sends (Login, Ping, Originate, the list actions, ...)
the way Asterisk 20 does, keeps the live channels and device states the replayed events
describe (so ``CoreShowChannels`` mid-call lists what a real PBX would), and can cut every
write into random small pieces so clients see frames and UTF-8 characters split across
TCP reads. ``refresh_ids`` gives a transcript fresh identities so it can be replayed many
times in one run; ``run_demo_pbx`` keeps a steady stream of calls going for a demo.

Run a demo PBX: ``python -m pbx_adapters.asterisk.simulator --port 5038``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from pbx_adapters.asterisk.frames import AmiParser, Frame, encode_action

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/9.0.0\r\n"
# Copies of ../shared/fixtures/asterisk20, shipped so the demo runs from a bare install.
DEFAULT_TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts"
# Where the lab PBX that recorded them wrote its MixMonitor files (the transcripts name them).
LAB_MONITOR = "/tmp/astlab/monitor"  # noqa: S108 (the lab PBX's folder: only a name here)
LAB_FAX = "/tmp/astlab/fax"  # noqa: S108 (the same: where its ReceiveFAX wrote)
# How the lab PBX that recorded them must be configured ([[pbx]] options).
LAB_PBX_OPTIONS = {
    "trunk_channels": [r"^Local/[^@]+@(?:callers|remote|inbound)-"],
    "inbound_contexts": ["inbound"],
    "originate_channel": "SIP/{extension}",
    "originate_context": "internal",
    "transfer_context": "internal",
}

# The lab client's own session events: the simulator sends its own FullyBooted at login.
_SESSION_EVENTS = {"FullyBooted"}

# Fields of a CoreShowChannel event that come from the channel snapshot of the events.
_SNAPSHOT = (
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
)

# Device state -> (ExtensionStatus Status, StatusText), as Asterisk's hints report them.
_EXTENSION_STATUS = {
    "NOT_INUSE": (0, "Idle"),
    "INUSE": (1, "InUse"),
    "BUSY": (2, "Busy"),
    "UNAVAILABLE": (4, "Unavailable"),
    "INVALID": (4, "Unavailable"),
    "UNKNOWN": (4, "Unavailable"),
    "RINGING": (8, "Ringing"),
    "RINGINUSE": (9, "InUse&Ringing"),
    "ONHOLD": (16, "Hold"),
}
_UNSAFE = re.compile(r"[\r\n\x00]")
_HINT_DEVICE = re.compile(r"^(?:SIP|PJSIP|IAX2)/(\w+)$")

# Actions on one live channel, and manager.c's answer when it is live.
_CHANNEL_ACTIONS = {
    "redirect": "Redirect successful",
    "hangup": "Channel Hungup",
    "mixmonitor": "",
    "stopmixmonitor": "Stopped monitoring channel",
}
_SIMPLE_ACKS = {
    "setvar": "Variable Set",
    "hangup": "Channel Hungup",
    "atxfer": "Atxfer successfully queued",
    "blindtransfer": "Transfer succeeded",
}


def load_transcript(path: str | Path) -> list[Frame]:
    """The events of a recorded ``.ami`` stream worth replaying: no responses to the lab
    client's own actions, no frames without ``Event``, no session FullyBooted/AMI auth."""
    parser = AmiParser()
    frames = parser.feed(Path(path).read_bytes())
    return [
        frame
        for frame in frames
        if "Event" in frame
        and frame["Event"] not in _SESSION_EVENTS
        and not (frame["Event"] == "SuccessfulAuth" and frame.get("Service") == "AMI")
    ]


# --- fresh identities ---------------------------------------------------------------------

_ID_KEY = re.compile(r"(?:niqueid|inkedid)$", re.IGNORECASE)  # Uniqueid, LinkedID, DestUniqueid...
_UNIQUE_ID = re.compile(r"^(\d+)\.(\d+)$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
# A channel name's prefix up to its 8-hex-digit suffix: SIP/101-, Local/20@callers-,
# PJSIP/trunk-a-. Device names (Local/20@callers) and dial strings have no such suffix.
_CHANNEL = r"\b[A-Za-z][\w]*/[^\s,;|()<>\"'/]+?-"
_TOKENS = re.compile(
    rf"(?P<chan>{_CHANNEL})(?P<hex>[0-9a-f]{{8}})(?![0-9A-Za-z])"
    r"|(?P<uid>(?<![\d.])\d+\.\d+(?!\d))"
    r"|(?P<uuid>\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b)"
)
_SEQ_SECONDS = 100_000  # seconds added to a unique id's time part per seq
_SEQ_CHANNELS = 0x10000  # added to a channel suffix per seq (mod 2**32, like Asterisk's)
_ORIGINATED_SEQ = 50_000  # the seqs of originated calls: apart from any replay's
_UUID_NAMESPACE = uuid.UUID("8f0d6c9e-3b1a-4c55-9a8e-5b7e2d1f0a42")


def refresh_ids(
    frames: list[Frame], *, seq: int, number_map: dict[str, str] | None = None
) -> list[Frame]:
    """A copy of ``frames`` with fresh unique ids, channel suffixes and bridge UUIDs (the
    same old value always gets the same new one; another ``seq`` gives other values), and
    the external numbers of ``number_map`` replaced wherever they stand as a whole number
    (CallerIDNum, Exten, ``Local/<number>@...``, ``"Name" <number>``, ...)."""
    ids: dict[str, str] = {}
    for frame in frames:
        for key, value in frame.items():
            if _ID_KEY.search(key) and value not in ids:
                if match := _UNIQUE_ID.match(value):
                    # <time>.<counter>: shift the time part, so ids stay sortable and short.
                    ids[value] = f"{int(match[1]) + seq * _SEQ_SECONDS}.{match[2]}"
                elif _UUID.match(value):
                    ids[value] = str(uuid.uuid5(_UUID_NAMESPACE, f"{seq}/{value}"))
    numbers = number_map or {}
    tokens = _TOKENS
    number_re: re.Pattern[str] | None = None
    if numbers:
        # A whole number: not part of a longer number, a word or a dotted id.
        either = "|".join(re.escape(n) for n in sorted(numbers, key=len, reverse=True))
        number_re = re.compile(rf"(?<![\w+.])(?:{either})(?![\w.])")
        tokens = re.compile(rf"{_TOKENS.pattern}|(?P<num>{number_re.pattern})")

    def token(match: re.Match[str]) -> str:
        if match["chan"]:
            prefix = match["chan"]  # Local/<number>@callers-: the number is replaced too
            if number_re is not None:
                prefix = number_re.sub(lambda m: numbers[m[0]], prefix)
            suffix = (int(match["hex"], 16) + seq * _SEQ_CHANNELS) % 2**32
            return f"{prefix}{suffix:08x}"
        if match["uid"] or match["uuid"]:
            return ids.get(match[0], match[0])
        return numbers[match[0]]

    cache: dict[str, str] = {}  # transcripts repeat the same values many times

    def rewrite(value: str) -> str:
        new = cache.get(value)
        if new is None:
            new = ids.get(value) or numbers.get(value) or tokens.sub(token, value)
            cache[value] = new
        return new

    return [{key: rewrite(value) for key, value in frame.items()} for frame in frames]


def external_numbers(frames: Iterable[Frame]) -> list[str]:
    """The outside parties' numbers in a transcript (long numbers in caller-id and exten
    fields; DIDs and extensions are shorter), in order of first appearance."""
    found: dict[str, None] = {}
    for frame in frames:
        for key in ("CallerIDNum", "ConnectedLineNum", "Exten", "DestExten"):
            value = frame.get(key, "")
            if re.fullmatch(r"\+?\d{10,}", value):
                found.setdefault(value)
    return list(found)


# --- the server ---------------------------------------------------------------------------


class _Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.logged_in = False
        self.lock = asyncio.Lock()  # one frame at a time, even when written in pieces


class AmiSimulator:
    """A local AMI server for tests and demos; see the module docstring."""

    def __init__(
        self,
        username: str = "cti",
        secret: str = "secret",  # noqa: S107 - a test server's default login
        host: str = "127.0.0.1",
        port: int = 0,
        chunking: random.Random | None = None,
        max_chunk: int = 64,
    ) -> None:
        self.username = username
        self.secret = secret
        self.host = host
        self.port = port
        self.chunking = chunking
        self.max_chunk = max_chunk
        self.actions: list[Frame] = []
        self.channels: dict[str, Frame] = {}
        self.device_states: dict[str, str] = {}
        self.originate_result = "Success"
        # The demo's: a recorded click-to-dial call played for each successful Originate
        # (so the call rings, is answered and ends as it would), and a callback for each
        # recording the played calls name (to put a file where the PBX would).
        self.originate_call: list[Frame] | None = None
        self.on_recording: Callable[[str], None] | None = None
        self._born: dict[str, float] = {}  # Uniqueid -> monotonic time it appeared
        self._clients: set[_Client] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._has_client = asyncio.Event()
        self._originated = 0

    @property
    def connections(self) -> int:
        return sum(1 for client in self._clients if client.logged_in)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_clients()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._handlers, *self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def wait_for_client(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            await self._has_client.wait()

    def drop_clients(self) -> None:
        for client in list(self._clients):
            client.writer.transport.abort()
            self._forget(client)

    async def play(self, frames: list[Frame], *, delay: float = 0.0) -> None:
        for index, frame in enumerate(frames):
            if index and delay:
                await asyncio.sleep(delay)
            self._track(frame)  # before sending: a client that asks at once sees it
            if self.on_recording is not None and frame.get("Variable") == "MIXMONITOR_FILENAME":
                self.on_recording(frame.get("Value", ""))
            await self._broadcast(frame)

    # --- state the replayed events describe ---

    def _track(self, frame: Frame) -> None:
        event = frame.get("Event")
        if event == "DeviceStateChange":
            self.device_states[frame.get("Device", "")] = frame.get("State", "")
            return
        uniqueid = frame.get("Uniqueid", "")
        if event == "Newchannel":
            channel = {name: frame.get(name, "") for name in _SNAPSHOT}
            channel.update(Application="", ApplicationData="", BridgeId="")
            self.channels[uniqueid] = channel
            self._born[uniqueid] = time.monotonic()
            return
        if event == "Hangup":
            self.channels.pop(uniqueid, None)
            self._born.pop(uniqueid, None)
            return
        # Every channel event carries a full snapshot of the channel(s) it concerns, each
        # under its prefix (DialBegin: none and Dest; LocalBridge: LocalOne, LocalTwo...).
        for key in frame:
            if not key.endswith("ChannelStateDesc"):
                continue
            prefix = key[: -len("ChannelStateDesc")]
            channel = self.channels.get(frame.get(prefix + "Uniqueid", ""))
            if channel is not None:
                for name in _SNAPSHOT:
                    if prefix + name in frame:
                        channel[name] = frame[prefix + name]
        channel = self.channels.get(uniqueid)
        if channel is None:
            return
        if event == "Newexten":
            channel["Application"] = frame.get("Application", "")
            channel["ApplicationData"] = frame.get("AppData", "")
        elif event == "BridgeEnter":
            channel["BridgeId"] = frame.get("BridgeUniqueid", "")
        elif event == "BridgeLeave":
            channel["BridgeId"] = ""

    # --- connections ---

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        client = _Client(reader, writer)
        self._clients.add(client)
        parser = AmiParser(version="")  # clients send no banner
        try:
            await self._send(client, BANNER)
            while not writer.is_closing():
                data = await reader.read(65536)
                if not data:
                    break
                for frame in parser.feed(data):
                    if not await self._handle(client, frame):
                        return
        except (ConnectionError, OSError):
            pass  # a client that goes away is simply forgotten
        finally:
            self._forget(client)
            writer.close()  # flushes what is buffered (a Goodbye), unlike abort()
            self._handlers.discard(task)

    def _forget(self, client: _Client) -> None:
        self._clients.discard(client)
        if not self.connections:
            self._has_client.clear()

    async def _send(self, client: _Client, data: bytes) -> None:
        writer = client.writer
        async with client.lock:
            if writer.is_closing():
                raise ConnectionResetError("client gone")
            if self.chunking is None:
                writer.write(data)
                await writer.drain()
                return
            start = 0
            while start < len(data):
                end = start + self.chunking.randint(1, self.max_chunk)
                writer.write(data[start:end])
                await writer.drain()
                # Yield so the reader gets this piece on its own rather than merged.
                await asyncio.sleep(0)
                start = end

    async def _reply(self, client: _Client, fields: dict[str, str]) -> None:
        await self._send(client, encode_action(fields))

    async def _broadcast(self, frame: Frame) -> None:
        data = encode_action(frame)
        for client in [c for c in self._clients if c.logged_in]:
            try:
                await self._send(client, data)
            except (ConnectionError, OSError):
                self._forget(client)

    # --- actions ---

    async def _handle(self, client: _Client, frame: Frame) -> bool:
        """Answer one action; False when the connection is to be closed."""
        # Values are echoed back (ActionID, Channel...): a stray LF or NUL must not break
        # the reply's framing.
        fields = {key.lower(): _UNSAFE.sub("", value) for key, value in frame.items()}
        action = fields.get("action", "").strip().lower()
        reply_id = {"ActionID": fields["actionid"]} if "actionid" in fields else {}

        def response(status: str, **extra: str) -> dict[str, str]:
            return {"Response": status, **reply_id, **extra}

        if not action:
            await self._reply(client, response("Error", Message="Missing action in request"))
            return True
        self.actions.append(frame)
        if action == "login":
            if fields.get("username") == self.username and fields.get("secret") == self.secret:
                await self._reply(client, response("Success", Message="Authentication accepted"))
                booted = {"Event": "FullyBooted", "Privilege": "system,all", "Uptime": "1"}
                booted.update(LastReload="1", Status="Fully Booted")
                await self._reply(client, booted)
                client.logged_in = True
                self._has_client.set()
                return True
            await self._reply(client, response("Error", Message="Authentication failed"))
            return False
        if action == "logoff":
            await self._reply(client, response("Goodbye", Message="Thanks for all the fish."))
            return False
        if not client.logged_in:
            await self._reply(client, response("Error", Message="Permission denied"))
            return True
        if action == "ping":
            await self._reply(
                client, response("Success", Ping="Pong", Timestamp=f"{time.time():.6f}")
            )
        elif action == "coreshowchannels":
            now = time.monotonic()
            items = []
            for uniqueid, channel in self.channels.items():
                seconds = int(now - self._born.get(uniqueid, now))
                duration = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
                items.append({**channel, "Duration": duration})
            await self._list(
                client,
                reply_id,
                "Channels will follow",
                "CoreShowChannel",
                items,
                "CoreShowChannelsComplete",
            )
        elif action == "devicestatelist":
            items = [{"Device": d, "State": s} for d, s in self.device_states.items()]
            await self._list(
                client,
                reply_id,
                "Device State Changes will follow",
                "DeviceStateChange",
                items,
                "DeviceStateListComplete",
            )
        elif action == "extensionstatelist":
            await self._list(
                client,
                reply_id,
                "Extension Statuses will follow",
                "ExtensionStatus",
                self._extension_statuses(),
                "ExtensionStateListComplete",
            )
        elif action == "originate":
            if not fields.get("channel"):
                await self._reply(client, response("Error", Message="Channel not specified"))
                return True
            await self._reply(client, response("Success", Message="Originate successfully queued"))
            task = asyncio.create_task(self._originate_response(fields, reply_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif action in _CHANNEL_ACTIONS:
            # As manager.c's action_redirect (and Hangup, MixMonitor): only a live channel
            # (its name matched without regard to case) can be acted on. What follows (the
            # move, the hang-up) is the transcript's.
            channel = fields.get("channel", "")
            live = {c.get("Channel", "").lower() for c in self.channels.values()}
            if not channel:
                await self._reply(client, response("Error", Message="Channel not specified"))
            elif channel.lower() not in live:
                missing = f"Channel does not exist: {channel}"
                await self._reply(client, response("Error", Message=missing))
            else:
                await self._reply(client, response("Success", Message=_CHANNEL_ACTIONS[action]))
        elif action in _SIMPLE_ACKS:
            await self._reply(client, response("Success", Message=_SIMPLE_ACKS[action]))
        else:
            await self._reply(client, response("Error", Message="Invalid/unknown command"))
        return True

    async def _list(
        self,
        client: _Client,
        reply_id: dict[str, str],
        message: str,
        event: str,
        items: list[dict[str, str]],
        complete: str,
    ) -> None:
        """An Asterisk list response: the start, one event per item, the Complete event."""
        await self._reply(
            client, {"Response": "Success", **reply_id, "EventList": "start", "Message": message}
        )
        for item in items:
            await self._reply(client, {"Event": event, **reply_id, **item})
        await self._reply(
            client,
            {"Event": complete, **reply_id, "EventList": "Complete", "ListItems": str(len(items))},
        )

    def _extension_statuses(self) -> list[dict[str, str]]:
        items = []
        for device, state in sorted(self.device_states.items()):
            if match := _HINT_DEVICE.match(device):
                status, text = _EXTENSION_STATUS.get(state, (4, "Unavailable"))
                items.append(
                    {
                        "Exten": match[1],
                        "Context": "internal",
                        "Hint": device,
                        "Status": str(status),
                        "StatusText": text,
                    }
                )
        return items

    async def _originate_response(self, fields: dict[str, str], reply_id: dict[str, str]) -> None:
        await asyncio.sleep(0.01)  # Asterisk answers the action first, the call comes later
        success = self.originate_result == "Success"
        if success:
            self._originated += 1
            uniqueid = f"{int(time.time())}.{self._originated}"
        name, number = _split_callerid(fields.get("callerid", ""))
        if success and self.originate_call:
            await self._play_originated(fields, reply_id)
            return
        await self._broadcast(
            {
                "Event": "OriginateResponse",
                "Privilege": "call,all",
                **reply_id,
                "Response": self.originate_result,
                "Channel": fields.get("channel", ""),
                "Context": fields.get("context", ""),
                "Exten": fields.get("exten", ""),
                # The last control frame seen: 4 = answered; 0 = the call never started.
                "Reason": "4" if success else "0",
                "Uniqueid": uniqueid if success else "<null>",
                "CallerIDNum": number or "<unknown>",
                "CallerIDName": name or "<unknown>",
            }
        )

    async def _play_originated(self, fields: dict[str, str], reply_id: dict[str, str]) -> None:
        """The recorded click-to-dial call, as this Originate asked for it: the operator's
        own phone and the number dialled put in, its OriginateResponse with our ActionID."""
        assert self.originate_call is not None
        recorded = next(f for f in self.originate_call if f.get("Event") == "OriginateResponse")
        numbers = {recorded.get("Exten", ""): fields.get("exten", "")}
        was, now = (_extension_of(c) for c in (recorded.get("Channel", ""), fields["channel"]))
        if was and now:
            numbers[was] = now
        call = refresh_ids(
            self.originate_call,
            seq=_ORIGINATED_SEQ + self._originated,
            number_map={old: new for old, new in numbers.items() if old and new and old != new},
        )
        for frame in call:
            if frame.get("Event") == "OriginateResponse":
                frame.update(reply_id)
        for pause, part in _paced(call):
            await asyncio.sleep(pause)
            await self.play(part)


def _extension_of(channel: str) -> str | None:
    match = re.match(r"^[A-Za-z0-9]+/(\d+)(?:-|$)", channel)
    return match[1] if match else None


def _split_callerid(callerid: str) -> tuple[str, str]:
    """'"Name" <number>' -> (name, number); a bare number or name is one or the other."""
    match = re.fullmatch(r'\s*"?(.*?)"?\s*<([^>]*)>\s*', callerid)
    if match:
        return match[1], match[2]
    callerid = callerid.strip()
    return ("", callerid) if re.fullmatch(r"\+?[\d*#]+", callerid) else (callerid, "")


# --- the demo PBX -------------------------------------------------------------------------


def _event_time(frame: Frame) -> float | None:
    """Seconds of a frame's own timestamp (CEL EventTime, security EventTV), if any."""
    stamp = frame.get("EventTime") or frame.get("EventTV")
    if not stamp or len(stamp) < 19:
        return None
    try:
        return datetime.fromisoformat(stamp[:19].replace("T", " ")).timestamp()
    except ValueError:
        return None


def _paced(frames: list[Frame], max_gap: float = 15.0) -> list[tuple[float, list[Frame]]]:
    """Split a transcript where its recorded clock jumps: (pause before, frames) pairs, so
    a replayed call rings and talks about as long as the recorded one."""
    parts: list[tuple[float, list[Frame]]] = [(0.0, [])]
    last: float | None = None
    for frame in frames:
        stamp = _event_time(frame)
        if stamp is not None:
            if last is not None and stamp > last:
                parts.append((min(stamp - last, max_gap), []))
            last = stamp if last is None else max(last, stamp)
        parts[-1][1].append(frame)
    return [(pause, part) for pause, part in parts if part]


def load_all(transcripts_dir: str | Path) -> list[tuple[str, list[Frame]]]:
    paths = sorted(Path(transcripts_dir).glob("*.ami"))
    if not paths:
        raise FileNotFoundError(f"no *.ami transcripts in {transcripts_dir}")
    return [(path.stem, load_transcript(path)) for path in paths]


async def replay_forever(
    simulator: AmiSimulator,
    transcripts: list[tuple[str, list[Frame]]],
    *,
    interval: float,
    number_pool: list[str],
) -> None:
    """Replay the transcripts round and round on a running simulator, each time with
    fresh ids and the outside numbers taken in turn from ``number_pool``, paced like the
    recorded calls; runs until cancelled."""
    seq = 0
    pool_index = 0
    while True:
        for name, frames in transcripts:
            seq += 1
            number_map = {}
            for number in external_numbers(frames):
                if number_pool:
                    number_map[number] = number_pool[pool_index % len(number_pool)]
                    pool_index += 1
            call = refresh_ids(frames, seq=seq, number_map=number_map)
            log.info("demo PBX: call %d, %s %s", seq, name, number_map)
            for pause, part in _paced(call):
                await asyncio.sleep(pause)
                await simulator.play(part)
            await asyncio.sleep(interval)


async def run_demo_pbx(
    host: str,
    port: int,
    username: str,
    secret: str,
    transcripts_dir: str | Path,
    *,
    interval: float,
    number_pool: list[str],
) -> None:
    """Serve AMI on host:port and replay the transcripts until cancelled."""
    transcripts = load_all(transcripts_dir)  # once, at start: blocking is fine here
    simulator = AmiSimulator(username, secret, host, port)
    await simulator.start()
    log.info("demo PBX: AMI on %s:%s, %d transcripts", host, simulator.port, len(transcripts))
    try:
        await replay_forever(simulator, transcripts, interval=interval, number_pool=number_pool)
    finally:
        await simulator.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A demo Asterisk PBX replaying AMI transcripts")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5038)
    parser.add_argument("--username", default="cti")
    parser.add_argument("--secret", default="secret")
    parser.add_argument("--transcripts", default=str(DEFAULT_TRANSCRIPTS), help="*.ami dir")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between calls")
    parser.add_argument(
        "--numbers",
        default="+78125550111,+78125550122,+74957770133,88125550144",
        help="comma-separated outside numbers to use in turn",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    pool = [number.strip() for number in args.numbers.split(",") if number.strip()]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_demo_pbx(
                args.host,
                args.port,
                args.username,
                args.secret,
                args.transcripts,
                interval=args.interval,
                number_pool=pool,
            )
        )


if __name__ == "__main__":
    main()
