"""How the call log is written: a batch's calls and their follow-ups in one transaction
(cti.db.writer, cti.callstore), without holding up the loop and without losing a call
to a follow-up that fails."""

import asyncio
from datetime import UTC, datetime

import pytest
from helpers import eventually, finished_call
from sqlalchemy import func, select, text

from cti.clients.models import CallbackTask, CallFollowUp
from cti.db.engine import create_engine
from cti.db.migrate import upgrade
from cti.db.models import CallRecord
from cti.db.writer import Writer

AT = datetime(2026, 12, 1, 9, tzinfo=UTC)


@pytest.fixture
async def writer(db_url):
    engine = create_engine(db_url)
    await upgrade(engine)
    writer = Writer(engine)
    try:
        yield writer
    finally:
        writer.dispose()
        await engine.dispose()


async def count_rows(writer: Writer, table: str) -> int:
    async with writer.async_engine.connect() as conn:
        return (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()  # noqa: S608


async def test_work_is_one_transaction_committed_or_rolled_back(writer) -> None:
    def add(conn, name: str, fail: bool = False) -> str:
        conn.execute(
            text("INSERT INTO users (username, role, is_active, created_at, display_name) "
                 "VALUES (:n, 'operator', true, CURRENT_TIMESTAMP, '')"),
            {"n": name},
        )  # fmt: skip
        if fail:
            raise RuntimeError("changed its mind")
        return name

    assert await writer.run(lambda conn: add(conn, "anna")) == "anna"
    with pytest.raises(RuntimeError):
        await writer.run(lambda conn: add(conn, "giorgi", fail=True))
    assert await count_rows(writer, "users") == 1
    assert await writer.run(lambda conn: add(conn, "giorgi")) == "giorgi"  # usable again
    assert await count_rows(writer, "users") == 2


async def test_work_in_steps_lets_the_loop_run_between_them(writer) -> None:
    ticks: list[int] = []

    async def ticker() -> None:
        while True:
            ticks.append(len(ticks))
            await asyncio.sleep(0)

    def steps(conn):
        seen = []
        for _ in range(5):
            seen.append(len(ticks))
            yield
        return seen

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        seen = await writer.run(steps)
    finally:
        task.cancel()
    if writer.engine.dialect.name == "sqlite":  # the loop turned between the steps
        assert seen == sorted(seen) and seen[-1] > seen[0]
    else:
        assert len(seen) == 5  # run through in one go; each statement awaits there


async def test_another_writer_holding_the_lock_is_waited_for_off_the_loop(writer) -> None:
    if writer.engine.dialect.name != "sqlite":
        pytest.skip("only SQLite locks the whole database for a write; PostgreSQL locks rows")
    import sqlite3

    other = sqlite3.connect(writer.async_engine.url.database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # e.g. the API writing a client meanwhile
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    write = asyncio.create_task(writer.run(lambda conn: conn.execute(text("SELECT 1")).all()))
    await asyncio.sleep(0.3)
    assert not write.done() and ticks >= 10  # waiting for the lock, and the loop goes on
    other.execute("COMMIT")
    assert await asyncio.wait_for(write, 5) == [(1,)]
    task.cancel()
    other.close()


async def stored(service, model, *where):
    async with service.sessions() as session:
        return (
            await session.execute(select(func.count()).select_from(model).where(*where))
        ).scalar()


async def test_a_follow_up_that_fails_does_not_keep_the_call_out_of_the_log(
    service, monkeypatch, caplog
) -> None:
    """A missed call's task cannot be written: the call is stored all the same, and its
    follow-up is done at the next start (catch_up)."""
    writeback = service.writeback

    def fails(conn, calls, prepared):
        raise RuntimeError("the tasks table is broken today")

    monkeypatch.setattr(writeback, "write", fails)
    missed = finished_call("office:missed", AT, rang=("101",))
    service.call_store.save([missed])
    await eventually(lambda: _stored(service, "office:missed"))
    assert await stored(service, CallFollowUp) == 0
    assert any("follow-up failed" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    assert await service.writeback.catch_up() == 1
    assert await stored(service, CallbackTask, CallbackTask.missed_call_id == "office:missed") == 1
    assert await service.writeback.catch_up() == 0  # once


async def _stored(service, call_id: str) -> bool:
    return await stored(service, CallRecord, CallRecord.id == call_id) == 1


async def test_a_batch_writes_its_calls_and_follow_ups_in_one_commit(service) -> None:
    commits = []
    engine = service.call_store.writer.engine
    from sqlalchemy import event

    event.listen(engine, "commit", lambda conn: commits.append(1))
    calls = [  # six missed (ended after 20 s), then six answered (after 65 s)
        finished_call(f"office:{n}", AT, rang=("101",), answered_by="101" if n % 2 else None)
        for n in range(12)
    ]
    service.call_store.save(calls)
    await service.call_store.flush()
    assert len(commits) == 1
    assert await stored(service, CallFollowUp) == 12
    assert await stored(service, CallbackTask) == 1  # one number: one task, six missed calls
    async with service.sessions() as session:
        task = (await session.scalars(select(CallbackTask))).one()
    assert (task.missed_calls, task.closed_reason) == (6, "called_again")
