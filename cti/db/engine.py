"""Engine set-up: SQLite in WAL mode as the embedded default, PostgreSQL from the same code."""

from __future__ import annotations

import logging
import urllib.parse
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def create_engine(url: str, echo: bool = False) -> AsyncEngine:
    """``echo`` logs each SQL statement through the service's own log (never to stdout,
    which SQLAlchemy's echo would write to, past the redactor). Parameters are never
    logged, nor put in error messages: they are password and token hashes, SMS texts,
    callers' names."""
    options: dict[str, Any] = {"hide_parameters": True}
    if echo:  # this engine's own logger, so that no other engine starts logging
        options["logging_name"] = "echo"
        logging.getLogger("sqlalchemy.engine.Engine.echo").setLevel(logging.INFO)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **options)
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, **options)


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The file of an SQLite database on disk (one that other connections can open);
    None for an in-memory one or another backend."""
    path = engine.url.database
    if engine.dialect.name == "sqlite" and path and path != ":memory:":
        return path
    return None


def sqlite_uri(path: str, *, read_only: bool = False) -> str:
    """``path`` as the URI ``sqlite3.connect(..., uri=True)`` opens, whatever its folder's
    name holds (``?``, ``#``, spaces)."""
    return f"file:{urllib.parse.quote(path)}" + ("?mode=ro" if read_only else "")


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (the web pages) run while the adapters write. FULL syncs every
    # commit: a call or an SMS acknowledged is on disk even after a power cut.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


def upsert_insert(session: AsyncSession) -> Any:
    """The backend's ``insert``, which has ``on_conflict_do_update`` (SQLite, PostgreSQL)."""
    return pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
