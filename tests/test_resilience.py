"""Faults inside the service hurt no one else: a bad event is skipped and logged, a call
the database refuses waits aside, a database that cannot write is reported, and a dead
background task shows in /healthz."""

import asyncio
import logging
from datetime import UTC, datetime

import pytest
from helpers import eventually, finished_call, open_feed, receive
from sqlalchemy import event, select

from cti import callstore as callstore_module
from cti.db import health as health_module
from cti.db.models import CallRecord
from cti.domain import Direction
from cti.events import CallRinging

AT = datetime(2026, 12, 1, 9, tzinfo=UTC)


def ringing(call_id: str) -> CallRinging:
    return CallRinging(
        call_id=call_id,
        extension="101",
        direction=Direction.INBOUND,
        external_number="+78125550104",
    )


async def test_the_live_feed_skips_an_event_it_cannot_show_and_goes_on(
    client, service, make_user, caplog, monkeypatch
) -> None:
    board = service.live.board
    feed = board.feed

    def fails_for_one_call(event):
        if getattr(event, "call_id", None) == "bad":
            raise RuntimeError("cannot show this one")
        return feed(event)

    monkeypatch.setattr(board, "feed", fails_for_one_call)
    ws = await open_feed(client, await make_user("receptionist"))
    async with ws:
        bad = ringing("bad")
        await service.bus.publish(bad)
        await service.bus.publish(ringing("good"))
        frame = await receive(ws)
        assert (frame["type"], frame["data"]["call_id"]) == ("pop", "good")
    skipped = [r for r in caplog.records if r.getMessage() == "live feed skipped an event"]
    # The ringing (and maybe by now the caller identifier's answer for the same call).
    assert skipped[0].fields == {
        "event": "call.ringing",
        "event_id": bad.event_id,
        "call_id": "bad",
    }
    # With the traceback (formatted already, when the service's redacting handler saw it).
    assert skipped[0].exc_info is not None or "cannot show this one" in skipped[0].exc_text
    health = await (await client.get("/healthz")).json()
    assert health["tasks"]["dead"] == []


async def test_a_dead_background_task_shows_in_healthz(client, service, caplog) -> None:
    async def crashes() -> None:
        raise RuntimeError("out of luck")

    task = service.tasks.spawn(crashes(), "report-mailer")
    await asyncio.gather(task, return_exceptions=True)
    reply = await client.get("/healthz")
    body = await reply.json()
    assert reply.status == 200 and body["status"] == "degraded"
    assert body["tasks"]["dead"] == [
        {"name": "report-mailer", "error": "RuntimeError: out of luck"}
    ]
    assert any(r.getMessage() == "background task report-mailer died" for r in caplog.records)


async def stored_ids(service) -> set[str]:
    async with service.sessions() as session:
        return set(await session.scalars(select(CallRecord.id)))


async def test_a_call_the_database_refuses_waits_aside_and_the_others_are_stored(
    service, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(callstore_module, "QUARANTINE_SECONDS", 0.2)
    refuse = {"office:poison"}
    write = callstore_module.write_calls

    def refusing(conn, rows, **options):
        if refuse & {row["id"] for row in rows}:
            raise ValueError("the database refuses this row")
        write(conn, rows, **options)

    monkeypatch.setattr(callstore_module, "write_calls", refusing)
    store = service.call_store
    store.save([finished_call(f"office:{n}", AT, rang=("101",)) for n in ("a", "poison", "b")])
    await eventually(lambda: store.backlog == 1)
    assert await stored_ids(service) == {"office:a", "office:b"}
    store.save([finished_call("office:c", AT, rang=("101",))])  # not held up either
    await eventually(lambda: _has(service, "office:c"))
    refused = [r for r in caplog.records if "refused a call" in r.getMessage()]
    assert refused and refused[0].fields["call_id"] == "office:poison"
    refuse.clear()  # it could be written after all (a newer state, a fixed database)
    await eventually(lambda: _has(service, "office:poison"))
    assert store.backlog == 0


async def test_a_lone_call_with_data_the_database_refuses_does_not_block_the_store(
    client, service
) -> None:
    bad = finished_call("office:too-long", AT, rang=("101",))
    bad.external_name = "Я" * 5000
    if service.engine.dialect.name == "sqlite":  # SQLite stores any length: make it refuse
        await _refuse_long_names(service)
    store = service.call_store
    store.save([bad])
    await eventually(lambda: store.backlog == 1 and not store._pending)
    assert store.last_error is None
    assert (await (await client.get("/healthz")).json())["database"]["up"] is True
    store.save([finished_call("office:next", AT, rang=("101",))])
    await eventually(lambda: _has(service, "office:next"))


async def _refuse_long_names(service) -> None:
    async with service.engine.begin() as conn:
        await conn.exec_driver_sql(
            "CREATE TRIGGER refuse_long_names BEFORE INSERT ON calls "
            "WHEN length(NEW.external_name) > 200 BEGIN "
            "SELECT RAISE(ABORT, 'external_name too long'); END"
        )


async def _has(service, call_id: str) -> bool:
    return call_id in await stored_ids(service)


@pytest.fixture
def read_only(service):
    """Make the database refuse writes (as a full disk or a read-only file does) from the
    next connection checkout on, until ``read_only[0] = False``."""
    state = [False]
    postgres = service.engine.dialect.name == "postgresql"

    def on_checkout(dbapi_connection, record, proxy) -> None:
        mode = "on" if state[0] else "off"
        if postgres:  # this transaction (the driver has begun one) and those after it
            statements = [f"SET default_transaction_read_only = {mode}"]
            statements.append(f"SET transaction_read_only = {mode}")
        else:
            statements = [f"PRAGMA query_only = {mode}"]
        cursor = dbapi_connection.cursor()
        for statement in statements:
            cursor.execute(statement)
        cursor.close()

    # The API's engine, and the one the call log is written through (SQLite: its own).
    engines = {service.engine.sync_engine, service.call_store.writer.engine}
    for engine in engines:
        event.listen(engine, "checkout", on_checkout)
    yield state
    for engine in engines:
        event.remove(engine, "checkout", on_checkout)


async def test_healthz_says_down_while_writes_fail_and_recovers_by_itself(
    client, service, read_only, monkeypatch
) -> None:
    monkeypatch.setattr(health_module, "PROBE_SECONDS", 0)
    assert (await (await client.get("/healthz")).json())["status"] == "ok"
    read_only[0] = True
    service.call_store.save([finished_call("office:during", AT, rang=("101",))])
    reply = await client.get("/healthz")
    body = await reply.json()
    assert reply.status == 503 and body["status"] == "down"
    assert body["database"]["up"] is False and "writes fail" in body["database"]["detail"]
    await asyncio.sleep(0.3)
    assert not await _has(service, "office:during")
    read_only[0] = False
    await eventually(lambda: _has(service, "office:during"))  # retried, not lost
    reply = await client.get("/healthz")
    assert reply.status == 200 and (await reply.json())["status"] == "ok"


async def test_healthz_writes_at_most_every_few_seconds(client, service, caplog) -> None:
    caplog.set_level(logging.INFO)
    writes = []
    event.listen(
        service.engine.sync_engine,
        "before_cursor_execute",
        lambda *args: writes.append(args[2]) if "health_probe" in args[2] else None,
    )
    for _ in range(20):
        assert (await client.get("/healthz")).status == 200
    assert len(writes) <= 1
