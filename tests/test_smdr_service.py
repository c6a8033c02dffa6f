"""The service with SMDR PBXs, through their simulators: a day of Panasonic records over
the network SMDR port (with its login) and over a serial pty byte by byte, and of
Avaya IP Office records over TCP both ways round, come out as the right call log,
missed calls and callback tasks; replays after a reconnect or a restart are stored
once; unreadable lines are counted and kept for the supervisor."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from helpers import bearer, eventually, new_token, stored_calls
from sqlalchemy import func, select

from cti.calls import Call
from cti.clients.builtin import ClientIn, PhoneIn, save_client
from cti.clients.models import CallbackTask
from cti.config import Config, CrmConfig, DatabaseConfig, ServerConfig
from cti.db.models import CallRecord
from cti.http.app import build_app
from cti.pbx import PbxUnsupported
from cti.service import Service
from pbx_adapters.smdr.avaya.settings import AvayaSettings
from pbx_adapters.smdr.avaya.simulator import IpOfficeSmdr
from pbx_adapters.smdr.avaya.simulator import print_day as print_avaya_day
from pbx_adapters.smdr.day import Expected, office_day
from pbx_adapters.smdr.panasonic.settings import PanasonicSettings
from pbx_adapters.smdr.panasonic.simulator import NetworkSmdr, SerialSmdr
from pbx_adapters.smdr.panasonic.simulator import print_day as print_panasonic_day

DAY = datetime(2026, 12, 1)
MANAGED = "+74957770133"  # a client of 102's: its missed calls are 102's to return


def config(db_url: str, tmp_path: Path, *pbx) -> Config:
    return Config(
        server=ServerConfig(data_dir=tmp_path, port=0, time_zone="Europe/Moscow"),
        database=DatabaseConfig(url=db_url, auto_migrate=True),
        crm=CrmConfig(default_manager_extension="100"),
        pbx=list(pbx),
    )


async def start(cfg: Config) -> Service:
    service = await Service.start(cfg)
    async with service.sessions() as session:
        if not await session.scalar(select(func.count()).select_from(CallRecord)):
            await new_token(service, "operator", "102", username="giorgi")
            client = ClientIn("Иван Петров", manager_extension="102", phones=[PhoneIn(MANAGED)])
            await save_client(session, client, "RU")
            await session.commit()
    return service


SMDR_PASSWORD = "pbx-secret"


def panasonic(port: int, password: str = SMDR_PASSWORD, **options) -> PanasonicSettings:
    return PanasonicSettings(
        name="pana",
        type="panasonic",
        transport="connect",
        host="127.0.0.1",
        port=port,
        password=password,
        idle_seconds=0.3,
        **options,
    )


async def settle(service: Service, count: int) -> list[Call]:
    """The stored calls once there are ``count`` and their follow-ups are done."""

    async def enough() -> bool:
        return len(await stored_calls(service)) >= count

    await eventually(enough, 30)
    await service.call_store.flush()
    await service.writeback.catch_up()
    return await stored_calls(service)


def expected_tasks(expected: list[Expected]) -> dict[str, tuple[int, str]]:
    """Open callback tasks by number: (missed calls, assignee), as the day makes them."""
    open_tasks: dict[str, int] = {}
    for call in expected:
        if call.number is None:
            continue
        if call.missed:
            open_tasks[call.number] = open_tasks.get(call.number, 0) + 1
        elif call.outcome == "answered":
            open_tasks.pop(call.number, None)
    return {n: (count, "102" if n == MANAGED else "100") for n, count in open_tasks.items()}


async def open_tasks(service: Service) -> dict[str, tuple[int, str]]:
    async with service.sessions() as session:
        tasks = await session.scalars(select(CallbackTask).where(CallbackTask.closed_at.is_(None)))
        return {t.number: (t.missed_calls, t.assignee_extension) for t in tasks}


async def test_a_panasonic_day_over_the_network_port(db_url, tmp_path, aiohttp_client) -> None:
    pbx = NetworkSmdr(password=SMDR_PASSWORD)
    await pbx.start()
    day = print_panasonic_day(office_day(DAY, 300))
    service = await start(config(db_url, tmp_path, panasonic(pbx.port)))
    try:
        await eventually(lambda: service.pbx["pana"].connected)
        for line in day.lines:
            pbx.print(line)
        calls = await settle(service, len(day.expected))
        assert Counter(Expected.of(c) for c in calls) == Counter(day.expected)
        assert sum(c.missed for c in calls) == sum(e.missed for e in day.expected) > 20
        assert await open_tasks(service) == expected_tasks(day.expected)

        # The link drops; at the next login the PBX prints its buffer again: no new calls.
        pbx.drop()
        await eventually(lambda: pbx.logins == 2, 15)
        adapter = service.pbx["pana"]
        await eventually(lambda: adapter.counts["duplicate"] >= 150)
        assert len(await stored_calls(service)) == len(calls)

        client = await aiohttp_client(build_app(service))
        health = await (await client.get("/healthz")).json()
        assert health["status"] == "ok", health
        assert health["pbx"]["pana"]["live_events"] is False
        assert health["pbx"]["pana"]["records"]["rejected"] == day.bad_lines
        boss = await new_token(service, "supervisor")
        anna = await new_token(service, "operator", "101")
        got = await client.get("/api/pbx/pana/rejected", headers=bearer(boss))
        rejected = (await got.json())["rejected"]
        assert len(rejected) == day.bad_lines and all(r["reason"] and r["line"] for r in rejected)
        assert (await client.get("/api/pbx/pana/rejected", headers=bearer(anna))).status == 403
        kept = (tmp_path / "smdr" / "pana-rejected.jsonl").read_text(encoding="utf-8")
        assert len(kept.splitlines()) == day.bad_lines
        metrics = await (await client.get("/metrics")).text()
        assert (
            f'cti_smdr_records_total{{pbx="pana",result="rejected"}} {day.bad_lines}.0' in metrics
        )
        with pytest.raises(PbxUnsupported, match="finished calls only"):
            await adapter.dial("101", "+74957770133")
    finally:
        await service.close()
        await pbx.stop()


async def test_a_wrong_smdr_password_keeps_the_link_down_and_says_why(tmp_path) -> None:
    pbx = NetworkSmdr(password="right")
    await pbx.start()
    db = f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"
    service = await start(config(db, tmp_path, panasonic(pbx.port, password="wrong")))
    try:
        link = next(s for s in service.links.all() if s.name == "pana")
        await eventually(lambda: "refused" in link.detail or "closed" in link.detail)
        assert not link.up and pbx.logins == 0
        assert "wrong" not in link.detail
    finally:
        await service.close()
        await pbx.stop()


async def test_serial_byte_by_byte_gives_the_call_log_the_network_gives(tmp_path) -> None:
    day = print_panasonic_day(office_day(DAY, 300, seed=3))
    pbx = NetworkSmdr(password=SMDR_PASSWORD)
    await pbx.start()
    at_once = await start(
        config(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", tmp_path / "a", panasonic(pbx.port))
    )
    serial = SerialSmdr(tmp_path / "ttySMDR")
    by_byte = await start(
        config(
            f"sqlite+aiosqlite:///{tmp_path / 'b.db'}",
            tmp_path / "b",
            PanasonicSettings(
                name="pana",
                type="panasonic",
                transport="serial",
                serial_port=str(tmp_path / "ttySMDR"),
                idle_seconds=0.3,
            ),
        )
    )
    try:
        await eventually(lambda: at_once.pbx["pana"].connected and by_byte.pbx["pana"].connected)
        for line in day.lines:
            pbx.print(line)
        stream = "".join(line + "\r\n" for line in day.lines).encode("cp866")
        for n, byte in enumerate(stream):  # a byte at a time, the reader let in often
            await serial.write(bytes([byte]))
            if n % 4 == 0:
                await asyncio.sleep(0)
        a = await settle(at_once, len(day.expected))
        b = await settle(by_byte, len(day.expected))
        assert [c.to_dict() for c in a] == [c.to_dict() for c in b]
        assert any(c.external_name and "ПЕТРОВА" in c.external_name for c in b)  # CP866 names
        assert await open_tasks(at_once) == await open_tasks(by_byte)
    finally:
        await at_once.close()
        await by_byte.close()
        await pbx.stop()
        serial.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_avaya_connecting_to_the_service_buffers_while_it_is_away(db_url, tmp_path) -> None:
    day = print_avaya_day(office_day(DAY, 300))
    port = free_port()
    settings = AvayaSettings(
        name="ipo",
        type="avaya",
        transport="listen",
        host="127.0.0.1",
        listen_host="127.0.0.1",
        listen_port=port,
        trunk_prefixes=["9"],
    )
    ip_office = IpOfficeSmdr("connect", target_port=port)
    await ip_office.start()
    half = len(day.lines) // 2
    for line in day.lines[:half]:  # the service is not there yet: IP Office buffers them
        ip_office.send(line)
    service = await start(config(db_url, tmp_path, settings))
    try:
        await eventually(lambda: ip_office.linked)
        first = [e for e in day.expected][: len(await settle(service, 1))]
        assert first
        await service.close()  # the service restarts mid-day
        for line in day.lines[half:]:
            ip_office.send(line)
        service = await start(config(db_url, tmp_path, settings))
        calls = await settle(service, len(day.expected))
        assert Counter(Expected.of(c) for c in calls) == Counter(day.expected)
        assert await open_tasks(service) == expected_tasks(day.expected)
        kept = (tmp_path / "smdr" / "ipo-rejected.jsonl").read_text(encoding="utf-8")
        assert len(kept.splitlines()) == day.bad_lines  # across the restart, each once
    finally:
        await service.close()
        await ip_office.stop()


async def test_avaya_listening_and_the_service_connecting(tmp_path) -> None:
    day = print_avaya_day(office_day(DAY, 120, seed=5))
    ip_office = IpOfficeSmdr("listen")
    await ip_office.start()
    settings = AvayaSettings(
        name="ipo",
        type="avaya",
        transport="connect",
        host="127.0.0.1",
        port=ip_office.port,
        trunk_prefixes=["9"],
    )
    service = await start(config(f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}", tmp_path, settings))
    known, failures = service.call_store.known, []

    async def known_or_not(ids: list[str]) -> set[str]:
        if not failures:  # once, the database cannot say which calls it has
            failures.append(ids)
            raise ConnectionError("the database went away")
        return await known(ids)

    service.call_store.known = known_or_not
    try:
        await eventually(lambda: ip_office.linked)
        for n, line in enumerate(day.lines):
            ip_office.send(line)
            if n == 60:  # the link drops; what is sent meanwhile is buffered and replayed
                ip_office.drop()
        calls = await settle(service, len(day.expected))
        assert Counter(Expected.of(c) for c in calls) == Counter(day.expected)
        assert ip_office.connections >= 2 and failures
    finally:
        await service.close()
        await ip_office.stop()


async def test_a_listening_avaya_link_takes_records_only_from_its_pbx(tmp_path) -> None:
    settings = AvayaSettings(
        name="ipo",
        type="avaya",
        transport="listen",
        host="127.0.0.2",  # the IP Office; the test connects from 127.0.0.1
        listen_host="127.0.0.1",
        listen_port=0,
    )
    service = await start(config(f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}", tmp_path, settings))
    try:
        adapter = service.pbx["ipo"]
        reader, writer = await asyncio.open_connection("127.0.0.1", adapter.listening_port)
        line = print_avaya_day(office_day(DAY, 1)).lines[0]
        writer.write(line.encode() + b"\r\n")
        try:  # closed on it (reset, as it sent what was never read)
            assert await asyncio.wait_for(reader.read(), 5) == b""
        except ConnectionResetError:
            pass
        assert adapter.counts["call"] == 0 and not adapter.connected
    finally:
        await service.close()
