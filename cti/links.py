"""The state of every configured PBX and modem link, for /healthz, /metrics and the bus.

Each change of a link's state is logged here, once, at warning: down with why, up again
with how long it was down. Retries in between (a PBX that refuses for minutes) are not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge

from cti.bus import EventBus
from cti.domain import utcnow
from cti.events import LinkStateChanged

log = logging.getLogger("cti.links")


@dataclass(slots=True)
class LinkStatus:
    name: str
    kind: str  # "pbx" or "modem"
    up: bool = False
    detail: str = "not connected yet"
    since: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "up": self.up,
            "detail": self.detail,
            "since": self.since.isoformat(),
        }


class LinkRegistry:
    """Adapters report their link's state here; it is published when it changes."""

    def __init__(self, bus: EventBus, registry: CollectorRegistry) -> None:
        self._bus = bus
        self._links: dict[str, LinkStatus] = {}
        self._buses: dict[str, EventBus] = {}  # a link's own (a node of several: fenced)
        self._down_since: dict[str, datetime] = {}  # links down after being tried
        self._gauge = Gauge(
            "cti_link_up", "1 when the PBX or modem link is up", ["name", "kind"], registry=registry
        )

    def register(self, name: str, kind: str, *, bus: EventBus | None = None) -> LinkStatus:
        """``bus``: where this link's changes go, when not the registry's."""
        if name in self._links:
            raise ValueError(f"link {name!r} registered twice")
        status = self._links[name] = LinkStatus(name, kind)
        if bus is not None:
            self._buses[name] = bus
        self._gauge.labels(name, kind).set(0)
        return status

    async def report(self, name: str, up: bool, detail: str = "") -> None:
        status = self._links[name]
        if status.up == up and status.detail == detail:
            return
        now = utcnow()
        self._log_change(status, up, detail, now)
        status.up, status.detail, status.since = up, detail, now
        self._gauge.labels(status.name, status.kind).set(1 if up else 0)
        bus = self._buses.get(name, self._bus)
        await bus.publish(LinkStateChanged(name=name, kind=status.kind, up=up, detail=detail))

    def _log_change(self, status: LinkStatus, up: bool, detail: str, now: datetime) -> None:
        fields = {"link": status.name, "kind": status.kind, "detail": detail}
        went_down = self._down_since.get(status.name)
        if not up:
            if went_down is None:  # a new outage (or the first try failed): once
                self._down_since[status.name] = now
                log.warning(
                    "%s link %s is down: %s",
                    status.kind,
                    status.name,
                    detail,
                    extra={"fields": fields},
                )
        elif status.up:
            return
        elif went_down is None:  # the first connection: not news
            log.info("%s link %s is up", status.kind, status.name, extra={"fields": fields})
        else:
            del self._down_since[status.name]
            down = (now - went_down).total_seconds()
            log.warning(
                "%s link %s is up again after %.1f s down",
                status.kind,
                status.name,
                down,
                extra={"fields": {**fields, "down_seconds": round(down, 1)}},
            )

    def all(self) -> list[LinkStatus]:
        return list(self._links.values())
