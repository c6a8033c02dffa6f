"""Wrappers that keep a slow or failing external CRM from slowing every call down.

``ResilientDirectory`` puts a per-request timeout, a TTL cache (answers and "unknown"),
a circuit breaker and request coalescing in front of any ``Directory``. When it cannot
ask the CRM it raises ``DirectoryUnavailable``, so callers can tell "unknown caller"
(``None``) from "could not ask". (Screen pops wait for it at most ``lookup_budget_ms``:
``cti/identify.py``.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from cti.directory import Directory, DirectoryUnavailable, Match

if TYPE_CHECKING:
    from cti.config import CrmConfig

log = logging.getLogger("crm_bridge.resilience")

Clock = Callable[[], float]
T = TypeVar("T")
DEFAULT_CACHE_ENTRIES = 10_000


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Closed until ``failures`` failures in a row; then open for ``reset_seconds``; then
    half-open: one trial request, whose success closes it and whose failure reopens it."""

    def __init__(self, failures: int, reset_seconds: float, clock: Clock = time.monotonic):
        self.failure_threshold = failures
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        reopen_at = self._opened_at + self.reset_seconds
        if self._state is BreakerState.OPEN and self._clock() >= reopen_at:
            return BreakerState.HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """May a request go out now? In half-open, only the first one may."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
            self._state = BreakerState.HALF_OPEN
            self._trial_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        if self._state is not BreakerState.CLOSED:
            log.info("CRM answers again: circuit breaker closed")
        self._state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self._trial_in_flight = False

    def abandon_trial(self) -> None:
        """A cancelled request proves nothing: let the next one be the trial."""
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        trial_failed = self._trial_in_flight
        self._trial_in_flight = False
        if trial_failed or self.consecutive_failures >= self.failure_threshold:
            if self._state is BreakerState.CLOSED:
                log.warning(
                    "CRM failing: circuit breaker open",
                    extra={"fields": {"failures": self.consecutive_failures}},
                )
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()


class TtlCache:
    """Lookup answers (``None`` included) by number, for ``ttl`` seconds, LRU-bounded."""

    def __init__(self, ttl: float, max_entries: int, clock: Clock = time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Match | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> tuple[bool, Match | None]:
        """``(True, answer)`` on a fresh hit, ``(False, None)`` otherwise."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, value

    def put(self, key: str, value: Match | None) -> None:
        if self.ttl <= 0 or self.max_entries <= 0:
            return
        self._entries[key] = (self._clock() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def pop(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


class ResilientDirectory:
    """A ``Directory`` in front of another, slower one. Counters are plain attributes."""

    def __init__(
        self,
        inner: Directory,
        *,
        timeout_seconds: float = 2.0,
        cache_seconds: float = 300.0,
        breaker_failures: int = 5,
        breaker_reset_seconds: float = 30.0,
        max_cache_entries: int = DEFAULT_CACHE_ENTRIES,
        clock: Clock = time.monotonic,
    ) -> None:
        self.inner = inner
        self.timeout_seconds = timeout_seconds
        self.cache = TtlCache(cache_seconds, max_cache_entries, clock)
        self.breaker = CircuitBreaker(breaker_failures, breaker_reset_seconds, clock)
        self._in_flight: dict[str, asyncio.Task[Match | None]] = {}
        self.hits = 0  # answered from the cache
        self.misses = 0  # sent to the CRM
        self.coalesced = 0  # joined a request already in flight for the same number
        self.failures = 0  # CRM errors and timeouts (timeouts included)
        self.timeouts = 0
        self.rejected = 0  # refused without asking: breaker open

    @classmethod
    def from_config(
        cls, inner: Directory, config: CrmConfig, *, clock: Clock = time.monotonic
    ) -> ResilientDirectory:
        return cls(
            inner,
            timeout_seconds=config.timeout_ms / 1000,
            cache_seconds=config.cache_seconds,
            breaker_failures=config.breaker_failures,
            breaker_reset_seconds=config.breaker_reset_seconds,
            clock=clock,
        )

    @property
    def breaker_state(self) -> str:
        return self.breaker.state.value

    async def start(self) -> None:
        """Start the connector's own background work, if it has any."""
        start = getattr(self.inner, "start", None)
        if start is not None:
            await start()

    def stats(self) -> dict[str, Any]:
        """The counters, for ``/healthz`` (with the connector's own, if it keeps any)."""
        inner = getattr(self.inner, "stats", None)
        return {
            **({"connector": inner()} if inner is not None else {}),
            "breaker": self.breaker_state,
            "hits": self.hits,
            "misses": self.misses,
            "coalesced": self.coalesced,
            "failures": self.failures,
            "timeouts": self.timeouts,
            "rejected": self.rejected,
            "cached": len(self.cache),
        }

    async def lookup(self, number: str) -> Match | None:
        found, match = self.cache.get(number)
        if found:
            self.hits += 1
            return match
        task = self._in_flight.get(number)
        if task is not None:
            self.coalesced += 1
        else:
            if not self.breaker.allow():
                self.rejected += 1
                raise DirectoryUnavailable("the CRM is not asked for a while (circuit open)")
            self.misses += 1
            task = asyncio.create_task(self._ask(number), name="crm lookup")
            self._in_flight[number] = task
            task.add_done_callback(lambda _t, n=number: self._in_flight.pop(n, None))
            task.add_done_callback(_consume_exception)
        # Shielded: one caller giving up must not cancel the request the others wait on.
        return await asyncio.shield(task)

    async def _ask(self, number: str) -> Match | None:
        match = await self._guarded(self.inner.lookup(number))
        self.cache.put(number, match)
        return match

    async def search(self, text: str, limit: int = 20) -> list[Match]:
        if not self.breaker.allow():
            self.rejected += 1
            raise DirectoryUnavailable("the CRM is not asked for a while (circuit open)")
        return await self._guarded(self.inner.search(text, limit))

    async def _guarded(self, request: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout_seconds):
                result: T = await request
        except TimeoutError:
            self.failures += 1
            self.timeouts += 1
            self.breaker.record_failure()
            raise DirectoryUnavailable(
                f"the CRM did not answer within {self.timeout_seconds:g} s"
            ) from None
        except asyncio.CancelledError:
            self.breaker.abandon_trial()
            raise
        except Exception as exc:
            self.failures += 1
            self.breaker.record_failure()
            raise DirectoryUnavailable(f"the CRM failed: {exc or type(exc).__name__}") from exc
        self.breaker.record_success()
        return result

    def forget(self, number: str | None = None) -> None:
        """Drop one cached answer (after an edit in the CRM), or all of them."""
        if number is None:
            self.cache.clear()
        else:
            self.cache.pop(number)

    async def close(self) -> None:
        for task in list(self._in_flight.values()):
            task.cancel()
        close = getattr(self.inner, "close", None)
        if close is not None:
            await close()


def _consume_exception(task: asyncio.Task[Any]) -> None:
    # A late answer nobody awaits must not end as "Task exception was never retrieved".
    if not task.cancelled() and task.exception() is not None:
        log.debug("late directory answer failed", exc_info=task.exception())
