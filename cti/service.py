"""The service: configuration, storage, bus and links assembled, and the server run."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, ProcessCollector
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from crm_bridge.connectors import build_call_reporter, build_directory
from cti import __version__
from cti.auth import Principal, TokenAuthenticator
from cti.bus import EventBus, InProcessBus
from cti.calls import CallSink
from cti.callstore import CallStore, calls_in_progress
from cti.clients.builtin import SqlDirectory
from cti.clients.history import PopHistory
from cti.clients.writeback import CallWriteBack
from cti.cluster.duties import join
from cti.cluster.node import Cluster
from cti.cluster.pbx import ClusterPbx
from cti.config import Config, ModemConfig
from cti.crm_outbox import CallReportOutbox
from cti.db import migrate
from cti.db.engine import create_engine, session_factory
from cti.db.health import DatabaseHealth
from cti.db.keys import shared_key
from cti.db.writer import Writer
from cti.directory import Directory
from cti.domain import LineState, Role
from cti.identify import CallerIdentifier
from cti.links import LinkRegistry
from cti.live import LiveFeed
from cti.logs import redactor
from cti.pbx import PbxAdapter, PbxContext, PbxService, PbxSettings, build_pbx, plugins
from cti.sms import SenderLookup, SmsInbox, SmsOutbox
from cti.sockets import SocketGuard
from cti.tasks import TaskMonitor
from cti.wakes import CRM, FAX, SMS, TOKENS, Wakes
from fax import Faxes
from gsm_modem.link import ModemLink
from gsm_modem.sms import GSM_CODEC
from recordings import Recordings
from recordings.store import RecordingStore

log = logging.getLogger("cti.service")

# At SIGTERM, requests still running (an export, say) get this long before they are cut.
SHUTDOWN_GRACE_SECONDS = 5.0


@dataclass(kw_only=True)
class Service:
    """Everything the running service is made of. ``start`` builds it (this module is the
    one place that knows every concrete part); the HTTP layer reads it."""

    config: Config
    engine: AsyncEngine
    sessions: async_sessionmaker
    bus: InProcessBus
    links: LinkRegistry
    metrics: CollectorRegistry
    tasks: TaskMonitor
    authenticator: TokenAuthenticator
    directory: Directory
    builtin_directory: SqlDirectory  # the built-in tables' (the directory, or beside it)
    crm_outbox: CallReportOutbox | None
    writeback: CallWriteBack
    call_store: CallStore
    pbx_context: PbxContext
    pbx: dict[str, PbxAdapter]
    pbx_services: list[PbxService]
    recordings: Recordings
    faxes: Faxes
    identifier: CallerIdentifier
    live: LiveFeed
    sms_outbox: SmsOutbox
    sms_inbox: SmsInbox
    modems: dict[str, ModemLink]
    sockets: SocketGuard
    database_health: DatabaseHealth
    wakes: Wakes
    fax_pbx: str | None  # the PBX that sends faxes, if one does
    media_key: bytes  # signs recordings' media grants (the database's: every node's)
    cluster: Cluster | None = None  # one node of several (docs/deploy.md)

    @classmethod
    async def start(cls, config: Config, *, directory: Directory | None = None) -> Service:
        """Build every part, then start them in order.

        Raises DatabaseNotMigrated when the schema is behind and auto_migrate is off.
        """
        for secret in config.secrets():
            redactor.add_secret(secret)
        engine = await _open_database(config)
        region, crm = config.phone.default_region, config.crm
        metrics = _metrics()
        cluster = None
        if config.cluster.enabled:
            cluster = Cluster(
                config.cluster,
                config.database_url,
                replay_seconds=config.server.ws_replay_seconds,
                registry=metrics,
            )
            await cluster.connect()
        wakes = Wakes()
        bus = InProcessBus(metrics)
        links = LinkRegistry(bus, metrics)
        sessions = session_factory(engine)
        tasks = TaskMonitor()

        builtin = SqlDirectory(sessions, crm.suffix_digits)
        directory = directory or build_directory(crm, builtin, region, config.server.data_dir)
        reporter = build_call_reporter(crm, directory, config.server.time_zone)
        crm_outbox = CallReportOutbox(sessions, reporter, tasks=tasks) if reporter else None
        writer = Writer(engine)
        writeback = CallWriteBack(
            sessions,
            writer,
            bus.publish_nowait,
            region=region,
            suffix_digits=crm.suffix_digits,
            default_extension=crm.default_manager_extension,
            create_leads=crm.create_leads,
            outbox=crm_outbox,
            # An external CRM says whose client a caller is (and who calls back).
            external=None if directory is builtin else directory,
            announce=lambda: wakes(CRM),
        )
        recording_store = RecordingStore(sessions, config.recordings_dir, config.recordings)
        faxes = Faxes.create(sessions, config, directory, bus, tasks)
        call_store = CallStore(
            sessions,
            writer,
            tasks,
            followers=[writeback, recording_store],
            after_write=[faxes.inbox.after_write],
            fence=cluster.fence if cluster is not None else None,
        )

        pbx_context = PbxContext(
            region,
            bus,
            links,
            call_store,
            directory,
            tasks,
            time_zone=config.server.time_zone,
            data_dir=config.server.data_dir,
            metrics=metrics,
            recordings_dir=config.recordings_dir,
        )
        pbx: dict[str, PbxAdapter] = {
            s.name: build_pbx(s, pbx_context) for s in config.pbx if s.enabled
        }
        if cluster is not None:  # each driven where it is led, reached from everywhere
            pbx = {
                name: ClusterPbx(name, adapter, cluster.messaging, leading=lambda: False)
                for name, adapter in pbx.items()
            }
        faxes.outbox.send = fax_sender(pbx, config.fax.pbx)
        faxes.outbox.announce = lambda: wakes(FAX)
        recordings = Recordings.create(
            recording_store, config, tasks, calls_named_by=lambda name: calls_named_by(pbx, name)
        )
        identifier = CallerIdentifier(bus, directory, crm.lookup_budget_ms / 1000, tasks)
        live = LiveFeed(
            bus,
            lines=lambda: line_states(pbx),
            line_of=lambda extension: line_state_of(pbx, extension),
            links=lambda: [status.to_dict() for status in links.all()],
            enrich=PopHistory(sessions, builtin=directory is builtin),
            identify_now=identifier.identify_now,
            replay_seconds=config.server.ws_replay_seconds,
            replay_frames=config.server.ws_replay_frames,
            send_buffer=config.server.ws_send_buffer,
            share=cluster.messaging.publish_frame if cluster is not None else None,
        )
        sms_outbox = SmsOutbox(
            sessions,
            bus.publish_nowait,
            {},
            retry_base_seconds=config.sms.retry_base_seconds,
            tasks=tasks,
            codec=GSM_CODEC,  # counts a text's parts even with no modem connected
        )
        service = cls(
            config=config,
            engine=engine,
            sessions=sessions,
            bus=bus,
            links=links,
            metrics=metrics,
            tasks=tasks,
            authenticator=TokenAuthenticator(sessions),
            directory=directory,
            builtin_directory=builtin,
            crm_outbox=crm_outbox,
            writeback=writeback,
            call_store=call_store,
            pbx_context=pbx_context,
            pbx=pbx,
            pbx_services=_pbx_services(config, pbx_context),
            recordings=recordings,
            faxes=faxes,
            identifier=identifier,
            live=live,
            sms_outbox=sms_outbox,
            sms_inbox=SmsInbox(sessions, bus.publish_nowait, SenderLookup(sessions, directory)),
            modems={},
            sockets=SocketGuard(sessions, tasks, config.server.ws_auth_check_seconds),
            database_health=DatabaseHealth(engine, sessions, lambda: call_store.last_error),
            wakes=wakes,
            fax_pbx=_fax_pbx(pbx, config.fax.pbx),
            media_key=await shared_key(sessions, "media-grant"),
            cluster=cluster,
        )
        wakes.on(SMS, sms_outbox.wake)
        wakes.on(FAX, faxes.outbox.wake)
        wakes.on(TOKENS, service.sockets.recheck_soon)
        if crm_outbox is not None:
            wakes.on(CRM, crm_outbox.wake)
        try:
            await service._start_parts()
        except BaseException:
            if cluster is not None:
                await cluster.stop()
            raise
        return service

    async def _start_parts(self) -> None:
        """Storage and its followers first, then the screens, then the links that feed
        them: nothing a PBX says finds a part not listening yet."""
        start_directory = getattr(self.directory, "start", None)
        if start_directory is not None:  # e.g. the 1C connector's phone index
            await start_directory()
        if self.cluster is not None:
            await self._start_as_one_of_several(self.cluster)
            return
        if self.crm_outbox is not None:
            self.crm_outbox.start()
        await self.writeback.catch_up()
        self.call_store.start()
        self.sockets.start()
        self.recordings.start()
        await self.faxes.start()
        self.live.start()
        self.identifier.start()
        for adapter in self.pbx.values():
            self.links.register(adapter.name, "pbx")
            await self.connect_pbx(adapter)
        for modem in self.config.modem:
            if modem.enabled:
                await self.start_modem(modem)
        await self.sms_outbox.start()
        for part in self.pbx_services:
            await part.start()

    async def _start_as_one_of_several(self, cluster: Cluster) -> None:
        """The parts every node runs; the links and the periodic jobs run where they are
        led (``cti.cluster.duties``)."""
        self.call_store.start()
        self.sockets.start()
        self.recordings.store.start()
        self.faxes.inbox.start()
        self.live.start()
        self.identifier.start()
        await self.sms_outbox.start()  # no modem yet: each comes with its lease
        for part in self.pbx_services:
            await part.start()
        await join(self, cluster)

    async def connect_pbx(self, adapter: PbxAdapter) -> None:
        """Connect to a PBX, picking up the calls it had in progress when we stopped."""
        async with self.sessions() as session:
            in_progress = await calls_in_progress(session, adapter.name)
        await adapter.start(restore=in_progress)

    async def start_pbx(self, settings: PbxSettings) -> PbxAdapter:
        """Add a PBX link while running (the configured ones start with the service);
        its link must be registered."""
        adapter = build_pbx(settings, self.pbx_context)
        await self.connect_pbx(adapter)
        self.pbx[adapter.name] = adapter
        return adapter

    async def start_modem(
        self,
        modem: ModemConfig,
        *,
        bus: EventBus | None = None,
        store: CallSink | None = None,
        register: bool = True,
        **driver_options: float,
    ) -> ModemLink:
        """Open a GSM modem; it re-opens by itself after being unplugged. ``bus`` and
        ``store``: where its events and calls go, when not the service's own (a node of
        several: fenced by the modem's lease, its link registered once)."""
        if register:
            self.links.register(modem.name, "modem")
        link = ModemLink(
            modem,
            region=self.config.phone.default_region,
            bus=bus or self.bus,
            links=self.links,
            store=store or self.call_store,
            inbox=self.sms_inbox,
            outbox=self.sms_outbox,
            tasks=self.tasks,
            **driver_options,
        )
        await link.start()
        self.modems[modem.name] = link
        self.sms_outbox.add_modem(modem.name, link.modem)
        return link

    def features(self, who: Principal) -> dict[str, bool]:
        """What the desktop may offer ``who``: dialling needs a PBX and a phone of one's
        own; transferring a PBX and a call one may move; SMS a modem."""
        has_pbx = bool(self.pbx)
        return {
            "dial": has_pbx and who.extension is not None,
            "transfer": has_pbx and (who.sees_everything or who.extension is not None),
            "sms": self.sends_sms and who.has_role(Role.SALES, Role.OPERATOR, Role.SUPERVISOR),
        }

    @property
    def modem_names(self) -> set[str]:
        """The modems an SMS may ask for: this node's, or (several nodes) any enabled."""
        if self.cluster is not None:
            return {modem.name for modem in self.config.modem if modem.enabled}
        return set(self.modems)

    @property
    def sends_sms(self) -> bool:
        """A modem here, or (a node of several) one configured: its leader sends."""
        if self.cluster is not None:
            return any(modem.enabled for modem in self.config.modem)
        return bool(self.modems)

    async def close(self) -> None:
        if self.cluster is not None:  # hands every duty over first
            await self.cluster.stop()
        for part in self.pbx_services:
            await part.stop()
        for adapter in self.pbx.values():
            await adapter.stop()
        await self.sms_outbox.stop()
        for link in self.modems.values():
            await link.stop()
        await self.sockets.close_all()
        await self.sockets.stop()
        await self.call_store.stop()
        await self.recordings.stop()
        await self.faxes.stop()
        await self.identifier.stop()
        await self.live.stop()
        if self.crm_outbox is not None:
            await self.crm_outbox.stop()
            await self.crm_outbox.reporter.close()
        close = getattr(self.directory, "close", None)
        if close is not None:
            await close()
        if self.builtin_directory is not self.directory:  # the write-back's lookups
            await self.builtin_directory.close()
        self.bus.close()
        self.call_store.writer.dispose()
        await self.engine.dispose()


async def _open_database(config: Config) -> AsyncEngine:
    """The engine, on a schema that is up to date (migrated here only when configured)."""
    engine = create_engine(config.database_url, echo=config.database.echo)
    try:
        if config.database.auto_migrate:
            await migrate.upgrade(engine)
        await migrate.check_up_to_date(engine)
    except BaseException:
        await engine.dispose()
        raise
    return engine


def _metrics() -> CollectorRegistry:
    metrics = CollectorRegistry()
    ProcessCollector(registry=metrics)
    Gauge("cti_build_info", "Version of the service", ["version"], registry=metrics).labels(
        __version__
    ).set(1)
    return metrics


def _pbx_services(config: Config, context: PbxContext) -> list[PbxService]:
    """What the adapter packages run from their own sections (Asterisk's FastAGI)."""
    parts: list[PbxService] = []
    for plugin in plugins().values():
        if plugin.services is not None:
            sections = {name: getattr(config, name) for name in plugin.sections}
            parts += plugin.services(sections, context)
    return parts


def fax_sender(
    pbx: dict[str, PbxAdapter], name: str
) -> Callable[[str, str, str], Awaitable[None]] | None:
    """How faxes go out: the named PBX's adapter (empty: the first that can), or None."""
    able = _fax_pbx(pbx, name)
    return pbx[able].send_fax if able else None


def _fax_pbx(pbx: dict[str, PbxAdapter], name: str) -> str | None:
    able = [a.name for a in pbx.values() if a.sends_faxes and (not name or a.name == name)]
    return able[0] if able else None


# A phone known to several PBXs (an office moving from one to another) shows the busiest
# of its lines: talking anywhere is talking; unavailable only where it is nowhere else.
_BUSIER = {LineState.UNAVAILABLE: 0, LineState.IDLE: 1, LineState.RINGING: 2, LineState.IN_USE: 3}


def line_state_of(adapters: dict[str, PbxAdapter], extension: str) -> str | None:
    states = [s for a in adapters.values() if (s := a.lines().get(extension)) is not None]
    return max(states, key=_BUSIER.__getitem__).value if states else None


def line_states(adapters: dict[str, PbxAdapter]) -> dict[str, str]:
    merged: dict[str, LineState] = {}
    for adapter in adapters.values():
        for ext, state in adapter.lines().items():
            if ext not in merged or _BUSIER[state] > _BUSIER[merged[ext]]:
                merged[ext] = state
    return {ext: state.value for ext, state in merged.items()}


def calls_named_by(adapters: dict[str, PbxAdapter], file_name: str) -> list[str]:
    return [call_id for pbx in adapters.values() for call_id in pbx.calls_named_by(file_name)]


async def serve(
    config: Config,
    *,
    on_started: Callable[[Service, str], Awaitable[None] | None] | None = None,
    stop: asyncio.Event | None = None,
    directory: Directory | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or ``stop`` is set). ``on_started`` gets the base URL."""
    from cti.http.app import build_app
    from cti.http.server import AppRunner

    service = await Service.start(config, directory=directory)
    # What start-up built lives as long as the process: move it out of the collector's
    # sight, and collect less often. Full collections over it paused the loop for
    # ~100 ms every few seconds under load (bench/screenpop.py).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    runner = AppRunner(
        build_app(service),
        access_log=logging.getLogger("cti.access"),
        shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.server.host, config.server.port)
        await site.start()
        host, port = runner.addresses[0][:2]  # the real port when 0 was asked
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        log.info("listening", extra={"fields": {"url": url, "version": __version__}})
        if on_started is not None:
            result = on_started(service, url)
            if asyncio.iscoroutine(result):
                await result
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
        await service.close()
