"""A PostgreSQL database of its own for one benchmark run, dropped afterwards."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cti.db.scratch import scratch_database

# Not CTI_*: the services a bench starts would take a CTI_ variable for their configuration.
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@asynccontextmanager
async def scratch_postgres(name: str) -> AsyncIterator[str | None]:
    """A fresh database ``name`` (an old one of that name is dropped first), as an
    SQLAlchemy URL; None, said on stdout, when the server does not answer."""
    import asyncpg

    try:
        probe = await asyncpg.connect(POSTGRES_URL, timeout=3)
    except (OSError, asyncpg.PostgresError) as e:
        print(f"\n== PostgreSQL: skipped ({POSTGRES_URL} does not answer: {e})")
        yield None
        return
    await probe.close()
    async with scratch_database(POSTGRES_URL, name) as url:
        yield url
