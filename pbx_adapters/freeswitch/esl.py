"""The FreeSWITCH Event Socket (ESL), sans-I/O: bytes in, messages and events out;
commands to bytes.

On the wire a message is a block of ``Key: value`` lines ended by an empty line (LF only),
followed by exactly ``Content-Length`` bytes of body when that header is there. Headers
come in any order (events put Content-Length first, the disconnect notice last). An
event's body is the event: ``text/event-json`` one JSON object of strings (its own body
under ``_body``), ``text/event-plain`` more ``Key: value`` lines with URL-encoded values
and, for events that carry a body (BACKGROUND_JOB), a second Content-Length inside.

``EslParser`` frames and decodes; ``EslClient`` is the client's side of the conversation
(auth, subscription, api/bgapi and their answers), so the asyncio shell only moves bytes.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

import orjson

Event = dict[str, str]

HEADER_END = b"\n\n"
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 4 * 1024 * 1024  # a body this long is garbage, not ESL

# A command is one line: CR, LF or NUL in it would start a second command on the socket.
_UNSAFE = re.compile(r"[\r\n\x00]")
# Where an event names itself, read without decoding it: both formats put it first.
_PLAIN_NAME = re.compile(rb"Event-Name: ([A-Z_]+)\n")  # matched at the body's start
_JSON_NAME = re.compile(rb'\{"Event-Name":"([A-Z_]+)"')
# A CUSTOM event puts its subclass first (plain: URL-encoded), then its name.
_PLAIN_SUBCLASS = re.compile(rb"Event-Subclass: ([^\n]+)\nEvent-Name: CUSTOM\n")
_JSON_SUBCLASS = re.compile(rb'\{"Event-Subclass":"([^"\\]+)","Event-Name":"CUSTOM"')


class UnsafeCommand(ValueError):
    """A command that would break out of its line on the Event Socket."""


class EslProtocolError(ValueError):
    """Bytes that are not ESL: the connection is of no use any more."""


@dataclass(frozen=True, slots=True)
class Message:
    headers: dict[str, str]
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


def _header_lines(block: str, decode_values: bool = False) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split("\n"):
        key, sep, value = line.partition(": ")
        if sep:
            headers[key] = unquote(value) if decode_values else value
    return headers


class EslParser:
    """Feed it bytes as they arrive; it returns the complete messages they finish.

    ``events``, when given, names the events worth decoding (and the CUSTOM subclasses):
    any other event message is dropped by its name or subclass, read from its first bytes
    (``ALL`` is ~65% noise). An event whose first bytes do not say is decoded.
    """

    def __init__(self, events: frozenset[str] | set[str] | None = None) -> None:
        self.events = events
        self._buffer = bytearray()
        self._pending: dict[str, str] | None = None  # headers of a message awaiting its body
        self._need = 0

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages: list[Message] = []
        buffer = self._buffer
        start = 0
        while True:
            if self._pending is None:
                end = buffer.find(HEADER_END, start)
                if end < 0:
                    if len(buffer) - start > MAX_HEADER_BYTES:
                        raise EslProtocolError(f"a header block over {MAX_HEADER_BYTES} bytes")
                    break
                block = bytes(buffer[start:end]).decode("utf-8", "replace").lstrip("\n")
                start = end + 2
                headers = _header_lines(block)
                if not headers:
                    continue  # stray blank lines between messages
                length = headers.get("Content-Length", "0")
                if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                    raise EslProtocolError(f"bad Content-Length {length[:20]!r}")
                self._pending, self._need = headers, int(length)
            if len(buffer) - start < self._need:
                break
            headers, self._pending = self._pending, None
            if self._wanted(headers, buffer, start):
                messages.append(Message(headers, bytes(buffer[start : start + self._need])))
            start += self._need  # noise is skipped where it lies: never copied or decoded
        del buffer[:start]
        return messages

    def _wanted(self, headers: dict[str, str], buffer: bytearray, at: int) -> bool:
        kind = headers.get("Content-Type", "")
        if self._events is None or not kind.startswith("text/event-"):
            return True
        json = kind == "text/event-json"
        found = (_JSON_NAME if json else _PLAIN_NAME).match(buffer, at)
        if found is not None:
            name = found.group(1)
            return name == b"CUSTOM" or name in self._wanted_names
        found = (_JSON_SUBCLASS if json else _PLAIN_SUBCLASS).match(buffer, at)
        if found is not None:
            return found.group(1) in (self._wanted_names if json else self._wanted_quoted)
        return True  # decoded to find out

    @property
    def events(self) -> frozenset[str] | None:
        return self._events

    @events.setter
    def events(self, names: frozenset[str] | set[str] | None) -> None:
        self._events = None if names is None else frozenset(names)
        self._wanted_names = frozenset(n.encode() for n in self._events or ())
        self._wanted_quoted = frozenset(quote(n, safe="").encode() for n in self._events or ())


def decode_event(message: Message) -> Event:
    """An event message's fields (values decoded; a body under ``_body``). ValueError
    when it is not an event or does not decode."""
    kind = message.content_type
    if kind == "text/event-json":
        data = orjson.loads(message.body)  # a third of json.loads' time on 4 KB events
        if not isinstance(data, dict):
            raise ValueError("an event-json body that is not an object")
        # Values are strings, but array variables are lists: not converted here (that
        # would cost a pass over every field); readers of such a field take either.
        return data
    if kind == "text/event-plain":
        text = message.body.decode("utf-8", "replace")
        head, _, rest = text.partition("\n\n")
        event = _header_lines(head, decode_values=True)
        length = event.get("Content-Length")
        if length is not None and length.isdigit():
            raw = message.body[len(head.encode()) + 2 :]
            event["_body"] = raw[: int(length)].decode("utf-8", "replace")
        elif rest:
            event["_body"] = rest
        return event
    raise ValueError(f"not an event: {kind!r}")


def encode_command(command: str, headers: dict[str, str] | None = None) -> bytes:
    """One command (``api status``, ``event json ...``) and any headers, as bytes;
    UnsafeCommand before anything is sent if a part would break out of its line."""
    lines = [command, *(f"{k}: {v}" for k, v in (headers or {}).items())]
    for line in lines:
        if _UNSAFE.search(line):
            raise UnsafeCommand(f"a line break or NUL in {line[:40]!r}")
    return ("\n".join(lines) + "\n\n").encode()


# -- the client's side of the conversation ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Authenticated:
    pass


@dataclass(frozen=True, slots=True)
class Refused:
    """The PBX will not talk: a wrong password, or ``text/rude-rejection`` (its ACL)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to one of our commands: ``command/reply`` or ``api/response``."""

    request: int
    ok: bool
    text: str  # Reply-Text, or an api's body


@dataclass(frozen=True, slots=True)
class JobDone:
    """A ``bgapi`` command's result (BACKGROUND_JOB)."""

    job_uuid: str
    ok: bool
    text: str


@dataclass(frozen=True, slots=True)
class EventReceived:
    event: Event


@dataclass(frozen=True, slots=True)
class Disconnected:
    """``text/disconnect-notice``: the PBX is closing the connection."""

    reason: str


Received = Authenticated | Refused | Reply | JobDone | EventReceived | Disconnected


@dataclass
class EslClient:
    """An inbound ESL client's conversation, sans-I/O.

    ``receive`` takes bytes from the PBX and returns what they mean; ``outgoing`` holds
    what to send. On ``auth/request`` it sends the password, then the ``subscribe``
    commands (``event json ...``, ``filter ...``), and says ``Authenticated`` once all
    are taken. Commands are answered in order, so each answer is matched
    to the oldest unanswered command; a ``bgapi`` carries our own Job-UUID, so its
    BACKGROUND_JOB is known even if it arrives before the reply.
    """

    password: str
    subscribe: list[str]
    parser: EslParser = field(default_factory=EslParser)
    outgoing: bytearray = field(default_factory=bytearray)
    authenticated: bool = False
    problems: list[str] = field(default_factory=list)  # events that did not decode
    _awaiting: deque[int] = field(default_factory=deque)  # requests, oldest first
    _next_request: int = 1
    _auth_request: int = 0
    _subscribing: set[int] = field(default_factory=set)
    _jobs: set[str] = field(default_factory=set)

    def send(self, command: str, headers: dict[str, str] | None = None) -> int:
        """Queue a command; returns the request number its ``Reply`` will carry."""
        self.outgoing += encode_command(command, headers)
        request = self._next_request
        self._next_request += 1
        self._awaiting.append(request)
        return request

    def api(self, command: str) -> int:
        return self.send(f"api {command}")

    def bgapi(self, command: str, job_uuid: str) -> int:
        self._jobs.add(job_uuid)
        return self.send(f"bgapi {command}", {"Job-UUID": job_uuid})

    def data_to_send(self) -> bytes:
        data = bytes(self.outgoing)
        self.outgoing.clear()
        return data

    def receive(self, data: bytes) -> list[Received]:
        out: list[Received] = []
        for message in self.parser.feed(data):
            self._handle(message, out)
        return out

    def _handle(self, message: Message, out: list[Received]) -> None:
        kind = message.content_type
        if kind == "auth/request":
            self._auth_request = self.send(f"auth {self.password}")
        elif kind in ("command/reply", "api/response"):
            self._reply(message, out)
        elif kind.startswith("text/event-"):
            try:
                event = decode_event(message)
            except ValueError as e:
                self.problems.append(f"an event that does not decode: {e}")
                return
            if event.get("Event-Name") == "BACKGROUND_JOB" and event.get("Job-UUID") in self._jobs:
                self._jobs.discard(event["Job-UUID"])
                text = event.get("_body", "").strip()
                out.append(JobDone(event["Job-UUID"], text.startswith("+OK"), text))
            out.append(EventReceived(event))
        elif kind == "text/disconnect-notice":
            out.append(Disconnected(message.body.decode("utf-8", "replace").strip()))
        elif kind == "text/rude-rejection":
            out.append(Refused(message.body.decode("utf-8", "replace").strip() or "rejected"))

    def _reply(self, message: Message, out: list[Received]) -> None:
        if not self._awaiting:
            self.problems.append("an answer to no command")
            return
        request = self._awaiting.popleft()
        if message.content_type == "api/response":
            text = message.body.decode("utf-8", "replace").strip()
        else:
            text = message.headers.get("Reply-Text", "")
        ok = not text.startswith("-")
        if request == self._auth_request:
            if ok:
                self._subscribing = {self.send(command) for command in self.subscribe}
                if not self._subscribing:  # a connection for commands only
                    self.authenticated = True
                    out.append(Authenticated())
            else:
                out.append(Refused(text or "authentication failed"))
            return
        if request in self._subscribing:
            self._subscribing.discard(request)
            if not ok:
                out.append(Refused(f"the subscription was refused: {text}"))
            elif not self._subscribing:
                self.authenticated = True
                out.append(Authenticated())
            return
        out.append(Reply(request, ok, text))
