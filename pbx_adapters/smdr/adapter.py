"""The SMDR adapters' asyncio shell: a record stream in, finished calls stored.

SMDR reports a call once it is over, so these PBXs give the call log, missed calls,
callback tasks and reports, but no screen pops, line states or commands: ``/healthz``
says so (``live_events: false``), and every command answers ``PbxUnsupported``.

The stream comes from a serial port, a TCP connection to the PBX, or a TCP port the
PBX connects to (only from its configured address). Each record is parsed by the
PBX's decoder; its calls are stored under ids made of the records, so a record the PBX
replays (its buffer after a reconnect, a restart) is stored once and counted as a
duplicate. A line that cannot be read is logged, counted, and kept with its reason in
``<data_dir>/smdr/<name>-rejected.jsonl`` for the supervisor; the stream goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import serial_asyncio

from cti.backoff import Backoff
from cti.calls import Call
from cti.domain import LineState, utcnow
from cti.pbx import DialPlaced, PbxContext, PbxUnsupported, adapter_counter
from pbx_adapters.smdr.lines import LineSplitter
from pbx_adapters.smdr.records import Decoded, RecordDecoder, Rejected, Skipped
from pbx_adapters.smdr.settings import ListeningSmdrSettings, SerialSmdrSettings, SmdrSettings

log = logging.getLogger("cti.smdr")

READ_SIZE = 65536
CONNECT_TIMEOUT = 10.0
LOGIN_TIMEOUT = 20.0
RECENT_IDS = 20000  # ids stored lately: a replayed record is known without a query
REJECTS_KEPT = 200  # the latest unreadable lines, for GET /api/pbx/{name}/rejected
NO_LINES: Mapping[str, LineState] = MappingProxyType({})


class Handshake:
    """What a connection says before its records (a login); sans-I/O."""

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """(bytes to send back, bytes of the record stream)."""
        return b"", data

    @property
    def ready(self) -> bool:
        """Whether records may come now (the login is sent)."""
        return True

    @property
    def refused(self) -> str:
        """Why the PBX refused the connection; "" while it has not."""
        return ""


class SmdrAdapter:
    live_events = False  # SMDR tells of a call once it is over

    def __init__(
        self,
        settings: SmdrSettings,
        context: PbxContext,
        decoder: RecordDecoder,
        *,
        handshake: Callable[[], Handshake] = Handshake,
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self.context = context
        self.decoder = decoder
        self.handshake = handshake
        self.splitter = LineSplitter(settings.encoding)
        self.counts: Counter[str] = Counter()
        self.last_record_at: str | None = None
        self.rejects: deque[dict[str, str]] = deque(maxlen=REJECTS_KEPT)
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._up = False
        self._task: asyncio.Task[None] | None = None
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._accepted_sessions: set[asyncio.Task[Any]] = set()
        self._lock = asyncio.Lock()  # one connection's records at a time, in order
        self._metric = adapter_counter(
            context,
            "cti_smdr_records",
            "SMDR lines read, by PBX and what they were: call, duplicate, skipped, rejected",
            ["pbx", "result"],
        )
        self.backoff = Backoff(first=1.0, most=settings.reconnect_max_seconds)
        self.listening_port: int | None = None  # transport "listen": the bound port

    # -- lifecycle -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._up

    async def start(self, restore: list[Call]) -> None:
        """Start reading (the stored in-progress calls mean nothing here: SMDR tells of
        calls once they are over)."""
        s = self.settings
        if isinstance(s, ListeningSmdrSettings) and s.transport == "listen":
            self._server = await asyncio.start_server(self._accepted, s.listen_host, s.listen_port)
            self.listening_port = self._server.sockets[0].getsockname()[1]
            await self._report(False, self._waiting())
        else:
            self._task = asyncio.get_running_loop().create_task(self._keep_connected())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._server is not None:
            self._server.close()
        if self._writer is not None:
            self._writer.close()
        for session in list(self._accepted_sessions):
            session.cancel()
        await asyncio.gather(*self._accepted_sessions, return_exceptions=True)
        async with self._lock:
            await self._handle(self.decoder.flush())
        self._up = False

    async def _keep_connected(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.wait_for(self._open(), CONNECT_TIMEOUT)
            except (OSError, TimeoutError, ValueError) as e:
                reason = f"cannot open {self._where()}: {e}"
            else:
                reason = await self._session(reader, writer)
            await self._report(False, reason)
            await asyncio.sleep(self.backoff.next_delay())

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        s = self.settings
        if isinstance(s, SerialSmdrSettings) and s.transport == "serial":
            return await serial_asyncio.open_serial_connection(
                url=s.serial_port,
                baudrate=s.baudrate,
                bytesize=s.bytesize,
                parity=s.parity,
                stopbits=s.stopbits,
                exclusive=True,
            )
        return await asyncio.open_connection(s.host, s.port)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str((writer.get_extra_info("peername") or ("?",))[0]).removeprefix("::ffff:")
        if peer != self.settings.host:
            log.warning(
                "SMDR %s: refused a connection from %s (only %s may send records)",
                self.name,
                peer,
                self.settings.host,
                extra={"fields": {"pbx": self.name, "peer": peer}},
            )
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._accepted_sessions.add(task)
            task.add_done_callback(self._accepted_sessions.discard)
        if self._writer is not None:  # the PBX reconnected: the old link is dead
            self._writer.close()
        reason = await self._session(reader, writer)
        if self._writer is None:  # no newer connection took over
            await self._report(False, f"{reason}; {self._waiting()}")

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        """One connection, until it ends; returns why it ended."""
        self._writer = writer
        self.splitter.reset()  # a record cut by the last connection's end: the PBX resends
        try:
            return await self._read(reader, writer)
        except OSError as e:
            return f"connection lost: {e}"
        finally:
            writer.close()
            if self._writer is writer:
                self._writer = None

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        handshake = self.handshake()
        data = b""
        try:
            async with asyncio.timeout(LOGIN_TIMEOUT):
                while not (handshake.ready or handshake.refused):
                    received = await reader.read(READ_SIZE)
                    if not received:
                        return "the PBX closed the connection during the login"
                    data += await _shake(handshake, writer, received)
        except TimeoutError:
            return "no login prompt from the PBX"
        if handshake.refused:
            return handshake.refused
        await self._report(True, f"reading call records from {self._where()}")
        while True:
            if data:
                self.backoff.reset()
                async with self._lock:
                    await self._consume(data)
            try:
                quiet = self.settings.idle_seconds
                received = await asyncio.wait_for(reader.read(READ_SIZE), quiet)
            except TimeoutError:  # quiet: what was held back for its pair goes now
                async with self._lock:
                    await self._handle(self.decoder.flush())
                data = b""
                continue
            if not received:
                return "the PBX closed the connection"
            data = await _shake(handshake, writer, received)
            if handshake.refused:
                return handshake.refused

    # -- records ---------------------------------------------------------------------

    async def _consume(self, data: bytes) -> None:
        decoded: list[Decoded] = []
        for line in self.splitter.feed(data):
            try:
                decoded += self.decoder.feed(line)
            except Exception as e:  # a parser bug must not stop the feed
                log.exception("SMDR %s: the parser failed on a line", self.name)
                decoded.append(Rejected(line, f"parser error: {e!r}"))
        await self._handle(decoded)

    async def _handle(self, decoded: list[Decoded]) -> None:
        calls: list[Call] = []
        for item in decoded:
            if isinstance(item, Call):
                calls.append(item)
            elif isinstance(item, Skipped):
                self._count("skipped")
            else:
                self._reject(item)
        if not calls:
            return
        self.last_record_at = utcnow().isoformat()
        fresh = [c for c in {c.id: c for c in calls}.values() if c.id not in self._recent]
        try:
            stored = await self.context.store.known([c.id for c in fresh]) if fresh else set()
        except Exception as e:  # the database is away: write them (upserts) all the same
            log.warning("SMDR %s: cannot ask which calls are stored: %s", self.name, e)
            stored = set()
        new = [c for c in fresh if c.id not in stored]
        self._count("duplicate", len(calls) - len(new))
        self._count("call", len(new))
        for call in calls:
            _remember(self._recent, call.id)
        self.context.store.save(new)

    def _reject(self, item: Rejected) -> None:
        if _remember(self._recent, f"rejected:{item.line}"):  # the PBX printed it again
            self._count("duplicate")
            return
        self._count("rejected")
        entry = {"at": utcnow().isoformat(), "reason": item.reason, "line": item.line}
        self.rejects.append(entry)
        log.warning(
            "SMDR %s: skipped a line it cannot read (%s): %.120r",
            self.name,
            item.reason,
            item.line,
            extra={"fields": {"pbx": self.name, "reason": item.reason}},
        )
        path = self.rejects_file
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(entry, ensure_ascii=False) + "\n")
            except OSError as e:
                log.error("SMDR %s: cannot keep a rejected line in %s: %s", self.name, path, e)

    @property
    def rejects_file(self) -> Path | None:
        data_dir = self.context.data_dir
        return None if data_dir is None else Path(data_dir) / "smdr" / f"{self.name}-rejected.jsonl"

    def rejected(self, limit: int = REJECTS_KEPT) -> list[dict[str, str]]:
        """The latest lines that could not be read, newest first."""
        return list(self.rejects)[::-1][:limit]

    def _count(self, result: str, n: int = 1) -> None:
        if n <= 0:
            return
        self.counts[result] += n
        if self._metric is not None:
            self._metric.labels(self.name, result).inc(n)

    # -- what the core asks ----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "type": self.settings.type,
            "live_events": self.live_events,
            "reports": "finished calls only (SMDR call records): no screen pops or commands",
            "transport": self.settings.transport,
            "records": {k: self.counts[k] for k in ("call", "duplicate", "skipped", "rejected")},
            "last_record_at": self.last_record_at,
        }

    def lines(self) -> Mapping[str, LineState]:
        return NO_LINES

    def live_call(self, call_id: str) -> Call | None:
        return None

    def calls_named_by(self, file_name: str) -> list[str]:
        return []

    @property
    def sends_faxes(self) -> bool:
        return False

    async def dial(self, extension: str, number: str) -> DialPlaced:
        raise self._unsupported("click-to-dial")

    async def transfer(self, call_id: str, extension: str, *, attended: bool = False) -> None:
        raise self._unsupported("transfers")

    async def hang_up(self, call_id: str) -> None:
        raise self._unsupported("hanging up")

    async def start_recording(self, call_id: str) -> None:
        raise self._unsupported("recording")

    async def stop_recording(self, call_id: str) -> None:
        raise self._unsupported("recording")

    async def send_fax(self, number: str, file: str, request_id: str) -> None:
        raise self._unsupported("faxes")

    def _unsupported(self, what: str) -> PbxUnsupported:
        return PbxUnsupported(
            f"PBX {self.name} reports finished calls only (SMDR): {what} needs CSTA or TAPI"
        )

    def _waiting(self) -> str:
        return f"waiting for {self.settings.host} to connect to port {self.listening_port}"

    def _where(self) -> str:
        s = self.settings
        if isinstance(s, SerialSmdrSettings) and s.transport == "serial":
            return s.serial_port
        return f"{s.host}:{s.port}"

    async def _report(self, up: bool, detail: str) -> None:
        self._up = up
        await self.context.links.report(self.name, up, detail)


def _remember(recent: OrderedDict[str, None], key: str) -> bool:
    """Note ``key`` among the latest seen; whether it was there already."""
    seen = key in recent
    recent[key] = None
    recent.move_to_end(key)
    while len(recent) > RECENT_IDS:
        recent.popitem(last=False)
    return seen


async def _shake(handshake: Handshake, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    """Pass bytes through the handshake, send what it answers; the record bytes."""
    reply, stream = handshake.receive(data)
    if reply:
        writer.write(reply)
        await writer.drain()
    return stream
