"""One transaction's work, written as plain synchronous SQLAlchemy, run without the event
loop waiting on what is slow in it.

The call log is written in batches (``cti.callstore``): a batch is the calls that changed,
their recordings and their follow-ups, in one transaction. Through an ``AsyncSession`` on
aiosqlite every statement of it is a hop to aiosqlite's thread and back, and most of a
batch's cost was those hops (bench/screenpop.py). So a batch is a function of a sync
``Connection``, and ``Writer.run`` runs it:

- on SQLite, with a connection of its own (pysqlite, the same pragmas): the transaction
  is begun (``BEGIN IMMEDIATE``: the wait for another writer's lock happens here) and
  committed (the disk sync) on the writer's thread; the statements in between run on the
  loop's thread, where they take microseconds each (WAL: nothing blocks a writer that
  holds the lock). Two hops a batch, whatever it holds. A big batch is written in steps:
  ``work`` may be a generator, and the loop runs other work (a screen pop) wherever it
  yields.
- elsewhere (PostgreSQL) in ``AsyncConnection.run_sync``: each statement is a round trip
  the loop awaits, with no thread between.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, RootTransaction
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from cti.db.engine import sqlite_file, sqlite_pragmas, sqlite_uri

T = TypeVar("T")


class Writer:
    def __init__(self, engine: AsyncEngine) -> None:
        self.async_engine = engine
        self._sqlite: Engine | None = None
        path = sqlite_file(engine)
        if path is not None:
            self._sqlite = _sqlite_engine(path)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="db-writer")
            self._lock = asyncio.Lock()

    @property
    def engine(self) -> Engine:
        """The engine the writes go through (its events see them)."""
        return self._sqlite or self.async_engine.sync_engine

    async def run(self, work: Callable[[Connection], T | Generator[None, None, T]]) -> T:
        """``work(connection)`` inside one transaction, committed when it returns; rolled
        back (and the exception raised) when it raises. A generator is run to its end,
        the loop turning between its steps on SQLite (elsewhere each statement awaits)."""
        if self._sqlite is None:
            async with self.async_engine.begin() as conn:
                return await conn.run_sync(lambda sync: _to_the_end(work(sync)))
        loop = asyncio.get_running_loop()
        async with self._lock:
            conn, transaction = await loop.run_in_executor(self._thread, self._begin)
            done = False
            try:
                result = work(conn)
                if isinstance(result, Generator):
                    result = await _in_steps(result)
                await loop.run_in_executor(self._thread, _commit, conn, transaction)
                done = True
                return result
            finally:
                if not done:  # failed, or cancelled: the thread still rolls it back
                    future = loop.run_in_executor(self._thread, _roll_back, conn, transaction)
                    await asyncio.shield(future)

    def _begin(self) -> tuple[Connection, RootTransaction]:
        assert self._sqlite is not None
        conn = self._sqlite.connect()
        try:
            return conn, conn.begin()
        except BaseException:
            conn.close()
            raise

    def dispose(self) -> None:
        if self._sqlite is not None:
            self._thread.shutdown(wait=True)
            self._sqlite.dispose()


def _to_the_end(steps: T | Generator[None, None, T]) -> T:
    if not isinstance(steps, Generator):
        return steps
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


async def _in_steps(steps: Generator[None, None, T]) -> T:
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
        await asyncio.sleep(0)


def _commit(conn: Connection, transaction: RootTransaction) -> None:
    try:
        transaction.commit()
    finally:
        conn.close()


def _roll_back(conn: Connection, transaction: RootTransaction) -> None:
    try:
        if transaction.is_active:
            transaction.rollback()
    finally:
        conn.close()


def _sqlite_engine(path: str) -> Engine:
    uri = sqlite_uri(path)

    def connect() -> sqlite3.Connection:
        # Used on the writer's thread and the loop's, never both at once.
        db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
        db.isolation_level = None  # no implicit BEGIN: ours below takes the lock up front
        return db

    engine = create_engine(
        "sqlite://", creator=connect, poolclass=QueuePool, pool_size=1, hide_parameters=True
    )
    event.listen(engine, "connect", sqlite_pragmas)
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return engine
