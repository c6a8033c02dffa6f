"""Who is calling, for screen pops: every ``call.ringing`` gets a ``call.identified``.

The directory is given ``[crm] lookup_budget_ms``: an answer in time is published at
once; a slower one when it arrives, so the pop shows the number straight away and fills
in the client later. Each call is looked up once; extensions rung later (a ring group,
a transfer) get the same answer from memory. A directory that can answer without
waiting (``cti.directory.lookup_now``) is asked at once, with no task, and the live
feed asks through ``identify_now`` before a pop's first frame, which then shows the
client already.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from cti.bus import EventBus, SubscriberLagged, Subscription, SubscriptionClosed
from cti.directory import LATER, Directory, DirectoryUnavailable, Found, lookup_now
from cti.events import CallIdentified, CallRinging, describe
from cti.tasks import TaskMonitor

log = logging.getLogger("cti.crm.identify")

REMEMBERED_CALLS = 2000


class CallerIdentifier:
    def __init__(
        self,
        bus: EventBus,
        directory: Directory,
        budget_seconds: float,
        tasks: TaskMonitor | None = None,
    ) -> None:
        self.bus = bus
        self.tasks = tasks or TaskMonitor()
        self.directory = directory
        self.budget = budget_seconds
        # call id -> the lookup (done or still running) for its number
        self._lookups: OrderedDict[str, asyncio.Future[Found]] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        subscription = self.bus.subscribe(prefixes=["call.ringing"], name="identify")
        self._runner = self.tasks.spawn(self._run(subscription), "caller-identifier")

    async def stop(self) -> None:
        for task in [*self._tasks, *([self._runner] if self._runner else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)

    async def _run(self, subscription: Subscription) -> None:
        while True:
            try:
                event = await subscription.get()
            except SubscriberLagged as lag:
                log.warning("screen pops fell behind; %d went unidentified", lag.dropped)
                continue
            except SubscriptionClosed:
                return
            if isinstance(event, CallRinging) and event.external_number:
                identified = self.identify_now(event)
                if identified is not None:
                    await self.bus.publish(identified)
                    continue
                task = asyncio.create_task(self._identify(event))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def identify_now(self, ringing: CallRinging) -> CallIdentified | None:
        """The call's ``call.identified`` when it can be had without waiting: looked up
        already, or from a directory that answers at once; None otherwise (and for
        hidden numbers). Not published: the caller uses it, ``_run`` publishes it."""
        number = ringing.external_number
        if not number:
            return None
        lookup = self._lookups.get(ringing.call_id)
        if lookup is None:
            try:
                found = lookup_now(self.directory, number)
            except Exception as e:  # a failing directory: the waiting path says so
                log.warning("caller lookup failed: %r", e)
                return None
            if found is LATER:
                return None
            lookup = self._remember(ringing.call_id, asyncio.get_running_loop().create_future())
            lookup.set_result(found)
        if not lookup.done() or lookup.cancelled() or lookup.exception() is not None:
            return None
        return _identified(ringing, lookup.result())

    async def _identify(self, ringing: CallRinging) -> None:
        try:
            await self._look_up(ringing)
        except Exception:
            log.exception("could not identify a caller", extra={"fields": describe(ringing)})

    async def _look_up(self, ringing: CallRinging) -> None:
        lookup = self._lookups.get(ringing.call_id)
        if lookup is None:
            lookup = self._remember(
                ringing.call_id,
                asyncio.ensure_future(self.directory.lookup(ringing.external_number or "")),
            )
        match, late, unavailable = None, False, False
        try:
            try:
                match = await asyncio.wait_for(asyncio.shield(lookup), self.budget)
            except TimeoutError:
                late = True
                match = await lookup
        except Exception as e:  # DirectoryUnavailable, or a connector's own failure
            unavailable = True
            if not isinstance(e, DirectoryUnavailable):
                log.warning("caller lookup failed: %r", e)
        await self.bus.publish(_identified(ringing, match, late=late, unavailable=unavailable))

    def _remember(self, call_id: str, lookup: asyncio.Future[Found]) -> asyncio.Future[Found]:
        self._lookups[call_id] = lookup
        if len(self._lookups) > REMEMBERED_CALLS:
            self._lookups.popitem(last=False)
        return lookup


def _identified(
    ringing: CallRinging, match: Found, *, late: bool = False, unavailable: bool = False
) -> CallIdentified:
    return CallIdentified(
        call_id=ringing.call_id,
        extension=ringing.extension,
        number=ringing.external_number or "",
        match=None if match is None else match.to_dict(),
        late=late,
        unavailable=unavailable,
    )
