"""Record streams as lines (sans-I/O): bytes in, complete text lines out.

A PBX prints its call records like a line printer: CR, LF or CR LF end a line, blank
lines and page breaks come between them, and a connection or a cable can cut a record
anywhere. A partial line waits for the rest; a line that never ends (no terminator in
``max_line`` bytes) is handed on as it is, to be rejected by the parser, never kept
growing.
"""

from __future__ import annotations

import re

LINE_END = re.compile(rb"[\r\n\f]+")


class LineSplitter:
    def __init__(self, encoding: str = "utf-8", max_line: int = 4096) -> None:
        self.encoding = encoding
        self.max_line = max_line
        self._partial = b""

    def feed(self, data: bytes) -> list[str]:
        """The lines ``data`` completes (decoded; undecodable bytes replaced)."""
        pieces = LINE_END.split(self._partial + data)
        self._partial = pieces.pop()
        if len(self._partial) > self.max_line:
            pieces.append(self._partial)
            self._partial = b""
        return [self._decode(p) for p in pieces if p.strip()]

    def reset(self) -> bytes:
        """A new connection: what was left of a cut record is dropped (and returned)."""
        partial, self._partial = self._partial, b""
        return partial

    def _decode(self, raw: bytes) -> str:
        text = raw.decode(self.encoding, errors="replace")
        # Printer controls (NUL padding, XON/XOFF, a stray ESC) are not record text.
        return "".join(ch for ch in text if ch >= " " or ch == "\t").strip()
