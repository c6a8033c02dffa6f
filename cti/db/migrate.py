"""Running Alembic migrations from the service and the command line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATING = 0x4354_495F_6D69_6772  # an advisory lock's key: "CTI_migr"


class DatabaseNotMigrated(Exception):
    """The schema is behind; ``upgrade`` is the command that brings it up to date (the
    command line names its configuration file in it)."""

    def __init__(self, state: str, head: str, upgrade: str = "cti db upgrade") -> None:
        super().__init__(state, head)
        self.state, self.head, self.upgrade = state, head, upgrade

    def __str__(self) -> str:
        return (
            f"the database {self.state} but this version needs {self.head}: "
            f"run `{self.upgrade}` (or set [database] auto_migrate = true)"
        )


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    def read(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await _run(engine, command.upgrade, revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Back to ``revision`` ("base": no tables), undoing the migrations after it."""
    await _run(engine, command.downgrade, revision)


async def _run(engine: AsyncEngine, step: Callable[[AlembicConfig, str], None], to: str) -> None:
    def run(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        step(cfg, to)

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # nodes starting together migrate in turn
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATING})
        await conn.run_sync(run)


async def check_up_to_date(engine: AsyncEngine) -> None:
    current, head = await current_revision(engine), head_revision()
    if current != head:
        state = "has no tables yet" if current is None else f"is at revision {current}"
        raise DatabaseNotMigrated(state, head)
