"""The GSM 7-bit default alphabet (3GPP TS 23.038 6.2.1) and septet packing, sans-I/O.

Text is handled as septets: one byte per septet (0-127), two for a character of the
extension table (the escape 0x1B, then its code). Packing puts septet *i* at bits
7i..7i+6 of the user data read as one little-endian number, after ``fill_bits`` zero
bits: the fill that makes text after a user data header start on a septet boundary.
"""

from __future__ import annotations

from collections.abc import Iterable

ESCAPE = 0x1B

# Code 0x1B is the escape, never a character of its own.
DEFAULT = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
EXTENSION = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

_ENCODE = {char: bytes([code]) for code, char in enumerate(DEFAULT) if code != ESCAPE}
_ENCODE |= {char: bytes([ESCAPE, code]) for code, char in EXTENSION.items()}


def to_septets(text: str) -> list[bytes] | None:
    """Each character's septets (one, or two for the extension table); None when a
    character is not in the alphabet."""
    if not all(char in _ENCODE for char in text):
        return None
    return [_ENCODE[char] for char in text]


def decode(septets: Iterable[int]) -> str:
    """Septets to text. An escape to an undefined extension code shows the default
    table's character (23.038 6.2.1.1); a second escape, or one at the end, a space."""
    chars: list[str] = []
    escaped = False
    for septet in septets:
        if escaped:
            chars.append(" " if septet == ESCAPE else EXTENSION.get(septet, DEFAULT[septet]))
            escaped = False
        elif septet == ESCAPE:
            escaped = True
        else:
            chars.append(DEFAULT[septet])
    if escaped:
        chars.append(" ")
    return "".join(chars)


def pack(septets: bytes, fill_bits: int = 0) -> bytes:
    bits = 0
    for i, septet in enumerate(septets):
        bits |= septet << (fill_bits + 7 * i)
    return bits.to_bytes((fill_bits + 7 * len(septets) + 7) // 8, "little")


def unpack(data: bytes, count: int) -> bytes:
    """The first ``count`` septets; the caller checks they fit."""
    bits = int.from_bytes(data, "little")
    return bytes((bits >> (7 * i)) & 0x7F for i in range(count))
