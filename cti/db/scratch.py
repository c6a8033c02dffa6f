"""A throwaway PostgreSQL database, for the tests and the benchmarks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


@asynccontextmanager
async def scratch_database(admin_url: str, name: str) -> AsyncIterator[str]:
    """A fresh, empty database ``name`` on the server of ``admin_url`` (a
    ``postgresql://`` URL; an old database of that name is dropped first), as an
    SQLAlchemy URL; dropped again afterwards."""
    await _admin(
        admin_url,
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0",
    )
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(admin_url: str, *statements: str) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()
