"""Call tracking from AMI events, sans-I/O: frames and the time in, domain events out.

One call per ``Linkedid``, followed through Local channel pairs, ring groups, queues,
transfers and pickups. Ringing starts at ``DialBegin`` towards an operator's channel (a
Local-channel handset may never report "Ringing"), answers come from ``DialEnd``
(``BridgeEnter`` as a fallback), and a call ends when its last channel hangs up.

The tracker never raises on input: a frame it cannot use is counted in ``problems`` and
skipped. Time comes from the caller (``now``), or from a frame's ``Timestamp`` when
Asterisk sends one (``timestampevents = yes``).
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar

from cti import call_events
from cti.calls import Call, CallLeg, CallTransfer, FaxInfo
from cti.domain import Direction, LegResult, LineState, Outcome, TransferKind
from cti.events import (
    DomainEvent,
    LineStateChanged,
)
from cti.phone import to_e164
from pbx_adapters.asterisk.channels import ChannelMap
from pbx_adapters.asterisk.frames import Frame

log = logging.getLogger("cti.asterisk.tracker")

DIAL_RESULTS = {
    "ANSWER": LegResult.ANSWERED,
    "NOANSWER": LegResult.NO_ANSWER,
    "BUSY": LegResult.BUSY,
    "CANCEL": LegResult.CANCELLED,
}
# Q.850 causes of a ringing channel's hangup, for legs that end without a DialEnd.
HANGUP_CAUSES = {
    17: LegResult.BUSY,
    21: LegResult.BUSY,
    18: LegResult.NO_ANSWER,
    19: LegResult.NO_ANSWER,
}
SPECIAL_EXTENS = {"s", "h", "i", "t", "o", "a", "e", "fax"}
UNAVAILABLE_DEVICE_STATES = {"UNAVAILABLE", "INVALID", "UNKNOWN"}
RECENTLY_ENDED = 10_000  # ended Linkedids remembered, so a replayed stream is not logged twice
MAX_CHANNELS_PER_EXTENSION = 100  # no phone rings or talks on more at once


@dataclass(slots=True)
class Channel:
    uniqueid: str
    name: str
    extension: str | None
    call_id: str
    state: str = "Down"
    is_root: bool = False
    leg: CallLeg | None = None


@dataclass(slots=True)
class _CallState:
    """The tracker's working knowledge of a call beyond the normalized record."""

    call: Call
    linkedid: str
    channels: set[str] = field(default_factory=set)
    root_is_operator: bool = False
    outside_channels: set[str] = field(default_factory=set)  # trunk legs we dialled
    outside_result: LegResult | None = None  # how the dial to the outside world ended
    abandoned_in_queue: bool = False
    transfer_pending_to: str | None = None
    # A transfer noted from its target ringing, before any transfer event: the PBX's own
    # BlindTransfer for it may still come (it is published after the caller's new Dial).
    noted_transfer: CallTransfer | None = None
    # A Redirect we sent: (from, to). The PBX raises no transfer event for it, so when
    # ``to`` starts ringing the transfer is noted, answered or not (issue 15, D9).
    redirect: tuple[str | None, str] | None = None
    fax_started_at: datetime | None = None  # the dialplan reached ReceiveFAX
    # Legs rung by an attended transfer's consultation: the transferer talks to them, not
    # the caller, so answering one is not answering the call, until the transfer is made.
    consult_legs: list[CallLeg] = field(default_factory=list)
    # The transferer of an attended transfer made while its target still rang: when the
    # target fails, Asterisk rings them back (features.conf atxferdropcall = no) on a
    # channel of a new Linkedid that belongs to this call (issue 15, D3).
    recall_to: str | None = None


@dataclass(slots=True)
class PendingOriginate:
    request_id: str
    number: str  # E.164 or as dialled


LINKEDID = re.compile(r"\d{6,}\.\d+")  # <epoch>.<counter>, as Uniqueid and Linkedid are


def linkedids_in(text: str) -> list[str]:
    """The Asterisk call ids a text (a file name) holds."""
    return LINKEDID.findall(text)


class CallTracker:
    def __init__(
        self,
        pbx: str,
        channel_map: ChannelMap,
        *,
        region: str = "RU",
        inbound_contexts: list[str] | None = None,
        max_calls: int = 5000,
        max_channels: int = 20000,
    ) -> None:
        self.pbx = pbx
        self.channel_map = channel_map
        self.region = region
        self.inbound_contexts = tuple(inbound_contexts or ("from-trunk", "from-pstn", "inbound"))
        # Bounds on what is followed at once: a stream of calls that never end (a broken
        # or hostile PBX) costs bounded memory and time; beyond them new calls are skipped.
        self.max_calls = max_calls
        self.max_channels = max_channels
        self.calls: dict[str, _CallState] = {}  # by call id
        self.channels: dict[str, Channel] = {}  # by Uniqueid
        self._by_extension: dict[str, set[str]] = {}  # Uniqueids of each extension's channels
        self.lines: dict[str, LineState] = {}
        self.unavailable: set[str] = set()
        self.problems = 0
        self.refused = 0  # calls and channels not followed because a bound was reached
        self._ended: OrderedDict[str, None] = OrderedDict()
        # When the PBX last told us something: a call that ended unseen went on until then.
        self.last_frame_at: datetime | None = None
        self._dirty: dict[str, Call] = {}
        self._originates: dict[str, PendingOriginate] = {}  # by extension
        self._handlers: dict[str, Callable[[Frame, datetime, list[DomainEvent]], None]] = {
            "Newchannel": self._on_newchannel,
            "Newstate": self._on_channel_update,
            "NewCallerid": self._on_channel_update,
            "NewConnectedLine": self._on_channel_update,
            "Newexten": self._on_newexten,
            "VarSet": self._on_varset,
            "DialBegin": self._on_dial_begin,
            "DialEnd": self._on_dial_end,
            "BridgeEnter": self._on_bridge_enter,
            "BlindTransfer": self._on_blind_transfer,
            "AttendedTransfer": self._on_attended_transfer,
            "Pickup": self._on_pickup,
            "QueueCallerJoin": self._on_queue_join,
            "QueueCallerAbandon": self._on_queue_abandon,
            "ReceiveFAX": self._on_receive_fax,
            "Hangup": self._on_hangup,
            "DeviceStateChange": self._on_device_state,
            "ExtensionStatus": self._on_extension_status,
        }

    # -- input -----------------------------------------------------------------------

    def feed(self, frame: Frame, now: datetime) -> list[DomainEvent]:
        """Apply one AMI frame; returns the domain events it causes."""
        handler = self._handlers.get(frame.get("Event", ""))
        if handler is None:
            return []
        events: list[DomainEvent] = []
        try:
            stamp = frame.get("Timestamp")
            if stamp:
                now = datetime.fromtimestamp(float(stamp), UTC)
            self.last_frame_at = now
            handler(frame, now, events)
        except Exception as e:  # a frame we cannot use must never stop the stream
            self.problems += 1
            log.warning(
                "skipped an AMI frame the tracker could not use",
                extra={"fields": {"event": frame.get("Event"), "error": repr(e)}},
            )
        return events

    @property
    def events(self) -> frozenset[str]:
        """The AMI events the tracker uses (for ``AmiParser(events=...)``)."""
        return frozenset(self._handlers)

    # Of all VarSets (a third of a busy PBX's frames) only the recording's file name counts,
    # and SendFAX's results (FAXSTATUS, FAXERROR, ...) for the fax sender.
    NEEDLES: ClassVar[dict[str, tuple[bytes, ...]]] = {
        "VarSet": (b"\r\nVariable: MIXMONITOR_FILENAME\r\n", b"\r\nVariable: FAX")
    }

    def expect_originate(self, extension: str, number: str, request_id: str) -> None:
        """Click-to-dial: the next call that rings ``extension`` by itself is this one."""
        self._originates[extension] = PendingOriginate(request_id, number)

    def take_changed(self) -> list[Call]:
        """Calls changed since the last call, for storage."""
        changed, self._dirty = list(self._dirty.values()), {}
        return changed

    def active_calls(self) -> list[Call]:
        return [state.call for state in self.calls.values()]

    def follows(self, call_id: str) -> bool:
        """Whether the call is followed now, or ended while we followed it."""
        return call_id in self.calls or call_id in self._ended

    def call_id(self, linkedid: str) -> str:
        """The core's id of the call whose root channel is ``linkedid``."""
        return f"{self.pbx}:{linkedid}"

    def any_channel(self, call_id: str) -> str | None:
        """A live channel of the call (its root first): what a hang-up or a recording
        acts on. None for an unknown or ended call."""
        state = self.calls.get(call_id)
        if state is None:
            return None
        live = [self.channels[uid] for uid in sorted(state.channels) if uid in self.channels]
        live.sort(key=lambda c: not c.is_root)
        return live[0].name if live else None

    def expect_redirect(self, call_id: str, extension: str | None) -> None:
        """We sent the call's outside party to ``extension``: from whoever had it, or the
        one phone that rang, when it had not been answered yet (None: forget it)."""
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

    def transfer_target(self, call_id: str) -> str | None:
        """The channel a blind transfer (AMI ``Redirect``) of a live call moves: the party
        facing the operators. Inbound: the caller's trunk channel, the call's root, which
        runs the dialplan while a ring group, queue or Dial rings and stays once bridged;
        internal: the calling operator's phone, also the root; outbound: the party dialled,
        once it answered. None for an unknown or ended call, or when that channel is gone."""
        state = self.calls.get(call_id)
        if state is None or state.call.direction is None:
            return None
        live = [self.channels[uid] for uid in sorted(state.channels) if uid in self.channels]
        if state.call.direction is Direction.OUTBOUND:
            # Only once it answered: a channel still being dialled is in no dialplan.
            targets = [c for c in live if c.uniqueid in state.outside_channels and c.state == "Up"]
        else:
            targets = [c for c in live if c.is_root]
        return targets[0].name if targets else None

    # -- resynchronisation after (re)connecting --------------------------------------

    def restore(self, calls: list[Call]) -> None:
        """Calls that were in progress when we last knew (e.g. from storage at start-up)."""
        for call in calls:
            if call.id not in self.calls and call.in_progress:
                # Calls stored before pbx_ref existed: the Linkedid is in the id.
                linkedid = call.pbx_ref.get("linkedid") or call.id.split(":", 1)[1]
                self.calls[call.id] = _CallState(call, linkedid)

    def vanished(self, live_channels: list[Frame]) -> list[Call]:
        """The calls followed now that have no channel in the PBX's list: they ended
        while we were not listening (``resync`` closes them)."""
        live = {frame.get("Uniqueid", "") for frame in live_channels}
        return [
            state.call
            for state in self.calls.values()
            if not any(uid in live for uid in state.channels)
        ]

    def resync(
        self,
        live_channels: list[Frame],
        now: datetime,
        records: Mapping[str, Call] | None = None,
    ) -> list[DomainEvent]:
        """Reconcile with the PBX's channel list (``CoreShowChannel`` frames).

        Calls with no live channel ended while we were not listening: they are closed and
        marked so, as the PBX's own records (``records``, by Linkedid: from its CDR) say
        they ended when it has them. Live channels we did not know are adopted; a phone
        found ringing gets its ``call.ringing`` (its screen pop: nobody has seen it yet),
        one already answered none.
        """
        events: list[DomainEvent] = []
        live_ids = set()
        ringing: list[tuple[_CallState, CallLeg]] = []
        for frame in live_channels:
            uid = frame.get("Uniqueid", "")
            if not uid:
                continue
            live_ids.add(uid)
            if uid not in self.channels:
                found = self._adopt_channel(frame, now)
                if found is not None:
                    ringing.append(found)
            else:
                self._catch_up_channel(self.channels[uid], frame, now, events)
        for uid in [u for u in self.channels if u not in live_ids]:
            channel = self._forget_channel(uid)
            state = self.calls.get(channel.call_id)
            if state is not None:
                state.channels.discard(uid)
        for state in list(self.calls.values()):
            if not state.channels:
                record = (records or {}).get(state.linkedid)
                if record is not None and record.ended_at is not None:
                    self._end_from_record(state, record, events)
                else:
                    self._end_unseen(state, events)
        for state, leg in ringing:  # now that every channel is known, so is its direction
            call = state.call
            if leg.ringing and call.id in self.calls:
                events.append(call_events.ringing(call, leg.extension, now))
        extensions = set(self.lines) | {c.extension for c in self.channels.values() if c.extension}
        for ext in sorted(extensions):
            self._update_line(ext, events)
        return events

    def _catch_up_channel(
        self, channel: Channel, frame: Frame, now: datetime, events: list[DomainEvent]
    ) -> None:
        """A channel we knew, as the PBX lists it now: a phone that picked up while we were
        not listening has answered (when exactly is unknown: ``now`` is when we learnt it)."""
        channel.state = frame.get("ChannelStateDesc", channel.state)
        state = self.calls.get(channel.call_id)
        leg = channel.leg
        if channel.state == "Up" and state is not None and leg is not None and leg.active:
            self._answer_leg(state, leg, now, events)
            self._touch(state)

    def _adopt_channel(self, frame: Frame, now: datetime) -> tuple[_CallState, CallLeg] | None:
        """A live channel from the PBX's list; the call and its new leg when the channel
        is an operator's phone that started ringing while we were not listening."""
        uid, linkedid = frame["Uniqueid"], frame.get("Linkedid") or frame["Uniqueid"]
        name = frame.get("Channel", "")
        state = self._call_for(linkedid, now) if self._room_for_channel(name) else None
        if state is None:
            return None
        channel = self._add_channel(state, uid, name, frame.get("ChannelStateDesc", "Down"))
        call = state.call
        if channel.is_root and channel.extension is None and call.direction is None:
            call.direction = Direction.INBOUND
            self._take_caller_id(state, frame)
        new_leg = None
        if channel.extension and not channel.is_root:
            leg = self._active_leg(call, channel.extension)
            if leg is None:
                leg = new_leg = CallLeg(channel.extension, ring_started_at=now)
                call.legs.append(leg)
            channel.leg = leg
            if channel.state == "Up" and leg.answered_at is None:
                leg.answered_at = now
                leg.result = LegResult.ANSWERED
                if call.answered_at is None:
                    call.answered_at, call.answered_by = now, channel.extension
        if call.direction is None and state.root_is_operator and new_leg is not None:
            call.direction = Direction.INTERNAL
        self._touch(state)
        return (state, new_leg) if new_leg is not None else None

    # -- call and channel bookkeeping ------------------------------------------------

    def _call_for(self, linkedid: str, now: datetime) -> _CallState | None:
        call_id = self.call_id(linkedid)
        state = self.calls.get(call_id)
        if state is None:
            if call_id in self._ended:
                return None  # the same stream again: already logged
            if len(self.calls) >= self.max_calls:
                self._refuse("calls")
                return None
            state = self.calls[call_id] = _CallState(
                Call(call_id, self.pbx, now, pbx_ref={"linkedid": linkedid}), linkedid
            )
            self._touch(state)
        return state

    def _room_for_channel(self, name: str) -> bool:
        """Whether one more channel may be followed: within the link's bound, and within
        MAX_CHANNELS_PER_EXTENSION for an operator's phone (a phone's line state looks at
        each of its channels)."""
        ext = self.channel_map.extension_of(name)
        if len(self.channels) < self.max_channels and (
            ext is None or len(self._by_extension.get(ext, ())) < MAX_CHANNELS_PER_EXTENSION
        ):
            return True
        self._refuse("channels")
        return False

    def _refuse(self, what: str) -> None:
        """Count a call or channel not followed. Logged the 1st, 10th, 100th... time: a
        flood shows in the log without flooding it."""
        self.refused += 1
        if str(self.refused).rstrip("0") == "1":
            log.warning(
                "too many open calls on one PBX link: new %s are not followed until some end",
                what,
                extra={
                    "fields": {
                        "pbx": self.pbx,
                        "calls": len(self.calls),
                        "max_calls": self.max_calls,
                        "channels": len(self.channels),
                        "max_channels": self.max_channels,
                        "not_followed": self.refused,
                    }
                },
            )

    def _forget_channel(self, uid: str) -> Channel | None:
        channel = self.channels.pop(uid, None)
        if channel is not None and channel.extension is not None:
            same = self._by_extension.get(channel.extension)
            if same is not None:
                same.discard(uid)
                if not same:
                    del self._by_extension[channel.extension]
        return channel

    def _add_channel(self, state: _CallState, uid: str, name: str, chan_state: str) -> Channel:
        ext = self.channel_map.extension_of(name)
        channel = Channel(uid, name, ext, state.call.id, chan_state, is_root=uid == state.linkedid)
        self.channels[uid] = channel
        if ext is not None:
            self._by_extension.setdefault(ext, set()).add(uid)
        state.channels.add(uid)
        if channel.is_root and ext is not None:
            state.root_is_operator = True
            if state.call.caller_extension is None:
                state.call.caller_extension = ext
        return channel

    def _state_of(self, uid: str | None) -> tuple[Channel | None, _CallState | None]:
        channel = self.channels.get(uid or "")
        if channel is None:
            return None, None
        return channel, self.calls.get(channel.call_id)

    def _channel_or_new(self, frame: Frame, prefix: str, now: datetime) -> Channel | None:
        """The channel a frame names (``prefix`` "" or "Dest"), registering it if new."""
        uid = frame.get(f"{prefix}Uniqueid")
        if not uid:
            return None
        channel = self.channels.get(uid)
        if channel is None:
            linkedid = frame.get(f"{prefix}Linkedid") or uid
            name = frame.get(f"{prefix}Channel", "")
            state = self._call_for(linkedid, now) if self._room_for_channel(name) else None
            if state is None:
                return None
            channel = self._add_channel(
                state, uid, name, frame.get(f"{prefix}ChannelStateDesc", "Down")
            )
            if channel.is_root and channel.extension is None:
                state.call.direction = state.call.direction or Direction.INBOUND
        return channel

    def _touch(self, state: _CallState) -> None:
        # A channel that never became a call (a pickup code, a voicemail check) stays out
        # of the log; it is written once it has a direction.
        if state.call.direction is not None:
            self._dirty[state.call.id] = state.call

    @staticmethod
    def _active_leg(call: Call, extension: str) -> CallLeg | None:
        for leg in reversed(call.legs):
            if leg.extension == extension and leg.active:
                return leg
        return None

    def _take_caller_id(self, state: _CallState, frame: Frame) -> None:
        """The outside caller's number and name, from the call's first (trunk) channel."""
        call = state.call
        number = frame.get("CallerIDNum", "")
        if number and number != "<unknown>" and not self._is_internal(number):
            normalized = to_e164(number, self.region)
            if call.external_number is None or (
                normalized and call.external_number != normalized and call.answered_at is None
            ):
                call.external_number = normalized or number
        name = frame.get("CallerIDName", "")
        if name and name != "<unknown>" and call.external_name is None:
            call.external_name = name

    def _is_internal(self, number: str) -> bool:
        return number.isdigit() and len(number) <= 6

    # -- handlers --------------------------------------------------------------------

    def _on_newchannel(self, frame: Frame, now: datetime, events: list[DomainEvent]) -> None:
        channel = self._channel_or_new(frame, "", now)
        if channel is None:
            return
        state = self.calls[channel.call_id]
        channel.state = frame.get("ChannelStateDesc", channel.state)
        if channel.is_root and channel.extension is None:
            self._take_caller_id(state, frame)
            self._take_did(state, frame)
            self._touch(state)
        if channel.extension:
            self._update_line(channel.extension, events)

    def _on_channel_update(self, frame: Frame, now: datetime, events: list[DomainEvent]) -> None:
        channel, state = self._state_of(frame.get("Uniqueid"))
        if channel is None or state is None:
            return
        new_state = frame.get("ChannelStateDesc", channel.state)
        changed = new_state != channel.state
        channel.state = new_state
        if channel.is_root and channel.extension is None:
            self._take_caller_id(state, frame)
            self._touch(state)
        if changed and channel.extension:
            self._update_line(channel.extension, events)

    def _on_newexten(self, frame: Frame, now: datetime, events: list[DomainEvent]) -> None:
        channel, state = self._state_of(frame.get("Uniqueid"))
        if state is not None and frame.get("Application") == "ReceiveFAX":
            # The machine took the call now; the transmission is the conversation.
            state.fax_started_at = state.fax_started_at or now
        if state is not None and channel is not None and channel.is_root and state.call.did is None:
            self._take_did(state, frame)

    def _take_did(self, state: _CallState, frame: Frame) -> None:
        exten = frame.get("Exten", "")
        if (
            state.call.did is None
            and exten
            and exten not in SPECIAL_EXTENS
            and frame.get("Context", "").startswith(self.inbound_contexts)
        ):
            state.call.did = exten
            self._touch(state)

    def _on_varset(self, frame: Frame, now: datetime, events: list[DomainEvent]) -> None:
        if frame.get("Variable") != "MIXMONITOR_FILENAME":
            return
        _, state = self._state_of(frame.get("Uniqueid"))
        path = frame.get("Value", "")
        if state is not None and path and path not in state.call.recordings:
            state.call.recordings.append(path)
            self._touch(state)

    def _on_dial_begin(self, frame: Frame, now: datetime, events: list[DomainEvent]) -> None:
        source = self._channel_or_new(frame, "", now) if frame.get("Uniqueid") else None
        dest = self._channel_or_new(frame, "Dest", now)
        if dest is None:
            return
        if source is not None and dest.call_id != source.call_id:
            self._move_channel(dest, self.calls[source.call_id], now, events)
        recall = source is None and self._recall_waiting(dest, frame)
        if recall:
            self._move_channel(dest, recall, now, events)
        state = self.calls.get(dest.call_id)
        if state is None:
            return
        call = state.call
        if dest.extension is None:
            self._dial_outside(state, source, frame)
            return
        if source is not None and source.extension == dest.extension and source.leg is not None:
            dest.leg = source.leg  # a Local channel's ;2 dialling the real phone
            return
        leg = None if recall else self._active_leg(call, dest.extension)
        if leg is None:
            leg = CallLeg(dest.extension, ring_started_at=now)
            call.legs.append(leg)
            if source is not None and source.extension == dest.extension:
                # A Local channel no Dial created (an attended transfer's consultation,
                # AMI Atxfer or the *2 feature) dialling the phone.
                source.leg = leg
                self._consult_or_transfer(state, leg, now, events)
            elif recall:
                pass  # the caller comes back to the transferer: the same call goes on
            elif source is None:
                self._start_originate(state, leg, frame)
            elif call.direction is None and state.root_is_operator:
                call.direction = Direction.INTERNAL
            else:
                self._note_transfer(state, dest.extension, now, events)
            events.append(call_events.ringing(call, dest.extension, now))
        dest.leg = leg
        self._touch(state)
        self._update_line(dest.extension, events)

    def _consult_or_transfer(
        self, state: _CallState, leg: CallLeg, now: datetime, events: list[DomainEvent]
    ) -> None:
        call = state.call
        pending = {state.transfer_pending_to, state.redirect[1] if state.redirect else None}
        if call.answered_by is not None and leg.extension not in pending:
            state.consult_legs.append(leg)
        else:
            self._note_transfer(state, leg.extension, now, events)

    def _recall_waiting(self, dest: Channel, frame: Frame) -> _CallState | None:
        """The call a phone rung by the PBX itself belongs to when it is an attended
        transfer's recall: a call waits for it and the phone is told it is that caller.
        Its channel has a Linkedid of its own until it is bridged."""
        if dest.extension is None:
            return None
        number = frame.get("DestConnectedLineNum", "")
        for waiting in self.calls.values():
            if waiting.recall_to != dest.extension or waiting.call.id == dest.call_id:
                continue
            expected = waiting.call.external_number
            if expected and to_e164(number, self.region) not in (expected, None):
                continue
            return waiting
        return None

    def _start_originate(self, state: _CallState, leg: CallLeg, frame: Frame) -> None:
        """The operator's own phone rings first: click-to-dial (ours or another tool's)."""
        call = state.call
        leg.originate = True
        call.caller_extension = leg.extension
        state.root_is_operator = True
        call.direction = Direction.OUTBOUND
        pending = self._originates.pop(leg.extension, None)
        if pending is not None:
            call.originate_id = pending.request_id
            call.external_number = pending.number
        else:
            number = frame.get("DestConnectedLineNum") or frame.get("DestCallerIDNum") or ""
            if number and not self._is_internal(number) and number != "<unknown>":
                call.external_number = to_e164(number, self.region) or number

    def _dial_outside(self, state: _CallState, source: Channel | None, frame: Frame) -> None:
        """A dial towards a trunk: an operator's call going out (inbound calls that are
        forwarded outside keep their direction)."""
        call = state.call
        if not state.root_is_operator or source is None:
            return
        state.outside_channels.add(frame.get("DestUniqueid", ""))
        call.direction = Direction.OUTBOUND
        if call.external_number is None or not call.originate_id:
            for key in ("Exten", "DestExten", "DestCallerIDNum", "DestConnectedLineNum"):
                number = frame.get(key, "")
                if number and number not in SPECIAL_EXTENS and number != "<unknown>":
                    call.external_number = to_e164(number, self.region) or number
                    break
        self._touch(state)

    def _note_transfer(
        self, state: _CallState, target: str, now: datetime, events: list[DomainEvent]
    ) -> None:
        """A new extension rung after someone else answered: the call was passed on (a
        Redirect or a PBX feature that raises no transfer event of its own)."""
        call = state.call
        if state.transfer_pending_to == target:
            state.transfer_pending_to = None
            return
        source = call.answered_by
        if state.redirect is not None and state.redirect[1] == target:
            source, state.redirect = state.redirect[0], None
        elif call.answered_by is None or call.answered_by == target:
            return
        transfer = state.noted_transfer = CallTransfer(TransferKind.BLIND, source, target, now)
        call.transfers.append(transfer)
        events.append(call_events.transferred(call, transfer))

    def _on_dial_end(self, frame: Frame, now: datetime, events: list[DomainEvent]) -> None:
        dest, state = self._state_of(frame.get("DestUniqueid"))
        if dest is None or state is None:
            return
        status = frame.get("DialStatus", "")
        result = DIAL_RESULTS.get(status, LegResult.FAILED if status else None)
        if result is None:
            return
        call = state.call
        if dest.extension is None:
            if dest.uniqueid not in state.outside_channels:
                return  # e.g. the PBX answering an incoming trunk channel of its own
            state.outside_result = result
            if result is LegResult.ANSWERED and call.answered_at is None:
                call.answered_at = now
                events.append(call_events.answered(call, None, now))
            self._touch(state)
            return
        leg = dest.leg
        if leg is None or not leg.active:
            return
        if result is LegResult.ANSWERED:
            self._answer_leg(state, leg, now, events)
        elif leg.answered_at is None:
            leg.result, leg.ended_at = result, now
        self._touch(state)
        self._update_line(dest.extension, events)

    def _answer_leg(
        self, state: _CallState, leg: CallLeg, now: datetime, events: list[DomainEvent]
    ) -> None:
        if leg.answered_at is not None:
            return
        leg.answered_at, leg.result = now, LegResult.ANSWERED
        call = state.call
        if leg.originate or leg in state.consult_legs:
            # The operator picked up their own phone (the call is not answered yet), or
            # a colleague took the transferer's consultation (the caller waits on hold).
            return
        if call.answered_at is None:
            call.answered_at = now
        call.answered_by = leg.extension
        events.append(call_events.answered(call, leg.extension, now))

    def _on_bridge_enter(self, frame: Frame, now: datetime, events: list[DomainEvent]) -> None:
        """An operator's channel in a bridge has answered, even where no DialEnd said so."""
        channel, state = self._state_of(frame.get("Uniqueid"))
        if channel is None or state is None or channel.extension is None:
            return
        leg = channel.leg
        if leg is not None and leg.answered_at is None and leg.active:
            self._answer_leg(state, leg, now, events)
            self._touch(state)

    def _on_blind_transfer(self, frame: Frame, now: datetime, events: list[DomainEvent]) -> None:
        if frame.get("Result", "Success") != "Success":
            return
        transferer, state = self._state_of(frame.get("TransfererUniqueid"))
        if state is None:
            _, state = self._state_of(frame.get("TransfereeUniqueid"))
        if state is None:
            return
        target = frame.get("Extension") or None
        from_ext = transferer.extension if transferer else None
        noted, state.noted_transfer = state.noted_transfer, None
        if noted is not None and noted.to == target and noted.kind is TransferKind.BLIND:
            noted.from_extension = from_ext or noted.from_extension  # already in the log
            self._touch(state)
            return
        transfer = CallTransfer(TransferKind.BLIND, from_ext, target, now)
        state.call.transfers.append(transfer)
        state.transfer_pending_to = target
        self._touch(state)
        events.append(call_events.transferred(state.call, transfer))

    def _on_attended_transfer(self, frame: Frame, now: datetime, events: list[DomainEvent]) -> None:
        """The transferer consulted the target, then joined caller and target. The target
        keeps the leg it had since it started ringing; if it still rings (a "blond"
        transfer: the transferer hung up first) the call is answered by it only when it
        answers, and the transferer may be rung back when it does not."""
        if frame.get("Result", "Success") != "Success":
            return
        _, state = self._state_of(frame.get("TransfereeUniqueid"))
        transferer, _ = self._state_of(frame.get("OrigTransfererUniqueid"))
        target, target_state = self._state_of(frame.get("TransferTargetUniqueid"))
        if state is None:
            return
        call = state.call
        state.noted_transfer = None  # a BlindTransfer after this one is another transfer
        from_ext = transferer.extension if transferer else None
        leg = self._transfer_target_leg(state, target, target_state, now, events)
        to_ext = leg.extension if leg else target.extension if target else None
        transfer = CallTransfer(TransferKind.ATTENDED, from_ext, to_ext, now)
        call.transfers.append(transfer)
        events.append(call_events.transferred(call, transfer))
        if leg is not None and leg.answered_at is not None:
            call.answered_by = leg.extension
            events.append(call_events.answered(call, leg.extension, now))
        elif leg is not None and leg.active:
            state.recall_to = from_ext
        self._touch(state)

    def _transfer_target_leg(
        self,
        state: _CallState,
        target: Channel | None,
        target_state: _CallState | None,
        now: datetime,
        events: list[DomainEvent],
    ) -> CallLeg | None:
        """The target's leg, out of the consultation: in this call when the consultation
        shared its Linkedid (AMI Atxfer, the *2 feature), else moved in from the
        consultation's own call (a phone's own attended transfer)."""
        if target is not None and target_state is not None and target_state is not state:
            leg = target.leg
            self._move_channel(target, state, now, events)
            if target.extension is None:
                return None
            if leg is None:
                leg = CallLeg(target.extension, ring_started_at=now, answered_at=now)
                leg.result = LegResult.ANSWERED
            state.call.legs.append(leg)
            target.leg = leg
            return leg
        wanted = target.leg if target is not None else None
        for leg in reversed(state.consult_legs):
            if wanted is None or leg is wanted:
                state.consult_legs.remove(leg)
                return leg
        return None

    def _on_pickup(self, frame: Frame, now: datetime, events: list[DomainEvent]) -> None:
        picker, _ = self._state_of(frame.get("Uniqueid"))
        target, state = self._state_of(frame.get("TargetUniqueid"))
        if state is None or picker is None or picker.extension is None:
            return
        if target is not None and target.leg is not None and target.leg.ringing:
            target.leg.result, target.leg.ended_at = LegResult.PICKED_UP, now
        self._move_channel(picker, state, now, events)
        leg = CallLeg(picker.extension, ring_started_at=now)
        state.call.legs.append(leg)
        picker.leg = leg
        self._answer_leg(state, leg, now, events)
        self._touch(state)
        if target is not None and target.extension:
            self._update_line(target.extension, events)

    def _move_channel(
        self, channel: Channel, to: _CallState, now: datetime, events: list[DomainEvent]
    ) -> None:
        old = self.calls.get(channel.call_id)
        channel.call_id = to.call.id
        channel.is_root = False
        to.channels.add(channel.uniqueid)
        if old is not None and old is not to:
            old.channels.discard(channel.uniqueid)
            if not old.channels:
                self._end_call(old, now, events)

    def _on_queue_join(self, frame: Frame, now: datetime, events: list[DomainEvent]) -> None:
        _, state = self._state_of(frame.get("Uniqueid"))
        if state is not None and frame.get("Queue"):
            state.call.queue = frame["Queue"]
            self._take_did(state, frame)
            self._touch(state)

    def _on_queue_abandon(self, frame: Frame, now: datetime, events: list[DomainEvent]) -> None:
        _, state = self._state_of(frame.get("Uniqueid"))
        if state is not None:
            state.abandoned_in_queue = True

    def _on_receive_fax(self, frame: Frame, now: datetime, events: list[DomainEvent]) -> None:
        _, state = self._state_of(frame.get("Uniqueid"))
        if state is None:
            return
        call = state.call
        pages = int(frame.get("PagesTransferred") or 0)
        call.fax = FaxInfo(
            pages,
            frame.get("FileName") or None,
            remote_station=frame.get("RemoteStationID", "").strip() or None,
            status="received" if pages > 0 else "failed",
        )
        if pages > 0 and call.answered_at is None:
            call.answered_at = state.fax_started_at or now
            events.append(call_events.answered(call, None, call.answered_at))
        self._touch(state)

    def _on_hangup(self, frame: Frame, now: datetime, events: list[DomainEvent]) -> None:
        uid = frame.get("Uniqueid", "")
        channel = self._forget_channel(uid)
        if channel is None:
            return
        state = self.calls.get(channel.call_id)
        if state is None:
            return
        state.channels.discard(uid)
        leg = channel.leg
        if leg is not None and leg.active and not self._leg_has_channels(state, leg):
            if leg.answered_at is None:
                cause = int(frame.get("Cause") or 0)
                leg.result = HANGUP_CAUSES.get(cause, LegResult.CANCELLED)
            leg.ended_at = now
        if channel.extension:
            self._update_line(channel.extension, events)
        if not state.channels:
            self._end_call(state, now, events)
        else:
            self._touch(state)

    def _leg_has_channels(self, state: _CallState, leg: CallLeg) -> bool:
        return any(self.channels[uid].leg is leg for uid in state.channels)

    def _end_call(
        self,
        state: _CallState,
        now: datetime,
        events: list[DomainEvent],
        *,
        unknown_outcome: bool = False,
        outcome: Outcome | None = None,
    ) -> None:
        call = state.call
        del self.calls[call.id]
        if call.direction is None:
            return  # never became a call: nothing to log
        call_events.end_legs(call, now, known=not unknown_outcome)
        outcome = Outcome.UNKNOWN if unknown_outcome else outcome or self._outcome(state)
        ended = call_events.finish(call, now, outcome)
        self._ended[call.id] = None
        if len(self._ended) > RECENTLY_ENDED:
            self._ended.popitem(last=False)
        self._touch(state)
        events.append(ended)

    def _end_unseen(self, state: _CallState, events: list[DomainEvent]) -> None:
        """Close a call that ended while nobody listened (``call_events.mark_unseen_end``)."""
        last_known = call_events.mark_unseen_end(state.call, self.last_frame_at)
        unknown = state.call.answered_at is None
        self._end_call(state, last_known, events, unknown_outcome=unknown)

    def _end_from_record(self, state: _CallState, record: Call, events: list[DomainEvent]) -> None:
        """Close a call that ended unseen as the PBX's records say it ended: what we saw
        stays, the record fills in what we did not (its answer, its end, each phone's)."""
        call = state.call
        call.ended_while_disconnected = call.recovered_from_cdr = True
        if record.answered_at is not None and call.answered_at is None:
            call.answered_at = record.answered_at
        if record.answered_by and call.answered_at is not None:
            call.answered_by = record.answered_by
        for leg in call.legs:
            if not leg.active:
                continue
            seen = [r for r in record.legs if r.extension == leg.extension]
            if seen:
                leg.answered_at = leg.answered_at or seen[-1].answered_at
                leg.result = LegResult.ANSWERED if leg.answered_at else seen[-1].result
                leg.ended_at = seen[-1].ended_at
        assert record.ended_at is not None and record.outcome is not None
        outcome = Outcome.ANSWERED if call.answered_at is not None else record.outcome
        self._end_call(state, record.ended_at, events, outcome=outcome)

    def _outcome(self, state: _CallState) -> Outcome:
        call = state.call
        if call.answered_at is not None:
            return Outcome.ANSWERED
        if state.abandoned_in_queue:
            return Outcome.ABANDONED
        if call.legs and all(leg.originate for leg in call.legs):
            # Click-to-dial whose operator never took their own phone: nobody hung up on
            # anybody; the phone was not answered (or was busy).
            first = call.legs[0].result
            return Outcome.BUSY if first is LegResult.BUSY else Outcome.NO_ANSWER
        results = [leg.result for leg in call.legs if not leg.originate]
        if state.outside_result is not None:
            results.append(state.outside_result)
        if LegResult.NO_ANSWER in results:
            return Outcome.NO_ANSWER
        if results and all(r is LegResult.BUSY for r in results):
            return Outcome.BUSY
        if results and all(r is LegResult.FAILED for r in results):
            return Outcome.FAILED
        if LegResult.BUSY in results and LegResult.CANCELLED not in results:
            return Outcome.BUSY
        return Outcome.ABANDONED

    # -- lines -----------------------------------------------------------------------

    def _on_device_state(self, frame: Frame, now: datetime, events: list[DomainEvent]) -> None:
        ext = self.channel_map.extension_of_device(frame.get("Device", ""))
        if ext is None:
            return
        if frame.get("State", "") in UNAVAILABLE_DEVICE_STATES:
            self.unavailable.add(ext)
        else:
            self.unavailable.discard(ext)
        self._update_line(ext, events)

    def _on_extension_status(self, frame: Frame, now: datetime, events: list[DomainEvent]) -> None:
        ext = frame.get("Exten", "")
        if not (ext.isdigit() and len(ext) <= 6):
            return
        if frame.get("Status") in ("4", "-1", "-2"):
            self.unavailable.add(ext)
        else:
            self.unavailable.discard(ext)
        self._update_line(ext, events)

    def _update_line(self, ext: str, events: list[DomainEvent]) -> None:
        new = self._line_state(ext)
        if self.lines.get(ext) != new:
            self.lines[ext] = new
            events.append(LineStateChanged(extension=ext, state=new))

    def _line_state(self, ext: str) -> LineState:
        ringing = False
        for uid in self._by_extension.get(ext, ()):
            channel = self.channels[uid]
            if channel.state == "Up" or (channel.is_root and channel.state in ("Ring", "Up")):
                return LineState.IN_USE
            if channel.leg is not None and channel.leg.ringing:
                ringing = True
        if ringing:
            return LineState.RINGING
        return LineState.UNAVAILABLE if ext in self.unavailable else LineState.IDLE
