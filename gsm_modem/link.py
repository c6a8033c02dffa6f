"""One configured modem wired to the core: SMS in and out, status reports, calls.

The driver (``GsmModem``) reports what the modem says; this routes it: a new message is
fetched, read (``gsm_modem.sms``) and handed to the inbox as text, a status report goes
to the outbox, a call to the SIM becomes call events and a call record, a modem that
comes (back) up has its SIM read for what arrived meanwhile and its share of the outbox
woken. The core gets no PDU: what cannot be read is kept as it came, and read again
when the modem next comes up.
"""

from __future__ import annotations

import asyncio
import logging

from cti.bus import EventBus
from cti.calls import CallSink
from cti.config import ModemConfig
from cti.domain import utcnow
from cti.links import LinkRegistry
from cti.modem import DeliveryReport, ReceivedPart
from cti.sms import SmsInbox, SmsOutbox
from cti.tasks import TaskMonitor
from gsm_modem.calls import GsmCalls
from gsm_modem.modem import (
    GsmModem,
    IncomingCall,
    IncomingCallEnded,
    MessagePdu,
    ModemEvent,
    ModemReady,
    NewMessage,
    StatusReportPdu,
)
from gsm_modem.pdu import PduError
from gsm_modem.sms import read, read_part

log = logging.getLogger("cti.modem")


class ModemLink:
    def __init__(
        self,
        config: ModemConfig,
        *,
        region: str,
        bus: EventBus,
        links: LinkRegistry,
        store: CallSink,
        inbox: SmsInbox,
        outbox: SmsOutbox,
        tasks: TaskMonitor | None = None,
        **driver_options: float,
    ) -> None:
        self.name = config.name
        self.bus = bus
        self.store = store
        self.inbox = inbox
        self.outbox = outbox
        self.calls = GsmCalls(config.name, config.ring_extensions, region)
        self.tasks = tasks or TaskMonitor()
        self.modem = GsmModem(
            config, on_event=self._on_event, links=links, tasks=self.tasks, **driver_options
        )
        self._work: asyncio.Queue[ModemEvent] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._worker = self.tasks.spawn(self._run(), f"modem-link-{self.name}")
        await self.modem.start()

    async def stop(self) -> None:
        await self.modem.stop()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    def _on_event(self, event: ModemEvent) -> None:
        if isinstance(event, IncomingCall):
            self._emit(*self.calls.ringing(event.number, utcnow()))
        elif isinstance(event, IncomingCallEnded):
            self._emit(*self.calls.ended(utcnow()))
        else:
            self._work.put_nowait(event)  # needs the modem or the database: in order, later

    def _emit(self, events: list, call: object) -> None:
        for event in events:
            self.bus.publish_nowait(event)
        if call is not None:
            self.store.save([call])

    async def _run(self) -> None:
        while True:
            event = await self._work.get()
            try:
                await self._handle(event)
            except Exception:
                # The SIM keeps what was not stored; the next start-up reads it again.
                log.exception("could not handle %s from modem %s", type(event).__name__, self.name)

    async def _handle(self, event: ModemEvent) -> None:
        if isinstance(event, ModemReady):
            await self.inbox.reread(self.name, read_part)  # kept unread, or from before 0011
            stored = await self.modem.list_messages()  # what arrived while nobody listened
            for index, _status, pdu in stored:
                await self._take(index, pdu)
            if stored:
                log.info("read the SIM's stored SMS", extra={"fields": {"count": len(stored)}})
            await self.inbox.sweep(self.name)
            self.outbox.wake()
        elif isinstance(event, NewMessage):
            await self._take(event.index, await self.modem.read_message(event.index))
        elif isinstance(event, MessagePdu):
            await self._receive(event.pdu_hex)
        elif isinstance(event, StatusReportPdu):
            report = self._read(event.pdu_hex)  # not stored anywhere: nothing to keep
            if isinstance(report, DeliveryReport):
                await self.outbox.status_report(self.name, report)

    async def _take(self, index: int, pdu: str) -> None:
        """Store a message (or apply a status report) from the SIM, then delete it there."""
        await self._receive(pdu)
        await self.modem.delete_message(index)

    async def _receive(self, pdu: str) -> None:
        """A PDU to the core as what it says: a part to the inbox, a report to the outbox."""
        try:
            what = read(pdu)
        except PduError as e:
            log.warning("an unreadable PDU from the modem is kept as it came: %s", e)
            await self.inbox.keep_unread(self.name, pdu)
            return
        if isinstance(what, ReceivedPart):
            await self.inbox.store_part(self.name, what)
        elif isinstance(what, DeliveryReport):  # a report kept on the SIM (+CDSI)
            await self.outbox.status_report(self.name, what)
        else:
            log.info("modem %s: skipped a message stored for sending", self.name)

    @staticmethod
    def _read(pdu: str) -> ReceivedPart | DeliveryReport | None:
        try:
            return read(pdu)
        except PduError as e:
            log.warning("an unreadable PDU from the modem: %s", e)
            return None
