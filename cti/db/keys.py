"""Keys the service signs with, made once and kept in the database: every node of several
(and the service after a restart) checks what another signed."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.db.engine import upsert_insert
from cti.db.models import ServiceKey


async def shared_key(sessions: async_sessionmaker, name: str, size: int = 32) -> bytes:
    """The key called ``name``: made the first time it is asked for (by whichever node
    asks first: the others read that one)."""
    async with sessions() as session:
        await _make_once(session, name, secrets.token_hex(size))
        await session.commit()
        value = await session.scalar(select(ServiceKey.value).where(ServiceKey.name == name))
    assert value is not None
    return bytes.fromhex(value)


async def _make_once(session: AsyncSession, name: str, value: str) -> None:
    insert = upsert_insert(session)
    await session.execute(
        insert(ServiceKey).values(name=name, value=value).on_conflict_do_nothing()
    )
