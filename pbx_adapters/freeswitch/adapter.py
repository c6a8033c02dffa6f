"""The FreeSWITCH adapter: the asyncio shell around the sans-I/O ESL client and tracker.

It connects to the Event Socket, authenticates, subscribes (``event json`` of the events
the tracker uses, ``filter``ed down to what it reads), and on every (re)connect loads the
switch's state (``show channels``, ``uuid_dump`` of each leg it did not know, ``show
registrations``) while holding live events back. A link silent past ``heartbeat_timeout``
(FreeSWITCH sends HEARTBEAT every 20 s) is dropped and reconnected with backoff.
Commands go out as ``api``/``bgapi``; nothing is re-sent after a reconnect.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid as uuidlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from cti.backoff import Backoff
from cti.calls import Call
from cti.domain import LineState
from cti.events import DomainEvent, FaxAttempt, OriginateResult
from cti.pbx import (
    DialPlaced,
    PbxCallNotFound,
    PbxContext,
    PbxLinkDown,
    PbxRefused,
    PbxUnsupported,
)
from cti.phone import dialable, to_e164
from pbx_adapters.freeswitch.esl import (
    Authenticated,
    Disconnected,
    EslClient,
    EslParser,
    EslProtocolError,
    Event,
    EventReceived,
    JobDone,
    Refused,
    Reply,
)
from pbx_adapters.freeswitch.settings import FreeswitchSettings
from pbx_adapters.freeswitch.tracker import CallTracker

log = logging.getLogger("cti.freeswitch")

STATE_LOAD_TIMEOUT = 15.0
API_TIMEOUT = 10.0
READ_SIZE = 65536
# The events the adapter itself reads besides the tracker's.
OWN_EVENTS = ("BACKGROUND_JOB", "HEARTBEAT", "spandsp::txfaxresult")
# mod_callcenter says a lot (agent states, counts, offers); the tracker reads two actions.
QUEUE_ACTIONS = ("member-queue-start", "member-queue-end")
# bgapi originate's -ERR <cause>: the code the desk words in its own language, the words.
ORIGINATE_CAUSES = {
    "NO_ANSWER": ("no_answer", "the phone did not answer"),
    "NO_USER_RESPONSE": ("no_answer", "the phone did not answer"),
    "ALLOTTED_TIMEOUT": ("no_answer", "the phone did not answer"),
    "PROGRESS_TIMEOUT": ("no_answer", "the phone did not answer"),
    "RECOVERY_ON_TIMER_EXPIRE": ("no_answer", "the phone did not answer"),
    "USER_BUSY": ("busy", "the phone is busy"),
    "CALL_REJECTED": ("busy", "the phone declined the call"),
    "USER_NOT_REGISTERED": ("unavailable", "the phone is not registered"),
    "SUBSCRIBER_ABSENT": ("unavailable", "the phone is not registered"),
    "UNALLOCATED_NUMBER": ("unreachable", "no such extension"),
    "NO_ROUTE_DESTINATION": ("unreachable", "no such extension"),
    "DESTINATION_OUT_OF_ORDER": ("unreachable", "the phone could not be reached"),
    "NORMAL_TEMPORARY_FAILURE": ("congested", "the line is congested"),
    "SWITCH_CONGESTION": ("congested", "the line is congested"),
}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def subscription(config: FreeswitchSettings, tracker_events: frozenset[str]) -> list[str]:
    """The commands that subscribe a connection: one ``event`` line, then ``filter``s
    that let through only the events (and callcenter actions) that are read."""
    names = sorted(tracker_events | set(OWN_EVENTS))
    plain = [n for n in names if "::" not in n]
    custom = [n for n in names if "::" in n]
    commands = [f"event {config.event_format} {' '.join(plain)} CUSTOM {' '.join(custom)}"]
    commands += [f"filter Event-Name {n}" for n in plain]
    commands += [f"filter Event-Subclass {n}" for n in custom if n != "callcenter::info"]
    commands += [f"filter CC-Action {action}" for action in QUEUE_ACTIONS]
    return commands


class FreeswitchAdapter:
    """One configured FreeSWITCH: its Event Socket link, its calls and its commands."""

    def __init__(self, config: FreeswitchSettings, context: PbxContext) -> None:
        self.config = config
        self.name = config.name
        self.region = context.region
        self.bus = context.bus
        self.links = context.links
        self.store = context.store
        self.clock = context.clock
        self.tracker = CallTracker(
            config.name,
            extension_channels=config.extension_channels,
            outside_channels=config.outside_channels,
            domains=config.domains,
            region=context.region,
            max_calls=config.max_calls,
            max_channels=config.max_channels,
        )
        self.link_up = asyncio.Event()
        self.version = ""
        self._client: EslClient | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._replies: dict[int, asyncio.Future[Reply]] = {}
        self._held: list[Event] | None = None  # live events held back during a state load
        self._originates: dict[str, DialPlaced] = {}  # by Job-UUID
        self._faxes: dict[str, str] = {}  # fax leg uuid: request id
        self._fax_jobs: dict[str, str] = {}  # Job-UUID: fax leg uuid
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.backoff = Backoff(first=1.0, most=config.reconnect_max_seconds)

    # -- lifecycle -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.link_up.is_set()

    async def start(self, restore: list[Call] | None = None) -> None:
        if restore:
            self.tracker.restore(restore)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        self.link_up.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        self.store.save(self.tracker.take_changed())

    async def _run(self) -> None:
        while not self._stopping:
            reason = await self._connection()
            self._lost(reason)
            if self._stopping:
                return
            await asyncio.sleep(self.backoff.next_delay())

    async def _connection(self) -> str:
        """One connection, from connect to its end; returns why it ended."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.config.host, self.config.port), API_TIMEOUT
            )
        except (OSError, TimeoutError) as e:
            return f"cannot connect: {e}"
        self._writer = writer
        self._client = EslClient(
            self.config.password.get_secret_value(),
            subscription(self.config, self.tracker.events),
            parser=EslParser(events=self.tracker.events | set(OWN_EVENTS)),
        )
        try:
            while True:
                try:
                    async with asyncio.timeout(self.config.heartbeat_timeout):
                        data = await reader.read(READ_SIZE)
                except TimeoutError:
                    return f"no HEARTBEAT for {self.config.heartbeat_timeout:.0f} s"
                if not data:
                    return "connection lost"
                reason = self._received(data)
                if reason:
                    return reason
        except (OSError, EslProtocolError) as e:
            return f"connection lost: {e}"
        finally:
            writer.close()
            self._writer = self._client = None

    def _received(self, data: bytes) -> str:
        """Handle bytes from the switch; a reason when the connection is over."""
        client = self._client
        assert client is not None
        for item in client.receive(data):
            if isinstance(item, EventReceived):
                self._event(item.event)
            elif isinstance(item, Reply):
                future = self._replies.pop(item.request, None)
                if future is not None and not future.done():
                    future.set_result(item)
            elif isinstance(item, JobDone):
                self._job_done(item)
            elif isinstance(item, Authenticated):
                self._spawn(self._load_state())
            elif isinstance(item, Refused):
                return f"refused: {item.reason}"
            elif isinstance(item, Disconnected):
                return f"the switch closed the link: {item.reason.splitlines()[0][:80]}"
        for problem in client.problems:
            log.warning("ESL stream: %s", problem)
        client.problems.clear()
        self._flush()
        return ""

    def _flush(self) -> None:
        if self._client is not None and self._writer is not None:
            data = self._client.data_to_send()
            if data:
                self._writer.write(data)

    def _lost(self, reason: str) -> None:
        self.link_up.clear()
        self._held = None
        for future in self._replies.values():
            if not future.done():
                future.set_exception(PbxLinkDown(f"PBX {self.name}: {reason}"))
        self._replies.clear()
        for job in list(self._originates):
            self._originate_result(job, "link_down", "the PBX link dropped")
        for leg, request in list(self._faxes.items()):
            self._fax_result(
                leg,
                request,
                FaxAttempt(request_id=request, success=False, code="link_down", reason=reason),
            )
        self._fax_jobs.clear()
        self._spawn(self.links.report(self.name, False, reason))

    async def _load_state(self) -> None:
        """Reload what the switch has now, holding live events until it is applied."""
        self._held = []
        try:
            async with asyncio.timeout(STATE_LOAD_TIMEOUT):
                self.version = (await self._api("version")).split("(")[0].strip()
                rows = json.loads(await self._api("show channels as json") or "{}")
                legs: list[Event] = []
                for row in rows.get("rows") or []:
                    uuid = row.get("uuid", "")
                    if uuid and uuid not in self.tracker.channels:
                        dump = await self._api(f"uuid_dump {uuid} json", check=False)
                        if dump.startswith("{"):
                            legs.append(json.loads(dump))
                    elif uuid:  # known: only whether it was answered meanwhile
                        answered = row.get("callstate") in ("ACTIVE", "HELD")
                        legs.append({"Unique-ID": uuid, "Answer-State": "answered" * answered})
                registrations = json.loads(await self._api("show registrations as json") or "{}")
        except (TimeoutError, PbxLinkDown, PbxRefused, ValueError) as e:
            log.warning("FreeSWITCH state load failed: %r; reconnecting", e)
            self._held = None
            if self._writer is not None:
                self._writer.close()
            return
        now = self.clock()
        registered = {
            row.get("reg_user", "")
            for row in registrations.get("rows") or []
            if not self.tracker.domains or row.get("realm") in self.tracker.domains
        }
        events = self.tracker.resync(legs, now)
        events += self.tracker.registrations(registered - {""}, now)
        held, self._held = self._held or [], None
        self._emit(events)
        for event in held:
            self._event(event)
        self.backoff.reset()
        self.link_up.set()
        await self.links.report(self.name, True, f"connected to {self.version}".strip())
        log.debug("ESL state loaded", extra={"fields": {"pbx": self.name, "legs": len(legs)}})

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- the event stream ------------------------------------------------------------

    def _event(self, event: Event) -> None:
        if self._held is not None:
            self._held.append(event)
            return
        try:
            if event.get("Event-Subclass") == "spandsp::txfaxresult":
                self._txfax_result(event)
            elif event.get("Event-Name") == "CHANNEL_HANGUP_COMPLETE":
                self._fax_hung_up(event)
        except Exception as e:  # a bad event is skipped and logged; the feed goes on
            log.warning("skipped a FreeSWITCH event", extra={"fields": {"error": repr(e)}})
        self._emit(self.tracker.feed(event, self.clock()))

    def _emit(self, events: list[DomainEvent]) -> None:
        for event in events:
            self.bus.publish_nowait(event)
        self.store.save(self.tracker.take_changed())

    def lines(self) -> Mapping[str, LineState]:
        return MappingProxyType(self.tracker.lines)

    def live_call(self, call_id: str) -> Call | None:
        state = self.tracker.calls.get(call_id)
        return state.call if state is not None else None

    def calls_named_by(self, file_name: str) -> list[str]:
        """record_session and rxfax files named after a leg's uuid: that leg's call."""
        found = []
        for uuid in UUID.findall(file_name.lower()):
            channel = self.tracker.channels.get(uuid)
            found.append(channel.call_id if channel else self.tracker.call_id(uuid))
        return found

    # -- commands --------------------------------------------------------------------

    async def _api(self, command: str, *, check: bool = True) -> str:
        """Send ``api <command>``; its answer's text. PbxRefused for ``-ERR`` (when
        ``check``), PbxLinkDown when the link is down or the answer does not come."""
        client = self._client
        if client is None:
            raise PbxLinkDown(f"PBX {self.name} is not connected")
        request = client.api(command)  # raises UnsafeCommand before anything is sent
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._replies[request] = future
        self._flush()
        try:
            async with asyncio.timeout(API_TIMEOUT):
                reply = await future
        except TimeoutError:
            raise PbxLinkDown(f"PBX {self.name} did not answer") from None
        if check and (not reply.ok or reply.text.startswith("-ERR")):
            raise PbxRefused(reply.text.removeprefix("-ERR").strip() or "refused")
        return reply.text

    def _require_link(self) -> EslClient:
        if not self.connected or self._client is None:
            raise PbxLinkDown(f"PBX {self.name} is not connected")
        return self._client

    def _digits(self, number: str) -> str:
        return dialable(
            number, self.region, dial_format=self.config.dial_format, prefix=self.config.dial_prefix
        )

    @staticmethod
    def _extension(extension: str) -> str:
        if not (extension.isdigit() and 1 <= len(extension) <= 10):
            raise PbxRefused(f"{extension!r} is not an extension")
        return extension

    async def dial(self, extension: str, number: str) -> DialPlaced:
        """Ring the operator's phone (``user/<ext>@<domain>``); once it answers, the
        dialplan dials ``number`` from it, the way FusionPBX's click-to-dial does."""
        client = self._require_link()
        digits = self._digits(number)
        request = DialPlaced(uuidlib.uuid4().hex, self._extension(extension), digits)
        leg, job = str(uuidlib.uuid4()), str(uuidlib.uuid4())
        variables = ",".join(
            [
                f"origination_uuid={leg}",
                f"origination_caller_id_number={digits}",
                f"origination_caller_id_name={digits}",
                f"originate_timeout={self.config.originate_timeout}",
                f"cti_request_id={request.request_id}",
            ]
        )
        command = (
            f"originate {{{variables}}}user/{extension}@{self.config.domain} {digits} "
            f"XML {self.config.context}"
        )
        self.tracker.expect_originate(
            leg, to_e164(number, self.region) or number, request.request_id
        )
        self._originates[job] = request
        client.bgapi(command, job)
        self._flush()
        log.info("click-to-dial", extra={"fields": {"pbx": self.name, "extension": extension}})
        return request

    def _job_done(self, job: JobDone) -> None:
        if job.job_uuid in self._fax_jobs:
            self._fax_dialled(job)
            return
        if job.ok:
            self._originate_result(job.job_uuid, "", "")
            return
        cause = job.text.removeprefix("-ERR").strip().split()[0] if job.text else ""
        code, reason = ORIGINATE_CAUSES.get(cause, ("failed", cause.lower() or "failed"))
        self._originate_result(job.job_uuid, code, reason)

    def _originate_result(self, job: str, code: str, reason: str) -> None:
        request = self._originates.pop(job, None)
        if request is None:
            return
        log.info(
            "click-to-dial %s",
            "answered" if not code else f"failed: {reason}",
            extra={"fields": {"request": request.request_id, "extension": request.extension}},
        )
        self.bus.publish_nowait(
            OriginateResult(
                request_id=request.request_id,
                extension=request.extension,
                number=request.number,
                success=not code,
                reason=reason,
                code=code,
            )
        )

    async def transfer(self, call_id: str, extension: str, *, attended: bool = False) -> None:
        """Blind transfer: ``uuid_transfer`` the call's outside party to ``extension`` in
        the configured context. (Attended transfers are the phone's: att_xfer.)"""
        if attended:
            raise PbxUnsupported("attended transfer is started from the phone on FreeSWITCH")
        self._require_link()
        target = self._extension(extension)
        leg = self.tracker.uuid_of(call_id, outside=True)
        if leg is None:
            raise PbxCallNotFound(f"no live call {call_id!r} on PBX {self.name}")
        log.info(
            "blind transfer",
            extra={"fields": {"pbx": self.name, "call": call_id, "extension": target}},
        )
        self.tracker.expect_redirect(call_id, target)
        try:
            await self._api(f"uuid_transfer {leg} {target} XML {self.config.context}")
        except Exception:
            self.tracker.expect_redirect(call_id, None)
            raise

    def _leg_of(self, call_id: str) -> str:
        self._require_link()
        leg = self.tracker.uuid_of(call_id, outside=True) or self.tracker.uuid_of(call_id)
        if leg is None:
            raise PbxCallNotFound(f"no live call {call_id!r} on PBX {self.name}")
        return leg

    async def hang_up(self, call_id: str) -> None:
        await self._api(f"uuid_kill {self._leg_of(call_id)}")

    async def start_recording(self, call_id: str) -> None:
        """``uuid_record start`` on the call's outside leg (both sides are heard there);
        RECORD_START then names the file, attached like any other recording."""
        leg = self._leg_of(call_id)
        await self._api(f"uuid_record {leg} start {self.config.record_file.format(uuid=leg)}")

    async def stop_recording(self, call_id: str) -> None:
        await self._api(f"uuid_record {self._leg_of(call_id)} stop all")

    # -- faxes -----------------------------------------------------------------------

    @property
    def sends_faxes(self) -> bool:
        return bool(self.config.fax_dialstring)

    async def send_fax(self, number: str, file: str, request_id: str) -> None:
        """``originate <fax_dialstring> &txfax(<file>)``; how it went comes as
        ``FaxAttempt``s (the far end answered, then spandsp::txfaxresult)."""
        if not self.config.fax_dialstring:
            raise PbxUnsupported(f"PBX {self.name} sends no faxes: set its fax_dialstring")
        if not re.match(r"^/[^\s,(){}\[\]'\"]+$", file):
            raise PbxRefused("a fax file's path must be absolute, without spaces or brackets")
        client = self._require_link()
        digits = self._digits(number)
        leg, job = str(uuidlib.uuid4()), str(uuidlib.uuid4())
        dialstring = self.config.fax_dialstring.format(number=digits)
        variables = f"origination_uuid={leg},originate_timeout={self.config.fax_timeout}"
        self._faxes[leg] = request_id
        self._fax_jobs[job] = leg
        self.tracker.ignore_leg(leg)
        client.bgapi(f"originate {{{variables}}}{dialstring} &txfax({file})", job)
        self._flush()
        log.info("sending a fax", extra={"fields": {"pbx": self.name, "fax": request_id}})

    def _fax_dialled(self, job: JobDone) -> None:
        leg = self._fax_jobs.pop(job.job_uuid)
        request = self._faxes.get(leg)
        if request is None:
            return
        if job.ok:
            self.bus.publish_nowait(
                FaxAttempt(request_id=request, success=False, connected=True, final=False)
            )
            return
        cause = job.text.removeprefix("-ERR").strip().split()[0] if job.text else ""
        code = ORIGINATE_CAUSES.get(cause, ("failed", ""))[0]
        self._fax_result(
            leg, request, FaxAttempt(request_id=request, success=False, code=code, reason=cause)
        )

    def _txfax_result(self, event: Event) -> None:
        leg = event.get("Unique-ID", "")
        request = self._faxes.get(leg)
        if request is None:
            return
        ok = event.get("variable_fax_success") == "1"
        pages = event.get("variable_fax_document_transferred_pages", "")
        attempt = FaxAttempt(
            request_id=request,
            success=ok,
            code="" if ok else "failed",
            reason=event.get("variable_fax_result_text", ""),
            connected=True,
            pages=int(pages) if pages.isdigit() else None,
            remote_station=event.get("variable_fax_remote_station_id") or None,
        )
        self._fax_result(leg, request, attempt)

    def _fax_hung_up(self, event: Event) -> None:
        leg = event.get("Unique-ID", "")
        request = self._faxes.get(leg)
        if request is not None and leg not in self._fax_jobs.values():
            cause = event.get("Hangup-Cause", "")
            self._fax_result(
                leg,
                request,
                FaxAttempt(
                    request_id=request, success=False, code="failed", connected=True, reason=cause
                ),
            )

    def _fax_result(self, leg: str, request: str, attempt: FaxAttempt) -> None:
        self._faxes.pop(leg, None)
        self.bus.publish_nowait(attempt)
