"""What a node of several does, and when (docs/deploy.md, docs/architecture.md):

- every node follows the shared stream of live-feed frames, serves its own viewers from
  it, and answers a starting node's question for the feed's state;
- each PBX link is led by one node: it runs the adapter (started afresh at each takeover,
  from the calls the log holds in progress, as after a restart), answers the other nodes'
  commands for it, and sends the faxes when it is the PBX that sends them;
- each modem is led by one of the nodes it is plugged into (or, on the network, any);
- the periodic jobs (recordings, faxes, retention, the CRM outbox, the follow-ups a
  crash left undone) run on the node that leads ``jobs``.

A node that is not the leader of a link still answers every API call about it: commands
travel to the leader (``cti.cluster.pbx``), SMS and faxes through their outboxes in the
database, woken on every node by a notice.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import TYPE_CHECKING, Any

from cti.cluster.leadership import FencedBus, FencedSink, Leadership
from cti.cluster.node import Cluster
from cti.cluster.pbx import ClusterPbx
from cti.config import ModemConfig
from cti.pbx import PbxSettings, build_pbx
from cti.wakes import KINDS

if TYPE_CHECKING:
    from cti.service import Service

log = logging.getLogger("cti.cluster")

STATE_WAIT_SECONDS = 2.0  # for another node's copy of the feed's state, at start


async def join(service: Service, cluster: Cluster) -> None:
    """Become one of the nodes: the shared frames first (the viewers' feed), then the
    duties this node may take."""
    messaging = cluster.messaging
    live = service.live
    assert live.shared is not None
    live.stream = messaging.stream_id
    for kind in KINDS:
        await messaging.on_notice(kind, lambda _notice, kind=kind: service.wakes.here(kind))
    service.wakes.broadcast = messaging.notify
    await messaging.serve_state(live.shared.snapshot)

    def take(seq: int, frame: dict[str, Any]) -> None:
        audience = frozenset(frame["a"]) if frame["a"] is not None else None
        live.take(seq, frame["k"], audience, frame["d"], frame["c"])

    await messaging.follow_frames(take)
    snapshot = await messaging.ask_state(STATE_WAIT_SECONDS)
    if snapshot is not None:
        live.restore_shared(snapshot)
    for settings in service.config.pbx:
        if settings.enabled:
            _pbx_duty(service, cluster, settings)
    for modem in service.config.modem:
        if modem.enabled and _plugged_in_here(modem):
            _modem_duty(service, cluster, modem)
    _jobs_duty(service, cluster)
    cluster.start()


def _pbx_duty(service: Service, cluster: Cluster, settings: PbxSettings) -> None:
    name = settings.name
    facade = service.pbx[name]
    assert isinstance(facade, ClusterPbx)
    served: list[Any] = []

    async def elected() -> None:
        adapter = build_pbx(settings, context)
        facade.active = adapter
        adopted = service.live.adopt(name)
        served.append(await cluster.messaging.serve(name, facade.serve))
        await service.connect_pbx(adapter)
        if service.fax_pbx == name:
            await service.faxes.outbox.start()
        log.info("PBX %s is led here", name, extra={"fields": {"cards_adopted": adopted}})

    async def lost() -> None:
        while served:
            await cluster.messaging.unserve(served.pop())
        if service.fax_pbx == name:
            await service.faxes.outbox.stop()
        adapter, facade.active = facade.active, None
        if adapter is not None:
            await adapter.stop()
        service.live.forget(name)

    leadership = cluster.duty(f"pbx:{name}", elected, lost)
    facade.leading = lambda: leadership.held
    context = _fenced(service, leadership)
    service.links.register(name, "pbx", bus=context.bus)


def _modem_duty(service: Service, cluster: Cluster, modem: ModemConfig) -> None:
    async def elected() -> None:
        await service.start_modem(modem, bus=fenced.bus, store=fenced.store, register=False)
        await service.sms_outbox.recover(modem.name)  # what its last leader left mid-send

    async def lost() -> None:
        link = service.modems.pop(modem.name, None)
        service.sms_outbox.remove_modem(modem.name)
        if link is not None:
            await link.stop()

    leadership = cluster.duty(f"modem:{modem.name}", elected, lost)
    fenced = _fenced(service, leadership)
    service.links.register(modem.name, "modem", bus=fenced.bus)


def _jobs_duty(service: Service, cluster: Cluster) -> None:
    jobs = [*service.recordings.jobs, *service.faxes.jobs]

    async def elected() -> None:
        if service.crm_outbox is not None:
            service.crm_outbox.start()
        for job in jobs:
            job.start()
        await service.writeback.catch_up()

    async def lost() -> None:
        if service.crm_outbox is not None:
            await service.crm_outbox.stop()
        for job in jobs:
            await job.stop()

    cluster.duty("jobs", elected, lost)


def _fenced(service: Service, leadership: Leadership) -> Any:
    """The PBX context for a leader's parts: its events and calls go out only while the
    lease is held."""
    return dataclasses.replace(
        service.pbx_context,
        bus=FencedBus(service.bus, leadership),
        store=FencedSink(service.call_store, leadership),
    )


def _plugged_in_here(modem: ModemConfig) -> bool:
    """A modem on a serial port leads from the nodes it is plugged into; one on the
    network (socket://, rfc2217://) from any."""
    return "://" in modem.port or os.path.exists(modem.port)
