"""A PostgreSQL database of its own for one benchmark run, dropped afterwards."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

POSTGRES_URL = os.environ.get(
    "CTI_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@asynccontextmanager
async def scratch_postgres(name: str) -> AsyncIterator[str | None]:
    """A fresh database ``name`` (an old one of that name is dropped first), as an
    SQLAlchemy URL; None, said on stdout, when the server does not answer."""
    import asyncpg

    try:
        admin = await asyncpg.connect(POSTGRES_URL, timeout=3)
    except (OSError, asyncpg.PostgresError) as e:
        print(f"\n== PostgreSQL: skipped ({POSTGRES_URL} does not answer: {e})")
        yield None
        return
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0")
    finally:
        await admin.close()
    base = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(POSTGRES_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
