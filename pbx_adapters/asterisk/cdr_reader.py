"""Reading Asterisk's CDR table: FreePBX's ``asteriskcdrdb.cdr`` in MySQL/MariaDB, or the
same columns written by ``cdr_adaptive_odbc`` to PostgreSQL or MySQL.

The PBX owns the table; the service only reads it, with the URL's user (give it SELECT
and nothing more). ``calldate`` is written in the PBX's local time (FreePBX) or UTC:
``cdr_timezone`` says which.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import column, select, table
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pbx_adapters.asterisk.cdr import CDR_COLUMNS, CdrRow

MAX_ROWS = 200_000  # one read; a PBX with more CDR rows in the window is read partly
ASYNC_DRIVERS = {"mysql": "mysql+aiomysql", "mariadb": "mysql+aiomysql"}
ASYNC_DRIVERS["postgresql"] = "postgresql+asyncpg"


def async_url(url: str) -> str:
    """``mysql://…`` as the async driver's URL (``mysql+aiomysql://…``)."""
    parsed = make_url(url)
    driver = ASYNC_DRIVERS.get(parsed.drivername, parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


class CdrReader:
    def __init__(self, url: str, table_name: str, timezone: str) -> None:
        self.engine: AsyncEngine = create_async_engine(
            async_url(url), pool_size=1, max_overflow=0, pool_pre_ping=True, pool_recycle=3600
        )
        schema, _, name = table_name.rpartition(".")
        self.table = table(name, *(column(c) for c in CDR_COLUMNS), schema=schema or None)
        self.zone = ZoneInfo(timezone)

    async def rows_since(self, since: datetime) -> list[CdrRow]:
        """The rows of calls that started at ``since`` or later, oldest first."""
        local_since = since.astimezone(self.zone).replace(tzinfo=None)
        c = self.table.c
        query = (
            select(*(c[name] for name in CDR_COLUMNS))
            .where(c.calldate >= local_since)
            .order_by(c.calldate)
            .limit(MAX_ROWS)
        )
        async with self.engine.connect() as connection:
            result = await connection.execute(query)
            return [self._row(row._mapping) for row in result]

    def _row(self, values: object) -> CdrRow:
        data = dict(values)  # type: ignore[call-overload]
        calldate = data["calldate"]
        if isinstance(calldate, str):
            calldate = datetime.fromisoformat(calldate)
        if calldate.tzinfo is None:
            calldate = calldate.replace(tzinfo=self.zone)
        text = {k: "" if data[k] is None else str(data[k]) for k in CDR_COLUMNS}
        return CdrRow(
            calldate=calldate.astimezone(UTC),
            src=text["src"],
            dst=text["dst"],
            dcontext=text["dcontext"],
            clid=text["clid"],
            channel=text["channel"],
            dstchannel=text["dstchannel"],
            disposition=text["disposition"].upper(),
            duration=int(data["duration"] or 0),
            billsec=int(data["billsec"] or 0),
            uniqueid=text["uniqueid"],
            linkedid=text["linkedid"],
        )

    async def close(self) -> None:
        await self.engine.dispose()
