"""Is the database up? It answers a read and takes a write.

A database that answers ``SELECT 1`` may still refuse every write (a full disk, a file
made read-only, a replica promoted the wrong way): that is down too, for a service whose
first promise is that nothing acknowledged is lost. /healthz rewrites one row of
``health_probe``, at most every PROBE_SECONDS however often it is asked (an unauthenticated
probe must not become a way to make the database write), and the call store's own
failing writes count as well. Both recover by themselves once writes succeed again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from cti.db.engine import upsert_insert
from cti.db.models import HealthProbe
from cti.domain import utcnow

CHECK_TIMEOUT = 2.0
PROBE_SECONDS = 5.0


class DatabaseHealth:
    def __init__(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker,
        write_failure: Callable[[], str | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.write_failure = write_failure  # why the service's own writes fail, if they do
        self.clock = clock
        self._probed_at: float | None = None
        self._write_error: str | None = None
        self._probing: asyncio.Lock = asyncio.Lock()

    async def check(self) -> dict[str, object]:
        """``{"up": True, "latency_ms": ...}`` or ``{"up": False, "detail": ...}``."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(CHECK_TIMEOUT), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as e:  # any failure is "down"; the reason is shown, not raised
            return {"up": False, "detail": type(e).__name__}
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        write_error = await self._probe() or self.write_failure()
        if write_error is not None:
            return {"up": False, "detail": f"writes fail: {write_error}"}
        return {"up": True, "latency_ms": latency_ms}

    async def _probe(self) -> str | None:
        async with self._probing:  # many /healthz at once share one probe
            due = self._probed_at is None or self.clock() - self._probed_at >= PROBE_SECONDS
            if due:
                self._write_error = await self._write()
                self._probed_at = self.clock()
        return self._write_error

    async def _write(self) -> str | None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT), self.sessions() as session:
                statement = upsert_insert(session)(HealthProbe).values(id=1, checked_at=utcnow())
                await session.execute(
                    statement.on_conflict_do_update(
                        index_elements=["id"], set_={"checked_at": statement.excluded.checked_at}
                    )
                )
                await session.commit()
        except Exception as e:
            return type(e).__name__
        return None
