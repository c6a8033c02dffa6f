"""Shared fixtures. Storage tests run on SQLite always and on PostgreSQL when it answers.

PostgreSQL: ``CTI_TEST_POSTGRES_URL`` (default postgresql://postgres@127.0.0.1:5432/postgres)
names a server where each test gets a database of its own. With
``CTI_TEST_REQUIRE_POSTGRES=1`` (set by .ci/run) an unreachable server fails the run instead
of skipping.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from helpers import new_token

from cti.config import Config, DatabaseConfig, ServerConfig
from cti.db.scratch import scratch_database
from cti.http.app import build_app
from cti.service import Service

POSTGRES_URL = os.environ.get(
    "CTI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("CTI_TEST_REQUIRE_POSTGRES") == "1"
_postgres_ok: bool | None = None


async def _postgres_reachable() -> bool:
    global _postgres_ok
    if _postgres_ok is None:
        try:
            conn = await asyncpg.connect(POSTGRES_URL, timeout=3)
            await conn.close()
            _postgres_ok = True
        except (TimeoutError, OSError, asyncpg.PostgresError):
            _postgres_ok = False
    return _postgres_ok


@contextlib.asynccontextmanager
async def fresh_postgres() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database's URL, dropped afterwards."""
    if not await _postgres_reachable():
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required but does not answer")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} does not answer (set CTI_TEST_POSTGRES_URL)")
    async with scratch_database(POSTGRES_URL, f"cti_test_{uuid.uuid4().hex[:12]}") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    async with fresh_postgres() as url:
        yield url


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database only (several nodes share one: tests/test_cluster.py)."""
    async with fresh_postgres() as url:
        yield url


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    return Config(
        server=ServerConfig(data_dir=tmp_path, port=0),
        database=DatabaseConfig(url=db_url, auto_migrate=True),
    )


@pytest.fixture
async def service(config: Config) -> AsyncIterator[Service]:
    svc = await Service.start(config)
    try:
        yield svc
    finally:
        await svc.close()


@pytest.fixture
async def client(service: Service, aiohttp_client) -> TestClient:
    return await aiohttp_client(build_app(service))


@pytest.fixture
def make_user(service: Service):
    """``await make_user(role, extension)`` -> the new user's API token."""

    async def make(role: str, extension: str | None = None, username: str | None = None) -> str:
        return await new_token(service, role, extension, username)

    return make


@pytest.fixture
async def staff(make_user) -> dict[str, str]:
    """Tokens of two operators, anna (101) and giorgi (102), and a supervisor, boss."""
    return {
        "anna": await make_user("operator", "101", username="anna"),
        "giorgi": await make_user("operator", "102", username="giorgi"),
        "boss": await make_user("supervisor", username="boss"),
    }
