"""An ESL simulator: a real TCP server that speaks FreeSWITCH's Event Socket and replays
recorded FreeSWITCH 1.10 event streams (``*.json.esl`` / ``*.plain.esl``) to its clients.

It answers what an ESL client sends the way FreeSWITCH 1.10 does (``auth``, ``event
json|plain``, ``filter``, ``api``, ``bgapi`` with its Job-UUID and BACKGROUND_JOB,
``exit`` and its disconnect notice; ``text/rude-rejection`` when told to refuse), keeps the
live legs the replayed events describe (so ``show channels`` and ``uuid_dump`` mid-call
list what a real switch would), encodes each event in the format each client asked for,
honours its subscription and filters, and cuts every write into random small pieces so
clients see messages and UTF-8 characters split across TCP reads. ``refresh`` gives a
recording fresh uuids (and numbers) so it can be replayed many times in one run.

Run a demo switch: ``python -m pbx_adapters.freeswitch.simulator --port 8021``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import logging
import random
import re
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from pbx_adapters.freeswitch.esl import EslParser, Event, decode_event

log = logging.getLogger(__name__)

# Copies of ../shared/fixtures/freeswitch/*.json.esl, shipped so the demo runs anywhere.
DEFAULT_TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts"
# How the lab switch that recorded them must be configured ([[pbx]] options).
LAB_PBX_OPTIONS = {"domain": "127.0.0.1", "context": "default"}
# Where the lab switch's rxfax wrote (the recordings name the files).
LAB_FAX = "/opt/lab-freeswitch/var/lib/freeswitch/fax"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# The lab's outside numbers as the recordings carry them (E.164, or dialled 8...).
LAB_NUMBER = re.compile(r"(?<![0-9])(?:\+7|8|7)(?:812555|495111|921555)[0-9]{4}(?![0-9])")
DISCONNECT = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
VERSION = "FreeSWITCH Version 1.10.12-release~64bit (-release 64bit)"


def load_transcript(path: str | Path) -> list[Event]:
    """The events of a recorded listener stream (gzipped or not), in order."""
    path = Path(path)
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    parser = EslParser()
    events = []
    for message in parser.feed(data):
        if message.content_type.startswith("text/event-"):
            events.append(decode_event(message))
    return events


def load_all(directory: str | Path = DEFAULT_TRANSCRIPTS) -> dict[str, list[Event]]:
    """Every ``<scenario>.json.esl[.gz]`` in a folder, by scenario."""
    found = {}
    for path in sorted(Path(directory).glob("*.json.esl*")):
        found[path.name.split(".")[0]] = load_transcript(path)
    if not found:
        raise FileNotFoundError(f"no *.json.esl recordings in {directory}")
    return found


def refresh(
    events: list[Event],
    *,
    number_map: dict[str, str] | None = None,
    start: float | None = None,
) -> list[Event]:
    """The same call with new leg uuids (the same new uuid for every mention of an old
    one), the outside numbers in ``number_map`` replaced, and its clock moved to
    ``start`` (epoch seconds; now when None)."""
    mapping: dict[str, str] = {}
    numbers = number_map or {}

    def new_uuid(match: re.Match[str]) -> str:
        old = match.group(0)
        if old not in mapping:
            mapping[old] = str(uuidlib.uuid4())
        return mapping[old]

    def number(match: re.Match[str]) -> str:
        return numbers.get(match.group(0), match.group(0))

    stamps = [int(e["Event-Date-Timestamp"]) for e in events if e.get("Event-Date-Timestamp")]
    shift = int((start if start is not None else time.time()) * 1e6) - min(stamps or [0])
    out = []
    for event in events:
        fresh = {}
        for key, value in event.items():
            if key in ("Core-UUID",):
                fresh[key] = value
                continue
            if isinstance(value, list):  # an array variable
                fresh[key] = [LAB_NUMBER.sub(number, UUID.sub(new_uuid, v)) for v in value]
                continue
            value = UUID.sub(new_uuid, value)
            if numbers:
                value = LAB_NUMBER.sub(number, value)
            if key in ("Event-Date-Timestamp", "Caller-Channel-Created-Time") and value.isdigit():
                value = str(int(value) + shift) if int(value) else value
            fresh[key] = value
        out.append(fresh)
    return out


def encode_event(event: Event, fmt: str) -> bytes:
    """One event message as FreeSWITCH writes it in ``fmt`` (json or plain)."""
    if fmt == "json":
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        kind = "text/event-json"
    else:
        inner = event.get("_body")
        lines = [f"{k}: {quote(_plain(v), safe='')}" for k, v in event.items() if k != "_body"]
        if inner is not None:
            lines = [line for line in lines if not line.startswith("Content-Length: ")]
            lines.append(f"Content-Length: {len(inner.encode())}")
        body = ("\n".join(lines) + "\n\n").encode() + (inner or "").encode()
        kind = "text/event-plain"
    return f"Content-Length: {len(body)}\nContent-Type: {kind}\n\n".encode() + body


def _plain(value: str | list[str]) -> str:
    """A value as plain events write it: an array variable as ``ARRAY::a|:b``."""
    return value if isinstance(value, str) else "ARRAY::" + "|:".join(value)


def _reply(text: str, **headers: str) -> bytes:
    extra = "".join(f"{k}: {v}\n" for k, v in headers.items())
    return f"Content-Type: command/reply\nReply-Text: {text}\n{extra}\n".encode()


def _api_response(text: str) -> bytes:
    body = text.encode()
    return f"Content-Type: api/response\nContent-Length: {len(body)}\n\n".encode() + body


class _Client:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.authenticated = False
        self.format: str | None = None  # set by "event json|plain"
        self.names: set[str] = set()  # subscribed event names and CUSTOM subclasses
        self.all = False
        self.filters: list[tuple[str, str]] = []
        self.lock = asyncio.Lock()

    def wants(self, event: Event) -> bool:
        if self.format is None:
            return False
        name = str(event.get("Event-Name", ""))  # str: a test may send junk on purpose
        if name == "BACKGROUND_JOB":
            pass  # a bgapi's result goes to every listener, as FreeSWITCH does
        elif (
            not self.all
            and name not in self.names
            and str(event.get("Event-Subclass")) not in self.names
        ):
            return False
        return not self.filters or any(event.get(k) == v for k, v in self.filters)


class EslSimulator:
    """A FreeSWITCH Event Socket on ``host:port`` (0: any free port)."""

    def __init__(
        self,
        password: str = "ClueCon",  # noqa: S107 - FreeSWITCH's own default, for a test server
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        chunked: bool = False,
        seed: int | None = None,
        heartbeat_interval: float | None = 20.0,
    ) -> None:
        self.password = password
        self.host = host
        self.port = port
        self.chunked = chunked
        self.heartbeat_interval = heartbeat_interval  # None: silent, like a dead link
        self.random = random.Random(seed)  # noqa: S311 - how writes are cut, not a secret
        self.reject = False  # answer with text/rude-rejection (an ACL that refuses us)
        self.clients: set[_Client] = set()
        self.channels: dict[str, Event] = {}  # live legs: the newest full event of each
        self.registrations: dict[str, str] = {"101": "127.0.0.1", "102": "127.0.0.1"}
        self.commands: list[str] = []  # every api/bgapi command received, for tests
        # What an ``originate`` of a phone plays (click-to-dial), given the phone's leg
        # uuid and the number; None: it fails with -ERR USER_NOT_REGISTERED.
        self.originate_call: list[Event] | None = None
        self.originate_delay = 0.05
        self.fax_answer = "fax"  # how a fax's far end answers: "fax", "busy", "voice"
        self.api_handlers: dict[str, Callable[[str], str]] = {}
        # Told the file name of each fax a replayed rxfax wrote (a demo puts one there).
        self.on_fax: Callable[[str], object] | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._spawn(self._heartbeats())

    async def _heartbeats(self) -> None:
        """HEARTBEAT to every listener, as FreeSWITCH sends one every 20 s."""
        while True:
            await asyncio.sleep(self.heartbeat_interval or 0.2)
            if self.heartbeat_interval:
                stamp = str(int(time.time() * 1e6))
                await self.broadcast({"Event-Name": "HEARTBEAT", "Event-Date-Timestamp": stamp})

    async def stop(self) -> None:
        self.drop_clients()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    def drop_clients(self) -> None:
        """Cut every connection, as a restart or a network fault would."""
        for client in list(self.clients):
            client.writer.transport.abort()
        self.clients.clear()
        self._connected.clear()

    async def wait_for_client(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    # -- replaying -------------------------------------------------------------------

    async def play(self, events: list[Event], *, delay: float = 0.0) -> None:
        """Send events to every subscribed client, keeping the live legs up to date."""
        for event in events:
            self._track(event)
            fax = event.get("variable_fax_filename")
            if fax and self.on_fax and event.get("Event-Subclass") == "spandsp::rxfaxresult":
                self.on_fax(fax)
            await self.broadcast(event)
            if delay:
                await asyncio.sleep(delay)

    def _track(self, event: Event) -> None:
        uuid = event.get("Unique-ID", "")
        name = event.get("Event-Name", "")
        if not uuid or not name.startswith("CHANNEL_"):
            return
        if name == "CHANNEL_UUID":
            old = self.channels.pop(event.get("Old-Unique-ID", ""), None)
            if old is not None:
                self.channels[uuid] = {**old, "Unique-ID": uuid}
        elif name in ("CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"):
            self.channels.pop(uuid, None)
        elif name == "CHANNEL_CREATE" or uuid in self.channels:
            known = self.channels.get(uuid, {})
            self.channels[uuid] = (
                {**known, **event}
                if "variable_uuid" in event
                else {
                    **known,
                    **{k: v for k, v in event.items() if not k.startswith("variable_")},
                }
            )

    async def broadcast(self, event: Event) -> None:
        for client in list(self.clients):
            if client.wants(event):
                await self._send(client, encode_event(event, client.format or "json"))

    async def _send(self, client: _Client, data: bytes) -> None:
        async with client.lock:
            try:
                if not self.chunked:
                    client.writer.write(data)
                else:
                    at = 0
                    while at < len(data):
                        size = self.random.choice((1, 2, 3, 7, 64, 333, 1500, 4096))
                        client.writer.write(data[at : at + size])
                        at += size
                        await client.writer.drain()
                await client.writer.drain()
            except (ConnectionError, RuntimeError):
                self._forget(client)

    def _forget(self, client: _Client) -> None:
        self.clients.discard(client)
        if not self.clients:
            self._connected.clear()

    # -- the conversation ------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(writer)
        if self.reject:
            body = b"Access Denied, go away.\n"
            writer.write(
                b"Content-Type: text/rude-rejection\nContent-Length: %d\n\n" % len(body) + body
            )
            await writer.drain()
            writer.close()
            return
        self.clients.add(client)
        try:
            await self._send(client, b"Content-Type: auth/request\n\n")
            buffer = b""
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                buffer += data
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    lines = block.decode("utf-8", "replace").strip("\n").split("\n")
                    if lines == [""]:
                        continue
                    if not await self._command(client, lines[0], lines[1:]):
                        return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._forget(client)
            writer.close()

    async def _command(self, client: _Client, line: str, header_lines: list[str]) -> bool:
        """Answer one command; False to close the connection."""
        verb, _, rest = line.partition(" ")
        headers = dict(h.split(": ", 1) for h in header_lines if ": " in h)
        if not client.authenticated:
            if verb != "auth":
                await self._send(client, _reply("-ERR command not found"))
                return True
            if rest != self.password:
                await self._send(client, _reply("-ERR invalid"))
                return False
            client.authenticated = True
            await self._send(client, _reply("+OK accepted"))
            self._connected.set()
            return True
        if verb == "event":
            fmt, _, names = rest.partition(" ")
            if fmt not in ("json", "plain"):
                await self._send(client, _reply("-ERR invalid format"))
                return True
            client.format = fmt
            words = names.split()
            client.all = "ALL" in words
            client.names.update(w for w in words if w != "CUSTOM")
            await self._send(client, _reply(f"+OK event listener enabled {fmt}"))
        elif verb == "filter":
            header, _, value = rest.partition(" ")
            client.filters.append((header, value))
            await self._send(client, _reply(f"+OK filter added. [{header}]=[{value}]"))
        elif verb == "api":
            self.commands.append(rest)
            await self._send(client, _api_response(self._api(rest)))
        elif verb == "bgapi":
            self.commands.append(rest)
            job = headers.get("Job-UUID") or str(uuidlib.uuid4())
            await self._send(client, _reply(f"+OK Job-UUID: {job}", **{"Job-UUID": job}))
            self._spawn(self._background_job(rest, job))
        elif verb == "exit":
            await self._send(client, _reply("+OK bye"))
            await self._send(
                client,
                b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n" % len(DISCONNECT)
                + DISCONNECT,
            )
            return False
        else:
            await self._send(client, _reply("-ERR command not found"))
        return True

    def _api(self, command: str) -> str:
        verb, _, args = command.partition(" ")
        if verb in self.api_handlers:
            return self.api_handlers[verb](args)
        if verb == "version":
            return VERSION + "\n"
        if command == "show channels as json":
            rows = [_channel_row(e) for e in self.channels.values()]
            return json.dumps({"row_count": len(rows), "rows": rows}, ensure_ascii=False)
        if command == "show registrations as json":
            rows = [{"reg_user": u, "realm": r} for u, r in self.registrations.items()]
            return json.dumps({"row_count": len(rows), "rows": rows})
        if verb == "uuid_dump":
            uuid = args.split()[0] if args else ""
            event = self.channels.get(uuid)
            if event is None:
                return "-ERR No such channel!\n"
            return json.dumps(event, ensure_ascii=False)
        if verb in ("uuid_transfer", "uuid_kill", "uuid_record"):
            uuid = args.split()[0] if args else ""
            return "+OK\n" if uuid in self.channels else "-ERR No such channel!\n"
        if verb == "status":
            return "UP 0 years, 0 days\nFreeSWITCH (Version 1.10.12) is ready\n"
        return f"-ERR {verb} Command not found!\n"

    def _spawn(self, work: object) -> None:
        task = asyncio.get_running_loop().create_task(work)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A background job that failed says so at once (a client would only time out)."""
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("ESL simulator: a background job failed", exc_info=task.exception())

    async def _background_job(self, command: str, job: str) -> None:
        """``originate`` of a phone plays ``originate_call`` with the phone's leg as the
        origination_uuid asked for, then reports +OK; anything else is answered at once."""
        result = self._api(command)
        found = re.match(r"originate \{([^}]*)\}user/(\d+)@\S+ (\S+)", command)
        if command.startswith("originate"):
            result = "-ERR USER_NOT_REGISTERED\n"
        fax = re.match(r"originate \{([^}]*)\}\S+ &txfax\((\S+)\)$", command)
        if fax:
            await self._send_fax(job, command, fax.group(1))
            return
        if found and self.originate_call is not None:
            variables = dict(v.split("=", 1) for v in found.group(1).split(",") if "=" in v)
            leg = variables.get("origination_uuid", str(uuidlib.uuid4()))
            call = _for_originate(self.originate_call, leg, found.group(3))
            answered = next(
                (i for i, e in enumerate(call) if e.get("Event-Name") == "CHANNEL_ANSWER"), 0
            )
            await asyncio.sleep(self.originate_delay)
            await self.play(call[: answered + 1])
            await self.broadcast(_job_event(job, command, f"+OK {leg}\n"))
            await self.play(call[answered + 1 :])
            return
        await self.broadcast(_job_event(job, command, result))

    async def _send_fax(self, job: str, command: str, variables: str) -> None:
        """A fax originate: ``fax_answer`` says how the far end takes it: "fax" (a page
        sent), "busy" (-ERR USER_BUSY) or "voice" (answered, no fax)."""
        leg = dict(v.split("=", 1) for v in variables.split(",") if "=" in v).get(
            "origination_uuid", str(uuidlib.uuid4())
        )
        await asyncio.sleep(self.originate_delay)
        if self.fax_answer == "busy":
            await self.broadcast(_job_event(job, command, "-ERR USER_BUSY\n"))
            return
        await self.broadcast(_job_event(job, command, f"+OK {leg}\n"))
        pages = 1 if self.fax_answer == "fax" else 0
        await self.play(_fax_events(leg, pages, "NORMAL_CLEARING"))


def _fax_events(leg: str, pages: int, cause: str) -> list[Event]:
    """What a txfax leg reports: its result, then its end."""
    stamp = str(int(time.time() * 1e6))
    ok = "1" if pages else "0"
    result: Event = {
        "Event-Name": "CUSTOM",
        "Event-Subclass": "spandsp::txfaxresult",
        "Event-Date-Timestamp": stamp,
        "Unique-ID": leg,
        "variable_fax_success": ok,
        "variable_fax_result_text": "OK" if pages else "Far end is not a fax machine",
        "variable_fax_document_transferred_pages": str(pages),
        "variable_fax_remote_station_id": "+78125550113" if pages else "",
    }
    end: Event = {
        "Event-Name": "CHANNEL_HANGUP_COMPLETE",
        "Event-Date-Timestamp": stamp,
        "Unique-ID": leg,
        "Hangup-Cause": cause,
    }
    return [result, end]


def _for_originate(events: list[Event], leg: str, number: str) -> list[Event]:
    """The click-to-dial recording as a call to ``number`` whose phone leg is ``leg``."""
    call = refresh(events, number_map=dict.fromkeys(outside_numbers(events), number))
    old = next(e["Unique-ID"] for e in call if e.get("Event-Name") == "CHANNEL_CREATE")
    return [{k: _swap(v, old, leg) for k, v in e.items()} for e in call]


def _swap(value: str | list[str], old: str, new: str) -> str | list[str]:
    if isinstance(value, list):  # an array variable
        return [item.replace(old, new) for item in value]
    return value.replace(old, new)


def _job_event(job: str, command: str, body: str) -> Event:
    verb, _, args = command.partition(" ")
    return {
        "Event-Name": "BACKGROUND_JOB",
        "Event-Date-Timestamp": str(int(time.time() * 1e6)),
        "Job-UUID": job,
        "Job-Command": verb,
        "Job-Command-Arg": args,
        "Content-Length": str(len(body.encode())),
        "_body": body,
    }


def _channel_row(event: Event) -> dict[str, str]:
    """A ``show channels as json`` row, from a leg's event (the fields a client reads)."""
    return {
        "uuid": event.get("Unique-ID", ""),
        "direction": event.get("Call-Direction", ""),
        "created_epoch": str(int(event.get("Caller-Channel-Created-Time", "0") or 0) // 10**6),
        "name": event.get("Channel-Name", ""),
        "state": event.get("Channel-State", ""),
        "cid_name": event.get("Caller-Caller-ID-Name", ""),
        "cid_num": event.get("Caller-Caller-ID-Number", ""),
        "dest": event.get("Caller-Destination-Number", ""),
        "context": event.get("Caller-Context", ""),
        "callstate": event.get("Channel-Call-State", ""),
        "call_uuid": event.get("Channel-Call-UUID", ""),
        "presence_id": event.get("variable_presence_id", ""),
    }


def outside_numbers(events: list[Event]) -> list[str]:
    """The lab's outside numbers a recording mentions, in order of appearance."""
    found: dict[str, None] = {}
    for event in events:
        for value in event.values():
            for number in LAB_NUMBER.findall(_plain(value)):
                found[number] = None
    return list(found)


def _paced(events: list[Event], max_gap: float = 10.0) -> list[tuple[float, list[Event]]]:
    """The events in runs, each after the pause the recording had before it."""
    runs: list[tuple[float, list[Event]]] = []
    last: float | None = None
    for event in events:
        stamp = event.get("Event-Date-Timestamp", "")
        at = int(stamp) / 1e6 if stamp.isdigit() else last
        pause = 0.0 if last is None or at is None else min(max(at - last, 0.0), max_gap)
        if pause > 0.01 or not runs:
            runs.append((pause, []))
        runs[-1][1].append(event)
        last = at if at is not None else last
    return runs


async def replay_forever(
    simulator: EslSimulator,
    calls: dict[str, list[Event]],
    *,
    interval: float,
    number_pool: list[str],
) -> None:
    """Replay the recordings round and round, each time with fresh uuids and outside
    numbers taken in turn from ``number_pool``, paced like the recorded calls."""
    turn = 0
    while True:
        for name, events in calls.items():
            numbers = {}
            for number in outside_numbers(events):
                if number_pool:
                    numbers[number] = number_pool[turn % len(number_pool)]
                    turn += 1
            log.info("demo FreeSWITCH: %s %s", name, numbers)
            for pause, part in _paced(refresh(events, number_map=numbers)):
                await asyncio.sleep(pause)
                await simulator.play(part)
            await asyncio.sleep(interval)


async def run_demo_switch(
    host: str, port: int, password: str, *, interval: float, number_pool: list[str]
) -> None:
    calls = load_all()
    simulator = EslSimulator(password, host, port)
    simulator.originate_call = calls["click_to_dial"]
    await simulator.start()
    log.info("demo FreeSWITCH: ESL on %s:%s, %d recordings", host, simulator.port, len(calls))
    try:
        await replay_forever(simulator, calls, interval=interval, number_pool=number_pool)
    finally:
        await simulator.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A demo FreeSWITCH replaying ESL recordings")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8021)
    parser.add_argument("--password", default="ClueCon")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between calls")
    parser.add_argument(
        "--numbers",
        default="+78125550111,+78125550122,+74957770133,88125550144",
        help="comma-separated outside numbers to use in turn",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    pool = [n.strip() for n in args.numbers.split(",") if n.strip()]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_demo_switch(
                args.host, args.port, args.password, interval=args.interval, number_pool=pool
            )
        )


if __name__ == "__main__":
    main()
