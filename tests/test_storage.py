"""Migrations and models on every backend (SQLite always, PostgreSQL when it answers)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select

from cti import auth
from cti.db import migrate
from cti.db.engine import create_engine, session_factory
from cti.db.models import User


@pytest.fixture
async def engine(db_url: str):
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


async def table_names(engine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_empty_database_is_refused_until_upgraded(engine) -> None:
    with pytest.raises(migrate.DatabaseNotMigrated, match=r"has no tables yet.*cti db upgrade"):
        await migrate.check_up_to_date(engine)
    await migrate.upgrade(engine)
    await migrate.check_up_to_date(engine)
    assert {"users", "api_tokens", "alembic_version"} <= await table_names(engine)
    assert await migrate.current_revision(engine) == migrate.head_revision()


async def test_upgrade_is_repeatable_and_downgrade_works(engine) -> None:
    await migrate.upgrade(engine)
    await migrate.upgrade(engine)
    await migrate.downgrade(engine, "base")
    assert "users" not in await table_names(engine)
    await migrate.upgrade(engine)
    assert "users" in await table_names(engine)


async def test_models_match_migrations(engine) -> None:
    """An autogenerate diff against the migrated schema finds nothing: no model change
    was left without its migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from cti.db.models import Base

    await migrate.upgrade(engine)

    def diff(conn) -> list:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


@pytest.mark.parametrize("name", ["Анна Петрова", "გიორგი ბერიძე", "សុភា ចាន់", "Zoë 👩‍💼"])
async def test_unicode_names_and_utc_times_round_trip(engine, name: str) -> None:
    await migrate.upgrade(engine)
    sessions = session_factory(engine)
    moscow = timezone(timedelta(hours=3))
    created = datetime(2026, 11, 22, 12, 0, tzinfo=moscow)
    async with sessions() as session:
        user = await auth.create_user(session, name.split()[0], "sales", display_name=name)
        user.created_at = created
        await session.commit()
    async with sessions() as session:
        stored = await session.scalar(select(User).where(User.display_name == name))
    assert stored.display_name == name
    assert stored.created_at == created
    assert stored.created_at.tzinfo == UTC
    assert stored.created_at.hour == 9


async def test_naive_datetimes_are_refused(engine) -> None:
    await migrate.upgrade(engine)
    async with session_factory(engine)() as session:
        user = await auth.create_user(session, "x", "sales")
        user.created_at = datetime(2026, 1, 1)
        with pytest.raises(Exception, match="naive datetime"):
            await session.commit()
