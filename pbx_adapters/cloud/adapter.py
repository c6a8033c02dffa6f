"""What every cloud PBX adapter shares: the webhook door and what goes through it.

A webhook is checked by the provider's signature before anything else: a bad one is a
403 and a count (``cti_webhook_rejected_total{pbx,reason}``), never a state change. A
good one goes to the provider's book (sans-I/O), whose core events go on the bus and
whose changed calls go to the call store. The link is "up" once the adapter takes
webhooks: the provider, not the service, opens each connection, so a provider that
stopped posting is not seen; a command that cannot reach the API says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol

import aiohttp

from cti.calls import Call
from cti.domain import LineState
from cti.events import DomainEvent
from cti.pbx import (
    PbxContext,
    PbxLinkDown,
    PbxSettings,
    PbxUnsupported,
    WebhookResponse,
    adapter_counter,
)

log = logging.getLogger("cti.cloud")

SWEEP_SECONDS = 30.0  # how often calls the provider went quiet about are looked at
NO_LINES: Mapping[str, LineState] = MappingProxyType({})


class Book(Protocol):
    """A provider's calls, rebuilt from its events (sans-I/O)."""

    def live(self, call_id: str) -> Call | None: ...

    def take_changed(self) -> list[Call]: ...

    def expire(self, now: float) -> list[DomainEvent]:
        """End the calls the provider went quiet about; their events."""
        ...


class CloudAdapter:
    def __init__(self, settings: PbxSettings, context: PbxContext, book: Book) -> None:
        self.name = settings.name
        self.settings = settings
        self.context = context
        self.book = book
        self.rejected: dict[str, int] = {}
        self.http: aiohttp.ClientSession | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._metric = adapter_counter(
            context,
            "cti_webhook_rejected",
            "Cloud PBX webhooks refused before anything changed, by PBX and why",
            ["pbx", "reason"],
        )

    @property
    def connected(self) -> bool:
        return self.http is not None

    async def start(self, restore: list[Call]) -> None:
        self.http = aiohttp.ClientSession()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        await self.context.links.report(self.name, True, f"webhooks at /pbx/{self.name}/")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self.http is not None:
            await self.http.close()
            self.http = None
        self.context.store.save(self.book.take_changed())

    def refuse(self, reason: str, status: int = 403) -> WebhookResponse:
        """A webhook turned away: counted and logged, nothing changed."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        if self._metric is not None:
            self._metric.labels(self.name, reason).inc()
        log.warning(
            "%s: refused a webhook: %s",
            self.name,
            reason,
            extra={"fields": {"pbx": self.name, "reason": reason}},
        )
        return WebhookResponse(status, reason)

    def publish(self, events: list[DomainEvent]) -> None:
        for event in events:
            self.context.bus.publish_nowait(event)
        self.context.store.save(self.book.take_changed())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            self.publish(self.book.expire(self.context.clock().timestamp()))

    def status(self) -> dict[str, Any]:
        return {
            "type": self.settings.type,
            "live_events": True,
            "webhooks": f"/pbx/{self.name}/",
            "webhooks_refused": dict(self.rejected),
        }

    # -- what every cloud PBX answers alike --------------------------------------------

    def lines(self) -> Mapping[str, LineState]:
        return NO_LINES

    def live_call(self, call_id: str) -> Call | None:
        return self.book.live(call_id)

    def calls_named_by(self, file_name: str) -> list[str]:
        return []

    @property
    def sends_faxes(self) -> bool:
        return False

    async def send_fax(self, number: str, file: str, request_id: str) -> None:
        raise PbxUnsupported(f"PBX {self.name} sends no faxes")

    def api(self) -> aiohttp.ClientSession:
        if self.http is None:
            raise PbxLinkDown(f"PBX {self.name} is not started")
        return self.http
