"""Call tracking from FreeSWITCH events, sans-I/O: events and the time in, domain events out.

FreeSWITCH has no call id across legs: each leg (channel) has its ``Unique-ID``, and legs
name each other (``Other-Leg-Unique-ID``, a loopback pair's
``variable_other_loopback_leg_uuid``, a b-leg's ``variable_originating_leg_uuid``, a queue
agent's ``variable_cc_member_session_uuid``, a bridge's ``Bridge-A/B-Unique-ID``). A leg
that names a leg we follow joins its call; one that names none starts a call. So an
inbound call (the caller's trunk or loopback legs, one leg per ringing phone, the queue's
agent legs) is one call, whose id is its first leg's uuid.

A leg is an operator's phone when it has an extension (``variable_dialed_user``,
``presence_id`` or the channel name, by the configured patterns) and is not the outside
world (gateways, the external profile, loopback legs: configurable). Ringing starts at a
phone leg's CHANNEL_CREATE, its answer is CHANNEL_ANSWER (a trunk's answer is the PBX
answering, e.g. a queue or an IVR, not an operator), and a call ends when its last leg is
gone (CHANNEL_HANGUP_COMPLETE, which says all CHANNEL_HANGUP does: that one is not
read, a sixth fewer events to decode).

The tracker never raises on input: an event it cannot use is counted in ``problems`` and
skipped. Time is the event's ``Event-Date-Timestamp`` (microseconds), else ``now``.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cti import call_events
from cti.calls import Call, CallLeg, CallTransfer, FaxInfo
from cti.domain import Direction, LegResult, LineState, Outcome, TransferKind
from cti.events import (
    CallRinging,
    DomainEvent,
    LineStateChanged,
)
from cti.phone import to_e164
from pbx_adapters.freeswitch.esl import Event

log = logging.getLogger("cti.freeswitch.tracker")

# How an unanswered leg's Hangup-Cause words its end.
HANGUP_RESULTS = {
    "USER_BUSY": LegResult.BUSY,
    "CALL_REJECTED": LegResult.BUSY,
    "NO_ANSWER": LegResult.NO_ANSWER,
    "NO_USER_RESPONSE": LegResult.NO_ANSWER,
    "ALLOTTED_TIMEOUT": LegResult.NO_ANSWER,
    "RECOVERY_ON_TIMER_EXPIRE": LegResult.NO_ANSWER,
    "ORIGINATOR_CANCEL": LegResult.CANCELLED,
    "LOSE_RACE": LegResult.CANCELLED,  # a ring group's or queue's other phone answered
    "NORMAL_CLEARING": LegResult.CANCELLED,
    "PICKED_OFF": LegResult.PICKED_UP,
}
# Legs whose links join them to a call, by the fields that name another leg.
LINK_FIELDS = (
    "Other-Leg-Unique-ID",
    "variable_other_loopback_leg_uuid",
    "variable_originating_leg_uuid",
    "variable_cc_member_session_uuid",
    "variable_origination_uuid",
    "Bridge-A-Unique-ID",
    "Bridge-B-Unique-ID",
)
BLIND_TRANSFER = re.compile(r":bl_xfer:([^/:|]+)")
RECENTLY_ENDED = 10_000  # ended calls remembered, so a replayed stream is not logged twice
MAX_CHANNELS_PER_EXTENSION = 100


@dataclass(slots=True)
class Channel:
    """One FreeSWITCH leg."""

    uuid: str
    name: str
    call_id: str
    extension: str | None  # an operator's phone; None: the outside world or the PBX
    fs_outbound: bool  # FreeSWITCH placed it (it rings a phone, dials a trunk)
    answered: bool = False
    cause: str = ""  # its Hangup-Cause, once it hung up
    leg: CallLeg | None = None
    transfers_seen: int = 0  # bl_xfer entries of its transfer_history already noted


@dataclass(slots=True)
class _CallState:
    call: Call
    root: str  # the first leg's uuid: the call's id
    channels: set[str] = field(default_factory=set)
    outside_causes: list[str] = field(default_factory=list)  # the outside legs' ends
    outside_answered_at: datetime | None = None  # the PBX (or the far end) took the call
    queue_cancelled: bool = False  # the caller left a queue before an agent answered
    # Phone legs an operator rang to consult (attended transfer) while the caller waits.
    consult_legs: list[CallLeg] = field(default_factory=list)
    # A transfer we sent (uuid_transfer): (from, to), so the move is worded rightly.
    redirect: tuple[str | None, str] | None = None
    refer_from: str | None = None  # a phone that sent a SIP REFER (sofia::transferor)
    leg_causes: dict[int, str] = field(default_factory=dict)  # id(leg): its Hangup-Cause


@dataclass(slots=True)
class PendingOriginate:
    request_id: str
    number: str  # E.164 or as dialled


def _text(value: str | list[str]) -> str:
    """An array variable (transfer_history after two transfers) as plain events write it
    (``ARRAY::a|:b``); JSON events carry it as a list."""
    return value if isinstance(value, str) else "ARRAY::" + "|:".join(map(str, value))


def _created(event: Event) -> int:
    stamp = event.get("Caller-Channel-Created-Time") or event.get("Event-Date-Timestamp") or "0"
    return int(stamp) if stamp.isdigit() else 0


def _pattern_list(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    return [re.compile(p) for p in patterns]


class CallTracker:
    def __init__(
        self,
        pbx: str,
        *,
        extension_channels: list[str],
        outside_channels: list[str],
        domains: list[str] | None = None,
        region: str = "RU",
        max_calls: int = 5000,
        max_channels: int = 20000,
    ) -> None:
        self.pbx = pbx
        self.region = region
        self._phones = _pattern_list(extension_channels)
        self._outside = _pattern_list(outside_channels)
        self.domains = frozenset(domains or ())
        self.max_calls = max_calls
        self.max_channels = max_channels
        self.calls: dict[str, _CallState] = {}
        self.channels: dict[str, Channel] = {}
        self._by_extension: dict[str, set[str]] = {}
        self.lines: dict[str, LineState] = {}
        self.registered: set[str] = set()
        self.unregistered: set[str] = set()
        self.problems = 0
        self.refused = 0
        self._ended: OrderedDict[str, None] = OrderedDict()  # call ids
        self._gone: OrderedDict[str, None] = OrderedDict()  # leg uuids that hung up
        self.last_event_at: datetime | None = None
        self._dirty: dict[str, Call] = {}
        self._originates: dict[str, PendingOriginate] = {}  # by origination uuid
        self._restored: dict[str, str] = {}  # leg uuid: call id, of calls from storage
        self._handlers: dict[str, Callable[[Event, datetime, list[DomainEvent]], None]] = {
            "CHANNEL_CREATE": self._on_create,
            "CHANNEL_UUID": self._on_uuid,
            "CHANNEL_ANSWER": self._on_answer,
            "CHANNEL_BRIDGE": self._on_bridge,
            "CHANNEL_UNBRIDGE": self._on_unbridge,
            "CHANNEL_HANGUP_COMPLETE": self._on_hangup_complete,
            "RECORD_START": self._on_record_start,
            "callcenter::info": self._on_callcenter,
            "sofia::transferor": self._on_transferor,
            "spandsp::rxfaxresult": self._on_rxfax,
            "sofia::register": self._on_register,
            "sofia::unregister": self._on_unregister,
            "sofia::expire": self._on_unregister,
        }

    # -- input -----------------------------------------------------------------------

    @property
    def events(self) -> frozenset[str]:
        """The event names (CUSTOM subclasses included) the tracker uses."""
        return frozenset(self._handlers)

    def feed(self, event: Event, now: datetime) -> list[DomainEvent]:
        """Apply one event; returns the domain events it causes."""
        name = event.get("Event-Name", "")
        if name == "CUSTOM":
            name = event.get("Event-Subclass", "")
        handler = self._handlers.get(name) if isinstance(name, str) else None
        if handler is None:
            return []
        events: list[DomainEvent] = []
        try:
            stamp = event.get("Event-Date-Timestamp", "")
            if stamp.isdigit():
                now = datetime.fromtimestamp(int(stamp) / 1e6, UTC)
            self.last_event_at = now
            handler(event, now, events)
        except Exception as e:  # an event we cannot use must never stop the stream
            self.problems += 1
            log.warning(
                "skipped a FreeSWITCH event the tracker could not use",
                extra={"fields": {"event": name, "error": repr(e)}},
            )
        return events

    def expect_originate(self, uuid: str, number: str, request_id: str) -> None:
        """Click-to-dial: the leg we asked for with ``origination_uuid=uuid``."""
        self._originates[uuid] = PendingOriginate(request_id, number)

    def ignore_leg(self, uuid: str) -> None:
        """A leg the adapter places for itself (a fax it sends): not a call to log."""
        self._gone[uuid] = None

    def take_changed(self) -> list[Call]:
        changed, self._dirty = list(self._dirty.values()), {}
        return changed

    def follows(self, call_id: str) -> bool:
        return call_id in self.calls or call_id in self._ended

    def call_id(self, uuid: str) -> str:
        return f"{self.pbx}:{uuid}"

    def uuid_of(self, call_id: str, *, outside: bool = False) -> str | None:
        """A live leg of the call: its outside party's (for a transfer), else its first."""
        state = self.calls.get(call_id)
        if state is None:
            return None
        live = [self.channels[u] for u in sorted(state.channels) if u in self.channels]
        live = [c for c in live if not c.cause]
        if outside:
            return self._transfer_leg(state, live)
        live.sort(key=lambda c: c.uuid != state.root)
        return live[0].uuid if live else None

    def _transfer_leg(self, state: _CallState, live: list[Channel]) -> str | None:
        """The leg a blind transfer moves: the caller's leg that runs the dialplan (an
        inbound call's last outside leg FreeSWITCH did not place: its trunk, or a
        loopback pair's b leg), the dialled party of an outbound call once it answered,
        the calling phone of an internal call."""
        direction = state.call.direction
        if direction is Direction.INBOUND:
            legs = [c for c in live if c.extension is None and not c.fs_outbound]
        elif direction is Direction.OUTBOUND:
            legs = [c for c in live if c.extension is None and c.answered]
        else:
            legs = [c for c in live if c.uuid == state.root]
        return legs[-1].uuid if legs else None

    def expect_redirect(self, call_id: str, extension: str | None) -> None:
        """We sent the call's outside party to ``extension`` (None: it did not happen)."""
        state = self.calls.get(call_id)
        if state is None:
            return
        if extension is None:
            state.redirect = None
            return
        call = state.call
        ringing = {leg.extension for leg in call.legs if leg.ringing and not leg.originate}
        source = call.answered_by or (ringing.pop() if len(ringing) == 1 else None)
        state.redirect = (source, extension)

    # -- resynchronisation after (re)connecting --------------------------------------

    def restore(self, calls: list[Call]) -> None:
        """Calls that were in progress when we last knew (from storage at start-up)."""
        for call in calls:
            if call.id in self.calls or not call.in_progress:
                continue
            root = call.pbx_ref.get("uuid") or call.id.split(":", 1)[1]
            self.calls[call.id] = _CallState(call, root)
            for uuid in call.pbx_ref.get("legs", root).split(","):
                self._restored[uuid] = call.id

    def resync(self, live: list[Event], now: datetime) -> list[DomainEvent]:
        """Reconcile with the PBX's live legs (``uuid_dump`` of each, which carries what
        a CHANNEL_CREATE does). Calls with no live leg ended while we were not listening:
        closed and marked so. Legs we did not know are adopted, parents first; a phone
        found ringing gets its ``call.ringing`` (nobody has seen it), an answered one none.
        """
        events: list[DomainEvent] = []
        live_ids = {e.get("Unique-ID", "") for e in live}
        for uuid in [u for u in self.channels if u not in live_ids]:
            channel = self._forget(uuid)
            state = self.calls.get(channel.call_id)
            if state is not None:
                state.channels.discard(uuid)
                if channel.leg is not None and channel.leg.active:
                    channel.leg.ended_at = self.last_event_at or now
        for event in live:  # known legs answered while we were not listening
            channel = self.channels.get(event.get("Unique-ID", ""))
            state = self.calls.get(channel.call_id) if channel else None
            if (
                channel
                and state
                and event.get("Answer-State") == "answered"
                and not channel.answered
            ):
                self._answered(state, channel, now, events)
                self._touch(state)
        pending = {e["Unique-ID"]: e for e in live if e.get("Unique-ID") not in self.channels}
        for group in self._groups(pending):
            state = self._known_call(group)
            for event in sorted(group, key=self._root_rank):
                created = _created(event)  # when it began, not when we learnt of it
                when = datetime.fromtimestamp(created / 1e6, UTC) if created else now
                channel = self._adopt(event, min(when, now), events, into=state)
                if channel is not None and state is None:
                    state = self.calls.get(channel.call_id)
        for state in list(self.calls.values()):
            if not state.channels:
                self._end_unseen(state, events)
        self._restored.clear()
        extensions = set(self.lines) | set(self._by_extension) | self.registered
        for ext in sorted(extensions):
            self._update_line(ext, events)
        return events

    def _groups(self, pending: dict[str, Event]) -> list[list[Event]]:
        """The new legs by call: those that name each other, oldest group first."""
        parent = {uuid: uuid for uuid in pending}

        def root(uuid: str) -> str:
            while parent[uuid] != uuid:
                parent[uuid] = parent[parent[uuid]]
                uuid = parent[uuid]
            return uuid

        for uuid, event in pending.items():
            for key in LINK_FIELDS:
                other = event.get(key, "")
                if other in pending:
                    parent[root(other)] = root(uuid)
        groups: dict[str, list[Event]] = {}
        for uuid, event in pending.items():
            groups.setdefault(root(uuid), []).append(event)
        return sorted(groups.values(), key=lambda g: min(_created(e) for e in g))

    def _known_call(self, group: list[Event]) -> _CallState | None:
        for event in group:
            state = self._linked_call(event)
            if state is not None:
                return state
        return None

    def _root_rank(self, event: Event) -> tuple[int, int, int]:
        """Which of a call's legs found at once started it: the outside caller, else the
        phone that placed it, else the phone FreeSWITCH rang first (click-to-dial)."""
        outside = self._extension_of(event) is None
        fs_outbound = event.get("Call-Direction") == "outbound"
        parent = event.get("Other-Leg-Unique-ID") or event.get("variable_originating_leg_uuid")
        if outside and not (fs_outbound and parent):
            rank = 0
        elif not outside and not fs_outbound:
            rank = 1
        elif not outside and not parent:
            rank = 2
        else:
            rank = 3
        return rank, _created(event), 0 if fs_outbound else 1

    def registrations(self, registered: set[str], now: datetime) -> list[DomainEvent]:
        """The PBX's registration list: the phones not on it are unavailable."""
        events: list[DomainEvent] = []
        self.unregistered = (set(self.lines) | self.registered) - registered
        self.registered = set(registered)
        for ext in sorted(self.unregistered | self.registered):
            self._update_line(ext, events)
        return events

    def _end_unseen(self, state: _CallState, events: list[DomainEvent]) -> None:
        """Close a call that ended while nobody listened (``call_events.mark_unseen_end``)."""
        last_known = call_events.mark_unseen_end(state.call, self.last_event_at)
        self._end_call(state, last_known, events, unknown_outcome=state.call.answered_at is None)

    # -- channels and calls ----------------------------------------------------------

    def _extension_of(self, event: Event) -> str | None:
        """The operator's extension a leg is the phone of; None for the outside world."""
        name = event.get("Channel-Name", "")
        if any(p.search(name) for p in self._outside):
            return None
        if event.get("Call-Direction") == "outbound":
            # FreeSWITCH rings the phone: it dialled user/<ext>@<domain>. (On the calling
            # phone's own leg dialed_user is whom it called.)
            user = event.get("variable_dialed_user", "")
            if user.isdigit():
                return user
        for pattern in self._phones:
            found = pattern.search(name)
            if found:
                return found.group("ext")
        user = event.get("variable_presence_id", "").partition("@")[0]
        return user if user.isdigit() and 2 <= len(user) <= 10 else None

    def _foreign(self, event: Event) -> bool:
        """A leg of another tenant than those this link follows (FusionPBX domains)."""
        if not self.domains:
            return False
        domain = (
            event.get("variable_domain_name")
            or event.get("variable_dialed_domain")
            or event.get("variable_presence_id", "").partition("@")[2]
        )
        return bool(domain) and domain not in self.domains

    def _channel(self, event: Event, now: datetime, events: list[DomainEvent]) -> Channel | None:
        """The leg an event is about, adopting it if it is new (its CHANNEL_CREATE was
        missed or filtered); None for a leg not followed."""
        uuid = event.get("Unique-ID", "")
        channel = self.channels.get(uuid)
        if channel is None and uuid and uuid not in self._gone:
            channel = self._adopt(event, now, events)
        return channel

    def _adopt(
        self,
        event: Event,
        now: datetime,
        events: list[DomainEvent],
        into: _CallState | None = None,
    ) -> Channel | None:
        uuid = event["Unique-ID"]
        if not event.get("Channel-Name") or self._foreign(event):
            return None  # no leg without a name (junk), nor one of another tenant
        extension = self._extension_of(event)
        if len(self.channels) >= self.max_channels or (
            extension and len(self._by_extension.get(extension, ())) >= MAX_CHANNELS_PER_EXTENSION
        ):
            self._refuse("channels")
            return None
        state = into or self._linked_call(event)
        if state is None:
            state = self._new_call(uuid, now)
            if state is None:
                return None
        fs_outbound = event.get("Call-Direction") == "outbound"
        channel = Channel(
            uuid, event.get("Channel-Name", ""), state.call.id, extension, fs_outbound
        )
        self.channels[uuid] = channel
        state.channels.add(uuid)
        if extension:
            self._by_extension.setdefault(extension, set()).add(uuid)
        placed: list[DomainEvent] = []
        self._place(state, channel, event, now, placed)
        if event.get("Answer-State") == "answered":
            # Found talking (a reconnect): nobody needs a pop or an answer for it now.
            placed = [e for e in placed if not isinstance(e, CallRinging)]
            self._answered(state, channel, now, [])
        events += placed
        self._touch(state)
        return channel

    def _linked_call(self, event: Event) -> _CallState | None:
        restored = self.calls.get(self._restored.get(event.get("Unique-ID", ""), ""))
        if restored is not None:
            return restored
        for key in LINK_FIELDS:
            other = self.channels.get(event.get(key, ""))
            if other is not None and other.call_id in self.calls:
                return self.calls[other.call_id]
        return None

    def _new_call(self, uuid: str, now: datetime) -> _CallState | None:
        call_id = self.call_id(uuid)
        if call_id in self._ended:
            return None  # the same stream again: already logged
        if len(self.calls) >= self.max_calls:
            self._refuse("calls")
            return None
        state = self.calls[call_id] = _CallState(
            Call(call_id, self.pbx, now, pbx_ref={"uuid": uuid}), uuid
        )
        return state

    def _place(
        self, state: _CallState, channel: Channel, event: Event, now: datetime, events: list
    ) -> None:
        """What a new leg makes of its call: its direction, its caller, a ringing phone."""
        call = state.call
        is_root = channel.uuid == state.root
        if event.get("variable_cc_queue") and call.queue is None:
            call.queue = event["variable_cc_queue"]  # a leg found queued (uuid_dump)
        if channel.extension is None:
            if is_root:  # the caller is outside: an inbound call
                call.direction = Direction.INBOUND
                self._take_caller(call, event)
                call.did = event.get("Caller-Destination-Number") or None
            elif call.direction is not Direction.INBOUND and channel.fs_outbound:
                # An operator's call (or click-to-dial) dialling out.
                call.direction = Direction.OUTBOUND
                if call.originate_id is None or call.external_number is None:
                    number = event.get("Caller-Destination-Number", "")
                    call.external_number = to_e164(number, self.region) or number or None
            return
        if is_root:
            call.caller_extension = channel.extension
            if channel.fs_outbound:  # FreeSWITCH rang the operator first: click-to-dial
                self._start_originate(state, channel, event, now, events)
            else:
                call.direction = call.direction or Direction.INTERNAL
            self._update_line(channel.extension, events)
            return
        if call.direction is None:
            call.direction = Direction.INTERNAL
        if call.direction is Direction.INTERNAL and call.external_name is None:
            call.external_name = self._name_of(event)
        known = [leg for leg in call.legs if leg.active and leg.extension == channel.extension]
        if known:  # a call from storage: its leg was rung (and popped) before
            channel.leg = known[-1]
            return
        leg = CallLeg(channel.extension, ring_started_at=now)
        channel.leg = leg
        call.legs.append(leg)
        other = self.channels.get(event.get("Other-Leg-Unique-ID", ""))
        if other is not None and other.extension and call.direction is Direction.INBOUND:
            # An operator's phone dialling another while the caller waits: a consultation
            # (att_xfer), not the call being answered elsewhere.
            state.consult_legs.append(leg)
        else:
            self._note_transfer(state, channel.extension, now, events)
        events.append(call_events.ringing(call, channel.extension, now))
        self._update_line(channel.extension, events)

    def _start_originate(
        self, state: _CallState, channel: Channel, event: Event, now: datetime, events: list
    ) -> None:
        call = state.call
        assert channel.extension is not None
        call.direction = Direction.OUTBOUND
        leg = CallLeg(channel.extension, ring_started_at=now, originate=True)
        channel.leg = leg
        call.legs.append(leg)
        pending = self._originates.pop(channel.uuid, None)
        if pending is not None:
            call.originate_id = pending.request_id
            call.external_number = pending.number
        else:  # someone else's click-to-dial: FusionPBX shows the number as the caller ID
            number = event.get("Caller-Caller-ID-Number", "")
            if number and not (number.isdigit() and len(number) <= 6):
                call.external_number = to_e164(number, self.region) or number
        events.append(call_events.ringing(call, channel.extension, now))

    def _take_caller(self, call: Call, event: Event) -> None:
        """The outside caller, from the call's first leg: a transfer or att_xfer later
        rewrites the legs' caller profile ("Outbound Call", the phone's contact)."""
        number = event.get("Caller-Caller-ID-Number", "")
        if number:
            call.external_number = to_e164(number, self.region) or number
        call.external_name = self._name_of(event)

    @staticmethod
    def _name_of(event: Event) -> str | None:
        name = event.get("Caller-Caller-ID-Name", "").strip()
        number = event.get("Caller-Caller-ID-Number", "")
        return name if name and name != number and name != "Outbound Call" else None

    def _refuse(self, what: str) -> None:
        self.refused += 1
        if str(self.refused).rstrip("0") == "1":
            log.warning(
                "too many open calls on one PBX link: new %s are not followed until some end",
                what,
                extra={
                    "fields": {"pbx": self.pbx, "calls": len(self.calls), "refused": self.refused}
                },
            )

    def _touch(self, state: _CallState) -> None:
        if state.call.direction is not None:
            # The legs' uuids, so a restarted service finds the call again.
            state.call.pbx_ref["legs"] = ",".join(sorted(state.channels | {state.root}))
            self._dirty[state.call.id] = state.call

    # -- handlers --------------------------------------------------------------------

    def _on_create(self, event: Event, now: datetime, events: list[DomainEvent]) -> None:
        self._channel(event, now, events)

    def _on_uuid(self, event: Event, now: datetime, events: list[DomainEvent]) -> None:
        """``origination_uuid``: the leg's uuid changes right at its start."""
        old, new = event.get("Old-Unique-ID", ""), event.get("Unique-ID", "")
        channel = self.channels.pop(old, None)
        if channel is None or not new:
            return
        channel.uuid = new
        self.channels[new] = channel
        state = self.calls.get(channel.call_id)
        if state is not None:
            state.channels.discard(old)
            state.channels.add(new)
        if channel.extension:
            same = self._by_extension.setdefault(channel.extension, set())
            same.discard(old)
            same.add(new)

    def _on_answer(self, event: Event, now: datetime, events: list[DomainEvent]) -> None:
        channel = self._channel(event, now, events)
        state = self.calls.get(channel.call_id) if channel else None
        if channel is None or state is None or channel.answered:
            return
        self._answered(state, channel, now, events)
        self._touch(state)

    def _answered(
        self, state: _CallState, channel: Channel, now: datetime, events: list[DomainEvent]
    ) -> None:
        channel.answered = True
        call = state.call
        if channel.extension is None:
            state.outside_answered_at = state.outside_answered_at or now
            if call.direction is Direction.OUTBOUND and channel.fs_outbound:
                if call.answered_at is None:  # the far end took the operator's call
                    call.answered_at = now
                    events.append(call_events.answered(call, None, now))
            return
        leg = channel.leg
        if leg is not None and leg.answered_at is None:
            leg.answered_at, leg.result = now, LegResult.ANSWERED
            if not leg.originate and leg not in state.consult_legs:
                call.answered_at = call.answered_at or now
                call.answered_by = leg.extension
                events.append(call_events.answered(call, leg.extension, now))
        self._update_line(channel.extension, events)

    def _on_bridge(self, event: Event, now: datetime, events: list[DomainEvent]) -> None:
        channel = self._channel(event, now, events)
        state = self.calls.get(channel.call_id) if channel else None
        if state is None:
            return
        a = self.channels.get(event.get("Bridge-A-Unique-ID", ""))
        b = self.channels.get(event.get("Bridge-B-Unique-ID", ""))
        for party in (a, b):
            if party is not None and party.leg is not None and party.leg in state.consult_legs:
                if any(p is not None and p.extension is None for p in (a, b)):
                    self._attended_done(state, party, now, events)
        self._check_transfer(state, event, channel, now, events)
        self._touch(state)

    def _attended_done(
        self, state: _CallState, target: Channel, now: datetime, events: list[DomainEvent]
    ) -> None:
        """The consulted phone is bridged to the caller: the attended transfer is made."""
        call = state.call
        leg = target.leg
        assert leg is not None and target.extension is not None
        state.consult_legs.remove(leg)
        transfer = CallTransfer(TransferKind.ATTENDED, call.answered_by, target.extension, now)
        call.transfers.append(transfer)
        events.append(call_events.transferred(call, transfer))
        call.answered_by = target.extension
        events.append(call_events.answered(call, target.extension, now))

    def _on_unbridge(self, event: Event, now: datetime, events: list[DomainEvent]) -> None:
        channel = self._channel(event, now, events)
        state = self.calls.get(channel.call_id) if channel else None
        if state is not None and channel is not None:
            self._check_transfer(state, event, channel, now, events)
            self._touch(state)

    def _check_transfer(
        self, state: _CallState, event: Event, channel: Channel, now: datetime, events: list
    ) -> None:
        """A new ``bl_xfer`` entry in an outside leg's transfer_history: it was sent on
        (uuid_transfer, or a phone's SIP REFER)."""
        if channel.extension is not None:
            return
        targets = BLIND_TRANSFER.findall(_text(event.get("variable_transfer_history", "")))
        new, channel.transfers_seen = targets[channel.transfers_seen :], len(targets)
        call = state.call
        for target in new:
            if call.answered_by is None and state.redirect is None and state.refer_from is None:
                continue  # the dialplan moving an unanswered call along (an IVR)
            source = state.refer_from or call.answered_by
            if state.redirect is not None and state.redirect[1] == target:
                source = state.redirect[0]
            state.redirect = state.refer_from = None
            transfer = CallTransfer(TransferKind.BLIND, source, target, now)
            call.transfers.append(transfer)
            events.append(call_events.transferred(call, transfer))

    def _note_transfer(self, state: _CallState, target: str, now: datetime, events: list) -> None:
        """A phone rung after the call was answered, with no transfer_history seen (the
        event that carried it was missed): the call was passed on."""
        call = state.call
        if call.transfers and call.transfers[-1].to == target:
            return  # noted from transfer_history already
        if call.answered_by is None or call.answered_by == target:
            return
        source = call.answered_by
        if state.redirect is not None and state.redirect[1] == target:
            source, state.redirect = state.redirect[0], None
        transfer = CallTransfer(TransferKind.BLIND, source, target, now)
        call.transfers.append(transfer)
        events.append(call_events.transferred(call, transfer))

    def _on_transferor(self, event: Event, now: datetime, events: list[DomainEvent]) -> None:
        """A phone sent a SIP REFER (blind: ``transfer_to`` "blind:<uuid>")."""
        channel = self.channels.get(event.get("Unique-ID", ""))
        state = self.calls.get(channel.call_id) if channel else None
        if channel is not None and state is not None and channel.extension:
            state.refer_from = channel.extension

    def _hung_up(self, event: Event, now: datetime, events: list[DomainEvent]) -> None:
        """A leg's end: how its ringing ended, the outside world's cause, its phone's line."""
        channel = self._channel(event, now, events)
        state = self.calls.get(channel.call_id) if channel else None
        if channel is None or state is None or channel.cause:
            return
        channel.cause = event.get("Hangup-Cause", "") or "UNKNOWN"
        if channel.extension is None:
            state.outside_causes.append(channel.cause)
            self._check_transfer(state, event, channel, now, events)
        leg = channel.leg
        if leg is not None and leg.active:
            if leg.answered_at is None:
                leg.result = HANGUP_RESULTS.get(channel.cause, LegResult.FAILED)
            leg.ended_at = now
            state.leg_causes[id(leg)] = channel.cause
        if channel.extension:
            self._update_line(channel.extension, events)
        self._touch(state)

    def _on_hangup_complete(self, event: Event, now: datetime, events: list[DomainEvent]) -> None:
        uuid = event.get("Unique-ID", "")
        if uuid not in self.channels:
            return
        self._hung_up(event, now, events)
        channel = self._forget(uuid)
        state = self.calls.get(channel.call_id)
        if state is None:
            return
        state.channels.discard(uuid)
        if channel.extension:
            self._update_line(channel.extension, events)
        if not state.channels:
            self._end_call(state, now, events)

    def _forget(self, uuid: str) -> Channel:
        channel = self.channels.pop(uuid)
        self._gone[uuid] = None
        if len(self._gone) > RECENTLY_ENDED:
            self._gone.popitem(last=False)
        if channel.extension:
            same = self._by_extension.get(channel.extension, set())
            same.discard(uuid)
            if not same:
                self._by_extension.pop(channel.extension, None)
        return channel

    def _on_record_start(self, event: Event, now: datetime, events: list[DomainEvent]) -> None:
        channel = self.channels.get(event.get("Unique-ID", ""))
        state = self.calls.get(channel.call_id) if channel else None
        path = event.get("Record-File-Path") or event.get("variable_record_file_path", "")
        if state is not None and path and path not in state.call.recordings:
            state.call.recordings.append(path)
            self._touch(state)

    def _on_callcenter(self, event: Event, now: datetime, events: list[DomainEvent]) -> None:
        """mod_callcenter: the queue a caller waits in, and whether they gave up."""
        member = self.channels.get(event.get("CC-Member-Session-UUID", ""))
        state = self.calls.get(member.call_id) if member else None
        if state is None:
            return
        action = event.get("CC-Action", "")
        if action == "member-queue-start":
            state.call.queue = event.get("CC-Queue") or state.call.queue
        elif action == "member-queue-end" and event.get("CC-Cause") == "Cancel":
            state.queue_cancelled = True
        self._touch(state)

    def _on_rxfax(self, event: Event, now: datetime, events: list[DomainEvent]) -> None:
        channel = self.channels.get(event.get("Unique-ID", ""))
        state = self.calls.get(channel.call_id) if channel else None
        if state is None:
            return
        call = state.call
        pages = int(event.get("variable_fax_document_transferred_pages") or 0)
        ok = event.get("variable_fax_success") == "1" and pages > 0
        call.fax = FaxInfo(
            pages,
            event.get("variable_fax_filename") or None,
            remote_station=event.get("variable_fax_remote_station_id", "").strip() or None,
            status="received" if ok else "failed",
        )
        if ok and call.answered_at is None:
            call.answered_at = state.outside_answered_at or now
            events.append(call_events.answered(call, None, call.answered_at))
        self._touch(state)

    # -- the end of a call -----------------------------------------------------------

    def _end_call(
        self,
        state: _CallState,
        now: datetime,
        events: list[DomainEvent],
        *,
        unknown_outcome: bool = False,
    ) -> None:
        call = state.call
        del self.calls[call.id]
        for uuid in state.channels:  # legs still listed (a call closed after a reconnect)
            if uuid in self.channels:
                self._forget(uuid)
        if call.direction is None:
            return
        call_events.end_legs(call, now, known=not unknown_outcome)
        outcome = Outcome.UNKNOWN if unknown_outcome else self._outcome(state)
        ended = call_events.finish(call, now, outcome)
        self._ended[call.id] = None
        if len(self._ended) > RECENTLY_ENDED:
            self._ended.popitem(last=False)
        self._dirty[call.id] = call
        events.append(ended)
        for ext in {leg.extension for leg in call.legs} | {call.caller_extension or ""} - {""}:
            self._update_line(ext, events)

    def _outcome(self, state: _CallState) -> Outcome:
        """The lab's mapping, right for every recorded call (fixtures README)."""
        call = state.call
        if call.answered_at is not None:
            return Outcome.ANSWERED
        legs = [leg for leg in call.legs if not leg.originate]
        if call.legs and not legs:  # click-to-dial whose operator never took their phone
            first = call.legs[0].result
            return Outcome.BUSY if first is LegResult.BUSY else Outcome.NO_ANSWER
        causes = state.outside_causes
        if call.queue and state.queue_cancelled:
            return Outcome.ABANDONED
        results = [leg.result for leg in legs]
        if LegResult.BUSY in results and (
            "USER_BUSY" in causes or set(results) == {LegResult.BUSY}
        ):
            return Outcome.BUSY
        if call.direction is Direction.OUTBOUND:
            if "USER_BUSY" in causes:
                return Outcome.BUSY
            if any(HANGUP_RESULTS.get(c) is LegResult.NO_ANSWER for c in causes):
                return Outcome.NO_ANSWER
            if "ORIGINATOR_CANCEL" in causes or not causes:
                return Outcome.ABANDONED
            return Outcome.FAILED
        phone_causes = [self._cause_of(leg, state) for leg in legs]
        if call.direction is Direction.INBOUND and causes and causes[0] == "ORIGINATOR_CANCEL":
            return Outcome.ABANDONED
        if phone_causes and all(c == "ORIGINATOR_CANCEL" for c in phone_causes):
            return Outcome.ABANDONED
        if not legs and call.direction is Direction.INBOUND and "NORMAL_CLEARING" in causes:
            return Outcome.ABANDONED  # the caller hung up in an IVR or a queue nobody rang
        return Outcome.NO_ANSWER

    @staticmethod
    def _cause_of(leg: CallLeg, state: _CallState) -> str:
        return state.leg_causes.get(id(leg), "")

    # -- lines -----------------------------------------------------------------------

    def _on_register(self, event: Event, now: datetime, events: list[DomainEvent]) -> None:
        ext = self._registered_user(event)
        if ext:
            self.registered.add(ext)
            self.unregistered.discard(ext)
            self._update_line(ext, events)

    def _on_unregister(self, event: Event, now: datetime, events: list[DomainEvent]) -> None:
        ext = self._registered_user(event)
        if ext:
            self.registered.discard(ext)
            self.unregistered.add(ext)
            self._update_line(ext, events)

    def _registered_user(self, event: Event) -> str | None:
        user = event.get("from-user") or event.get("username") or ""
        realm = event.get("from-host") or event.get("realm") or ""
        if self.domains and realm and realm not in self.domains:
            return None
        return user if user.isdigit() and 2 <= len(user) <= 10 else None

    def _update_line(self, ext: str, events: list[DomainEvent]) -> None:
        new = self._line_state(ext)
        if self.lines.get(ext) != new:
            self.lines[ext] = new
            events.append(LineStateChanged(extension=ext, state=new))

    def _line_state(self, ext: str) -> LineState:
        ringing = False
        for uuid in self._by_extension.get(ext, ()):
            channel = self.channels[uuid]
            if channel.cause:
                continue
            if channel.answered or not channel.fs_outbound:
                return LineState.IN_USE  # talking, or the phone is placing a call
            ringing = True
        if ringing:
            return LineState.RINGING
        return LineState.UNAVAILABLE if ext in self.unregistered else LineState.IDLE
