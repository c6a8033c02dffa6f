"""Screen-pop latency on /ws with 1,000 clients, against a bare aiohttp broadcast.

What is measured, per (call, client that should see it): the time from the moment the AMI
frame that makes an operator's extension ring (the one after which ``CallTracker`` emits
``call.ringing``: DialBegin) is handed to the AMI server's socket, to the moment the first
``pop`` frame of that call (state ``ringing``) arrives at the client. p50, p99 and max.

- ours: the real service (``cti serve`` in its own process, on a fresh database,
  one ``[[pbx]]`` connected to this script's AMI server) with N authenticated
  WebSocket clients on ``/ws`` (token in the Authorization header). Calls are the recorded
  ``sip_inbound_answered`` transcript with fresh ids, its extension rewritten to the target
  operator's, started at ``--rate`` calls/s: the frames up to and including DialBegin at
  once, the rest of the ringing 10 ms later, the answer after ``--ring-seconds``, the
  hangup ``--talk-seconds`` after that (so ~rate x (ring + talk) calls are live at once).
- baseline, same run: a bare aiohttp WebSocket server (also its own process) that, on a
  trigger line over TCP from this script, sends the same pop payload (a pop frame captured
  from ours, same JSON size) to the same recipients. Latency from the trigger's write to
  arrival, measured by the same client harness.

Recipients (default): 20 receptionists see every pop, 980 operators each have their own
extension and see only the calls ringing it; each call rings one operator (round-robin),
so each pop goes to 21 clients. ``--all-see-all`` makes every client a receptionist.

The clients and the AMI server run in this process (one asyncio loop), so both timestamps
come from one clock. The clients are bare protocol-level WebSocket clients (the frames are
stamped in ``data_received`` and pops recognized without decoding the JSON), so that the
harness adds as little as it can to either side. The first ``--warmup`` calls are not
counted. Also checked: every expected recipient got each pop (missing must be 0) and no
operator got another's pop. Also printed: memory per connection (server RSS with the
clients connected minus before, / N), frames/s delivered, the CPU of the server, of this
script and of everything else on the machine (other load distorts the numbers: run on a
quiet machine), and this loop's own lag (when high, the harness adds latency too).

Ours runs on SQLite and on PostgreSQL (``--backend``; PostgreSQL at
BENCH_POSTGRES_URL), each time against a fresh database, in several runs:

- main: ``--rate`` calls/s for ``--seconds``: the pop latency, the server's CPU per call
  (its CPU seconds in the window / the calls started in it) next to what parsing and
  tracking a call's frames alone costs in this process (AmiParser + CallTracker, as the
  adapter sets them up), and the memory per connection.
- burst: ``--burst`` calls within ``--burst-seconds`` (a PBX replaying its state, a
  campaign), while a supervisor fetches ``GET /api/calls?limit=50`` every 100 ms: its
  p99, and whether every call was popped and logged (counted in the database after the
  service stopped; SIGTERM writes what is pending).
- sweep: each rate of ``--sweep`` for ``--sweep-seconds``: the highest one where p99
  stays under 50 ms with no pop and no call lost.

The CPU of a call depends on how the frames arrive: parsing and tracking a call's frames
in a tight loop costs a fraction of what the same work costs when the frames come a few
milliseconds apart and the process sleeps between them (on a virtual machine the caches
are cold again at every wake-up: measured here at 2-3x). Both are printed, the second
("as they arrive") replaying the chunks on the main run's own schedule, so the server's
cost can be read against the floor it really has.

``--pin`` (the default on a machine with two CPUs or more) puts the server on the last
CPU and this script on the others, so the two do not trade caches and the CPU figures
move less from run to run.

Goals (issue 21), printed with each backend's figures: CPU per
call at 50 calls/s with 1,000 clients <= 2.5 ms; pop p99 < 20 ms and <= 2x the bare
broadcast's; 200 calls/s with p99 < 50 ms; <= 16 KiB per connection; the burst all
logged and popped.

Profiling the server: BENCH_YAPPI=FILE (yappi, CPU time, coroutines and threads; a
pstats file) or BENCH_CPROFILE=FILE in the environment, or ``--py-spy FILE``.

Usage: python bench/screenpop.py [--clients 1000] [--receptionists 20] [--all-see-all]
       [--rate 50] [--seconds 20] [--backend sqlite|postgresql|both] [--burst 2000]
       [--burst-seconds 10] [--sweep 100,150,200] [--only ours|baseline]
       [--pin | --no-pin]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import json
import os
import re
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from scratch_postgres import scratch_postgres  # bench/, beside this script
from sqlalchemy import select

from cti import cli
from cti.auth import create_user, issue_token
from cti.db import migrate
from cti.db.engine import create_engine, session_factory
from cti.db.models import CallRecord
from pbx_adapters.asterisk.adapter import KEPT_EVENTS
from pbx_adapters.asterisk.channels import ChannelMap
from pbx_adapters.asterisk.frames import AmiParser, Frame, encode_action
from pbx_adapters.asterisk.settings import DEFAULT_EXTENSION_CHANNELS
from pbx_adapters.asterisk.simulator import (
    BANNER,
    DEFAULT_TRANSCRIPTS,
    LAB_PBX_OPTIONS,
    external_numbers,
    load_transcript,
    refresh_ids,
)
from pbx_adapters.asterisk.tracker import CallTracker

SELF = os.path.abspath(__file__)
TRANSCRIPT = DEFAULT_TRANSCRIPTS / "sip_inbound_answered.ami"
TRANSCRIPT_EXTENSION = "101"  # the operator the recorded call rings
FIRST_EXTENSION = 10000  # operators get 10000, 10001, ...: no clash with the transcript's
AMI_USER, AMI_SECRET = "cti", "bench-secret"
PBX_NAME = "bench"
RINGING_DELAY = 0.010  # the phone's "180 Ringing" after DialBegin
CONNECT_CONCURRENCY = 100
LAG_TICK = 0.005
PARSE_CALLS = 500  # calls parsed for the parse-only cost
PACED_CALLS = 250  # of them, fed as they would arrive
POLL_EVERY = 0.1  # the supervisor's call log, fetched this often during the run
SERVER_CPU = (os.cpu_count() or 1) - 1  # with --pin: the server's; this script the others

# The card of docs/websocket.md, for --only baseline (otherwise ours' real pop is used).
DOC_POP_CARD = {
    "call_id": "1700000000.12",
    "pbx": "pbx0",
    "direction": "inbound",
    "state": "ringing",
    "number": "+78125550101",
    "number_display": "+7 812 555-01-01",
    "caller_name": "Мария Сидорова",
    "ringing": ["101"],
    "answered_by": None,
    "extensions": ["101"],
    "started_at": "2026-11-23T01:02:03+00:00",
    "answered_at": None,
    "ended_at": None,
    "outcome": None,
    "missed": False,
    "lookup": "pending",
    "client": None,
    "contact": None,
    "manager": None,
    "history": [],
    "tasks": [],
}


# --- who connects -------------------------------------------------------------------------


@dataclass
class ClientSpec:
    username: str
    role: str
    extension: str | None
    token: str = ""

    @property
    def sees_all(self) -> bool:
        return self.role == "receptionist"


def population(clients: int, receptionists: int, all_see_all: bool) -> list[ClientSpec]:
    if all_see_all:
        receptionists = clients
    specs = [ClientSpec(f"reception{i:04d}", "receptionist", None) for i in range(receptionists)]
    for i in range(clients - receptionists):
        ext = str(FIRST_EXTENSION + i)
        specs.append(ClientSpec(f"operator{ext}", "operator", ext))
    return specs


async def create_users(database_url: str, specs: list[ClientSpec]) -> str:
    """Users and their tokens, straight into the service's (migrated) database; returns
    the token of a supervisor (not a WebSocket client) who reads the call log meanwhile."""
    engine = create_engine(database_url)
    try:
        await migrate.upgrade(engine)
        async with session_factory(engine)() as session:
            for spec in specs:
                user = await create_user(
                    session, spec.username, spec.role, extension=spec.extension
                )
                spec.token = await issue_token(session, user, label="bench")
            supervisor = await create_user(session, "bench-supervisor", "supervisor")
            token = await issue_token(session, supervisor, label="bench")
            await session.commit()
        return token
    finally:
        await engine.dispose()


async def logged_calls(database_url: str, keys: list[str]) -> tuple[int, int]:
    """(stored, stored and ended) of the calls whose Linkedid is one of ``keys``."""
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            rows = (await session.execute(select(CallRecord.id, CallRecord.in_progress))).all()
    finally:
        await engine.dispose()
    wanted = set(keys)
    mine = [in_progress for call_id, in_progress in rows if call_id.rsplit(":", 1)[-1] in wanted]
    return len(mine), sum(1 for in_progress in mine if not in_progress)


async def caught_up(database_url: str, calls: list[Call], patience: float) -> None:
    """Until every call is logged as ended, or ``patience`` s go by with none more: a
    service still working through its backlog is slow, not losing calls."""
    keys = [c.key for c in calls]
    last, deadline = -1, 0.0
    while True:
        _, ended = await logged_calls(database_url, keys)
        if ended == len(keys):
            return
        if ended != last:
            last, deadline = ended, time.monotonic() + patience
        elif time.monotonic() > deadline:
            return
        await asyncio.sleep(0.5)


class ApiPoller:
    """A supervisor's call log, fetched every ``POLL_EVERY`` s: its latencies."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.latencies: list[float] = []
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            while True:
                started = time.monotonic()
                try:
                    async with http.get(f"{self.url}/api/calls?limit=50") as response:
                        await response.read()
                        ok = response.status == 200
                except aiohttp.ClientError:
                    ok = False
                self.latencies.append(time.monotonic() - started)
                self.failures += not ok
                await asyncio.sleep(POLL_EVERY)


# --- the calls ----------------------------------------------------------------------------


@dataclass
class Call:
    index: int
    extension: str
    key: str  # the call's Linkedid: the last part of the pop's call_id
    setup: bytes  # frames before the ringing one
    ring: bytes  # the frame after which the service should pop
    ringing: bytes  # the rest of the ringing
    answer: bytes
    hangup: bytes


@dataclass
class Script:
    frames: list[Frame]
    ring: int  # index of the frame that makes the extension ring
    answer: int  # first frame of the answer
    hangup: int  # first frame of the hangup


def _tracker() -> CallTracker:
    channels = ChannelMap(DEFAULT_EXTENSION_CHANNELS, LAB_PBX_OPTIONS["trunk_channels"])
    return CallTracker(PBX_NAME, channels, inbound_contexts=LAB_PBX_OPTIONS["inbound_contexts"])


def ringing_frame(frames: list[Frame]) -> tuple[int, str]:
    """(index, extension) of the frame after which the tracker emits call.ringing."""
    tracker = _tracker()
    now = datetime.now(UTC)
    for index, frame in enumerate(frames):
        for event in tracker.feed(frame, now):
            if event.type == "call.ringing":
                return index, getattr(event, "extension", "")
    raise SystemExit("the transcript never makes an extension ring")


def load_script(path: Path) -> Script:
    frames = load_transcript(path)
    ring, extension = ringing_frame(frames)
    assert extension == TRANSCRIPT_EXTENSION, extension
    phone = frames[ring].get("DestChannel", "")
    answer = next(
        (
            i
            for i in range(ring + 1, len(frames))
            if frames[i].get("Event") == "Newstate"
            and frames[i].get("Channel") == phone
            and frames[i].get("ChannelStateDesc") == "Up"
        ),
        len(frames),
    )
    hangup = next(
        (
            i
            for i in range(answer, len(frames))
            if frames[i].get("Event") in {"HangupRequest", "SoftHangupRequest", "Hangup"}
        ),
        len(frames),
    )
    return Script(frames, ring, answer, hangup)


def encode(frames: list[Frame]) -> bytes:
    return b"".join(encode_action(frame) for frame in frames)


def make_calls(script: Script, specs: list[ClientSpec], count: int) -> list[Call]:
    """``count`` calls with fresh ids, each ringing the next operator's extension in turn
    (with --all-see-all, extensions nobody owns), from outside numbers of one length."""
    operators = [s.extension for s in specs if s.extension] or [
        str(FIRST_EXTENSION + i) for i in range(100)
    ]
    (outside,) = external_numbers(script.frames)
    calls = []
    for index in range(count):
        extension = operators[index % len(operators)]
        caller = outside[:-4] + f"{index % 10_000:04d}"
        numbers = {TRANSCRIPT_EXTENSION: extension, outside: caller}
        frames = refresh_ids(script.frames, seq=index + 1, number_map=numbers)
        calls.append(
            Call(
                index,
                extension,
                frames[script.ring]["Linkedid"],
                encode(frames[: script.ring]),
                encode(frames[script.ring : script.ring + 1]),
                encode(frames[script.ring + 1 : script.answer]),
                encode(frames[script.answer : script.hangup]),
                encode(frames[script.hangup :]),
            )
        )
    # The rewrite must still make the right extension ring at the same frame.
    check = refresh_ids(script.frames, seq=1, number_map={TRANSCRIPT_EXTENSION: calls[0].extension})
    assert ringing_frame(check) == (script.ring, calls[0].extension)
    return calls


# --- the AMI server -----------------------------------------------------------------------

_LISTS = {
    "coreshowchannels": ("Channels will follow", "CoreShowChannelsComplete"),
    "devicestatelist": ("Device State Changes will follow", "DeviceStateListComplete"),
    "extensionstatelist": ("Extension Statuses will follow", "ExtensionStateListComplete"),
}


class AmiServer:
    """Just enough Asterisk for the service: login, ping, empty state lists, and the calls'
    frames written when told to (``send`` returns the time they went to the socket)."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.logins = 0
        self.buffered_sends = 0  # sends that could not go to the kernel at once
        self.lost_sends = 0  # sends while the service was not connected
        self.ready = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self.writer is not None:
            self.writer.transport.abort()

    def send(self, data: bytes) -> float:
        writer = self.writer
        if writer is None or writer.is_closing():
            self.lost_sends += 1
            return time.monotonic()
        writer.write(data)
        sent = time.monotonic()
        if writer.transport.get_write_buffer_size():
            self.buffered_sends += 1
        return sent

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(BANNER)
        parser = AmiParser(version="")
        try:
            while data := await reader.read(65536):
                for frame in parser.feed(data):
                    self._answer(writer, frame)
        except ConnectionError:
            pass
        finally:
            if self.writer is writer:
                self.writer = None
                self.ready.clear()
            writer.close()

    def _answer(self, writer: asyncio.StreamWriter, frame: Frame) -> None:
        fields = {key.lower(): value for key, value in frame.items()}
        action = fields.get("action", "").lower()
        reply = {"Response": "Success"}
        if "actionid" in fields:
            reply["ActionID"] = fields["actionid"]
        out: list[dict[str, str]] = []
        if action == "login":
            if (fields.get("username"), fields.get("secret")) != (AMI_USER, AMI_SECRET):
                out.append({**reply, "Response": "Error", "Message": "Authentication failed"})
            else:
                out.append({**reply, "Message": "Authentication accepted"})
                out.append(
                    {"Event": "FullyBooted", "Privilege": "system,all", "Status": "Fully Booted"}
                )
                self.writer = writer
                self.logins += 1
                self.ready.set()
        elif action in _LISTS:
            message, complete = _LISTS[action]
            out.append({**reply, "EventList": "start", "Message": message})
            ids = {"ActionID": reply["ActionID"]} if "ActionID" in reply else {}
            out.append({"Event": complete, **ids, "EventList": "Complete", "ListItems": "0"})
        elif action == "ping":
            out.append({**reply, "Ping": "Pong", "Timestamp": f"{time.time():.6f}"})
        else:
            out.append({**reply, "Message": "OK"})
        writer.write(encode(out))


# --- the clients --------------------------------------------------------------------------

_TYPE = re.compile(rb'"type": ?"([^"]*)"')
_CALL_ID = re.compile(rb'"call_id": ?"([^"]*)"')
_STATE = re.compile(rb'"state": ?"([^"]*)"')


class WsClient(asyncio.Protocol):
    """One WebSocket client, kept lean so the harness adds as little as it can: the
    upgrade request by hand, server frames parsed in ``data_received`` and stamped there
    (the first moment this process sees them), pops recognized by regex, not decoded."""

    def __init__(self, clients: Clients, index: int, request: bytes) -> None:
        self.clients = clients
        self.index = index
        self.request = request
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.seen: set[bytes] = set()  # calls this client has had a pop of

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(exc or ConnectionError("closed before the upgrade"))
        elif not self.clients.closing:
            self.clients.closed_early += 1

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buffer = self.buffer
        buffer += data
        if not self.upgraded.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[: buffer.find(b"\r\n")])
            del buffer[: end + 4]
            if not status.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            self.upgraded.set_result(None)
        while len(buffer) >= 2:
            opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, start = int.from_bytes(buffer[2:4]), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, start = int.from_bytes(buffer[2:10]), 10
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            if opcode == 0x1:
                self.clients.frame(self, payload, now)
            elif opcode == 0x9:  # ping: pong with the same payload (masked, zero key)
                assert self.transport is not None and length < 126
                self.transport.write(bytes([0x8A, 0x80 | length]) + b"\0\0\0\0" + payload)
            elif opcode == 0x8:
                assert self.transport is not None
                self.transport.close()


@dataclass
class Clients:
    """N WebSocket clients on this loop, recording the first pop of each call they get."""

    specs: list[ClientSpec]
    frames: int = 0
    bytes: int = 0
    types: Counter = field(default_factory=Counter)
    hellos: int = 0
    # (call key, client index, arrival, state) of each client's first pop of a call.
    first_pops: list[tuple[str, int, float, str]] = field(default_factory=list)
    sample_pop: str | None = None  # one first pop as sent, for the baseline's payload
    closed_early: int = 0
    closing: bool = False
    _all_hello: asyncio.Event = field(default_factory=asyncio.Event)
    _protocols: list[WsClient] = field(default_factory=list)

    async def connect(self, host: str, port: int, path: str = "/ws") -> float:
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(index: int) -> WsClient:
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                f"Authorization: Bearer {self.specs[index].token}\r\n\r\n"
            ).encode()
            async with gate:
                _, client = await loop.create_connection(
                    lambda: WsClient(self, index, request), host, port
                )
                await client.upgraded
            return client

        self._protocols = await asyncio.gather(*(one(i) for i in range(len(self.specs))))
        async with asyncio.timeout(60):
            await self._all_hello.wait()
        return time.monotonic() - started

    def close(self) -> None:
        self.closing = True
        for client in self._protocols:
            if client.transport is not None:
                client.transport.abort()

    def frame(self, client: WsClient, payload: bytes, now: float) -> None:
        self.frames += 1
        self.bytes += len(payload)
        match = _TYPE.search(payload, 0, 64)
        kind = match[1].decode() if match else "?"
        self.types[kind] += 1
        if kind == "pop":
            call_id = _CALL_ID.search(payload)
            key = call_id[1].rsplit(b":", 1)[-1] if call_id else b""
            if key not in client.seen:
                client.seen.add(key)
                state = _STATE.search(payload)
                state_name = state[1].decode() if state else ""
                self.first_pops.append((key.decode(), client.index, now, state_name))
                if self.sample_pop is None and state_name == "ringing":
                    self.sample_pop = payload.decode()
        elif kind == "hello":
            self.hellos += 1
            if self.hellos == len(self.specs):
                self._all_hello.set()


# --- processes ----------------------------------------------------------------------------


def tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all CPUs, every process)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def wait_healthy(url: str, process: asyncio.subprocess.Process, log: Path) -> None:
    """Until /healthz says ok (the service: database up and the PBX link up)."""
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise SystemExit(f"server exited with {process.returncode}:\n{tail(log)}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"{url}/healthz") as response:
                    if (await response.json()).get("status") == "ok":
                        return
            await asyncio.sleep(0.2)
    raise SystemExit(f"{url}/healthz never said ok; see {log}")


async def stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(15):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


# --- the bare broadcast (runs in its own process: --serve-baseline) -----------------------


def read_json(path: str) -> Any:
    return json.loads(Path(path).read_text())


async def serve_baseline(spec_path: str) -> None:
    """A bare aiohttp WebSocket server: for each trigger line "<extension> <call key>", the
    pop template with its call key replaced goes to the receptionists and the extension's
    operator, one ``send_str`` after the other."""
    spec = read_json(spec_path)
    tokens: dict[str, list] = spec["tokens"]  # token -> [role, extension]
    template, placeholder = spec["template"], spec["placeholder"]
    everyone: set[web.WebSocketResponse] = set()
    by_extension: dict[str, set[web.WebSocketResponse]] = defaultdict(set)

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        header = request.headers.get("Authorization", "")
        who = tokens.get(header.removeprefix("Bearer "))
        if who is None:
            raise web.HTTPUnauthorized()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        group = everyone if who[0] == "receptionist" else by_extension[who[1]]
        group.add(ws)
        try:
            await ws.send_str(json.dumps({"type": "hello", "seq": 0}))
            async for _ in ws:
                pass
        finally:
            group.discard(ws)
        return ws

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def trigger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            extension, key = line.decode().split()
            frame = template.replace(placeholder, key)
            for ws in (*everyone, *by_extension.get(extension, ())):
                await ws.send_str(frame)

    app = web.Application()
    app.router.add_get("/ws", websocket)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", spec["port"]).start()
    trigger_server = await asyncio.start_server(trigger, "127.0.0.1", spec["trigger_port"])
    async with trigger_server:
        await asyncio.Event().wait()  # until SIGTERM


# --- one run ------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)  # seconds, every delivery
    spreads: list[float] = field(default_factory=list)  # per call: last - first delivery
    expected: int = 0
    missing: int = 0
    unexpected: int = 0
    not_ringing: int = 0
    unknown_calls: int = 0
    rss_before: int = 0
    rss_after: int = 0
    connect_seconds: float = 0.0
    window: float = 0.0
    frames: int = 0
    bytes: int = 0
    types: Counter = field(default_factory=Counter)
    server_cpu: float = 0.0
    own_cpu: float = 0.0
    others_cpu: float = 0.0  # CPUs busy with anything but the server and this script
    loop_lag: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    calls: int = 0  # started, warm-up included
    measured_calls: int = 0  # started in the window
    logged: int = 0  # of them in the call log after the run
    logged_ended: int = 0
    api_latencies: list[float] = field(default_factory=list)  # GET /api/calls meanwhile
    api_failures: int = 0


class LagMonitor:
    """How late this loop wakes up: the harness's own share of the latency."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.recording = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_TICK)
            if self.recording:
                self.samples.append(time.monotonic() - before - LAG_TICK)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def drive(
    result: Result,
    clients: Clients,
    calls: list[Call],
    args: argparse.Namespace,
    start_call: Any,
    server_pid: int,
) -> dict[str, float]:
    """Start the calls at ``args.rate``/s; returns each measured call's trigger time."""
    loop = asyncio.get_running_loop()
    stamps: dict[str, float] = {}
    tasks: set[asyncio.Task[None]] = set()
    lag = LagMonitor()
    lag.start()
    begin = loop.time() + 0.2
    window_start = frames_start = bytes_start = cpu_start = own_start = machine_start = 0.0
    types_start: Counter = Counter()
    for call in calls:
        delay = begin + call.index / args.rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if call.index == args.warmup:
            window_start = time.monotonic()
            frames_start, bytes_start = clients.frames, clients.bytes
            types_start = Counter(clients.types)
            cpu_start, own_start = cpu_seconds(server_pid), own_cpu_seconds()
            machine_start = machine_busy_seconds()
            lag.recording = True
        task = asyncio.create_task(start_call(call, stamps))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.sleep(1 / args.rate)  # the last call's own slot
    result.window = time.monotonic() - window_start
    result.frames = clients.frames - int(frames_start)
    result.bytes = clients.bytes - int(bytes_start)
    result.types = Counter(clients.types)
    result.types.subtract(types_start)
    result.server_cpu = (cpu_seconds(server_pid) - cpu_start) / result.window
    result.own_cpu = (own_cpu_seconds() - own_start) / result.window
    machine = (machine_busy_seconds() - machine_start) / result.window
    result.others_cpu = max(0.0, machine - result.server_cpu - result.own_cpu)
    lag.recording = False
    result.loop_lag = lag.samples
    lag.stop()
    await asyncio.gather(*tasks)
    result.measured_calls = len(calls) - args.warmup
    measured = {c.key: stamps[c.key] for c in calls[args.warmup :] if c.key in stamps}
    # Wait for stragglers while they keep coming; what has not come by then is missing.
    expected = sum(recipients_of(clients.specs, c.extension) for c in calls)  # warm-up too
    got, deadline = -1, 0.0
    while got < expected:
        now_got = len(clients.first_pops)
        if now_got != got:
            got, deadline = now_got, time.monotonic() + args.drain
        elif time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    return measured


def recipients_of(specs: list[ClientSpec], extension: str) -> int:
    return sum(1 for s in specs if s.sees_all or s.extension == extension)


def score(result: Result, clients: Clients, calls: list[Call], stamps: dict[str, float]) -> None:
    """Latencies of every expected delivery; missing, unexpected and odd pops."""
    by_key = {c.key: c for c in calls}
    arrivals: dict[str, dict[int, float]] = defaultdict(dict)
    for key, index, at, state in clients.first_pops:
        call = by_key.get(key)
        if call is None:
            result.unknown_calls += 1
            continue
        spec = clients.specs[index]
        if not (spec.sees_all or spec.extension == call.extension):
            result.unexpected += 1
            continue
        if key in stamps:
            arrivals[key][index] = at
            if state != "ringing":
                result.not_ringing += 1
    for key, sent in stamps.items():
        call = by_key[key]
        got = arrivals.get(key, {})
        result.expected += recipients_of(clients.specs, call.extension)
        result.missing += recipients_of(clients.specs, call.extension) - len(got)
        result.latencies += [at - sent for at in got.values()]
        if got:
            result.spreads.append(max(got.values()) - min(got.values()))


async def run_ours(
    args: argparse.Namespace,
    specs: list[ClientSpec],
    calls: list[Call],
    tmp: Path,
    database_url: str,
    title: str,
) -> tuple[Result, str | None]:
    result = Result(f"ours ({title}): cti serve, /ws")
    tmp = Path(tempfile.mkdtemp(prefix="ours-", dir=tmp))
    ami = AmiServer()
    ami_port = await ami.start()
    port = free_port()
    supervisor_token = await create_users(database_url, specs)
    config = tmp / "cti.toml"
    config.write_text(
        f"""
[server]
host = "127.0.0.1"
port = {port}
data_dir = "{tmp}"

[database]
url = "{database_url}"
auto_migrate = true
{pbx_toml(ami_port)}"""
    )
    log = tmp / "service.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *pinned(SERVER_CPU if args.pin else None),
            sys.executable,
            SELF,
            "--serve-ours",
            str(config),
            stdout=stderr,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    clients = Clients(specs)
    poller = ApiPoller(url, supervisor_token)
    try:
        await wait_healthy(url, process, log)
        async with asyncio.timeout(10):
            await ami.ready.wait()
        await asyncio.sleep(1)
        result.rss_before = rss_bytes(process.pid)
        result.connect_seconds = await clients.connect("127.0.0.1", port)
        await asyncio.sleep(2)  # let the server settle (resync frames, first heartbeats)
        result.rss_after = rss_bytes(process.pid)

        async def start_call(call: Call, stamps: dict[str, float]) -> None:
            ami.send(call.setup)
            stamps[call.key] = ami.send(call.ring)
            await asyncio.sleep(RINGING_DELAY)
            ami.send(call.ringing)
            await asyncio.sleep(args.ring_seconds - RINGING_DELAY)
            ami.send(call.answer)
            await asyncio.sleep(args.talk_seconds)
            ami.send(call.hangup)

        if args.py_spy:
            await start_py_spy(args, process.pid)
        if args.poll_api:
            poller.start()
        stamps = await drive(result, clients, calls, args, start_call, process.pid)
        await poller.stop()
        score(result, clients, calls, stamps)
        await caught_up(database_url, calls, args.drain)
    finally:
        await poller.stop()
        clients.close()
        await stop_process(process)  # SIGTERM: what is pending is written first
        await ami.stop()
    result.api_latencies, result.api_failures = poller.latencies, poller.failures
    result.logged, result.logged_ended = await logged_calls(database_url, [c.key for c in calls])
    result.calls = len(calls)
    if ami.logins != 1:
        result.notes.append(f"the service logged in to AMI {ami.logins} times (link dropped?)")
    if ami.lost_sends or ami.buffered_sends:
        result.notes.append(
            f"AMI writes while disconnected: {ami.lost_sends}, "
            f"not taken by the kernel at once: {ami.buffered_sends}"
        )
    problems = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if '"level": "warning"' in line or '"level": "error"' in line or "Traceback" in line
    ]
    if problems:
        result.notes.append(f"{len(problems)} warnings/errors in {log}, first: {problems[0][:300]}")
    if clients.closed_early:
        result.notes.append(f"{clients.closed_early} WebSockets closed by the server mid-run")
    return result, clients.sample_pop


def pbx_toml(ami_port: int, extra: str = "") -> str:
    """The ``[[pbx]]`` section for the bench's AMI server on ``ami_port``."""
    trunks = ", ".join(f"'{p}'" for p in LAB_PBX_OPTIONS["trunk_channels"])
    contexts = ", ".join(f'"{c}"' for c in LAB_PBX_OPTIONS["inbound_contexts"])
    return f"""
[[pbx]]
name = "{PBX_NAME}"
type = "asterisk"
host = "127.0.0.1"
port = {ami_port}
username = "{AMI_USER}"
secret = "{AMI_SECRET}"
trunk_channels = [{trunks}]
inbound_contexts = [{contexts}]
{extra}"""


async def start_py_spy(args: argparse.Namespace, pid: int) -> None:
    duration = int(args.seconds + args.warmup / args.rate) + 1
    await asyncio.create_subprocess_exec(
        shutil.which("py-spy", path=os.path.dirname(sys.executable)) or "py-spy",
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(duration),
        "--output",
        args.py_spy,
        "--format",
        "raw" if args.py_spy.endswith(".txt") else "flamegraph",
        "--rate",
        "400",
        "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def run_baseline(
    args: argparse.Namespace,
    specs: list[ClientSpec],
    calls: list[Call],
    tmp: Path,
    sample_pop: str,
) -> Result:
    result = Result("baseline: bare aiohttp broadcast")
    port, trigger_port = free_port(), free_port()
    key = str(json.loads(sample_pop)["data"]["call_id"])
    for spec in specs:
        spec.token = spec.token or f"bench-{spec.username}"
    spec_path = tmp / "baseline.json"
    spec_path.write_text(
        json.dumps(
            {
                "port": port,
                "trigger_port": trigger_port,
                "tokens": {s.token: [s.role, s.extension] for s in specs},
                "template": sample_pop,
                "placeholder": key,
            },
            ensure_ascii=False,
        )
    )
    prefix = key.rsplit(":", 1)[0] + ":" if ":" in key else ""
    log = tmp / "baseline.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *pinned(SERVER_CPU if args.pin else None),
            sys.executable,
            SELF,
            "--serve-baseline",
            str(spec_path),
            stdout=stderr,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    clients = Clients(specs)
    writer: asyncio.StreamWriter | None = None
    try:
        await wait_healthy(url, process, log)
        _, writer = await asyncio.open_connection("127.0.0.1", trigger_port)
        await asyncio.sleep(1)
        result.rss_before = rss_bytes(process.pid)
        result.connect_seconds = await clients.connect("127.0.0.1", port)
        await asyncio.sleep(2)
        result.rss_after = rss_bytes(process.pid)
        trigger = writer

        async def start_call(call: Call, stamps: dict[str, float]) -> None:
            trigger.write(f"{call.extension} {prefix}{call.key}\n".encode())
            stamps[call.key] = time.monotonic()

        stamps = await drive(result, clients, calls, args, start_call, process.pid)
        score(result, clients, calls, stamps)
    finally:
        if writer is not None:
            writer.close()
        clients.close()
        await stop_process(process)
    return result


# --- report -------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


def quantiles(samples: list[float]) -> tuple[float, float, float]:
    if len(samples) < 2:
        value = samples[0] if samples else float("nan")
        return value, value, value
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[98], max(samples)


@dataclass(frozen=True)
class Floor:
    """What parsing and tracking a call costs: in a tight loop, and as the frames arrive."""

    tight: float
    paced: float

    def ratios(self, cost: float) -> str:
        return f"{cost / self.tight:.1f}x parse + track, {cost / self.paced:.1f}x as they arrive"


def report(result: Result, clients: int, parse_cost: Floor) -> None:
    print(f"\n== {result.name}")
    per_connection = (result.rss_after - result.rss_before) / clients
    print(
        f"  {clients} clients connected in {result.connect_seconds:.1f} s; server RSS "
        f"{result.rss_before / 2**20:.1f} -> {result.rss_after / 2**20:.1f} MiB: "
        f"{per_connection / 1024:.1f} KiB per connection"
    )
    p50, p99, top = quantiles(result.latencies)
    print(
        f"  pop latency, {len(result.latencies):,} deliveries: p50 {ms(p50)}  p99 {ms(p99)}  "
        f"max {ms(top)}"
    )
    s50, s99, _ = quantiles(result.spreads)
    print(f"  per call, first to last recipient: p50 {ms(s50)}  p99 {ms(s99)}")
    print(
        f"  missing pops {result.missing} of {result.expected:,}, pops to the wrong operator "
        f"{result.unexpected}, first pop not ringing {result.not_ringing}, pops of unknown "
        f"calls {result.unknown_calls}"
    )
    kinds = ", ".join(
        f"{kind} {count / result.window:,.0f}/s"
        for kind, count in result.types.most_common()
        if count > 0
    )
    print(
        f"  frames delivered: {result.frames / result.window:,.0f}/s, "
        f"{result.bytes / result.window / 1e6:.2f} MB/s ({kinds})"
    )
    lag50, lag99, lag_max = quantiles(result.loop_lag)
    print(
        f"  CPU: server {result.server_cpu:.0%}, bench (clients + AMI) {result.own_cpu:.0%}, "
        f"other processes {result.others_cpu:.0%} (of {os.cpu_count()} cpus); "
        f"bench loop lag p50 {ms(lag50)} p99 {ms(lag99)} max {ms(lag_max)}"
    )
    if result.measured_calls:
        cost = cpu_per_call(result)
        print(
            f"  server CPU per call: {ms(cost)} ({parse_cost.ratios(cost)}); "
            f"{result.measured_calls / result.window:.0f} calls/s"
        )
    if result.api_latencies:
        a50, a99, a_max = quantiles(result.api_latencies)
        print(
            f"  GET /api/calls meanwhile, {len(result.api_latencies)} requests: p50 {ms(a50)}"
            f"  p99 {ms(a99)}  max {ms(a_max)}, {result.api_failures} failed; calls logged "
            f"{result.logged} of {result.calls}, ended {result.logged_ended}"
        )
    for note in result.notes:
        print(f"  note: {note}")


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < needed:
        raise SystemExit(f"need {needed} file descriptors, the hard limit is {hard}")


def parse_cost_per_call(calls: list[Call]) -> float:
    """CPU seconds per call of parsing and tracking its frames alone (AmiParser +
    CallTracker, set up as the adapter sets them up: the frames the tracker does not use
    dropped unread): the floor of what a call can cost."""
    data = [c.setup + c.ring + c.ringing + c.answer + c.hangup for c in calls[:PARSE_CALLS]]
    tracker = _tracker()
    parser = AmiParser(events=KEPT_EVENTS, needles=CallTracker.NEEDLES, version="")
    now = datetime.now(UTC)
    costs = []
    for _ in range(3):  # the least of three: the first also fills phonenumbers' caches
        started = time.process_time()
        for chunk in data:
            for frame in parser.feed(chunk):
                tracker.feed(frame, now)
            tracker.take_changed()
        costs.append((time.process_time() - started) / len(data))
    return min(costs)


async def paced_parse_cost(calls: list[Call], args: argparse.Namespace) -> float:
    """The same work, the chunks fed as the main run sends them (at ``--rate``, each
    call's ringing, answer and hangup after their delays), idle in between: the CPU of
    the feeding alone, per call."""
    tracker = _tracker()
    parser = AmiParser(events=KEPT_EVENTS, needles=CallTracker.NEEDLES, version="")
    spent = 0.0
    loop = asyncio.get_running_loop()

    def feed_chunk(chunk: bytes) -> None:
        nonlocal spent
        started = time.thread_time()
        now = datetime.now(UTC)
        for frame in parser.feed(chunk):
            tracker.feed(frame, now)
        tracker.take_changed()
        spent += time.thread_time() - started

    begin = loop.time() + 0.1
    last = 0.0
    for call in calls:
        start = begin + call.index / args.rate
        ring = start + RINGING_DELAY
        answer = start + args.ring_seconds
        hangup = answer + args.talk_seconds
        loop.call_at(start, feed_chunk, call.setup + call.ring)
        loop.call_at(ring, feed_chunk, call.ringing)
        loop.call_at(answer, feed_chunk, call.answer)
        loop.call_at(hangup, feed_chunk, call.hangup)
        last = hangup
    await asyncio.sleep(last - loop.time() + 0.1)
    return spent / len(calls)


def pinned(cpu: int | None) -> list[str]:
    """The command prefix that runs a process on one CPU (nothing when ``cpu`` is None)."""
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(cpu)] if cpu is not None and taskset else []


@dataclass
class Run:
    """One run of ours: at ``rate`` calls/s for ``seconds``, after ``warmup`` calls."""

    label: str
    rate: float
    seconds: float
    warmup: int
    poll_api: bool = False  # a supervisor reads the call log meanwhile (its cost counts)


@contextlib.asynccontextmanager
async def fresh_database(backend: str, tmp: Path, name: str) -> AsyncIterator[str | None]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix=f'{name}-', dir=tmp)}/cti.db"
        return
    async with scratch_postgres(f"cti_bench_screenpop_{name}") as url:
        yield url


async def main(args: argparse.Namespace) -> None:
    specs = population(args.clients, args.receptionists, args.all_see_all)
    raise_fd_limit(2 * len(specs) + 200)  # the server process inherits it
    script = load_script(Path(args.transcript))
    probe = make_calls(script, specs, PARSE_CALLS)
    everyone = sum(1 for s in specs if s.sees_all)
    per_pop = statistics.mean(recipients_of(specs, c.extension) for c in probe)
    frames = script.frames
    print(
        f"clients: {len(specs)} ({everyone} receptionists see every pop, "
        f"{len(specs) - everyone} operators their own extension's); "
        f"{per_pop:.0f} recipients per pop"
    )
    print(
        f"calls: ring {args.ring_seconds:g} s, talk {args.talk_seconds:g} s; "
        f"{Path(args.transcript).name}: {len(frames)} frames a call, the pop's trigger is "
        f"frame {script.ring + 1}, {frames[script.ring]['Event']}; python "
        f"{sys.version.split()[0]}, aiohttp {aiohttp.__version__}, {os.cpu_count()} cpus"
    )
    if args.pin and shutil.which("taskset"):
        os.sched_setaffinity(0, set(range(SERVER_CPU)) or {0})
        print(f"pinned: the server on CPU {SERVER_CPU}, this script on the others")
    parse_cost = parse_cost_per_call(probe)
    paced = await paced_parse_cost(probe[:PACED_CALLS], args)
    print(
        f"parse + track only (AmiParser + CallTracker, this process): {ms(parse_cost)} a call "
        f"in a tight loop, {ms(paced)} as the frames arrive at {args.rate:g} calls/s"
    )
    parse_cost = Floor(parse_cost, paced)
    runs = [Run("main", args.rate, args.seconds, args.warmup)]
    if args.burst:
        runs.append(Run("burst", args.burst / args.burst_seconds, args.burst_seconds, 0, True))
    runs += [Run(f"sweep {rate:g}/s", rate, args.sweep_seconds, 0) for rate in args.sweep]
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    ours: dict[str, dict[str, Result]] = {}  # backend -> label -> result
    base: Result | None = None
    sample = json.dumps({"type": "pop", "seq": 1, "data": DOC_POP_CARD}, ensure_ascii=False)
    with tempfile.TemporaryDirectory(prefix="cti-bench-screenpop-") as tmp_name:
        tmp = Path(tmp_name)
        for backend in backends if args.only in (None, "ours") else ():
            for run in runs:
                async with fresh_database(backend, tmp, f"{backend}_{len(ours)}") as url:
                    if url is None:
                        break
                    result, sample_pop = await run_ours(
                        argparse.Namespace(**{**vars(args), **vars(run)}),
                        specs,
                        make_calls(script, specs, run.warmup + int(run.seconds * run.rate)),
                        tmp,
                        url,
                        f"{backend}, {run.label}",
                    )
                ours.setdefault(backend, {})[run.label] = result
                report(result, len(specs), parse_cost)
                if sample_pop is not None and run.label == "main":
                    sample = sample_pop
        if args.only in (None, "baseline"):
            print(f"\nbaseline payload: {len(sample.encode())} bytes a pop frame")
            count = args.warmup + int(args.seconds * args.rate)
            base = await run_baseline(args, specs, make_calls(script, specs, count), tmp, sample)
            report(base, len(specs), parse_cost)
    for backend, results in ours.items():
        compare(backend, results, base, parse_cost, args)


def compare(
    backend: str,
    ours: dict[str, Result],
    base: Result | None,
    parse_cost: Floor,
    args: argparse.Namespace,
) -> None:
    """Each goal (docs/performance.md) against this run's own baselines."""
    print(f"\n== goals, {backend}")
    main = ours.get("main")
    if main is not None:
        o50, o99, _ = quantiles(main.latencies)
        cost = cpu_per_call(main)
        print(
            f"  CPU per call at {args.rate:g} calls/s: {ms(cost)} = {parse_cost.ratios(cost)} "
            f"({ms(parse_cost.tight)}, {ms(parse_cost.paced)}); goal <= 2.5 ms: "
            f"{'met' if cost <= 0.0025 else 'NOT met'}"
        )
        if base is not None and base.frames:
            # What the frames a call needs cost at the bare server's own price a frame.
            per_frame = base.server_cpu * base.window / base.frames
            frames = main.frames / max(1, main.measured_calls)
            floor = parse_cost.paced + frames * per_frame
            print(
                f"  its floor here: parse + track as they arrive + {frames:.0f} frames a call at "
                f"the bare broadcast's {per_frame * 1e6:.0f} us a frame = {ms(floor)}; "
                f"ours is {cost / floor:.1f}x that"
            )
        line = f"  pop p99 {ms(o99)}: goal < 20 ms {'met' if o99 < 0.020 else 'NOT met'}"
        if base is not None:
            b50, b99, _ = quantiles(base.latencies)
            line += (
                f"; / bare broadcast p99 ({ms(b99)}): {o99 / b99:.2f}x (p50 {o50 / b50:.2f}x), "
                f"goal <= 2x {'met' if o99 <= 2 * b99 else 'NOT met'}"
            )
        print(line)
        per_connection = (main.rss_after - main.rss_before) / args.clients / 1024
        print(
            f"  memory per WebSocket: {per_connection:.1f} KiB; goal <= 16 KiB: "
            f"{'met' if per_connection <= 16 else 'NOT met'}"
        )
    burst = ours.get("burst")
    if burst is not None:
        a99 = quantiles(burst.api_latencies)[1]
        complete = burst.missing == 0 and burst.logged_ended == burst.calls
        print(
            f"  burst of {burst.calls} calls in {args.burst_seconds:g} s: pops missing "
            f"{burst.missing}, logged {burst.logged_ended} of {burst.calls}; GET /api/calls "
            f"p99 {ms(a99)} meanwhile ({burst.api_failures} failed): "
            f"{'all logged and popped' if complete else 'NOT all logged and popped'}"
        )
    swept = [(label, r) for label, r in ours.items() if label.startswith("sweep")]
    if swept:
        good = [
            r.measured_calls / r.window
            for _, r in swept
            if r.missing == 0 and r.logged_ended == r.calls and quantiles(r.latencies)[1] < 0.050
        ]
        for label, r in swept:
            print(
                f"  {label}: p99 {ms(quantiles(r.latencies)[1])}, server CPU {r.server_cpu:.0%}, "
                f"missing pops {r.missing}, logged {r.logged_ended} of {r.calls}"
            )
        best = f"{max(good):.0f} calls/s" if good else "none of the rates tried"
        print(f"  highest rate with p99 < 50 ms and nothing lost: {best} (goal: 200)")


def cpu_per_call(result: Result) -> float:
    return result.server_cpu * result.window / max(1, result.measured_calls)


def serve_ours(config: str) -> None:
    """``cti serve``; under a profiler when BENCH_YAPPI or BENCH_CPROFILE names a file."""
    if os.environ.get("BENCH_YAPPI"):  # CPU time per function, coroutines and threads too
        import yappi

        yappi.set_clock_type("cpu")
        yappi.start()
        try:
            cli.main(["serve", "-c", config])
        finally:
            yappi.stop()
            yappi.get_func_stats().save(os.environ["BENCH_YAPPI"], type="pstat")
        return
    profile_to = os.environ.get("BENCH_CPROFILE")
    if not profile_to:
        raise SystemExit(cli.main(["serve", "-c", config]))
    profiler = cProfile.Profile()
    try:
        profiler.runcall(cli.main, ["serve", "-c", config])
    finally:
        profiler.dump_stats(profile_to)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000, help="WebSocket clients (1000)")
    parser.add_argument("--receptionists", type=int, default=20, help="of them see every pop (20)")
    parser.add_argument(
        "--all-see-all", action="store_true", help="every client a receptionist (stress)"
    )
    parser.add_argument("--rate", type=float, default=50, help="new calls per second (50)")
    parser.add_argument("--seconds", type=float, default=20, help="measured seconds (20)")
    parser.add_argument("--warmup", type=int, default=100, help="calls not counted (100)")
    parser.add_argument("--ring-seconds", type=float, default=1.0, help="ringing (1.0)")
    parser.add_argument("--talk-seconds", type=float, default=1.5, help="talking (1.5)")
    parser.add_argument(
        "--drain", type=float, default=5, help="a pop is missing after N s with no pop (5)"
    )
    parser.add_argument("--only", choices=["ours", "baseline"], help="run one side only")
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=(os.cpu_count() or 1) > 1,
        help="the server on the last CPU, this script on the others (default: with 2+ CPUs)",
    )
    parser.add_argument(
        "--backend",
        choices=["sqlite", "postgresql", "both"],
        default="both",
        help="the service's database (both: each in turn; PostgreSQL at "
        "BENCH_POSTGRES_URL, skipped when it does not answer)",
    )
    parser.add_argument(
        "--burst", type=int, default=2000, help="calls of the burst run (2000; 0: none)"
    )
    parser.add_argument(
        "--burst-seconds", type=float, default=10, help="the burst arrives within (10)"
    )
    parser.add_argument(
        "--sweep",
        type=lambda text: [float(r) for r in text.split(",") if r],
        default=[100.0, 150.0, 200.0],
        help="rates to try for the highest one that keeps p99 < 50 ms (100,150,200; '': none)",
    )
    parser.add_argument(
        "--sweep-seconds", type=float, default=10, help="measured seconds of each rate (10)"
    )
    parser.add_argument("--transcript", default=str(TRANSCRIPT), help=argparse.SUPPRESS)
    parser.add_argument(
        "--py-spy",
        metavar="FILE",
        help="py-spy record the service during the run (FILE.svg: flame graph, FILE.txt: "
        "collapsed stacks)",
    )
    parser.add_argument("--serve-baseline", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--serve-ours", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receptionists > args.clients:
        parser.error("--receptionists must not exceed --clients")
    if args.ring_seconds <= RINGING_DELAY:
        parser.error(f"--ring-seconds must exceed {RINGING_DELAY}")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve_ours:
        serve_ours(arguments.serve_ours)
    elif arguments.serve_baseline:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_baseline(arguments.serve_baseline))
    else:
        asyncio.run(main(arguments))
