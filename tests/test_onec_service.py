"""The service with a 1C base as its CRM (the OData stand-in): pops identified from the
base, each call written as one Document_ТелефонныйЗвонок through the durable outbox
(once, across a restart and a lost answer), a missed call's callback task for the 1C
manager's extension, and an outage that gives "unavailable" pops and a retried write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from helpers import eventually, onec_crm, settle_outbox
from sqlalchemy import select, update

from crm_bridge.onec.reporter import document_ref
from crm_bridge.onec.standin import OneCStandIn
from cti.calls import Call
from cti.clients.models import CallbackTask, CrmOutbox
from cti.config import Config, DatabaseConfig, ServerConfig
from cti.domain import Direction, Outcome
from cti.events import CallRinging
from cti.service import Service

PARTNER_NUMBER = "+78125550104"


@pytest.fixture
async def base() -> AsyncIterator[OneCStandIn]:
    standin = OneCStandIn()
    await standin.start()
    standin.giorgi = standin.add_user("Георгий Беридзе")
    standin.romashka = standin.add_partner(
        "Ромашка", [("", "+7 (812) 555-01-04")], full_name="ООО «Ромашка»", manager=standin.giorgi
    )
    yield standin
    await standin.stop()


def config(db_url, tmp_path, base: OneCStandIn) -> Config:
    return Config(
        server=ServerConfig(data_dir=tmp_path),
        database=DatabaseConfig(url=db_url, auto_migrate=True),
        crm=onec_crm(base, onec_users={base.giorgi: "102"}, cache_seconds=0, lookup_budget_ms=2000),
    )


async def start(db_url, tmp_path, base: OneCStandIn) -> Service:
    service = await Service.start(config(db_url, tmp_path, base))
    await eventually(lambda: service.directory.inner.refreshes > 0)
    return service


def finished_call(n: int = 1, *, missed: bool = False) -> Call:
    started = datetime(2026, 11, 23, 9, n, tzinfo=UTC)
    return Call(
        f"lab:{n}.1",
        "lab",
        started,
        direction=Direction.INBOUND,
        external_number=PARTNER_NUMBER,
        answered_by=None if missed else "102",
        answered_at=None if missed else started + timedelta(seconds=4),
        ended_at=started + timedelta(seconds=64),
        outcome=Outcome.NO_ANSWER if missed else Outcome.ANSWERED,
        missed=missed,  # as the PBX said
    )


async def pop_of(service: Service, call_id: str, number: str = PARTNER_NUMBER):
    subscription = service.bus.subscribe(prefixes=["call.identified"])
    await service.bus.publish(
        CallRinging(
            call_id=call_id, extension="101", direction=Direction.INBOUND, external_number=number
        )
    )
    return await asyncio.wait_for(subscription.get(), 5)


async def test_a_partner_pops_and_the_call_is_written_once_across_a_restart(
    db_url, tmp_path, base
) -> None:
    service = await start(db_url, tmp_path, base)
    try:
        pop = await pop_of(service, "c1")
        assert pop.match["client_name"] == "ООО «Ромашка»" and not pop.unavailable
        assert pop.match["manager"] == {
            "name": "Георгий Беридзе",
            "extension": "102",
            "phone": None,
            "user_id": None,
        }
        service.call_store.save([finished_call()])
        await service.call_store.flush()
        [entry] = await settle_outbox(service, lambda e: e and e[0].done_at)
        assert (entry.outcome, entry.external_id) == ("written", document_ref("lab:1.1"))
        [document] = base.calls()
        assert document["Ref_Key"] == entry.external_id
        assert document["АбонентКонтакт"] == base.romashka
        assert document["Ответственный_Key"] == base.giorgi
    finally:
        await service.close()
    # As if the service had died after 1C wrote the document but before "done" was kept.
    second = await start(db_url, tmp_path, base)
    try:
        async with second.sessions() as session:
            await session.execute(update(CrmOutbox).values(done_at=None, outcome=None))
            await session.commit()
        second.call_store.save([finished_call()])  # and the PBX told us of the call again
        await second.call_store.flush()
        [entry] = await settle_outbox(second, lambda e: e and e[0].done_at)
        assert entry.outcome == "written" and entry.attempts == 2
        assert len(base.calls()) == 1
    finally:
        await second.close()


async def test_a_missed_call_is_a_task_for_the_1c_manager_and_a_reminder_in_1c(
    db_url, tmp_path, base
) -> None:
    service = await start(db_url, tmp_path, base)
    try:
        service.call_store.save([finished_call(2, missed=True)])
        await service.call_store.flush()
        await settle_outbox(service, lambda e: e and e[0].done_at)
        async with service.sessions() as session:
            [task] = list(await session.scalars(select(CallbackTask)))
        assert (task.number, task.assignee_extension) == (PARTNER_NUMBER, "102")
        [document] = base.calls()
        assert document["Тема"] == "Пропущенный звонок: Ромашка"
        [reminder] = base.reminders
        assert reminder["Пользователь_Key"] == base.giorgi
        assert reminder["Источник"] == document["Ref_Key"]
    finally:
        await service.close()


async def test_an_outage_gives_unavailable_pops_and_the_write_back_waits(
    db_url, tmp_path, base
) -> None:
    service = await start(db_url, tmp_path, base)
    await service.crm_outbox.stop()  # driven by hand below
    service.crm_outbox.retry_base = 0.01
    try:
        base.down = True
        pop = await pop_of(service, "c3")
        assert pop.match is None and pop.unavailable
        service.call_store.save([finished_call(3)])
        await service.call_store.flush()
        [entry] = await settle_outbox(service, lambda e: e and e[0].attempts >= 2)
        assert entry.done_at is None and "HTTP 503" in entry.outcome
        assert base.calls() == []
        base.down = False
        [entry] = await settle_outbox(service, lambda e: e and e[0].done_at)
        assert entry.outcome == "written" and len(base.calls()) == 1
        health = service.directory.stats()
        assert health["failures"] >= 1 and health["connector"]["index_numbers"] == 1
    finally:
        await service.close()
