"""Leadership of one thing (a PBX link, a modem, the periodic jobs) among the nodes, held
with a PostgreSQL advisory lock.

Why the database and not NATS: the lock lives on a connection of its own, so it goes the
moment its holder does (a killed process's socket closes: the server releases the lock at
once, no lease to wait out), and it is the database the leader writes the call log to: a
node that cannot reach it could not lead anyway.

A holder that stops answering without its socket closing (paused, cut off by the
network) must lose the lock too, and know it has before another node can take it:

- the lock's connection is killed by the server after ``seconds`` without a query
  (``idle_session_timeout``, PostgreSQL 14 and newer), which releases the lock; the holder
  renews by asking ``SELECT 1`` every ``seconds / RENEWALS``;
- the holder counts its lease from when it *sent* the last renewal that was answered, and
  stops holding it (``held``) ``HOLD_FRACTION`` of ``seconds`` after that, by its own
  monotonic clock: the server cannot release it before ``seconds`` after it *answered*.
  A node woken from a pause finds ``held`` false before it does anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable

import asyncpg

log = logging.getLogger("cti.cluster")

RENEWALS = 4  # renewals a lease period
HOLD_FRACTION = 0.75  # of the period after the last renewal was sent: then no longer held


def lock_key(name: str) -> int:
    """The advisory lock's 64-bit key for a lease name."""
    return int.from_bytes(hashlib.sha256(f"cti:{name}".encode()).digest()[:8], "big", signed=True)


class Lease:
    def __init__(
        self,
        dsn: str,
        name: str,
        seconds: float,
        *,
        node: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dsn = dsn
        self.name = name
        self.seconds = seconds
        self.node = node
        self.clock = clock
        self.key = lock_key(name)
        self._conn: asyncpg.Connection | None = None
        self._renewed_at: float | None = None  # when the last answered renewal was sent

    @property
    def held(self) -> bool:
        """This node holds the lease now, as far as anyone could tell."""
        at = self._renewed_at
        return at is not None and self.clock() - at < self.seconds * HOLD_FRACTION

    @property
    def backend_pid(self) -> int | None:
        """The database session holding the lock (for a write to check it still does)."""
        return None if self._conn is None else self._conn.get_server_pid()

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it."""
        sent = self.clock()
        try:
            conn = await self._connection()
            got = await asyncio.wait_for(
                conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key), self._answer_within
            )
        except (OSError, TimeoutError, asyncpg.PostgresError) as e:
            log.warning("could not ask for the %s lease: %s", self.name, e)
            await self._drop()
            return False
        if got:
            self._renewed_at = sent
        return bool(got)

    async def renew(self) -> bool:
        """Keep the lease; False (and not held from now on) when that cannot be known."""
        if self._conn is None or self._renewed_at is None:
            return False
        sent = self.clock()
        try:
            await asyncio.wait_for(self._conn.fetchval("SELECT 1"), self._answer_within)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            log.warning("lost the %s lease: %s", self.name, e)
            await self._drop()
            return False
        if not self.held:  # the answer came too late to count
            await self._drop()
            return False
        self._renewed_at = sent
        return True

    async def release(self) -> None:
        """Give the lease up (the connection goes, and the lock with it)."""
        await self._drop()

    @property
    def _answer_within(self) -> float:
        return self.seconds / RENEWALS

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncio.wait_for(
                asyncpg.connect(
                    self.dsn,
                    server_settings={
                        # The server ends a holder that stopped renewing: its lock goes.
                        "idle_session_timeout": str(int(self.seconds * 1000)),
                        "application_name": f"cti lease {self.name} {self.node}"[:63],
                    },
                ),
                self.seconds,
            )
        return self._conn

    async def _drop(self) -> None:
        self._renewed_at = None
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 1)
            if not conn.is_closed():
                conn.terminate()
