"""SMS PDUs (3GPP TS 23.040, 23.038) for a modem in PDU mode (AT+CMGF=0), sans-I/O.

``encode_submit`` turns a text into the SMS-SUBMIT PDUs for AT+CMGS, one per part of a
concatenated message; ``decode`` reads what AT+CMGR, AT+CMGL and +CDS give (SMS-DELIVER,
SMS-STATUS-REPORT, a stored SMS-SUBMIT); ``Reassembler`` joins the parts of long
messages. No I/O and no clock: the caller passes the time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal, NamedTuple

from gsm_modem import gsm7

Encoding = Literal["gsm7", "ucs2", "8bit"]

# A concatenated message's 6-octet header (IE 0x00) costs 7 septets or 3 UCS-2 code
# units of each part: 160 -> 153 septets, 140 -> 134 octets (70 -> 67 code units).
_SINGLE_GSM7, _PART_GSM7 = 160, 153
_SINGLE_UCS2, _PART_UCS2 = 140, 134
_MAX_PARTS = 255
_MAX_VALIDITY_MINUTES = 63 * 7 * 24 * 60  # TP-VP 255: 63 weeks

_E164 = re.compile(r"\+[1-9][0-9]{0,14}")
_NATIONAL = re.compile(r"[0-9]{1,20}")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")
_BCD = "0123456789*#abc"  # semi-octet values; 0xF only pads an odd count
_ALPHANUMERIC, _INTERNATIONAL = 5, 1  # type of number, bits 6-4 of the address type

_REASONS = {
    0x20: "congestion",
    0x21: "recipient busy",
    0x22: "no response from the recipient",
    0x23: "service rejected",
    0x24: "quality of service not available",
    0x25: "error in the recipient's phone",
    0x40: "remote procedure error",
    0x41: "incompatible destination",
    0x42: "connection rejected by the recipient",
    0x43: "not obtainable",
    0x44: "quality of service not available",
    0x45: "no interworking available",
    0x46: "validity period expired",
    0x47: "deleted by the sender",
    0x48: "deleted by the service centre",
    0x49: "message does not exist",
}


class PduError(ValueError):
    """A PDU that cannot be decoded, or a message that cannot be encoded."""


@dataclass(frozen=True)
class SubmitPart:
    hex: str  # what follows AT+CMGS=<tpdu_length>, the SMSC part first
    tpdu_length: int  # octets after the SMSC part
    part: int  # 1..parts
    parts: int


@dataclass(frozen=True)
class Concat:
    """A part's place in a concatenated message (UDH element 0x00 or 0x08)."""

    reference: int
    total: int
    seq: int  # 1..total


@dataclass(frozen=True, kw_only=True)
class _Sms:
    smsc: str | None
    encoding: Encoding
    text: str | None  # None for 8-bit data
    user_data: bytes  # after the header: septets (one a byte) for gsm7, else octets
    message_class: int | None  # 0 flash, 1 phone, 2 SIM, 3 terminal equipment
    concat: Concat | None


@dataclass(frozen=True, kw_only=True)
class Deliver(_Sms):
    sender: str  # "+<E.164>", national digits, or an alphanumeric name
    timestamp: datetime | None  # the service centre's; None when the PDU's is invalid


@dataclass(frozen=True, kw_only=True)
class Submit(_Sms):
    recipient: str
    reference: int  # TP-MR
    status_report: bool
    validity: timedelta | datetime | None  # None when absent or in the enhanced format


@dataclass(frozen=True, kw_only=True)
class StatusReport:
    smsc: str | None
    reference: int  # the TP-MR of the reported SMS-SUBMIT (AT+CMGS answers it)
    recipient: str
    timestamp: datetime | None  # when the service centre took the message
    discharge_time: datetime | None  # when it was delivered, or the last attempt failed
    status: int  # TP-ST

    @property
    def delivered(self) -> bool:
        return self.status < 0x20

    @property
    def final(self) -> bool:
        """False while the service centre is still trying (0x20-0x3F)."""
        return not 0x20 <= self.status < 0x40

    @property
    def reason(self) -> str | None:
        if self.delivered:
            return None
        # 0x60-0x6F: the temporary errors of 0x20-0x2F, given up on
        code = self.status - 0x40 if 0x60 <= self.status < 0x80 else self.status
        return _REASONS.get(code, f"status 0x{self.status:02X}")


@dataclass(frozen=True)
class CompleteMessage:
    address: str  # the sender (a stored SMS-SUBMIT's recipient)
    text: str | None  # None for 8-bit data
    parts: tuple[Deliver | Submit, ...]  # the parts received, in order
    missing: tuple[int, ...]  # part numbers never received (given up by ``expire``)

    @property
    def complete(self) -> bool:
        return not self.missing


# --- encoding ----------------------------------------------------------------------


def sms_parts_needed(text: str) -> tuple[Encoding, int]:
    encoding, chunks = _split(text)
    return encoding, len(chunks)


def encode_submit(
    to: str,
    text: str,
    *,
    reference: int,
    status_report: bool = False,
    smsc: str | None = None,
    validity_minutes: int | None = None,
) -> list[SubmitPart]:
    """The SMS-SUBMIT PDUs of ``text``; ``reference`` (mod 256) ties the parts together."""
    digits, address_type = _parse_number(to, "recipient")
    encoding, chunks = _split(text)
    if len(chunks) > _MAX_PARTS:
        raise PduError(f"the text needs {len(chunks)} parts, at most {_MAX_PARTS}")
    concatenated = len(chunks) > 1
    first = 0x01 | 0x40 * concatenated | 0x20 * status_report  # SMS-SUBMIT, UDHI, SRR
    validity = b""
    if validity_minutes is not None:
        first |= 0x10  # TP-VPF: relative
        validity = bytes([_validity_code(validity_minutes)])
    # TP-MR 0: the modem assigns it. TP-PID 0, TP-DCS 0x00 (GSM 7-bit) or 0x08 (UCS-2).
    head = bytes([first, 0, len(digits), address_type, *_pack_bcd(digits), 0])
    head += bytes([0x00 if encoding == "gsm7" else 0x08]) + validity
    smsc_part = _encode_smsc(smsc)
    parts = []
    for seq, chunk in enumerate(chunks, 1):
        udh = bytes([5, 0x00, 3, reference % 256, len(chunks), seq]) if concatenated else b""
        if encoding == "gsm7":
            skip = (len(udh) * 8 + 6) // 7  # the header's septets, fill bits included
            user_data = udh + gsm7.pack(chunk, fill_bits=skip * 7 - len(udh) * 8)
            length = skip + len(chunk)
        else:
            user_data = udh + chunk
            length = len(user_data)
        tpdu = head + bytes([length]) + user_data
        parts.append(SubmitPart((smsc_part + tpdu).hex().upper(), len(tpdu), seq, len(chunks)))
    return parts


def encode_deliver(sender: str, text: str, *, reference: int, timestamp: datetime) -> list[str]:
    """The SMS-DELIVER PDUs (SMSC part first) that a phone's ``text`` reaches a modem as:
    what the network does to our SUBMITs, for the emulator and tests."""
    stamp = timestamp.astimezone(UTC).strftime("%y%m%d%H%M%S") + "00"  # time zone: UTC
    delivers = []
    for part in encode_submit(sender, text, reference=reference):
        tpdu = bytes.fromhex(part.hex)[1:]  # without the empty SMSC field
        address_end = 4 + (tpdu[2] + 1) // 2  # FO, MR, length, type, the digits
        first = 0x04 | tpdu[0] & 0x40  # SMS-DELIVER, no more messages, UDHI as sent
        deliver = bytes([first]) + tpdu[2 : address_end + 2] + _pack_bcd(stamp)
        delivers.append(("00" + (deliver + tpdu[address_end + 2 :]).hex()).upper())
    return delivers


def _split(text: str) -> tuple[Encoding, list[bytes]]:
    septets = gsm7.to_septets(text)
    if septets is not None:
        return "gsm7", _chunk(septets, _SINGLE_GSM7, _PART_GSM7)
    try:
        units = [char.encode("utf-16-be") for char in text]
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise PduError(f"the text is not valid Unicode: {exc.reason}") from None
    return "ucs2", _chunk(units, _SINGLE_UCS2, _PART_UCS2)


def _chunk(units: list[bytes], single: int, each: int) -> list[bytes]:
    """Characters' encodings into parts, never splitting one (an escape sequence or a
    surrogate pair stays whole)."""
    if sum(map(len, units)) <= single:
        return [b"".join(units)]
    chunks = [bytearray()]
    for unit in units:
        if len(chunks[-1]) + len(unit) > each:
            chunks.append(bytearray())
        chunks[-1] += unit
    return [bytes(chunk) for chunk in chunks]


def _parse_number(number: str, what: str) -> tuple[str, int]:
    if _E164.fullmatch(number):
        return number[1:], 0x91
    if _NATIONAL.fullmatch(number):
        return number, 0x81
    raise PduError(f"{what} must be +<digits> (E.164) or national digits, not {number!r}")


def _encode_smsc(smsc: str | None) -> bytes:
    if smsc is None:
        return b"\x00"  # the SIM's service centre
    digits, address_type = _parse_number(smsc, "SMSC")
    bcd = _pack_bcd(digits)
    return bytes([1 + len(bcd), address_type]) + bcd


def _pack_bcd(digits: str) -> bytes:
    padded = digits + "F" * (len(digits) % 2)
    return bytes.fromhex("".join(padded[i + 1] + padded[i] for i in range(0, len(padded), 2)))


def _validity_code(minutes: int) -> int:
    """TP-VP (relative), rounded up to the next period it can express."""
    if not 1 <= minutes <= _MAX_VALIDITY_MINUTES:
        raise PduError(f"validity must be 1..{_MAX_VALIDITY_MINUTES} minutes, not {minutes}")
    if minutes <= 12 * 60:
        return -(-minutes // 5) - 1
    if minutes <= 24 * 60:
        return 143 + -(-(minutes - 12 * 60) // 30)
    if minutes <= 30 * 24 * 60:
        return 166 + -(-minutes // (24 * 60))
    return 192 + -(-minutes // (7 * 24 * 60))


# --- decoding ----------------------------------------------------------------------


def decode(hex: str, *, with_smsc: bool = True) -> Deliver | StatusReport | Submit:
    """A PDU as the modem shows it; ``with_smsc=False`` when it has no SMSC part."""
    if not isinstance(hex, str) or not _HEX.fullmatch(hex):
        raise PduError("a PDU is an even number of hex digits")
    reader = _Reader(bytes.fromhex(hex))
    smsc = _read_smsc(reader) if with_smsc else None
    first = reader.octet("first octet")
    message_type = first & 0x03
    if message_type == 0x02:
        return _read_status_report(reader, smsc)  # optional parameters may follow: unused
    if message_type == 0x03:
        raise PduError("reserved message type (TP-MTI 3)")
    message = (_read_deliver if message_type == 0x00 else _read_submit)(reader, smsc, first)
    if reader.left:
        raise PduError(f"{reader.left} octets after the user data")
    return message


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def left(self) -> int:
        return len(self._data) - self._pos

    def take(self, count: int, what: str) -> bytes:
        if count > self.left:
            raise PduError(f"truncated PDU: {what} needs {count} octets, {self.left} left")
        self._pos += count
        return self._data[self._pos - count : self._pos]

    def octet(self, what: str) -> int:
        return self.take(1, what)[0]


def _read_deliver(reader: _Reader, smsc: str | None, first: int) -> Deliver:
    sender = _read_address(reader, "sender")
    reader.octet("TP-PID")
    dcs = reader.octet("TP-DCS")
    timestamp = _timestamp(reader.take(7, "TP-SCTS"))
    body = _read_body(reader, first, dcs)
    return Deliver(smsc=smsc, sender=sender, timestamp=timestamp, **body._asdict())


def _read_submit(reader: _Reader, smsc: str | None, first: int) -> Submit:
    reference = reader.octet("TP-MR")
    recipient = _read_address(reader, "recipient")
    reader.octet("TP-PID")
    dcs = reader.octet("TP-DCS")
    validity: timedelta | datetime | None = None
    validity_format = (first >> 3) & 0x03
    if validity_format == 0x02:
        validity = _relative_validity(reader.octet("TP-VP"))
    elif validity_format:
        raw = reader.take(7, "TP-VP")
        validity = _timestamp(raw) if validity_format == 0x03 else None
    return Submit(
        smsc=smsc,
        recipient=recipient,
        reference=reference,
        status_report=bool(first & 0x20),
        validity=validity,
        **_read_body(reader, first, dcs)._asdict(),
    )


def _read_status_report(reader: _Reader, smsc: str | None) -> StatusReport:
    return StatusReport(
        smsc=smsc,
        reference=reader.octet("TP-MR"),
        recipient=_read_address(reader, "recipient"),
        timestamp=_timestamp(reader.take(7, "TP-SCTS")),
        discharge_time=_timestamp(reader.take(7, "TP-DT")),
        status=reader.octet("TP-ST"),
    )


def _read_smsc(reader: _Reader) -> str | None:
    length = reader.octet("SMSC length")
    if not length:
        return None
    if length > 11:
        raise PduError(f"an SMSC address of {length} octets (at most 11)")
    raw = reader.take(length, "SMSC address")
    return _number(raw[0], _unpack_bcd(raw[1:], 2 * (length - 1)))


def _read_address(reader: _Reader, what: str) -> str:
    length = reader.octet(f"{what} length")  # in semi-octets
    if length > 20:
        raise PduError(f"a {what} of {length} semi-octets (at most 20)")
    address_type = reader.octet(f"{what} type")
    raw = reader.take((length + 1) // 2, what)
    if (address_type >> 4) & 0x07 == _ALPHANUMERIC:  # a name, in packed GSM 7-bit
        return gsm7.decode(gsm7.unpack(raw, length * 4 // 7))
    return _number(address_type, _unpack_bcd(raw, length))


def _number(address_type: int, digits: str) -> str:
    international = (address_type >> 4) & 0x07 == _INTERNATIONAL
    return "+" + digits if international and digits else digits


def _unpack_bcd(raw: bytes, count: int) -> str:
    digits = bytes(nibble for octet in raw for nibble in (octet & 0x0F, octet >> 4))[:count]
    digits = digits.rstrip(b"\x0f")  # some senders count the filler in the length
    if 0x0F in digits:
        raise PduError("a filler semi-octet (F) inside a number")
    return "".join(_BCD[digit] for digit in digits)


def _timestamp(raw: bytes) -> datetime | None:
    """Semi-octet date, time and quarter hours from UTC (bit 3: west of Greenwich)."""
    if any(octet & 0x0F > 9 or octet >> 4 > 9 for octet in raw[:6]) or raw[6] >> 4 > 9:
        return None
    year, month, day, hour, minute, second = ((o & 0x0F) * 10 + (o >> 4) for o in raw[:6])
    quarters = (raw[6] & 0x07) * 10 + (raw[6] >> 4)
    offset = timedelta(minutes=15 * quarters * (-1 if raw[6] & 0x08 else 1))
    year += 1900 if year >= 90 else 2000  # the classic examples are from 1999
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        return None


def _relative_validity(code: int) -> timedelta:
    if code <= 143:
        return timedelta(minutes=(code + 1) * 5)
    if code <= 167:
        return timedelta(hours=12, minutes=(code - 143) * 30)
    if code <= 196:
        return timedelta(days=code - 166)
    return timedelta(weeks=code - 192)


class _Body(NamedTuple):
    encoding: Encoding
    text: str | None
    user_data: bytes
    message_class: int | None
    concat: Concat | None


def _read_body(reader: _Reader, first: int, dcs: int) -> _Body:
    encoding, message_class = _data_coding(dcs)
    length = reader.octet("TP-UDL")  # septets for gsm7, else octets
    limit = _SINGLE_GSM7 if encoding == "gsm7" else _SINGLE_UCS2
    if length > limit:
        raise PduError(f"user data length {length} (at most {limit})")
    data = reader.take((length * 7 + 7) // 8 if encoding == "gsm7" else length, "user data")
    concat, header = _read_header(data) if first & 0x40 else (None, 0)
    if encoding == "gsm7":
        # Unpacked from the start, the header and its fill bits are whole septets.
        skip = (header * 8 + 6) // 7
        if skip > length:
            raise PduError("the user data header is longer than the user data")
        payload = gsm7.unpack(data, length)[skip:]
    else:
        payload = data[header:]
    return _Body(encoding, _text(encoding, payload), payload, message_class, concat)


def _data_coding(dcs: int) -> tuple[Encoding, int | None]:
    """TP-DCS (23.038 4): the alphabet and the message class."""
    group = dcs >> 4
    if group < 0x08:  # general data coding; 01xx: marked for automatic deletion
        if dcs & 0x20:
            raise PduError("compressed user data is not supported")
        alphabet, message_class = (dcs >> 2) & 0x03, dcs & 0x03 if dcs & 0x10 else None
    elif group == 0x0F:
        alphabet, message_class = (dcs >> 2) & 0x01, dcs & 0x03
    else:  # message waiting groups (0x0E: UCS-2); reserved groups count as GSM 7-bit
        alphabet, message_class = 0x02 if group == 0x0E else 0x00, None
    encoding: Encoding = ("gsm7", "8bit", "ucs2", "gsm7")[alphabet]  # 0b11: reserved
    return encoding, message_class


def _read_header(data: bytes) -> tuple[Concat | None, int]:
    """The concatenation element of a user data header, and the header's length."""
    end = 1 + data[0] if data else 1
    if end > len(data):
        raise PduError("the user data header is longer than the user data")
    concat, pos = None, 1
    while pos < end:
        if pos + 2 > end or pos + 2 + data[pos + 1] > end:
            raise PduError("an information element overruns the user data header")
        element, size = data[pos], data[pos + 1]
        value = data[pos + 2 : pos + 2 + size]
        if (element, size) in ((0x00, 3), (0x08, 4)):  # 8-bit or 16-bit reference
            total, seq = value[-2], value[-1]
            if 1 <= seq <= total:  # 23.040 9.2.3.24.1: ignore an element out of range
                concat = Concat(int.from_bytes(value[:-2], "big"), total, seq)
        pos += 2 + size
    return concat, end


def _text(encoding: Encoding, payload: bytes) -> str | None:
    if encoding == "gsm7":
        return gsm7.decode(payload)
    if encoding == "ucs2":  # UTF-16: a lone surrogate half becomes U+FFFD
        return payload.decode("utf-16-be", "replace")
    return None


# --- reassembly --------------------------------------------------------------------

_Key = tuple[str, int, int]  # address, concatenation reference, total parts


@dataclass
class _Pending:
    updated: float
    parts: dict[int, Deliver | Submit] = field(default_factory=dict)


class Reassembler:
    """Joins concatenated messages' parts, whatever order they come in."""

    def __init__(self) -> None:
        self._pending: dict[_Key, _Pending] = {}
        # Messages given out lately: a part read twice (by AT+CMGL and again after
        # +CMTI, say) must not start a new message that would never complete.
        self._done: dict[_Key, tuple[float, tuple[Deliver | Submit, ...]]] = {}

    def add(self, message: Deliver | Submit, now: float) -> CompleteMessage | None:
        """The whole message once its last part is in; None before, and for duplicates."""
        address = message.sender if isinstance(message, Deliver) else message.recipient
        concat = message.concat
        if concat is None or concat.total == 1:
            return _complete(address, {1: message}, 1)
        key = (address, concat.reference, concat.total)
        done = self._done.get(key)
        if done and message in done[1]:
            return None
        pending = self._pending.setdefault(key, _Pending(now))
        if concat.seq in pending.parts:
            return None
        pending.parts[concat.seq] = message
        pending.updated = now
        if len(pending.parts) < concat.total:
            return None
        del self._pending[key]
        result = _complete(address, pending.parts, concat.total)
        self._done[key] = (now, result.parts)
        return result

    def expire(self, now: float, max_age: float) -> list[CompleteMessage]:
        """Gives up on messages that got no part for ``max_age``: what they have, with
        ``missing`` naming the parts that never came."""
        self._done = {key: done for key, done in self._done.items() if now - done[0] < max_age}
        stale = [key for key, pending in self._pending.items() if now - pending.updated >= max_age]
        return [_complete(key[0], self._pending.pop(key).parts, key[2]) for key in stale]


def _complete(address: str, parts: dict[int, Deliver | Submit], total: int) -> CompleteMessage:
    ordered = tuple(parts[seq] for seq in sorted(parts))
    encodings = {part.encoding for part in ordered}
    if len(encodings) == 1:
        # Joined before decoding: a sender may split an escape or a surrogate pair.
        text = _text(encodings.pop(), b"".join(part.user_data for part in ordered))
    else:
        text = "".join(part.text or "" for part in ordered)
    missing = tuple(seq for seq in range(1, total + 1) if seq not in parts)
    return CompleteMessage(address, text, ordered, missing)
