"""Waking a part that waits for work (an outbox, the live connections' token check), here
or, with several nodes, on every node: the part that has the work may run on another.

``wake(kind)`` calls what was registered for ``kind`` with ``on``; a node of several sends
a notice instead (``broadcast``), which every node (this one too) answers with ``here``;
when the notice cannot go (NATS away), this node's parts are woken at least (the others
find the work on their next idle check).
"""

from __future__ import annotations

from collections.abc import Callable

SMS = "sms"  # an SMS was queued: the outbox of the node that leads its modem sends it
FAX = "fax"  # a fax was queued
CRM = "crm"  # a finished call is waiting to go to the CRM
TOKENS = "tokens"  # a token ended: live connections check theirs
KINDS = (SMS, FAX, CRM, TOKENS)


class Wakes:
    def __init__(self) -> None:
        self._parts: dict[str, list[Callable[[], None]]] = {}
        self.broadcast: Callable[[str], bool] | None = None  # False: not sent

    def on(self, kind: str, wake: Callable[[], None]) -> None:
        self._parts.setdefault(kind, []).append(wake)

    def __call__(self, kind: str) -> None:
        if self.broadcast is None or not self.broadcast(kind):
            self.here(kind)

    def here(self, kind: str) -> None:
        for wake in self._parts.get(kind, ()):
            wake()
