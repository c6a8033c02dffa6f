"""Call log: page times of ``GET /api/calls`` at 1,000,000 calls, on SQLite and PostgreSQL.

Generation (a fixed seed): a year of calls ending 2026-12-01 00:00 UTC, weekdays busier
than weekends, office hours in Moscow; 30 extensions (101-103 reception, 104-115
support, 116-130 sales); 55 % inbound (ringing the reception group or a queue of up to
3 agents; ~27 % of them missed: abandoned, no answer, busy, failed), 35 % outbound
(sales and support; a third click-to-dial), 10 % internal; outside numbers from a pool
of 50,000 with a long tail (some clients call every day, most a few times a year).
Every call is a ``cti.calls.Call`` turned into its row by ``Call.to_dict`` and the
call store's own ``_row``, the way ``CallStore`` writes it; its legs are what the Asterisk
tracker records: inbound 1-3 (+1 for a transfer), internal 1-2, outbound 0-1 (only the
operator's own phone of a click-to-dial; a call dialled from the phone has no leg).
Around them what the API's ``_enrich`` reads for every page: users with the extensions,
20,000 built-in clients owning 30,000 of the numbers (most of the busiest callers), and a
``recordings`` row for each recorded call (60 % of the answered ones).

Load: a fresh database, the schema by Alembic (``cti.db.migrate.upgrade``), then the
rows in bulk: SQLite ``executemany`` in one transaction, PostgreSQL ``COPY`` (asyncpg
``copy_records_to_table``), then ``VACUUM ANALYZE`` on PostgreSQL (where autovacuum
gets to; the service never runs ANALYZE on SQLite, so SQLite plans without statistics).
After the load and every schema change: a checkpoint (WAL truncated on SQLite).
The first 50 calls go in through the real write path (``upsert_calls``), and the bulk
rows are checked to be stored in the same forms. 1 % of calls share their start time
with the one before, so the keyset's tie-break is exercised.

Queries: ``cti.callstore.find_calls`` as ``GET /api/calls`` calls it (limit + 1, the
cursor decoded by the API's own ``_decode_cursor``), as a supervisor (sees everything)
or an operator (``visible_to_extension``; the web panel also sends its own extension as
``extension``), for the requests people and the panel make, with fresh random parameters
(which week, month, extension, number, client, how deep) on every sample, after one
untimed warm-up: the database is in the OS cache. The table times find_calls; the
``_enrich`` that list_calls runs after it on the same page is timed on its own row.
Walks over whole calendar months: the list API's pages of 200 with its cursor, and the
CSV export's own loop (``walk_calls``: pages of 1000, each enriched). Goal: p99 of a
page < 100 ms. A shape stops after SHAPE_BUDGET_S of samples (and at least
MIN_SAMPLES), so the slow variants finish.

Variants, measured in the same run on the same data:
  pk only            find_calls with no index but the primary keys (the naive baseline);
  current            find_calls with the indexes of the migrations (what ships; an
                     operator's calls come from ``call_extensions``, migration 0008).
Every variant's pages are compared with the first variant's for the same request: the
indexes change the plan, never the calls or their order. The plans (EXPLAIN QUERY PLAN;
EXPLAIN ANALYZE on PostgreSQL) of the slowest sample of each shape that misses the goal
are printed.

At the end, the newest migration is undone and timed again on the same calls.

Usage: python bench/calllog.py [--calls 1000000] [--backend sqlite|postgresql|both]
       [--repeat 30] [--variants pk,current]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import math
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from scratch_postgres import scratch_postgres  # bench/, beside this script
from sqlalchemy import (
    bindparam,
    inspect,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from cti.calls import Call, CallLeg, CallTransfer, FaxInfo
from cti.callstore import CallFilter, _row, find_calls, upsert_calls
from cti.clients.builtin import SqlDirectory
from cti.db import migrate
from cti.db.engine import create_engine, session_factory
from cti.db.models import Base, CallExtensionRecord, CallLegRecord, CallRecord, Recording
from cti.domain import Direction, LegResult, Outcome, TransferKind
from cti.http.calls import EXPORT_PAGE as CSV_PAGE
from cti.http.calls import MAX_PAGE, _decode_cursor, _encode_cursor, _enrich

GOAL_MS = 100.0
API_PAGE = 50  # the API's default limit; it asks find_calls for one more
PANEL_PAGE = 20  # CALLS_LIMIT of the web panel
SHAPE_BUDGET_S = 10.0  # a shape stops repeating after this long (slow variants)
MIN_SAMPLES = 5

# --- generation ---------------------------------------------------------------------------

END = datetime(2026, 12, 1, tzinfo=UTC)
DAYS = 365
MSK = timedelta(hours=3)
RECEPTION = [str(e) for e in range(101, 104)]
SUPPORT = [str(e) for e in range(104, 116)]
SALES = [str(e) for e in range(116, 131)]
EXTENSIONS = RECEPTION + SUPPORT + SALES
DIDS = ["+74951234500", "+74951234501", "+78005553535", "+78122345600"]
FAX_DID = "+74951234599"
NUMBER_POOL = 50_000
# Hour of the day (Moscow) -> weight, on a weekday.
HOURS = {8: 2, 9: 7, 10: 10, 11: 11, 12: 10, 13: 8, 14: 10, 15: 10, 16: 9, 17: 7, 18: 4,
         19: 2, 20: 1, 21: 0.5, 22: 0.3, 23: 0.1, 0: 0.05, 1: 0.03, 2: 0.02, 3: 0.02,
         4: 0.02, 5: 0.05, 6: 0.2, 7: 0.7}  # fmt: skip
WEEKDAY = [1.0, 1.0, 1.0, 1.0, 0.95, 0.25, 0.1]
# Agents' shares of their queue or of outbound calls: some take far more than others.
SHARES = {
    n: list(itertools.accumulate(1 / (i + 2) for i in range(n))) for n in (len(SUPPORT), len(SALES))
}
NAMES = ["ООО Ромашка", "Иван Петров", "ANNA SMITH", "Мария", "OOO VEKTOR", "Сервис-Плюс"]

CALL_COLUMNS = [c.name for c in CallRecord.__table__.columns]
LEG_COLUMNS = [c.name for c in CallLegRecord.__table__.columns]
INVOLVED_COLUMNS = [c.name for c in CallExtensionRecord.__table__.columns]
DATETIME_COLUMNS = {"started_at", "answered_at", "ended_at", "ring_started_at"}


@dataclass
class Data:
    calls: list[tuple[Any, ...]]  # CALL_COLUMNS order; details as JSON text
    legs: list[tuple[Any, ...]]  # LEG_COLUMNS order
    involved: list[tuple[Any, ...]]  # INVOLVED_COLUMNS order: call_extensions
    real_path: list[dict[str, Any]]  # the first few calls, written by upsert_calls
    numbers: list[str]  # the pool, most frequent first
    # users, clients, phones (before the calls) and recordings (after): what the API's
    # _enrich reads for every page; {table: rows in the table's column order}.
    directory: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    recordings: list[tuple[Any, ...]] = field(default_factory=list)
    client_numbers: list[tuple[str, ...]] = field(default_factory=list)
    number_calls: Counter[str] = field(default_factory=Counter)
    extension_calls: Counter[str] = field(default_factory=Counter)
    directions: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    missed: int = 0
    details_bytes: int = 0

    def involved_rows(self) -> int:
        """call_extensions rows: the bulk ones and those upsert_calls writes."""
        return len(self.involved) + sum(len(Call.from_dict(c).extensions()) for c in self.real_path)


def start_times(count: int, rng: random.Random) -> list[datetime]:
    first = END - timedelta(days=DAYS)
    days = [first + timedelta(days=d) for d in range(DAYS)]
    day_weights = [WEEKDAY[(d + MSK).weekday()] for d in days]
    hours = rng.choices(list(HOURS), list(HOURS.values()), k=count)
    out = []
    for day, hour in zip(rng.choices(days, day_weights, k=count), hours, strict=True):
        out.append(day + timedelta(hours=hour, seconds=rng.random() * 3600) - MSK)
    out.sort()
    # Calls starting in the same microsecond (two trunks at once, or a PBX that reports
    # seconds): the keyset's tie-break on the id has to hold.
    for i in range(1, count):
        if rng.random() < 0.01:
            out[i] = out[i - 1]
    return out


def number_pool(rng: random.Random) -> tuple[list[str], list[float]]:
    numbers: set[str] = set()
    while len(numbers) < NUMBER_POOL:
        prefix = rng.choice(["+7916", "+7926", "+7903", "+7985", "+7495", "+7499", "+7812"])
        numbers.add(prefix + "".join(rng.choices("0123456789", k=7)))
    ordered = sorted(numbers)
    rng.shuffle(ordered)
    return ordered, [1 / (rank + 20) for rank in range(len(ordered))]


def seconds(rng: random.Random, median: float, spread: float = 0.9) -> timedelta:
    return timedelta(seconds=round(rng.lognormvariate(math.log(median), spread), 3))


def make_call(index: int, started: datetime, number: str, rng: random.Random) -> Call:
    pbx = "main" if rng.random() < 0.9 else "branch"
    call = Call(id=f"{pbx}:{started.timestamp():.0f}.{index}", pbx=pbx, started_at=started)
    kind = rng.random()
    if kind < 0.55:
        inbound(call, number, rng)
    elif kind < 0.90:
        outbound(call, number, rng)
    else:
        internal(call, rng)
    if call.outcome is Outcome.ANSWERED and rng.random() < 0.6:
        day = started.strftime("%Y/%m/%d")
        call.recordings.append(f"/var/spool/asterisk/monitor/{day}/{call.id}.wav")
    return call


def inbound(call: Call, number: str, rng: random.Random) -> None:
    call.direction = Direction.INBOUND
    call.external_number = number
    if rng.random() < 0.2:
        call.external_name = rng.choice(NAMES)
    if rng.random() < 0.005:  # a fax
        call.did = FAX_DID
        at = call.started_at + seconds(rng, 2)
        call.legs = [CallLeg("199", call.started_at, at, at + seconds(rng, 60), LegResult.ANSWERED)]
        call.answered_by, call.answered_at, call.ended_at = "199", at, call.legs[0].ended_at
        call.fax = FaxInfo(rng.randint(1, 6), f"/var/lib/cti/fax/{call.id}.pdf")
        call.outcome = Outcome.ANSWERED
        return
    call.did = rng.choice(DIDS)
    route = rng.random()
    if route < 0.3:  # the reception ring group: all three ring at once
        group, parallel = rng.sample(RECEPTION, rng.choice([1, 2, 3])), True
    else:
        call.queue = "support" if route < 0.75 else "sales"
        pool = SUPPORT if call.queue == "support" else SALES
        group = []
        size = rng.choices((1, 2, 3), cum_weights=(0.6, 0.9, 1.0))[0]
        while len(group) < size:
            agent = rng.choices(pool, cum_weights=SHARES[len(pool)])[0]
            if agent not in group:
                group.append(agent)
        parallel = False
    answered = rng.random() < 0.73
    at = call.started_at + seconds(rng, 2, 0.5)
    for i, ext in enumerate(group):
        ring = seconds(rng, 12, 0.6)
        leg = CallLeg(ext, at)
        last = i == len(group) - 1
        if answered and (last or (parallel and i == 0)):
            leg.answered_at = at + ring
            leg.result = LegResult.ANSWERED
            call.answered_by, call.answered_at = ext, leg.answered_at
        elif not answered and last and rng.random() < 0.15:
            leg.ended_at, leg.result = at + ring, LegResult.BUSY
        else:
            leg.ended_at = at + ring
            leg.result = LegResult.CANCELLED if parallel else LegResult.NO_ANSWER
        call.legs.append(leg)
        if not parallel:
            at = at + ring
    if answered:
        assert call.answered_at is not None
        end = call.answered_at + seconds(rng, 150)
        if rng.random() < 0.05:  # a blind transfer to a colleague
            target = rng.choice(EXTENSIONS)
            while target in group:
                target = rng.choice(EXTENSIONS)
            moved = call.answered_at + seconds(rng, 40)
            call.transfers.append(CallTransfer(TransferKind.BLIND, call.answered_by, target, moved))
            leg2 = CallLeg(target, moved, moved + seconds(rng, 8), None, LegResult.ANSWERED)
            call.legs.append(leg2)
            call.answered_by = target
            end = leg2.answered_at + seconds(rng, 120)  # type: ignore[operator]
        for leg in call.legs:
            if leg.ended_at is None:
                leg.ended_at = end if leg.result is LegResult.ANSWERED else leg.answered_at or end
                if leg.result is None:
                    leg.result = LegResult.CANCELLED
        call.ended_at, call.outcome = end, Outcome.ANSWERED
    else:
        call.ended_at = max(leg.ended_at for leg in call.legs)  # type: ignore[type-var]
        results = [leg.result for leg in call.legs]
        if call.queue and rng.random() < 0.6:
            call.outcome = Outcome.ABANDONED
        elif LegResult.NO_ANSWER in results:
            call.outcome = Outcome.NO_ANSWER
        elif all(r is LegResult.BUSY for r in results):
            call.outcome = Outcome.BUSY
        elif rng.random() < 0.05:
            call.outcome = Outcome.FAILED
        else:
            call.outcome = Outcome.ABANDONED
        call.missed = True


def outbound(call: Call, number: str, rng: random.Random) -> None:
    call.direction = Direction.OUTBOUND
    call.external_number = number
    pool = SALES if rng.random() < 0.7 else SUPPORT
    ext = rng.choices(pool, cum_weights=SHARES[len(pool)])[0]
    call.caller_extension = ext
    if rng.random() < 0.33:  # click-to-dial: the operator's own phone rings first
        up = call.started_at + seconds(rng, 3, 0.5)
        call.legs.append(CallLeg(ext, call.started_at, up, None, LegResult.ANSWERED, True))
        call.originate_id = uuid.UUID(int=rng.getrandbits(128)).hex
    r = rng.random()
    dialled = call.started_at + seconds(rng, 15, 0.5)
    if r < 0.7:
        call.answered_at = dialled
        call.ended_at = dialled + seconds(rng, 120)
        call.outcome = Outcome.ANSWERED
    else:
        call.ended_at = dialled
        call.outcome = (
            Outcome.NO_ANSWER if r < 0.88 else Outcome.BUSY if r < 0.97 else Outcome.FAILED
        )
    for leg in call.legs:
        leg.ended_at = call.ended_at


def internal(call: Call, rng: random.Random) -> None:
    call.direction = Direction.INTERNAL
    caller, callee = rng.sample(EXTENSIONS, 2)
    call.caller_extension = caller
    at = call.started_at + timedelta(seconds=0.2)
    ring = seconds(rng, 6, 0.6)
    if rng.random() < 0.85:
        leg = CallLeg(callee, at, at + ring, None, LegResult.ANSWERED)
        call.answered_by, call.answered_at = callee, leg.answered_at
        call.ended_at = leg.ended_at = at + ring + seconds(rng, 60)
        call.outcome = Outcome.ANSWERED
        call.legs.append(leg)
        return
    result = LegResult.NO_ANSWER if rng.random() < 0.7 else LegResult.BUSY
    call.legs.append(CallLeg(callee, at, at + ring, at + ring, result))
    if result is LegResult.NO_ANSWER and rng.random() < 0.3:  # forwarded on no answer
        other = rng.choice(EXTENSIONS)
        while other in (caller, callee):
            other = rng.choice(EXTENSIONS)
        call.legs.append(CallLeg(other, at + ring, None, at + 2 * ring, LegResult.NO_ANSWER))
    call.ended_at = call.legs[-1].ended_at
    call.outcome = Outcome.NO_ANSWER if result is LegResult.NO_ANSWER else Outcome.BUSY


def generate(count: int, rng: random.Random, real_path: int = 50) -> Data:
    numbers, weights = number_pool(rng)
    starts = start_times(count, rng)
    picked = rng.choices(numbers, weights, k=count)
    data = Data([], [], [], [], numbers)
    directory(data, rng)
    dumps = json.dumps  # SQLAlchemy's JSON serializer on both dialects
    retention = END - timedelta(days=300)
    for index, (started, number) in enumerate(zip(starts, picked, strict=True)):
        call = make_call(index, started, number, rng)
        if index >= count - 8 and rng.random() < 0.5:  # a few still in progress
            call.ended_at = call.outcome = None
            call.missed = False
            for leg in call.legs:
                leg.ended_at = None
                if leg.answered_at is None:
                    leg.result = None
        details = call.to_dict()
        if index < real_path:
            data.real_path.append(details)
            row = _row(details)
        else:
            row = _row(details)
            text_ = dumps(details)
            data.details_bytes += len(text_)
            row["details"] = text_
            row["direction"], row["outcome"] = _plain(row["direction"]), _plain(row["outcome"])
            data.calls.append(tuple(row[c] for c in CALL_COLUMNS))
            for seq, leg in enumerate(call.legs):
                data.legs.append(
                    (call.id, seq, leg.extension, leg.ring_started_at, leg.answered_at,
                     leg.ended_at, leg.result and str(leg.result))
                )  # fmt: skip
            for ext in call.extensions():  # as upsert_calls writes them
                data.involved.append((call.id, ext, call.started_at))
        for path in call.recordings:  # as the recordings watcher registers them
            at = call.ended_at or call.started_at
            data.recordings.append(
                (len(data.recordings) + 1, call.id, path.split("/monitor/", 1)[1], "audio/wav",
                 int((call.talk_seconds or 1) * 16000), at, "pbx",
                 at + timedelta(days=300) if at < retention else None)
            )  # fmt: skip
        data.directions[str(call.direction)] += 1
        data.outcomes[str(call.outcome)] += 1
        data.missed += call.missed
        if call.external_number:
            data.number_calls[call.external_number] += 1
        for ext in call.extensions():
            data.extension_calls[ext] += 1
    return data


def directory(data: Data, rng: random.Random) -> None:
    """Users with the extensions, and 20,000 built-in clients owning 1-2 numbers each of
    the pool: most of the busiest callers, a fraction of the rest."""
    created = END - timedelta(days=400)
    roles = {**dict.fromkeys(RECEPTION, "receptionist"), **dict.fromkeys(SUPPORT, "operator")}
    users = [
        # (id, username, display_name, role, extension, password_hash, is_active,
        # time_zone, created_at): the columns of users, in order.
        (
            i + 1,
            f"user{ext}",
            f"Сотрудник {ext}",
            roles.get(ext, "sales"),
            ext,
            None,
            True,
            None,
            created,
        )
        for i, ext in enumerate(EXTENSIONS)
    ]
    boss = (len(users) + 1, "boss", "Руководитель", "supervisor", None, None, True, None, created)
    users.append(boss)
    managers = [row[0] for row in users if row[3] == "sales"]
    owned = data.numbers[:10_000] + rng.sample(data.numbers[10_000:], 20_000)
    rng.shuffle(owned)
    clients, phones = [], []
    while owned:
        client_id = len(clients) + 1
        name = f"{rng.choice(['ООО', 'АО', 'ИП'])} {rng.choice(NAMES)} {client_id}"
        manager = rng.choice(managers) if rng.random() < 0.6 else None
        clients.append(
            (client_id, name, "company", manager, "[]", "", False, name.casefold(), created,
             created)
        )  # fmt: skip
        mine = tuple(owned.pop() for _ in range(min(len(owned), rng.choice((1, 2)))))
        data.client_numbers.append(mine)
        for number in mine:
            digits = "".join(ch for ch in reversed(number) if ch.isdigit())
            phones.append((len(phones) + 1, client_id, None, number, None, "", digits))
    data.directory = {"users": users, "clients": clients, "phones": phones}


def _plain(value: Any) -> Any:
    return None if value is None else str(value)  # StrEnum -> str


# --- loading --------------------------------------------------------------------------------


def sqlite_value(value: Any) -> Any:
    """What SQLAlchemy's SQLite dialect stores: naive UTC text for datetimes, 0/1."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, bool):
        return int(value)
    return value


def bulk(data: Data) -> list[tuple[str, list[str], list[tuple[Any, ...]]]]:
    """(table, columns, rows) in the order the foreign keys need."""
    tables = [
        (table, [c.name for c in Base.metadata.tables[table].columns], rows)
        for table, rows in data.directory.items()
    ]
    return [
        *tables,
        ("calls", CALL_COLUMNS, data.calls),
        ("call_legs", LEG_COLUMNS, data.legs),
        ("call_extensions", INVOLVED_COLUMNS, data.involved),
        ("recordings", [c.name for c in Recording.__table__.columns], data.recordings),
    ]


def load_sqlite(path: str, data: Data) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA cache_size=-1000000")  # 1 GB for this connection only
        conv = sqlite_value
        with db:
            for table, columns, rows in bulk(data):
                marks = ", ".join("?" * len(columns))
                insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
                db.executemany(insert, ([conv(v) for v in row] for row in rows))
    finally:
        db.close()


async def load_postgres(url: str, data: Data) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            for table, columns, rows in bulk(data):
                await conn.copy_records_to_table(table, records=rows, columns=columns)
    finally:
        await conn.close()


async def prepare(label: str, url: str, data: Data, sqlite_path: str | None) -> AsyncEngine:
    """A fresh schema by Alembic, the first calls through the real write path, the rest in
    bulk; prints the load time."""
    engine = create_engine(url)
    await migrate.upgrade(engine)
    async with engine.connect() as conn:
        made = await conn.run_sync(migrated_indexes)
    assert made == set(CURRENT), f"the migrations' indexes are not CURRENT: {made}"
    started = time.perf_counter()
    async with session_factory(engine)() as session:
        await upsert_calls(session, data.real_path)
        await session.commit()
    if sqlite_path is not None:
        await asyncio.to_thread(load_sqlite, sqlite_path, data)
    else:
        await load_postgres(url.replace("postgresql+asyncpg://", "postgresql://", 1), data)
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    await settle(engine)
    settled = time.perf_counter() - started
    analyzed = (
        f", then a WAL checkpoint {settled:.1f} s"
        if sqlite_path is not None
        else f", then VACUUM ANALYZE + CHECKPOINT {settled:.1f} s"
    )
    calls = len(data.calls) + len(data.real_path)
    print(
        f"load: {calls:,} calls + {len(data.legs) + sum(len(c['legs']) for c in data.real_path):,}"
        f" legs and {len(data.involved):,} call_extensions rows into the migrated schema (its"
        f" {len(CURRENT)} indexes kept) in {loaded:.1f} s "
        f"({calls / loaded:,.0f} calls/s){analyzed}; {await database_size(engine)}"
    )
    await check_stored_forms(engine, data)
    sessions = session_factory(engine)
    clients = SqlDirectory(sessions)  # what the API's call log asks for the client column
    async with sessions() as session:
        page = await _enrich(
            session, clients, await find_calls(session, CallFilter(), limit=MAX_PAGE)
        )
    await clients.close()
    extra = ", ".join(f"{len(rows):,} {table}" for table, rows in data.directory.items())
    print(
        f"  with {extra} and {len(data.recordings):,} recordings: _enrich finds a client for "
        f"{sum(bool(c['client']) for c in page) / len(page):.0%} and recordings for "
        f"{sum(c['recording_count'] > 0 for c in page) / len(page):.0%} of the newest calls"
    )
    return engine


def migrated_indexes(conn: Any) -> set[tuple[str, str, str]]:
    found = inspect(conn)
    return {
        (index["name"], table, ", ".join(index["column_names"]))
        for table in ("calls", "call_legs", "call_extensions")
        for index in found.get_indexes(table)
    }


async def database_size(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            pages = (await conn.execute(text("PRAGMA page_count"))).scalar_one()
            size = (await conn.execute(text("PRAGMA page_size"))).scalar_one()
            return f"database {pages * size / 1e6:,.0f} MB"
        total = (
            await conn.execute(text("SELECT pg_database_size(current_database())"))
        ).scalar_one()
        return f"database {total / 1e6:,.0f} MB"


async def check_stored_forms(engine: AsyncEngine, data: Data) -> None:
    """The bulk rows read back like the rows the real write path stored: same types and
    the same text forms of times (SQLite compares them as text), every row there."""
    sqlite = engine.dialect.name == "sqlite"
    real = [c["id"] for c in data.real_path]
    bulk = [row[0] for row in data.calls[:200]]
    async with engine.connect() as conn:
        for table, columns, key in (
            ("calls", CALL_COLUMNS, "id"),
            ("call_legs", LEG_COLUMNS, "call_id"),
            ("call_extensions", INVOLVED_COLUMNS, "call_id"),
        ):
            selected = ", ".join(columns)
            if sqlite:
                selected += ", " + ", ".join(f"typeof({c})" for c in columns)
            raw = text(f"SELECT {selected} FROM {table} WHERE {key} IN :ids")  # noqa: S608
            raw = raw.bindparams(bindparam("ids", expanding=True))
            seen: dict[str, set[Any]] = {c: set() for c in columns}
            for ids, source in ((real, "real"), (bulk, "bulk")):
                for row in await conn.execute(raw, {"ids": ids}):
                    for i, column in enumerate(columns):
                        if row[i] is None:
                            continue
                        form = row[len(columns) + i] if sqlite else type(row[i]).__name__
                        if sqlite and column in DATETIME_COLUMNS:
                            form += f"/{len(row[i])}"
                        seen[column].add((source, form))
            for column, forms in seen.items():
                by_source = {src: {f for s_, f in forms if s_ == src} for src, _ in forms}
                assert len(set(map(frozenset, by_source.values()))) <= 1, (table, column, forms)
        counts = [
            (await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()  # noqa: S608
            for t in ("calls", "call_legs", "call_extensions")
        ]
    legs = len(data.legs) + sum(len(c["legs"]) for c in data.real_path)
    assert counts == [len(data.calls) + len(data.real_path), legs, data.involved_rows()], counts


# --- plans ----------------------------------------------------------------------------------


class _Captured(Exception):
    pass


class _QueryOnly:
    """Stands in for the session: find_calls hands it the statement it would run."""

    def __init__(self) -> None:
        self.query: Any = None

    async def scalars(self, query: Any) -> Any:
        self.query = query
        return _NoRows()


class _NoRows:
    def all(self) -> list[Any]:
        return []


async def api_query(finder: Callable[..., Awaitable[Any]], request: Request) -> Any:
    fake = _QueryOnly()
    await finder(fake, request.flt, **request.kwargs())  # type: ignore[arg-type]
    return fake.query


async def explain(engine: AsyncEngine, query: Any) -> list[str]:
    """The plan of ``query`` exactly as the driver receives it (SQL and parameters)."""
    from sqlalchemy import event

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        raise _Captured(statement, parameters)

    async with engine.connect() as conn:
        event.listen(engine.sync_engine, "before_cursor_execute", grab)
        try:
            await conn.execute(query)
            raise AssertionError("not captured")
        except _Captured as e:
            statement, parameters = e.args
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", grab)
        if engine.dialect.name == "sqlite":
            rows = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)).all()
            depth = {0: -1}
            lines = []
            for node, parent, _, detail in rows:
                depth[node] = depth.get(parent, -1) + 1
                lines.append("  " * depth[node] + detail)
            return lines
        rows = (
            await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
        ).all()
        return [row[0] for row in rows]


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    flt: CallFilter
    visible: str | bool = True  # True: a supervisor; an extension: an operator
    limit: int = API_PAGE + 1
    before: tuple[datetime, str] | None = None

    def kwargs(self) -> dict[str, Any]:
        return {"visible_to_extension": self.visible, "limit": self.limit, "before": self.before}


class Picker:
    """Random page requests over the generated data."""

    def __init__(self, data: Data, rng: random.Random) -> None:
        self.rng = rng
        # The calls in keyset order (oldest first): (started_at, id) as the cursor decodes.
        self.keys = [(datetime.fromisoformat(c["started_at"]), c["id"]) for c in data.real_path]
        self.keys += [(row[9], row[0]) for row in data.calls]
        self.keys.sort()
        self.ties = [i for i in range(1, len(self.keys)) if self.keys[i][0] == self.keys[i - 1][0]]
        self.numbers = [row[3] for row in data.calls if row[3]]
        self.clients = data.client_numbers
        self.unused = [n for n in data.numbers if n not in data.number_calls]
        self.first = END - timedelta(days=DAYS)

    def extension(self) -> str:
        return self.rng.choice(EXTENSIONS)

    def cursor(self, since: datetime | None = None, until: datetime | None = None) -> Any:
        import bisect

        lo = 0 if since is None else bisect.bisect_left(self.keys, (since, ""))
        hi = len(self.keys) if until is None else bisect.bisect_left(self.keys, (until, ""))
        at = self.rng.randrange(lo, hi)
        if self.rng.random() < 0.2:  # on a tie now and then
            near = bisect.bisect_left(self.ties, at)
            if near < len(self.ties) and self.ties[near] < hi:
                at = max(lo, self.ties[near] - self.rng.randint(0, 1))
        return self.keys[at]

    def week(self) -> tuple[datetime, datetime]:
        monday = self.first + timedelta(days=(7 - (self.first + MSK).weekday()) % 7) - MSK
        since = monday + timedelta(weeks=self.rng.randrange(DAYS // 7 - 1))
        return since, since + timedelta(weeks=1)

    def month(self) -> tuple[datetime, datetime]:
        """A calendar month (Moscow) wholly inside the year of data."""
        y, m = (END + MSK).year, (END + MSK).month
        months = []
        for _ in range(11):
            ny, nm = y, m
            y, m = (y, m - 1) if m > 1 else (y - 1, 12)
            months.append(
                (datetime(y, m, 1, tzinfo=UTC) - MSK, datetime(ny, nm, 1, tzinfo=UTC) - MSK)
            )
        return self.rng.choice(months)

    def direction_outcome(self) -> tuple[str, str]:
        return self.rng.choice(
            [("inbound", "answered"), ("inbound", "no_answer"), ("inbound", "abandoned"),
             ("inbound", "busy"), ("outbound", "answered"), ("outbound", "no_answer"),
             ("outbound", "busy"), ("outbound", "failed"), ("internal", "no_answer")]
        )  # fmt: skip


NO_CALLS_EXTENSION = "131"  # an operator hired today: no call involves it yet


def shapes(p: Picker) -> dict[str, Callable[[], Request]]:
    """Page requests as ``GET /api/calls`` makes them (limit = the page + 1)."""
    F = CallFilter
    panel = PANEL_PAGE + 1

    def week_flt(**kw: Any) -> CallFilter:
        since, until = p.week()
        return F(since=since, until=until, **kw)

    def month_flt(**kw: Any) -> CallFilter:
        since, until = p.month()
        return F(since=since, until=until, **kw)

    def month_deep() -> Request:
        since, until = p.month()
        return Request(F(since=since, until=until), before=p.cursor(since, until))

    def operator_panel(missed: bool | None) -> Callable[[], Request]:
        def make() -> Request:
            ext = p.extension()
            return Request(F(extension=ext, missed=missed), visible=ext, limit=panel)

        return make

    def direction_outcome() -> Request:
        direction, outcome = p.direction_outcome()
        return Request(F(direction=direction, outcome=outcome))  # type: ignore[arg-type]

    return {
        "first page": lambda: Request(F()),
        "deep page (cursor)": lambda: Request(F(), before=p.cursor()),
        "a week": lambda: Request(week_flt()),
        "a month": lambda: Request(month_flt()),
        "a month, deep page": month_deep,
        "direction + outcome": direction_outcome,
        "missed": lambda: Request(F(missed=True)),
        "missed, deep page": lambda: Request(F(missed=True), before=p.cursor()),
        "missed + a week": lambda: Request(week_flt(missed=True)),
        "number (a caller's)": lambda: Request(F(number=p.rng.choice(p.numbers))),
        "number (never called)": lambda: Request(F(number=p.rng.choice(p.unused))),
        "client (client_id: its numbers)": lambda: Request(F(numbers=p.rng.choice(p.clients))),
        "extension=X": lambda: Request(F(extension=p.extension())),
        "extension=X + a month": lambda: Request(month_flt(extension=p.extension())),
        "extension=X + missed": lambda: Request(F(extension=p.extension(), missed=True)),
        "operator: own calls": lambda: Request(F(), visible=p.extension()),
        "operator: own, deep page": lambda: Request(F(), visible=p.extension(), before=p.cursor()),
        "operator: own + a week": lambda: Request(week_flt(), visible=p.extension()),
        "operator: own + number": lambda: Request(
            F(number=p.rng.choice(p.numbers)), visible=p.extension()
        ),
        "operator panel: recent": operator_panel(None),
        "operator panel: missed": operator_panel(True),
        "operator: no calls yet": lambda: Request(F(), visible=NO_CALLS_EXTENSION),
    }


# --- the variants ----------------------------------------------------------------------------

# The secondary indexes of the migrations (the baseline drops them all). Each holds the
# sort keys after its filter column, so a page is a range of one index in order, ties
# broken by the id like the keyset. (ix_calls_missed_started_at needs no id: once the
# keyset is a range, PostgreSQL's incremental sort and SQLite's "temp b-tree for the right
# part of the ORDER BY" only sort calls that start in the same microsecond.)
CURRENT = [
    ("ix_calls_external_number", "calls", "external_number, started_at, id"),
    ("ix_calls_started_at", "calls", "started_at, id"),
    ("ix_calls_missed_started_at", "calls", "missed, started_at"),
    ("ix_calls_pbx_in_progress", "calls", "pbx, in_progress"),
    ("ix_call_legs_extension", "call_legs", "extension, call_id"),
    ("ix_call_extensions_extension", "call_extensions", "extension, started_at, call_id"),
]


@dataclass(frozen=True)
class Variant:
    key: str
    title: str
    finder: Callable[..., Awaitable[list[dict[str, Any]]]]


VARIANTS = {
    "pk": Variant("pk", "pk only", find_calls),
    "current": Variant("current", "current", find_calls),
}
RUN_ORDER = ["current", "pk"]  # what the migrations made first: no rebuild


async def settle(engine: AsyncEngine) -> None:
    """After bulk writes: PostgreSQL where autovacuum gets to (statistics, the visibility
    map), dirty buffers written; SQLite's WAL folded into the database file. No variant
    pays for the writes of the one before."""
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            return
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE"))
        await conn.execute(text("CHECKPOINT"))


async def ddl(engine: AsyncEngine, statements: list[str]) -> float:
    started = time.perf_counter()
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))
    await settle(engine)
    return time.perf_counter() - started


async def schema_for(engine: AsyncEngine, key: str, state: dict[str, Any]) -> str:
    """Brings the indexes to what ``key`` measures; returns what it did."""
    present: set[str] = state.setdefault("present", {name for name, _, _ in CURRENT})
    wanted = {} if key == "pk" else {name: (t, cols) for name, t, cols in CURRENT}
    statements = []
    for name in sorted(present - set(wanted)):
        statements.append(f"DROP INDEX {name}")
        present.discard(name)
    for name, (table, cols) in wanted.items():
        if name not in present:
            statements.append(f"CREATE INDEX {name} ON {table} ({cols})")
            present.add(name)
    if not statements:
        return "no change"
    took = await ddl(engine, statements)
    return f"{len(statements)} index statements in {took:.1f} s"


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Stats:
    samples: list[float] = field(default_factory=list)  # seconds
    planned: int = 0
    worst: Request | None = None
    walk_totals: list[float] = field(default_factory=list)
    pages: int = 0

    def cuts(self) -> tuple[float, float]:
        if len(self.samples) == 1:
            return self.samples[0] * 1000, self.samples[0] * 1000
        cuts = statistics.quantiles(self.samples, n=100, method="inclusive")
        return cuts[49] * 1000, cuts[98] * 1000


@dataclass
class Check:
    """Results of the first variant to run each request; the others must match them."""

    reference: dict[tuple[str, int], Any] = field(default_factory=dict)
    compared: int = 0
    differ: list[str] = field(default_factory=list)

    def see(self, variant: str, shape: str, index: int, digest: Any) -> None:
        key = (shape, index)
        if key not in self.reference:
            self.reference[key] = (variant, digest)
            return
        first, expected = self.reference[key]
        self.compared += 1
        if expected != digest:
            self.differ.append(f"{variant} vs {first}: {shape} #{index}")


def digest(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(row["id"] for row in rows)


WALK = f"list walk, pages of {MAX_PAGE}"
CSV = f"CSV export, pages of {CSV_PAGE}"
ENRICH = "_enrich of each list page"


async def measure(
    engine: AsyncEngine,
    variant: Variant,
    requests: dict[str, list[Request]],
    walks: list[tuple[datetime, datetime]],
    check: Check,
) -> dict[str, Stats]:
    """Every shape's requests, then the month walks. A list page is find_calls (timed per
    shape) and then, in the same session as list_calls does, _enrich (timed apart)."""
    sessions = session_factory(engine)
    clients = SqlDirectory(sessions)
    finder = variant.finder
    out: dict[str, Stats] = {}
    enrich = out[ENRICH] = Stats()

    async def run(request: Request, enriched: bool = True) -> tuple[float, list[dict[str, Any]]]:
        async with sessions() as session:
            started = time.perf_counter()
            rows = await finder(session, request.flt, **request.kwargs())
            took = time.perf_counter() - started
            if enriched:
                started = time.perf_counter()
                await _enrich(session, clients, rows[: request.limit - 1])
                enrich.samples.append(time.perf_counter() - started)
            return took, rows

    for shape, planned in requests.items():
        stats = out[shape] = Stats(planned=len(planned) - 1)
        await run(planned[0], enriched=False)  # warm-up, untimed
        spent = 0.0
        for index, request in enumerate(planned[1:]):
            if index >= MIN_SAMPLES and spent > SHAPE_BUDGET_S:
                break
            took, rows = await run(request)
            spent += took
            stats.samples.append(took)
            if stats.worst is None or took >= max(stats.samples):
                stats.worst = request
            check.see(variant.key, shape, index, digest(rows))

    for shape, page in ((WALK, MAX_PAGE), (CSV, CSV_PAGE)):
        out[shape] = await walk_months(sessions, clients, variant, walks, shape, page, check)
    return out


async def walk_months(
    sessions: Any,
    clients: SqlDirectory,
    variant: Variant,
    walks: list[tuple[datetime, datetime]],
    shape: str,
    page: int,
    check: Check,
) -> Stats:
    """Every call of each month, newest first. WALK: page after page of the list API
    (limit + 1, its cursor). CSV: the loop of walk_calls (limit = page; the next page
    from the last call's start and id), each page then enriched in a session of its own
    as export_calls does; the whole month's time includes that."""
    stats = Stats()
    spent, budget = 0.0, SHAPE_BUDGET_S * 3
    api = shape == WALK
    for number, (since, until) in enumerate(walks):
        if spent > budget:
            break
        stats.planned += 1
        flt = CallFilter(since=since, until=until)
        before: tuple[datetime, str] | None = None
        total, page_no = 0.0, 0
        while not (spent > budget and len(stats.samples) >= MIN_SAMPLES):
            request = Request(flt, limit=page + 1 if api else page, before=before)
            async with sessions() as session:
                started = time.perf_counter()
                rows = await variant.finder(session, flt, **request.kwargs())
                took = time.perf_counter() - started
            spent += took
            total += took
            stats.samples.append(took)
            if stats.worst is None or took >= max(stats.samples):
                stats.worst = request
            chunk = rows[:page]
            check.see(variant.key, shape, number * 100_000 + page_no, hash(digest(chunk)))
            page_no += 1
            if not api and chunk:
                started = time.perf_counter()
                async with sessions() as session:
                    await _enrich(session, clients, chunk)
                total += time.perf_counter() - started
            if (len(rows) <= page) if api else (len(rows) < page):
                stats.walk_totals.append(total)
                break
            if api:
                before = _decode_cursor(_encode_cursor(chunk[-1]))
            else:
                before = (datetime.fromisoformat(chunk[-1]["started_at"]), chunk[-1]["id"])
        stats.pages += page_no
    return stats


def cell(stats: Stats | None) -> str:
    if stats is None or not stats.samples:
        return f"{'-':>17}"
    p50, p99 = stats.cuts()
    mark = "*" if p99 >= GOAL_MS else " "
    return f"{fmt(p50):>7} {fmt(p99):>8}{mark}"


def fmt(ms: float) -> str:
    return f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}"


def report(
    label: str, keys: list[str], results: dict[str, dict[str, Stats]], shape_names: list[str]
) -> None:
    print(f"\n{label}: page time in ms, p50 and p99 (* p99 misses the {GOAL_MS:.0f} ms goal)")
    head = "".join(f"{VARIANTS[k].title:>18}" for k in keys)
    print(f"  {'':<34}{head}")
    for shape in [*shape_names, WALK, CSV, ENRICH]:
        row = "".join(" " + cell(results[k].get(shape)) for k in keys)
        print(f"  {shape:<34}{row}")
    notes = []
    for k in keys:
        stats = results[k]
        cut = [s for s in shape_names if 0 < len(stats[s].samples) < stats[s].planned]
        if cut:
            notes.append(
                f"{VARIANTS[k].title}: stopped after {SHAPE_BUDGET_S:.0f} s of one shape "
                f"(at least {MIN_SAMPLES} samples): "
                + ", ".join(f"{s} ({len(stats[s].samples)})" for s in cut)
            )
        for shape in (WALK, CSV):
            walk = stats[shape]
            totals = ", ".join(f"{t:.1f}" for t in walk.walk_totals) or "none finished"
            notes.append(
                f"{VARIANTS[k].title}: {shape}: {walk.pages} pages of {walk.planned} "
                f"month(s); whole months (s): {totals}"
            )
    for note in notes:
        print(f"  - {note}")


async def plans_of_misses(
    engine: AsyncEngine, variant: Variant, stats: dict[str, Stats]
) -> list[str]:
    out = []
    for shape, st in stats.items():
        if not st.samples or st.cuts()[1] < GOAL_MS or st.worst is None:
            continue
        query = await api_query(variant.finder, st.worst)
        out.append(f"  [{variant.title}] {shape}: {describe(st.worst)}")
        out += [f"      {line}" for line in await explain(engine, query)]
    return out


def describe(request: Request) -> str:
    parts = [f"{k}={v}" for k, v in vars(request.flt).items() if v is not None]
    if request.visible is not True:
        parts.append(f"visible_to_extension={request.visible}")
    if request.before is not None:
        parts.append(f"before=({request.before[0].isoformat()}, {request.before[1]})")
    parts.append(f"limit={request.limit}")
    return ", ".join(str(p) for p in parts)


# --- running ---------------------------------------------------------------------------------


async def run_backend(
    label: str,
    url: str,
    sqlite_path: str | None,
    data: Data,
    requests: dict[str, list[Request]],
    walks: list[tuple[datetime, datetime]],
    keys: list[str],
) -> None:
    print(f"\n== {label}")
    engine = await prepare(label, url, data, sqlite_path)
    try:
        check = Check()
        results: dict[str, dict[str, Stats]] = {}
        plans: list[str] = []
        state: dict[str, Any] = {}
        for key in [k for k in RUN_ORDER if k in keys]:
            variant = VARIANTS[key]
            change = await schema_for(engine, key, state)
            started = time.perf_counter()
            results[key] = await measure(engine, variant, requests, walks, check)
            print(
                f"[{variant.title}] schema: {change}; measured in "
                f"{time.perf_counter() - started:.0f} s",
                flush=True,
            )
            if key != "pk":
                plans += await plans_of_misses(engine, variant, results[key])
                print(f"sizes: {await object_sizes(engine)}")
        report(label, [k for k in VARIANTS if k in keys], results, list(requests))
        print(
            f"  results checked: {check.compared:,} pages compared between variants, "
            f"{len(check.differ)} differ"
            + (": " + "; ".join(check.differ[:10]) if check.differ else "")
        )
        if plans:
            print(f"\n{label}: plans of the shapes that miss the goal (the slowest sample each)")
            print("\n".join(plans))
        await schema_for(engine, "current", state)
        print(f"\n{label}: {await time_migration(engine, '0007', data.involved_rows())}")
    finally:
        await engine.dispose()


async def time_migration(engine: AsyncEngine, before: str, involved: int) -> str:
    """How long the newest migration takes on these calls: what an upgrade costs a site
    with a year of them (0008 back-fills call_extensions and rebuilds an index)."""
    head = migrate.head_revision()
    await migrate.downgrade(engine, before)
    await settle(engine)
    started = time.perf_counter()
    await migrate.upgrade(engine)
    took = time.perf_counter() - started
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT count(*) FROM call_extensions"))).scalar_one()
    assert rows == involved, f"the back-fill made {rows:,} rows, the writer {involved:,}"
    return f"migration {before} -> {head}: {took:.1f} s, back-filling {rows:,} call_extensions rows"


async def object_sizes(engine: AsyncEngine) -> str:
    names = [
        "calls", "ix_calls_external_number", "call_extensions", "pk_call_extensions",
        "ix_call_extensions_extension",
    ]  # fmt: skip
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = await conn.execute(text("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))
            sizes = dict(rows.all())
            sizes["pk_call_extensions"] = sizes.get("sqlite_autoindex_call_extensions_1", 0)
        else:
            sizes = {
                name: (
                    await conn.execute(text("SELECT pg_relation_size(:n)"), {"n": name})
                ).scalar_one()
                for name in names
            }
    return ", ".join(f"{name} {sizes.get(name, 0) / 1e6:,.0f} MB" for name in names)


def plan_requests(
    data: Data, repeat: int
) -> tuple[dict[str, list[Request]], list[tuple[datetime, datetime]]]:
    picker = Picker(data, random.Random(7))
    requests = {name: [make() for _ in range(repeat + 1)] for name, make in shapes(picker).items()}
    walks = [picker.month() for _ in range(max(1, repeat // 10))]
    return requests, walks


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=30, help="samples per query shape")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=",".join(VARIANTS))
    args = parser.parse_args()
    keys = [k for k in args.variants.split(",") if k]
    if unknown := set(keys) - set(VARIANTS):
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    data = generate(args.calls, random.Random(42))
    calls = len(data.calls) + len(data.real_path)
    legs = len(data.legs) + sum(len(c["legs"]) for c in data.real_path)
    shares = ", ".join(f"{k} {v / calls:.0%}" for k, v in data.directions.most_common())
    outcomes = ", ".join(f"{k} {v / calls:.1%}" for k, v in data.outcomes.most_common())
    per_ext = sorted(data.extension_calls.values())
    print(
        f"generated {calls:,} calls ({shares}; {outcomes}; missed {data.missed / calls:.1%}), "
        f"{legs:,} legs, {len(data.number_calls):,} distinct outside numbers (busiest "
        f"{data.number_calls.most_common(1)[0][1]:,} calls), {len(data.extension_calls)} "
        f"extensions ({per_ext[0]:,}-{per_ext[-1]:,} calls each), details "
        f"{data.details_bytes / max(1, len(data.calls)):.0f} B of JSON a call, in "
        f"{time.perf_counter() - started:.0f} s; python {sys.version.split()[0]}, sqlite "
        f"{sqlite3.sqlite_version}, {os.cpu_count()} cpus"
    )
    requests, walks = plan_requests(data, args.repeat)
    # The generated calls stay in memory for the second backend: keep the collector from
    # walking millions of objects in the middle of a timed page.
    gc.collect()
    gc.freeze()
    print(
        f"{len(requests)} query shapes x {args.repeat} samples (fresh parameters each, one "
        f"untimed warm-up), {len(walks)} export month(s); variants: "
        + ", ".join(VARIANTS[k].title for k in keys)
    )
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="cti-bench-") as tmp:
            path = f"{tmp}/calls.db"
            await run_backend(
                "SQLite", f"sqlite+aiosqlite:///{path}", path, data, requests, walks, keys
            )
    if args.backend in ("postgresql", "both"):
        async with scratch_postgres("cti_bench_calllog") as url:
            if url is not None:
                await run_backend("PostgreSQL", url, None, data, requests, walks, keys)


if __name__ == "__main__":
    asyncio.run(main())
