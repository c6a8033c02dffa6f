"""Exponential backoff, written once: for retries counted by attempt (an SMS, a CRM
report) and for reconnect loops (a PBX link, a modem)."""

from __future__ import annotations

import random
from collections.abc import Callable

MAX_DOUBLINGS = 60  # 2**60 times any base is past any cap: keeps the float finite


def delay_for(
    attempt: int,
    *,
    base: float,
    most: float,
    jitter: float = 0.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before try ``attempt + 1``: ``base`` after the first failure,
    doubling, at most ``most``; spread by ±``jitter`` (a fraction) so that clients cut off
    together do not all come back at once."""
    delay = min(most, base * 2 ** min(max(attempt - 1, 0), MAX_DOUBLINGS))
    return delay * (1 - jitter + 2 * jitter * rand()) if jitter else delay


class Backoff:
    """The delays of one reconnect loop; ``reset`` once a connection holds."""

    def __init__(self, *, first: float, most: float, jitter: float = 0.2) -> None:
        self.first = first
        self.most = most
        self.jitter = jitter
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return delay_for(self.failures, base=self.first, most=self.most, jitter=self.jitter)

    def reset(self) -> None:
        self.failures = 0
