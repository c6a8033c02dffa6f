"""Keeping a lease, and doing the leader's work only while it is held.

``Leadership`` tries for its lease until it gets it, then renews it; it calls ``elected``
once it holds it and ``lost`` once it no longer does (renewal failed, or the lease ran
out unrenewed: the node was paused). While it leads, what the leader's parts put out goes
through ``FencedBus`` and ``FencedSink``: an event or a call from a node whose lease has
run out is dropped there (and the node steps down), so a node woken from a pause never
publishes or writes what another node is now doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from cti.bus import EventBus, Listener, Subscription
from cti.calls import Call, CallSink
from cti.cluster.lease import RENEWALS, Lease
from cti.events import DomainEvent

log = logging.getLogger("cti.cluster")

Action = Callable[[], Awaitable[None]]


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.leading = Gauge(
            "cti_cluster_leading", "1 while this node leads the link or job", ["lease"],
            registry=registry,
        )  # fmt: skip
        self.takeovers = Counter(
            "cti_cluster_takeovers",
            "Times this node took a link or job over (at start, or from a node that failed)",
            ["lease"],
            registry=registry,
        )
        self.losses = Counter(
            "cti_cluster_leases_lost",
            "Times this node lost a lease it held (renewal failed, or paused past its end)",
            ["lease"],
            registry=registry,
        )


class Leadership:
    def __init__(
        self,
        lease: Lease,
        elected: Action,
        lost: Action,
        metrics: Metrics,
    ) -> None:
        self.lease = lease
        self.elected = elected
        self.lost = lost
        self.metrics = metrics
        self.leading = False
        self._task: asyncio.Task[None] | None = None
        self._stepping_down: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.lease.name

    @property
    def held(self) -> bool:
        return self.leading and self.lease.held

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"lease {self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.leading:
            await self._step_down()
        await self.lease.release()

    def fence(self) -> bool:
        """Whether the leader's work may go on now; steps down (soon) when it may not."""
        if self.lease.held:
            return True
        if self.leading and (self._stepping_down is None or self._stepping_down.done()):
            log.error(
                "the %s lease ran out before it could be renewed (was this node paused?); "
                "stepping down",
                self.name,
            )
            self._stepping_down = asyncio.get_running_loop().create_task(self._step_down())
        return False

    async def _run(self) -> None:
        interval = self.lease.seconds / RENEWALS
        while True:
            try:
                if not self.leading:
                    if await self.lease.try_acquire():
                        await self._take_over()
                    else:
                        await asyncio.sleep(interval)
                    continue
                await asyncio.sleep(interval)
                if not await self.lease.renew() or not self.lease.held:
                    await self._step_down()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("keeping the %s lease failed; trying again", self.name)
                await asyncio.sleep(interval)

    async def _take_over(self) -> None:
        self.leading = True
        self.metrics.takeovers.labels(self.name).inc()
        self.metrics.leading.labels(self.name).set(1)
        log.warning("this node leads %s now", self.name)
        try:
            await self.elected()
        except Exception:
            log.exception("taking %s over failed; giving it up", self.name)
            await self._step_down()

    async def _step_down(self) -> None:
        if not self.leading:
            return
        self.leading = False
        self.metrics.leading.labels(self.name).set(0)
        self.metrics.losses.labels(self.name).inc()
        log.warning("this node no longer leads %s", self.name)
        await self.lease.release()  # if the lock is still ours: let another node take it
        try:
            await self.lost()
        except Exception:
            log.exception("handing %s over failed", self.name)


class FencedBus:
    """The bus as a leader's part sees it: what it publishes goes out only while the
    lease is held."""

    def __init__(self, bus: EventBus, leadership: Leadership) -> None:
        self._bus = bus
        self._leadership = leadership

    async def publish(self, event: DomainEvent) -> None:
        self.publish_nowait(event)

    def publish_nowait(self, event: DomainEvent) -> None:
        if self._leadership.fence():
            self._bus.publish_nowait(event)

    def subscribe(
        self, *, prefixes: Iterable[str] = (), maxsize: int = 1000, name: str = ""
    ) -> Subscription:
        return self._bus.subscribe(prefixes=prefixes, maxsize=maxsize, name=name)

    def listen(self, listener: Listener, *, name: str = "") -> Callable[[], None]:
        return self._bus.listen(listener, name=name)


class FencedSink:
    """The call store as a leader's part sees it: calls are saved only while the lease is
    held (the store checks it again in the transaction that writes them)."""

    def __init__(self, store: CallSink, leadership: Leadership) -> None:
        self._store = store
        self._leadership = leadership

    def save(self, calls: list[Call]) -> None:
        if calls and self._leadership.fence():
            self._store.save(calls)

    async def known(self, call_ids: list[str]) -> set[str]:
        return await self._store.known(call_ids)

    def __getattr__(self, name: str) -> Any:  # anything else the store offers
        return getattr(self._store, name)
