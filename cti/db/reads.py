"""Short reads on the hot path (a screen pop's history), without a session per read.

On SQLite the reads run on the event loop's thread, through a read-only connection of a
synchronous engine: an indexed read takes tens of microseconds and, in WAL mode, never
waits for the writer, where an ``AsyncSession`` costs a thread hop for every step
(begin, execute, fetch, rollback) and a greenlet around them. Elsewhere (PostgreSQL) a
pooled connection in autocommit per read: asyncpg has no thread to hop to.
Either way the statement's column types apply (JSON, UTC times), as in a session.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from typing import Any

from sqlalchemy import Executable, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool


class LoopReader:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sync: Engine | None = None
        path = engine.url.database
        if engine.dialect.name == "sqlite" and path and path != ":memory:":
            uri = f"file:{urllib.parse.quote(path)}?mode=ro"  # any folder name, read-only

            def connect() -> sqlite3.Connection:
                return sqlite3.connect(uri, uri=True, check_same_thread=False)

            # One connection, only ever used on the loop's thread.
            self._sync = create_engine(
                "sqlite://", creator=connect, poolclass=StaticPool, hide_parameters=True
            )

    async def all(self, statement: Executable) -> list[Any]:
        """The rows ``statement`` selects."""
        if self._sync is not None:
            with self._sync.connect() as conn:
                return list(conn.execute(statement).all())
        async with self.engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return list((await autocommit.execute(statement)).all())

    async def scalars(self, statement: Executable) -> list[Any]:
        """The first column of the rows ``statement`` selects."""
        return [row[0] for row in await self.all(statement)]

    def close(self) -> None:
        if self._sync is not None:
            self._sync.dispose()
