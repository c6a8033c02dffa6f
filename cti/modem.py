"""What the core needs from a modem and what a modem hands the core: SMS as text.

The core (the outbox and inbox of ``cti.sms``, the API) never sees how a modem puts a text
on the air. It asks a modem to ``split`` a message into parts it cannot read, hands them
over one by one with ``send_part`` and keeps only each part's index and the reference the
modem confirms it with: enough for the restart rule (``cti.sms``) and the status reports.
A modem hands the core what it received as text (``ReceivedPart``) and the network's
status reports by reference (``DeliveryReport``). Its own failures it raises as the three
exceptions here, because the outbox acts on the difference: nothing went out
(``ModemUnavailable``, ``ModemRefused``) or it may have (``ModemNoAnswer``).

The GSM PDU codec behind all this is the modem package's, which depends on the core and
not the other way round; the composition root (``cti.service``) puts the two together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeAlias

# What ``split`` made, handed back to ``send_part`` as it is: the core stores none of it.
OutgoingPart: TypeAlias = Any


class SmsTextError(ValueError):
    """A text no SMS can carry (a lone surrogate, too many parts): the codec's reason."""


class ModemUnavailable(Exception):
    """The modem is not connected (or not initialised): nothing was sent."""


class ModemRefused(Exception):
    """The modem or the network refused the part: nothing went out. ``transient``: the
    same part may go through later (congestion, no signal), else it never will."""

    def __init__(self, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


class ModemNoAnswer(Exception):
    """The part was handed over and never confirmed: it may have gone out."""


class SmsCodec(Protocol):
    """How a text becomes SMS parts, for the API to count before it stores a message."""

    def parts_needed(self, text: str) -> tuple[str, int]:
        """(the encoding's name, e.g. "gsm7" or "ucs2"; how many parts); SmsTextError."""
        ...


class SmsModem(SmsCodec, Protocol):
    """A modem the outbox sends through (the GSM driver, ``GsmModem``)."""

    @property
    def ready(self) -> bool: ...

    def split(
        self, number: str, text: str, *, concat_ref: int, status_report: bool
    ) -> Sequence[OutgoingPart]:
        """The parts of a message, the same every time for the same arguments (a message
        goes on after a restart with the parts not yet sent). ``concat_ref`` (0-255)
        ties them together on the phone. SmsTextError for a text no SMS can carry."""
        ...

    async def send_part(self, part: OutgoingPart) -> int:
        """Hand one part over; the reference its status report will name (0-255).
        ModemUnavailable, ModemRefused or ModemNoAnswer when it was not confirmed."""
        ...


@dataclass(frozen=True, slots=True)
class ReceivedPart:
    """A received SMS, or one part of a long one. The parts of one message share
    ``sender``, ``reference`` and ``total``; ``seq`` is the part's place, 1..total."""

    sender: str  # "+<E.164>", national digits, or an alphanumeric name
    text: str
    sent_at: datetime | None = None  # the service centre's time stamp
    reference: int | None = None  # the concatenation reference; None: a whole message
    seq: int = 1
    total: int = 1


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """The network's word on a part sent: ``reference`` is what ``send_part`` returned."""

    reference: int
    delivered: bool
    final: bool = True  # False: the network is still trying; nothing to write down yet
    reason: str | None = None  # why it was not delivered
