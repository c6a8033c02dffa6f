"""Short reads on the hot path (a screen pop's history), without a session per read.

On SQLite the reads run on the event loop's thread, through a read-only connection of a
synchronous engine: an indexed read takes tens of microseconds and, in WAL mode, never
waits for the writer, where an ``AsyncSession`` costs a thread hop for every step
(begin, execute, fetch, rollback) and a greenlet around them. There a read can also be
made at once (``all_now``), for work that must not wait for the loop (a pop filled in
before it is first sent). Elsewhere (PostgreSQL) one connection in autocommit kept for
these reads, one at a time: asyncpg has no thread to hop to, and a pool checkout (with
its ping) per read cost a second round trip. Either way the statement's column types
apply (JSON, UTC times), as in a session.

Statements are best built once with bound parameters: a statement built anew for every
read is keyed for the compiled cache again, which costs more than the read.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Executable, create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import StaticPool

from cti.db.engine import sqlite_file, sqlite_uri

Params = Mapping[str, Any] | None


class LoopReader:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sync: Engine | None = None
        path = sqlite_file(engine)
        if path is not None:
            uri = sqlite_uri(path, read_only=True)

            def connect() -> sqlite3.Connection:
                return sqlite3.connect(uri, uri=True, check_same_thread=False)

            # One connection, only ever used on the loop's thread, kept open (a checkout
            # per read cost as much as the read); in autocommit, so that no read holds a
            # snapshot (and the WAL) past its end.
            self._sync = create_engine(
                "sqlite://", creator=connect, poolclass=StaticPool, hide_parameters=True
            )
        self._conn: Connection | None = None
        self._async: AsyncConnection | None = None
        self._lock = asyncio.Lock()

    @property
    def at_once(self) -> bool:
        """Whether ``all_now`` can read (SQLite)."""
        return self._sync is not None

    def all_now(self, statement: Executable, params: Params = None) -> list[Any]:
        """The rows ``statement`` selects, read now on this thread (``at_once`` only)."""
        if self._sync is None:
            raise RuntimeError("reads at once need SQLite")
        if self._conn is None:
            self._conn = self._sync.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            return list(self._conn.execute(statement, params).all())
        except Exception:
            self._drop()  # a broken connection: the next read opens another
            raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def all(self, statement: Executable, params: Params = None) -> list[Any]:
        """The rows ``statement`` selects."""
        if self._sync is not None:
            return self.all_now(statement, params)
        async with self._lock:
            if self._async is None:
                conn = await self.engine.connect()
                self._async = await conn.execution_options(isolation_level="AUTOCOMMIT")
            try:
                return list((await self._async.execute(statement, params)).all())
            except Exception:
                conn, self._async = self._async, None  # broken: the next read opens another
                with contextlib.suppress(Exception):
                    await conn.close()
                raise

    async def scalars(self, statement: Executable, params: Params = None) -> list[Any]:
        """The first column of the rows ``statement`` selects."""
        return [row[0] for row in await self.all(statement, params)]

    async def close(self) -> None:
        self._drop()
        if self._sync is not None:
            self._sync.dispose()
        async with self._lock:
            if self._async is not None:
                conn, self._async = self._async, None
                with contextlib.suppress(Exception):
                    await conn.close()
