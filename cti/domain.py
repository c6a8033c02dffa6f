"""The normalized vocabulary every room shares: roles, call directions and outcomes, lines.

PBX adapters translate their own protocol into these words; nothing in the core knows a
PBX's vocabulary.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class Role(StrEnum):
    RECEPTIONIST = "receptionist"
    OPERATOR = "operator"
    SALES = "sales"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


# Roles that see every call and line; the others see what involves their own extension.
ROLES_SEEING_ALL = frozenset({Role.RECEPTIONIST, Role.SUPERVISOR, Role.ADMIN})


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class Outcome(StrEnum):
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"  # rang out
    ABANDONED = "abandoned"  # the caller hung up while ringing or queued
    BUSY = "busy"
    FAILED = "failed"
    # The PBX link was down when the call ended and nothing the PBX said since tells
    # whether anyone answered: not missed, no callback task (docs: "unknown outcome").
    UNKNOWN = "unknown"


class LegResult(StrEnum):
    """How one extension's ringing ended."""

    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    CANCELLED = "cancelled"  # answered elsewhere, or the caller gave up
    PICKED_UP = "picked_up"  # a colleague took it with call pickup
    FAILED = "failed"


class LineState(StrEnum):
    IDLE = "idle"
    RINGING = "ringing"
    IN_USE = "in_use"
    UNAVAILABLE = "unavailable"


class TransferKind(StrEnum):
    BLIND = "blind"
    ATTENDED = "attended"


class SmsStatus(StrEnum):
    RECEIVED = "received"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"


EXTENSION_PATTERN = re.compile(r"^[0-9]{1,10}$")


def utcnow() -> datetime:
    return datetime.now(UTC)


# Where a call's recording stands, as the API shows it.
RecordingState = Literal["pending", "available", "missing", "deleted"]


def known_time_zone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this machine knows (Europe/Moscow)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
