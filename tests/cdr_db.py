"""A CDR table shaped like FreePBX's ``asteriskcdrdb.cdr``, in MariaDB or PostgreSQL, for
the CDR recovery tests (issue 15). Each test gets a table of its own.

MariaDB: ``CTI_TEST_MARIADB_URL`` (default mysql://root@127.0.0.1:3306/test); with
``CTI_TEST_REQUIRE_MARIADB=1`` (set by .ci/run, which starts it) an unreachable server
fails instead of skipping. PostgreSQL: the storage tests' server (conftest.py).
"""

from __future__ import annotations

import csv
import os
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pbx_adapters.asterisk.cdr_reader import async_url

MARIADB_URL = os.environ.get("CTI_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")
REQUIRE_MARIADB = os.environ.get("CTI_TEST_REQUIRE_MARIADB") == "1"
LAB_CDR = Path(__file__).parent / "fixtures" / "lab" / "cdr-custom.csv"
# The lab's cdr_custom.conf mapping: its Master.csv columns, in order.
LAB_CDR_COLUMNS = (
    "linkedid uniqueid sequence src dst dcontext clid channel dstchannel lastapp lastdata "
    "start answer end duration billsec disposition"
).split()

# FreePBX 16's asteriskcdrdb.cdr (MySQL); PostgreSQL gets the same columns.
FREEPBX_CDR = """CREATE TABLE {table} (
  calldate {datetime} NOT NULL,
  clid varchar(80) NOT NULL DEFAULT '',
  src varchar(80) NOT NULL DEFAULT '',
  dst varchar(80) NOT NULL DEFAULT '',
  dcontext varchar(80) NOT NULL DEFAULT '',
  channel varchar(80) NOT NULL DEFAULT '',
  dstchannel varchar(80) NOT NULL DEFAULT '',
  lastapp varchar(80) NOT NULL DEFAULT '',
  lastdata varchar(80) NOT NULL DEFAULT '',
  duration int NOT NULL DEFAULT 0,
  billsec int NOT NULL DEFAULT 0,
  disposition varchar(45) NOT NULL DEFAULT '',
  amaflags int NOT NULL DEFAULT 0,
  accountcode varchar(20) NOT NULL DEFAULT '',
  uniqueid varchar(32) NOT NULL DEFAULT '',
  userfield varchar(255) NOT NULL DEFAULT '',
  did varchar(50) NOT NULL DEFAULT '',
  recordingfile varchar(255) NOT NULL DEFAULT '',
  cnum varchar(80) NOT NULL DEFAULT '',
  cnam varchar(80) NOT NULL DEFAULT '',
  outbound_cnum varchar(80) NOT NULL DEFAULT '',
  outbound_cnam varchar(80) NOT NULL DEFAULT '',
  dst_cnam varchar(80) NOT NULL DEFAULT '',
  linkedid varchar(32) NOT NULL DEFAULT '',
  peeraccount varchar(80) NOT NULL DEFAULT '',
  sequence int NOT NULL DEFAULT 0
){suffix}"""
INSERTED = "calldate clid src dst dcontext channel dstchannel lastapp lastdata duration billsec "
INSERTED += "disposition uniqueid linkedid sequence"


def lab_rows(path: Path = LAB_CDR) -> list[dict[str, str]]:
    """The lab's CDR rows (cdr_custom's Master.csv), as dicts by column."""
    with path.open(encoding="utf-8", newline="") as f:
        return [dict(zip(LAB_CDR_COLUMNS, row, strict=True)) for row in csv.reader(f)]


@dataclass
class CdrTable:
    url: str  # as a user writes cdr_url (mysql://…, postgresql://…)
    table: str

    async def insert(self, rows: Iterable[dict[str, str]]) -> None:
        """Write rows as Asterisk's cdr_adaptive_odbc (or FreePBX's cdr_mysql) would."""
        columns = INSERTED.split()
        values = [
            {
                **{c: row.get(c, "") for c in columns},
                "calldate": row["start"],
                "duration": int(row["duration"]),
                "billsec": int(row["billsec"]),
                "sequence": int(row.get("sequence") or 0),
            }
            for row in rows
        ]
        if not values:
            return
        engine = create_async_engine(async_url(self.url))
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    text(
                        f"INSERT INTO {self.table} ({', '.join(columns)}) "  # noqa: S608
                        f"VALUES ({', '.join(':' + c for c in columns)})"
                    ),
                    [{**v, "calldate": datetime.fromisoformat(v["calldate"])} for v in values],
                )
        finally:
            await engine.dispose()


async def _mariadb_reachable() -> bool:
    engine = create_async_engine(async_url(MARIADB_URL))
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        await engine.dispose()


async def cdr_table(backend: str, postgres_url: str) -> AsyncIterator[CdrTable]:
    """A fresh FreePBX-shaped CDR table on ``backend`` ("mariadb" or "postgresql")."""
    name = f"cdr_{uuid.uuid4().hex[:10]}"
    if backend == "mariadb":
        if not await _mariadb_reachable():
            reason = f"MariaDB at {MARIADB_URL} does not answer (set CTI_TEST_MARIADB_URL)"
            if REQUIRE_MARIADB:
                pytest.fail(reason, pytrace=False)
            pytest.skip(reason)
        url, ddl = MARIADB_URL, dict(datetime="datetime", suffix=" DEFAULT CHARSET=utf8mb4")
    else:
        url, ddl = postgres_url, dict(datetime="timestamp", suffix="")
    engine = create_async_engine(async_url(url))
    try:
        async with engine.begin() as connection:
            await connection.execute(text(FREEPBX_CDR.format(table=name, **ddl)))
            await connection.execute(text(f"CREATE INDEX {name}_calldate ON {name} (calldate)"))
        yield CdrTable(url, name)
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP TABLE IF EXISTS {name}"))
        await engine.dispose()
