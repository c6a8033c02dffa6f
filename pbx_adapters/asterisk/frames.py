"""AMI framing, sans-I/O: bytes in, frames (dicts of str) out; actions to bytes.

AMI is line-oriented: ``Key: Value`` lines ended by CRLF, a frame ended by an empty line,
all UTF-8. The parser splits on the frame separator *before* decoding, so a TCP read that
ends inside a multi-byte character (a Cyrillic or Georgian caller name) or inside a frame
costs nothing: the bytes wait for the rest. (panoramisk's own protocol decodes every read
on its own and drops the halves of a split character.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Frame = dict[str, str]

BANNER_PREFIX = b"Asterisk Call Manager/"
SEPARATOR = b"\r\n\r\n"
MAX_FRAME_BYTES = 256 * 1024  # a frame this long is garbage, not AMI

# An action's field value must stay on its one line: CR or LF would start a new field
# (or a new action) on the AMI socket.
_UNSAFE_VALUE = re.compile(r"[\r\n\x00]")
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_()-]*$")


class UnsafeAction(ValueError):
    """An action field that would break out of its line on the AMI socket."""


@dataclass
class AmiParser:
    """Feed it bytes as they arrive; it returns the complete frames they finish.

    ``events``, when given, names the events worth parsing: any other event frame is
    dropped by its first line without being decoded (a busy PBX sends mostly VarSet,
    CEL and Newexten). ``needles`` narrows an event further to frames containing any of
    some bytes (only the VarSets of some variables, say). Responses and anything carrying
    an ActionID are always kept.
    """

    max_frame_bytes: int = MAX_FRAME_BYTES
    events: frozenset[str] | None = None
    needles: dict[str, tuple[bytes, ...]] = field(default_factory=dict)
    version: str | None = None
    errors: list[str] = field(default_factory=list)  # problems seen, for the caller to log
    _buffer: bytes = b""
    _skipping: bool = False  # dropping an oversized frame up to its end

    def __post_init__(self) -> None:
        # Compared as bytes, so a skipped frame is never decoded.
        self._wanted = None if self.events is None else {e.encode() for e in self.events}
        self._needles = {name.encode(): needle for name, needle in self.needles.items()}

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self._buffer + data if self._buffer else data
        if self.version is None and buffer:
            buffer = self._take_banner(buffer)
            if buffer is None:
                return []
        chunks = buffer.split(SEPARATOR)
        self._buffer = chunks.pop()
        if self._skipping and chunks:
            chunks.pop(0)  # the tail of the oversized frame
            self._skipping = False
        if len(self._buffer) > self.max_frame_bytes:
            self.errors.append(f"dropped a frame over {self.max_frame_bytes} bytes")
            self._buffer = b""
            self._skipping = True
        frames = []
        wanted, needles = self._wanted, self._needles
        for chunk in chunks:
            if wanted is not None and chunk.startswith(b"Event: "):
                end = chunk.find(b"\r\n")
                name = chunk[7:end] if end > 0 else chunk[7:]
                needle = needles.get(name)
                skip = name not in wanted or (
                    needle is not None and not any(n in chunk for n in needle)
                )
                if skip and b"\r\nActionID: " not in chunk:
                    continue
            frame = parse_frame(chunk)
            if frame:
                frames.append(frame)
            elif chunk.strip():
                self.errors.append(f"ignored a block with no 'Key: Value' line: {chunk[:80]!r}")
        return frames

    def _take_banner(self, buffer: bytes) -> bytes | None:
        """Strip the 'Asterisk Call Manager/x.y.z' greeting; None while it is incomplete."""
        if not BANNER_PREFIX.startswith(buffer[: len(BANNER_PREFIX)]):
            self.version = ""  # no greeting (a replay that starts mid-stream): go on
            return buffer
        line_end = buffer.find(b"\r\n")
        if line_end < 0:
            if len(buffer) > 200:
                self.version = ""
                return buffer
            self._buffer = buffer
            return None
        self.version = buffer[len(BANNER_PREFIX) : line_end].decode("utf-8", "replace").strip()
        return buffer[line_end + 2 :]


def parse_frame(chunk: bytes) -> Frame:
    """One frame's bytes (without the blank line) to a dict; later duplicate keys win.
    Bytes that are not UTF-8 become U+FFFD; NUL, which no database column takes, goes."""
    if b"\x00" in chunk:
        chunk = chunk.replace(b"\x00", b"")
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        # A PBX misconfigured to send another encoding: keep the frame, mark the damage.
        text = chunk.decode("utf-8", "replace")
    lines = text.split("\r\n")
    try:
        return dict(line.split(": ", 1) for line in lines)  # every line "Key: Value"
    except ValueError:
        pass
    frame: Frame = {}
    for line in lines:
        key, sep, value = line.partition(": ")
        if sep:
            frame[key] = value
        elif line.endswith(":"):
            frame[line[:-1]] = ""
    return frame


def encode_action(fields: dict[str, str]) -> bytes:
    """An action as bytes for the AMI socket. UnsafeAction if a name or value could break
    out of its line; nothing is encoded in that case."""
    lines = []
    for name, value in fields.items():
        if not _FIELD_NAME.match(name):
            raise UnsafeAction(f"field name {name!r} is not allowed")
        values = value if isinstance(value, list) else [value]
        for item in values:
            text = str(item)
            if _UNSAFE_VALUE.search(text):
                raise UnsafeAction(f"field {name} contains a line break or NUL")
            lines.append(f"{name}: {text}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
