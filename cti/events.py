"""Typed domain events: what the bus carries between adapters, storage and screens.

Each event is a frozen dataclass with a stable ``type`` name and converts to and from
plain JSON-able dicts, so a bus backend that crosses processes (Redis, NATS) can carry it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, get_type_hints

from cti.domain import Direction, LineState, Outcome, SmsStatus, TransferKind, utcnow


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainEvent:
    type: ClassVar[str]
    # 128 random bits as hex, as uuid4().hex but without building a UUID (3x the cost).
    event_id: str = field(default_factory=lambda: os.urandom(16).hex())
    at: datetime = field(default_factory=utcnow)

    def extensions(self) -> frozenset[str]:
        """The operator extensions this event concerns (who may see it beyond supervisors)."""
        return frozenset()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple | frozenset):
                value = list(value)
            data[f.name] = value
        return data


def describe(event: DomainEvent) -> dict[str, Any]:
    """What names an event in a log line: its type, its id and the call or SMS it is of."""
    fields = {"event": event.type, "event_id": event.event_id}
    for name in ("call_id", "sms_id"):
        value = getattr(event, name, None)
        if value is not None:
            fields[name] = value
    return fields


_EVENT_TYPES: dict[str, type[DomainEvent]] = {}


def _register(cls: type[DomainEvent]) -> type[DomainEvent]:
    if cls.type in _EVENT_TYPES:
        raise ValueError(f"event type {cls.type!r} registered twice")
    _EVENT_TYPES[cls.type] = cls
    return cls


def event_from_dict(data: dict[str, Any]) -> DomainEvent:
    """Rebuild an event from ``to_dict`` output; ValueError for anything unknown or malformed."""
    cls = _EVENT_TYPES.get(data.get("type", ""))
    if cls is None:
        raise ValueError(f"unknown event type {data.get('type')!r}")
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, hint = data[f.name], hints[f.name]
        try:
            if hint is datetime:
                value = datetime.fromisoformat(value)
            elif isinstance(hint, type) and issubclass(hint, StrEnum):
                value = hint(value)
            elif value is not None and getattr(hint, "__origin__", None) is tuple:
                value = tuple(value)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{cls.type}.{f.name}: {e}") from None
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"{cls.type}: {e}") from None


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class CallRinging(DomainEvent):
    """An extension started ringing for a call (drives screen pops)."""

    type: ClassVar[str] = "call.ringing"
    call_id: str
    extension: str
    direction: Direction
    external_number: str | None = None  # E.164
    external_name: str | None = None

    def extensions(self) -> frozenset[str]:
        return frozenset({self.extension})


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class CallIdentified(DomainEvent):
    """Who is calling, for the pop on ``extension``: the directory's answer (``match`` is
    None for an unknown number or when the directory could not be asked)."""

    type: ClassVar[str] = "call.identified"
    call_id: str
    extension: str
    number: str
    match: dict[str, Any] | None
    late: bool = False  # the answer came after the lookup budget: the pop is updated
    unavailable: bool = False  # the CRM could not be asked (breaker open, timeout)

    def extensions(self) -> frozenset[str]:
        return frozenset({self.extension})


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered(DomainEvent):
    type: ClassVar[str] = "call.answered"
    call_id: str
    extension: str | None = None  # None: the outside party or a machine (fax) answered
    involved_extensions: tuple[str, ...] = ()

    def extensions(self) -> frozenset[str]:
        found = set(self.involved_extensions)
        if self.extension:
            found.add(self.extension)
        return frozenset(found)


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class CallTransferred(DomainEvent):
    type: ClassVar[str] = "call.transferred"
    call_id: str
    kind: TransferKind
    from_extension: str | None
    to_extension: str | None
    involved_extensions: tuple[str, ...] = ()

    def extensions(self) -> frozenset[str]:
        found = {e for e in (self.from_extension, self.to_extension) if e}
        return frozenset(found | set(self.involved_extensions))


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(DomainEvent):
    type: ClassVar[str] = "call.ended"
    call_id: str
    outcome: Outcome
    missed: bool = False
    involved_extensions: tuple[str, ...] = ()

    def extensions(self) -> frozenset[str]:
        return frozenset(self.involved_extensions)


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class OriginateResult(DomainEvent):
    """How a click-to-dial request ended: the operator's phone answered, or why not."""

    type: ClassVar[str] = "call.originate"
    request_id: str
    extension: str
    number: str
    success: bool
    reason: str = ""  # in words (English), for logs and API clients that show it as is
    # Why, for a page to say in its own language: DIAL_FAILURES, "" when it worked.
    code: str = ""

    def extensions(self) -> frozenset[str]:
        return frozenset({self.extension})


# The codes of a click-to-dial that did not connect.
DIAL_FAILURES = frozenset(
    {
        "no_answer",
        "busy",
        "unreachable",
        "unavailable",
        "congested",
        "link_down",
        "refused",
        "failed",
    }
)


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class LineStateChanged(DomainEvent):
    type: ClassVar[str] = "line.state"
    extension: str
    state: LineState

    def extensions(self) -> frozenset[str]:
        return frozenset({self.extension})


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SmsReceived(DomainEvent):
    type: ClassVar[str] = "sms.received"
    sms_id: str
    modem: str
    sender: str
    text: str
    manager_extension: str | None = None  # the sender's responsible manager, when known

    def extensions(self) -> frozenset[str]:
        return frozenset({self.manager_extension}) if self.manager_extension else frozenset()


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class SmsStatusChanged(DomainEvent):
    type: ClassVar[str] = "sms.status"
    sms_id: str
    status: SmsStatus
    reason: str | None = None
    extension: str | None = None  # the sender's, so their screen can follow it

    def extensions(self) -> frozenset[str]:
        return frozenset({self.extension}) if self.extension else frozenset()


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackTaskChanged(DomainEvent):
    """A callback task was opened, counted another missed call, or was closed."""

    type: ClassVar[str] = "task.changed"
    task_id: int
    number: str
    assignee_extension: str | None
    open: bool
    missed_calls: int = 1

    def extensions(self) -> frozenset[str]:
        return frozenset({self.assignee_extension}) if self.assignee_extension else frozenset()


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class FaxReceived(DomainEvent):
    """A fax arrived (or its arrival failed): for its reader's desk and the fax inbox."""

    type: ClassVar[str] = "fax.received"
    fax_id: int
    call_id: str | None
    number: str | None
    remote_station: str | None
    pages: int | None
    status: str
    client_name: str | None
    assignee_extensions: tuple[str, ...] = ()

    def extensions(self) -> frozenset[str]:
        return frozenset(self.assignee_extensions)


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class FaxAttempt(DomainEvent):
    """How one try to send a fax through the PBX ended (the adapter's word to the fax
    outbox): sent, or why not (``code``: busy, no_answer, failed, link_down, ...)."""

    type: ClassVar[str] = "fax.attempt"
    request_id: str
    success: bool
    code: str = ""
    reason: str = ""  # the PBX's own words (FAXERROR, FAXSTATUSSTRING), when it said any
    connected: bool = False  # the far end answered: a fax session began
    pages: int | None = None
    remote_station: str | None = None
    # False: not the end yet, only news (the far end answered: the fax is being sent).
    final: bool = True


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class FaxStatusChanged(DomainEvent):
    """A fax job moved on: queued, dialing, sending, requeued, done, failed, cancelled."""

    type: ClassVar[str] = "fax.status"
    fax_id: int
    number: str | None
    status: str
    reason: str | None = None
    pages: int | None = None
    extension: str | None = None  # the sender's

    def extensions(self) -> frozenset[str]:
        return frozenset({self.extension}) if self.extension else frozenset()


@_register
@dataclass(frozen=True, slots=True, kw_only=True)
class LinkStateChanged(DomainEvent):
    """A PBX or modem link went up or down."""

    type: ClassVar[str] = "link.state"
    name: str
    kind: str
    up: bool
    detail: str = ""
