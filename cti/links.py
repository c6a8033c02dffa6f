"""The state of every configured PBX and modem link, for /healthz, /metrics and the bus."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge

from cti.bus import EventBus
from cti.domain import utcnow
from cti.events import LinkStateChanged


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
        self._gauge = Gauge(
            "cti_link_up", "1 when the PBX or modem link is up", ["name", "kind"], registry=registry
        )

    def register(self, name: str, kind: str) -> LinkStatus:
        if name in self._links:
            raise ValueError(f"link {name!r} registered twice")
        status = self._links[name] = LinkStatus(name, kind)
        self._gauge.labels(name, kind).set(0)
        return status

    async def report(self, name: str, up: bool, detail: str = "") -> None:
        status = self._links[name]
        if status.up == up and status.detail == detail:
            return
        status.up, status.detail, status.since = up, detail, utcnow()
        self._gauge.labels(status.name, status.kind).set(1 if up else 0)
        await self._bus.publish(LinkStateChanged(name=name, kind=status.kind, up=up, detail=detail))

    def all(self) -> list[LinkStatus]:
        return list(self._links.values())
