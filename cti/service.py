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
from cti.bus import InProcessBus
from cti.callstore import CallStore, calls_in_progress
from cti.clients.builtin import SqlDirectory
from cti.clients.history import PopHistory
from cti.clients.writeback import CallWriteBack
from cti.config import Config, ModemConfig, PbxConfig
from cti.crm_outbox import CallReportOutbox
from cti.db import migrate
from cti.db.engine import create_engine, session_factory
from cti.db.health import DatabaseHealth
from cti.directory import Directory
from cti.domain import ROLES_SEEING_ALL, Role
from cti.identify import CallerIdentifier
from cti.links import LinkRegistry
from cti.live import LiveFeed
from cti.logs import redactor
from cti.sms import SenderLookup, SmsInbox, SmsOutbox
from cti.sockets import SocketGuard
from cti.tasks import TaskMonitor
from gsm_modem.link import ModemLink
from pbx_adapters.asterisk.adapter import AsteriskAdapter
from pbx_adapters.asterisk.fastagi import FastAgiServer, parse_listen, start_fastagi
from recordings import Recordings

log = logging.getLogger("cti.service")

# At SIGTERM, requests still running (an export, say) get this long before they are cut.
SHUTDOWN_GRACE_SECONDS = 5.0


@dataclass
class Service:
    config: Config
    engine: AsyncEngine
    sessions: async_sessionmaker
    bus: InProcessBus
    links: LinkRegistry
    metrics: CollectorRegistry
    authenticator: TokenAuthenticator
    call_store: CallStore
    directory: Directory
    pbx: dict[str, AsteriskAdapter]
    identifier: CallerIdentifier
    crm_outbox: CallReportOutbox | None
    live: LiveFeed
    modems: dict[str, ModemLink]
    sms_outbox: SmsOutbox
    sms_inbox: SmsInbox
    recordings: Recordings
    tasks: TaskMonitor
    sockets: SocketGuard
    database_health: DatabaseHealth

    @classmethod
    async def start(cls, config: Config, *, directory: Directory | None = None) -> Service:
        """Open storage (migrating it only when configured to) and register the links.

        Raises DatabaseNotMigrated when the schema is behind and auto_migrate is off.
        """
        for secret in config.secrets():
            redactor.add_secret(secret)
        engine = create_engine(config.database_url, echo=config.database.echo)
        try:
            if config.database.auto_migrate:
                await migrate.upgrade(engine)
            await migrate.check_up_to_date(engine)
        except BaseException:
            await engine.dispose()
            raise
        metrics = CollectorRegistry()
        ProcessCollector(registry=metrics)
        Gauge("cti_build_info", "Version of the service", ["version"], registry=metrics).labels(
            __version__
        ).set(1)
        bus = InProcessBus(metrics)
        links = LinkRegistry(bus, metrics)
        for pbx in config.pbx:
            if pbx.enabled:
                links.register(pbx.name, "pbx")
        sessions = session_factory(engine)
        tasks = TaskMonitor()
        crm = config.crm
        writeback = CallWriteBack(
            sessions,
            bus.publish_nowait,
            region=config.phone.default_region,
            suffix_digits=crm.suffix_digits,
            default_extension=crm.default_manager_extension,
            create_leads=crm.create_leads,
        )
        reporter = build_call_reporter(crm)
        outbox = None
        if reporter is not None:
            outbox = writeback.outbox = CallReportOutbox(sessions, reporter, tasks=tasks)
            outbox.start()
        await writeback.catch_up()
        call_store = CallStore(sessions, tasks)
        call_store.after_write.append(writeback.after_write)
        recordings = Recordings.create(sessions, config, tasks)
        call_store.after_write.append(recordings.store.after_write)
        call_store.start()
        builtin = SqlDirectory(sessions, crm.suffix_digits)
        resolved = directory or build_directory(crm, builtin, config.phone.default_region)
        if not isinstance(resolved, SqlDirectory):  # an external CRM knows who calls
            writeback.external = resolved
        adapters: dict[str, AsteriskAdapter] = {}
        live = LiveFeed(
            bus,
            lines=lambda: line_states(adapters),
            line_of=lambda extension: line_state_of(adapters, extension),
            links=lambda: [status.to_dict() for status in links.all()],
            enrich=PopHistory(sessions, builtin=isinstance(resolved, SqlDirectory)),
            replay_seconds=config.server.ws_replay_seconds,
            replay_frames=config.server.ws_replay_frames,
            send_buffer=config.server.ws_send_buffer,
            tasks=tasks,
        )
        service = cls(
            config,
            engine,
            sessions,
            bus,
            links,
            metrics,
            TokenAuthenticator(sessions),
            call_store,
            resolved,
            adapters,
            CallerIdentifier(bus, resolved, crm.lookup_budget_ms / 1000, tasks),
            outbox,
            live,
            {},
            SmsOutbox(
                sessions,
                bus.publish_nowait,
                {},
                retry_base_seconds=config.sms.retry_base_seconds,
                tasks=tasks,
            ),
            SmsInbox(sessions, bus.publish_nowait, SenderLookup(sessions, crm.suffix_digits)),
            recordings,
            tasks,
            SocketGuard(sessions, tasks, config.server.ws_auth_check_seconds),
            DatabaseHealth(engine, sessions, lambda: call_store.last_error),
        )
        service.sockets.start()
        recordings.start()
        live.start()
        service.identifier.start()
        for pbx in config.pbx:
            if pbx.enabled:
                await service.start_pbx(pbx)
        for modem in config.modem:
            if modem.enabled:
                await service.start_modem(modem)
        await service.sms_outbox.start()
        return service

    async def start_modem(self, modem: ModemConfig, **driver_options: float) -> ModemLink:
        """Open a GSM modem; it re-opens by itself after being unplugged."""
        self.links.register(modem.name, "modem")
        link = ModemLink(
            modem,
            region=self.config.phone.default_region,
            bus=self.bus,
            links=self.links,
            store=self.call_store,
            inbox=self.sms_inbox,
            outbox=self.sms_outbox,
            tasks=self.tasks,
            **driver_options,
        )
        await link.start()
        self.modems[modem.name] = link
        self.sms_outbox.add_modem(modem.name, link.modem)
        return link

    async def start_pbx(self, pbx: PbxConfig) -> AsteriskAdapter:
        """Connect to a PBX, picking up the calls it had in progress when we stopped."""
        adapter = AsteriskAdapter(
            pbx,
            region=self.config.phone.default_region,
            bus=self.bus,
            links=self.links,
            store=self.call_store,
        )
        async with self.sessions() as session:
            in_progress = await calls_in_progress(session, pbx.name)
        await adapter.start(restore=in_progress)
        self.pbx[pbx.name] = adapter
        return adapter

    def features(self, who: Principal) -> dict[str, bool]:
        """What the desktop may offer ``who``: dialling needs a PBX and a phone of one's
        own; transferring a PBX and a call one may move; SMS a modem."""
        has_pbx = bool(self.pbx)
        sees_all = who.role in ROLES_SEEING_ALL
        return {
            "dial": has_pbx and who.extension is not None,
            "transfer": has_pbx and (sees_all or who.extension is not None),
            "sms": bool(self.modems) and who.has_role(Role.SALES, Role.OPERATOR, Role.SUPERVISOR),
        }

    async def close(self) -> None:
        for adapter in self.pbx.values():
            await adapter.stop()
        await self.sms_outbox.stop()
        for link in self.modems.values():
            await link.stop()
        await self.sockets.close_all()
        await self.sockets.stop()
        await self.call_store.stop()
        await self.recordings.stop()
        await self.identifier.stop()
        await self.live.stop()
        if self.crm_outbox is not None:
            await self.crm_outbox.stop()
            await self.crm_outbox.reporter.close()
        close = getattr(self.directory, "close", None)
        if close is not None:
            await close()
        self.bus.close()
        await self.engine.dispose()


def line_state_of(adapters: dict[str, AsteriskAdapter], extension: str) -> str | None:
    for adapter in adapters.values():
        state = adapter.tracker.lines.get(extension)
        if state is not None:
            return state.value
    return None


def line_states(adapters: dict[str, AsteriskAdapter]) -> dict[str, str]:
    return {ext: state.value for pbx in adapters.values() for ext, state in pbx.lines().items()}


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
    fastagi: FastAgiServer | None = None
    try:
        site = web.TCPSite(runner, config.server.host, config.server.port)
        await site.start()
        if config.agi.fastagi_listen:
            agi_host, agi_port = parse_listen(config.agi.fastagi_listen)
            fastagi = await start_fastagi(
                service.directory,
                config.phone.default_region,
                agi_host,
                agi_port,
                lookup_timeout=config.agi.timeout,
            )
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
        if fastagi is not None:
            await fastagi.stop()
        await runner.cleanup()
        await service.close()
