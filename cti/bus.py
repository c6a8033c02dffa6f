"""The event bus: publishers never wait for subscribers.

Each subscription has a bounded queue. When a subscriber falls so far behind that its
queue is full, its backlog is dropped and its next ``get()`` raises ``SubscriberLagged``:
it must reload current state (resync) and then goes on receiving new events. A publisher
is therefore never blocked and memory stays bounded, whatever a subscriber does.

A listener (``listen``) is the other kind of reader: called with each event in the
publisher's own turn, with no queue and no task between. It is for a reader that only
updates memory and must never fall behind (the live feed: a screen pop then leaves in the
same turn of the loop as the PBX frame that made it). A listener that raises is logged;
the publisher and the other readers go on.

``EventBus`` is the whole interface; ``InProcessBus`` implements it with asyncio for one
node. A Redis or NATS backend implements the same methods (``publish``,
``publish_nowait``, ``subscribe``, ``listen``), carrying events as
``DomainEvent.to_dict()``; everything publishes and subscribes through it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from cti.events import DomainEvent

log = logging.getLogger("cti.bus")


class SubscriberLagged(Exception):
    """The subscriber fell behind; ``dropped`` events were discarded. Resync, then go on."""

    def __init__(self, dropped: int) -> None:
        super().__init__(f"subscriber fell behind; {dropped} events dropped, resync needed")
        self.dropped = dropped


class SubscriptionClosed(Exception):
    """The subscription was closed (by its owner or because the bus shut down)."""


class Subscription(Protocol):
    name: str

    async def get(self) -> DomainEvent: ...

    def close(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[DomainEvent]: ...


class EventBus(Protocol):
    async def publish(self, event: DomainEvent) -> None:
        """Deliver to every matching subscriber; never waits for one."""
        ...

    def publish_nowait(self, event: DomainEvent) -> None:
        """``publish`` for code that runs outside a coroutine (a protocol's callback, a
        store's hook): the event is on its way when this returns."""
        ...

    def subscribe(
        self, *, prefixes: Iterable[str] = (), maxsize: int = 1000, name: str = ""
    ) -> Subscription:
        """Events whose type starts with one of ``prefixes`` (all events when empty)."""
        ...

    def listen(self, listener: Listener, *, name: str = "") -> Callable[[], None]:
        """Call ``listener`` with every event as it is published; returns what stops it."""
        ...


Listener = Callable[[DomainEvent], None]


class _QueueSubscription:
    def __init__(self, bus: InProcessBus, prefixes: tuple[str, ...], maxsize: int, name: str):
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.name = name
        self.prefixes = prefixes
        self.maxsize = maxsize
        self._bus = bus
        self._queue: collections.deque[DomainEvent] = collections.deque()
        self._wakeup = asyncio.Event()
        self._dropped = 0
        self.closed = False

    def wants(self, event: DomainEvent) -> bool:
        return not self.prefixes or event.type.startswith(self.prefixes)

    def offer(self, event: DomainEvent) -> bool:
        """Queue the event; False when the queue was full and the backlog was dropped."""
        if len(self._queue) >= self.maxsize:
            self._dropped += len(self._queue) + 1
            self._queue.clear()
            self._wakeup.set()
            return False
        self._queue.append(event)
        self._wakeup.set()
        return True

    async def get(self) -> DomainEvent:
        while True:
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                raise SubscriberLagged(dropped)
            if self._queue:
                return self._queue.popleft()
            if self.closed:
                raise SubscriptionClosed(self.name)
            self._wakeup.clear()
            await self._wakeup.wait()

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._bus._remove(self)
            self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[DomainEvent]:
        return self

    async def __anext__(self) -> DomainEvent:
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None


class InProcessBus:
    """An asyncio bus for one process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._subscriptions: list[_QueueSubscription] = []
        self._listeners: list[tuple[Listener, str]] = []
        registry = registry or CollectorRegistry()
        self._published = Counter(
            "cti_bus_events_published", "Domain events published", ["type"], registry=registry
        )
        self._lagged = Counter(
            "cti_bus_subscriber_lags",
            "Times a slow subscriber's backlog was dropped and it was told to resync",
            ["subscriber"],
            registry=registry,
        )
        self._subscribers = Gauge(
            "cti_bus_subscribers", "Current bus subscriptions", registry=registry
        )
        self._published_of: dict[str, Counter] = {}

    async def publish(self, event: DomainEvent) -> None:
        self.publish_nowait(event)

    def publish_nowait(self, event: DomainEvent) -> None:
        counter = self._published_of.get(event.type)
        if counter is None:  # a child per type, kept: labels() costs more than the rest
            counter = self._published_of[event.type] = self._published.labels(event.type)
        counter.inc()
        for listener, name in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("a bus listener failed on an event", extra={"fields": {"name": name}})
        for sub in self._subscriptions:
            if sub.wants(event) and not sub.offer(event):
                self._lagged.labels(sub.name or "unnamed").inc()

    def subscribe(
        self, *, prefixes: Iterable[str] = (), maxsize: int = 1000, name: str = ""
    ) -> _QueueSubscription:
        sub = _QueueSubscription(self, tuple(prefixes), maxsize, name)
        self._subscriptions.append(sub)
        self._subscribers.set(len(self._subscriptions))
        return sub

    def listen(self, listener: Listener, *, name: str = "") -> Callable[[], None]:
        entry = (listener, name)
        self._listeners.append(entry)
        return lambda: self._listeners.remove(entry) if entry in self._listeners else None

    def close(self) -> None:
        self._listeners.clear()
        for sub in list(self._subscriptions):
            sub.close()

    def _remove(self, sub: _QueueSubscription) -> None:
        self._subscriptions.remove(sub)
        self._subscribers.set(len(self._subscriptions))
