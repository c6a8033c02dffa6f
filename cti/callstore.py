"""Writing calls down as they happen, and reading them back for the log.

Adapters hand every changed call to ``CallStore.save``; a single writer task gathers the
changes for ``WRITE_INTERVAL_SECONDS`` and writes them in batches: one transaction holds
the calls and what follows from them (``CallFollower``: their recordings, history,
callback tasks), so one disk sync carries it all and a follow-up is never done twice nor
lost. Changes to the same call made meanwhile, or while a write is in flight, coalesce
into the next write, so memory is bounded by the calls in flight, not by the event rate.
Writes are upserts keyed by the call id: the same stream seen twice stores the same rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Select, and_, bindparam, delete, exists, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.calls import Call
from cti.db.models import CallExtensionRecord, CallLegRecord, CallRecord, Recording
from cti.db.writer import Writer
from cti.tasks import TaskMonitor, cancel

log = logging.getLogger("cti.callstore")


AfterWrite = Callable[[list[dict[str, Any]]], Awaitable[None]]
AfterCommit = Callable[[], None]
Fence = Callable[[Connection, set[str]], set[str]]


class CallFollower(Protocol):
    """Work that belongs with the calls it follows, in the same transaction: the files
    a call recorded, a finished call's history and callback task."""

    async def prepare(self, calls: list[dict[str, Any]]) -> Any:
        """Before the transaction: what has to be awaited (a CRM's answer), given to
        ``write``; None when there is nothing to do for these calls."""
        ...

    def write(
        self, conn: Connection, calls: list[dict[str, Any]], prepared: Any
    ) -> AfterCommit | Generator[None, None, AfterCommit | None] | None:
        """Inside it; returns what to do once it is committed (publish events). It may
        be a generator, yielding between parts of a long job: the loop runs other work
        there (on SQLite, where the statements run on the loop's thread)."""
        ...


WRITE_BATCH = 200  # calls a transaction: a burst is written in turns with the API's writes
WRITE_STEP = 5  # calls written (or followed up) between two turns of the loop
# Changes are gathered this long before a write: one transaction (one disk sync) carries
# every call that changed meanwhile, and a call that changed ten times is written once.
# It is also the most a crash can take back (docs/architecture.md, "What a crash loses").
WRITE_INTERVAL_SECONDS = 0.2
RETRY_SECONDS = 1.0  # after the database failed a write
QUARANTINE_SECONDS = 60.0  # a call that fails on its own is tried again this often
STOP_FLUSH_SECONDS = 10.0  # at shutdown, the database gets this long to take what is left


class CallStore:
    def __init__(
        self,
        sessions: async_sessionmaker,
        writer: Writer,
        tasks: TaskMonitor | None = None,
        *,
        followers: Iterable[CallFollower] = (),
        after_write: Iterable[AfterWrite] = (),
        write_interval: float | None = None,
        fence: Fence | None = None,
    ) -> None:
        self._sessions = sessions
        self.writer = writer
        # With several nodes: of the links of the calls written, those this node may
        # write now (asked in the transaction; the others' calls are not written).
        self.fence = fence
        self.write_interval = WRITE_INTERVAL_SECONDS if write_interval is None else write_interval
        self.tasks = tasks or TaskMonitor()
        # In each batch's transaction. When one fails, the batch is written again without
        # them (the calls matter most; the follow-ups are caught up at the next start).
        self.followers: list[CallFollower] = list(followers)
        # Run after each batch is committed, with the rows written (e.g. a fax received).
        # A failing hook is logged; the calls themselves are already safe.
        self.after_write: list[AfterWrite] = list(after_write)
        # Latest state by call id; serialized when written, so a call changed ten times
        # between two writes costs one row.
        self._pending: dict[str, Call] = {}
        # Calls the database refused while others went in (bad data, not a database
        # down): kept, retried now and then, never in the way of the others.
        self._quarantine: dict[str, Call] = {}
        self._quarantine_due = 0.0
        self._writing: set[str] = set()  # ids of the batch being written now
        # children_key() of each call in progress as last written: its legs and
        # extension rows are rewritten only when that changes.
        self._children: dict[str, tuple[Any, ...]] = {}
        self.last_error: str | None = None  # why the last write failed; None once one works
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = self.tasks.spawn(self._run(), "call-store-writer")

    async def stop(self) -> None:
        if self._quarantine:  # one last try
            self.save(list(self._quarantine.values()))
        try:
            async with asyncio.timeout(STOP_FLUSH_SECONDS):
                await self.flush()
        except TimeoutError:
            log.error(
                "stopping with calls the database did not take",
                extra={"fields": {"calls": sorted(self._pending)}},
            )
        await cancel(self._task)
        self._task = None
        if self._quarantine:
            log.error(
                "calls the database refused are not stored",
                extra={"fields": {"calls": sorted(self._quarantine)}},
            )

    def save(self, calls: list[Call]) -> None:
        """Queue these calls' current state for writing (never waits)."""
        if not calls:
            return
        for call in calls:
            self._pending[call.id] = call
            self._quarantine.pop(call.id, None)  # its newer state may well go in
        self._idle.clear()
        self._wakeup.set()

    async def known(self, call_ids: list[str]) -> set[str]:
        """Which of these calls are stored, or on their way (pending, being written)."""
        found = {i for i in call_ids if i in self._pending or i in self._quarantine}
        found |= self._writing.intersection(call_ids)
        rest = [i for i in call_ids if i not in found]
        async with self._sessions() as session:
            for start in range(0, len(rest), WRITE_BATCH):
                chunk = rest[start : start + WRITE_BATCH]
                found.update(
                    await session.scalars(select(CallRecord.id).where(CallRecord.id.in_(chunk)))
                )
        return found

    @property
    def backlog(self) -> int:
        """Calls waiting to be written (quarantined ones included)."""
        return len(self._pending) + len(self._quarantine)

    async def flush(self) -> None:
        """Wait until everything saved so far is written (or quarantined)."""
        if self._task is None:
            await self._write_pending()
        else:
            await self._idle.wait()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            delay = QUARANTINE_SECONDS if self._quarantine else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wakeup.wait()
            if self.write_interval > 0:
                await asyncio.sleep(self.write_interval)  # let the changes gather
            self._wakeup.clear()
            if self._quarantine and loop.time() >= self._quarantine_due:
                self._pending = {**self._quarantine, **self._pending}
                self._quarantine.clear()
            try:
                await self._write_pending()
            except Exception as e:
                # The rows stay pending and are retried: a database hiccup loses nothing.
                self.last_error = f"{type(e).__name__}: {e}"[:300]
                log.exception("writing calls failed; retrying in %s s", RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)
                self._wakeup.set()
                continue
            if not self._pending:
                self._idle.set()

    async def _write_pending(self) -> None:
        """Write what is pending in batches of WRITE_BATCH, letting other work run between
        them. Raises, with everything unwritten still pending, when the database fails."""
        while self._pending:
            ids = list(itertools.islice(self._pending, WRITE_BATCH))
            batch = {call_id: self._pending.pop(call_id) for call_id in ids}
            self._writing = set(batch)
            rows = await self._snapshot(list(batch.values()))
            try:
                try:
                    await self._write(rows)
                except Exception:
                    rows = await self._write_one_by_one(batch, rows)
            except BaseException:
                for call_id, call in batch.items():
                    self._pending.setdefault(call_id, call)
                raise
            finally:
                self._writing = set()
            self.last_error = None
            await self._after_write(rows)
            await asyncio.sleep(0)

    async def _snapshot(self, calls: list[Call]) -> list[dict[str, Any]]:
        """The calls' dict forms, a step at a time. Each is the call as it is when taken
        (the tracker goes on changing them: what changes after is saved again)."""
        rows = []
        for start in range(0, len(calls), WRITE_STEP):
            rows += [call.to_dict() for call in calls[start : start + WRITE_STEP]]
            await asyncio.sleep(0)
        return rows

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        keys = {row["id"]: children_key(row) for row in rows}
        changed = {call_id for call_id, key in keys.items() if self._children.get(call_id) != key}
        ready = [(f, await self._prepare(f, rows)) for f in self.followers]
        ready = [(follower, prepared) for follower, prepared in ready if prepared is not None]

        def work(followers: list[tuple[CallFollower, Any]]) -> Callable[[Connection], Any]:
            # In one transaction, in steps: on SQLite the statements run on the loop's
            # thread, which runs other work (a pop) between the steps.
            def write(conn: Connection) -> Generator[None, None, list[AfterCommit]]:
                ours = self._ours(conn, rows)
                for start in range(0, len(ours), WRITE_STEP):
                    write_calls(conn, ours[start : start + WRITE_STEP], children=changed)
                    yield
                done = []
                for follower, prepared in followers:
                    after = follower.write(conn, ours, prepared)
                    if isinstance(after, Generator):  # a follower may work in steps too
                        after = yield from after
                    if after is not None:
                        done.append(after)
                return done

            return write

        try:
            committed = await self.writer.run(work(ready))
        except Exception as error:
            if not ready:
                raise
            # Without their follow-ups: if the calls fail too, the caller sets them aside.
            committed = await self.writer.run(work([]))
            log.error(
                "a call follow-up failed; the calls went in without it (retried at the next start)",
                exc_info=error,
            )
        for row in rows:
            if row["in_progress"]:
                self._children[row["id"]] = keys[row["id"]]
            else:
                self._children.pop(row["id"], None)
        for after in committed:
            try:
                after()
            except Exception:
                log.exception("a call follow-up failed after its commit")

    def _ours(self, conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows this node may write (all of them, but for a node of several)."""
        if self.fence is None:
            return rows
        allowed = self.fence(conn, {row["pbx"] for row in rows})
        ours = [row for row in rows if row["pbx"] in allowed]
        if len(ours) < len(rows):
            log.warning(
                "calls of links this node no longer leads are not written",
                extra={"fields": {"calls": sorted(r["id"] for r in rows if r not in ours)}},
            )
        return ours

    async def _prepare(self, follower: CallFollower, rows: list[dict[str, Any]]) -> Any:
        try:
            return await follower.prepare(rows)
        except Exception:
            log.exception("a call follow-up could not get ready; it is retried at the next start")
            return None

    async def _write_one_by_one(
        self, batch: dict[str, Call], rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """After a batch failed: each call alone. The calls that fail are at fault, not
        the database, when others went in or when the error is about the data: they are
        quarantined. Returns the rows written; raises (nothing quarantined) when the
        database itself seems to be failing."""
        written, refused = [], []
        for row in rows:
            try:
                await self._write([row])
            except Exception as e:
                refused.append((row["id"], e))
            else:
                written.append(row)
        if not written and not all(_about_the_data(error) for _, error in refused):
            raise refused[0][1]
        for call_id, error in refused:
            log.error(
                "the database refused a call; it is kept and tried again later",
                extra={"fields": {"call_id": call_id, "error": repr(error)[:300]}},
            )
            self._quarantine[call_id] = batch[call_id]
        self._quarantine_due = asyncio.get_running_loop().time() + QUARANTINE_SECONDS
        return written

    async def _after_write(self, rows: list[dict[str, Any]]) -> None:
        for hook in self.after_write:
            try:
                await hook(rows)
            except Exception:
                log.exception("a call follow-up failed; it is retried at the next start")


def _about_the_data(error: Exception) -> bool:
    """Whether a failed write is the row's fault (a value the database refuses) rather
    than the database's (down, locked, read-only, full): those are retried, not set aside."""
    if isinstance(error, IntegrityError | DataError):
        return True
    if isinstance(error, DBAPIError):  # asyncpg's errors come as DBAPIError, with SQLSTATE
        return str(getattr(error.orig, "sqlstate", ""))[:2] in ("22", "23")
    return not isinstance(error, OSError | TimeoutError)


def _row(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": data["id"],
        "pbx": data["pbx"],
        "direction": data["direction"],
        "external_number": data["external_number"],
        "external_name": data["external_name"],
        "did": data["did"],
        "queue": data["queue"],
        "caller_extension": data["caller_extension"],
        "answered_by": data["answered_by"],
        "started_at": datetime.fromisoformat(data["started_at"]),
        "answered_at": _dt(data["answered_at"]),
        "ended_at": _dt(data["ended_at"]),
        "outcome": data["outcome"],
        "missed": data["missed"],
        "in_progress": data["in_progress"],
        "wait_seconds": data["wait_seconds"],
        "talk_seconds": data["talk_seconds"],
        "details": data,
    }


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


UPSERT_CHUNK = 200  # rows a statement: well under SQLite's limit on bound parameters


async def upsert_calls(
    session: AsyncSession, calls: list[dict[str, Any]], *, children: set[str] | None = None
) -> None:
    """``write_calls`` in a session's transaction."""
    await session.run_sync(lambda sync: write_calls(sync.connection(), calls, children=children))


def write_calls(
    conn: Connection, calls: list[dict[str, Any]], *, children: set[str] | None = None
) -> None:
    """Write these calls (their dict form) over whatever is stored. ``children``: the ids
    whose legs and extensions changed since they were last written (None: every call's).
    Each statement is compiled once and run for all the rows (executemany)."""
    statements = _statements(conn.dialect.name)
    for start in range(0, len(calls), UPSERT_CHUNK):
        chunk = calls[start : start + UPSERT_CHUNK]
        conn.execute(statements.upsert, [_row(data) for data in chunk])
        rewrite = [data for data in chunk if children is None or data["id"] in children]
        if not rewrite:
            continue
        ids = [data["id"] for data in rewrite]
        conn.execute(statements.delete_legs, {"ids": ids})
        conn.execute(statements.delete_extensions, {"ids": ids})
        legs = [
            {
                "call_id": data["id"],
                "seq": seq,
                "extension": leg["extension"],
                "ring_started_at": datetime.fromisoformat(leg["ring_started_at"]),
                "answered_at": _dt(leg["answered_at"]),
                "ended_at": _dt(leg["ended_at"]),
                "result": leg["result"],
            }
            for data in rewrite
            for seq, leg in enumerate(data["legs"])
        ]
        if legs:
            conn.execute(statements.insert_legs, legs)
        extensions = [
            {
                "call_id": data["id"],
                "extension": extension,
                "started_at": datetime.fromisoformat(data["started_at"]),
            }
            for data in rewrite
            for extension in extensions_of(data)
        ]
        if extensions:
            conn.execute(statements.insert_extensions, extensions)


_LEG_FIELDS = ("extension", "ring_started_at", "answered_at", "ended_at", "result")


def children_key(data: dict[str, Any]) -> tuple[Any, ...]:
    """What the legs and extension rows of a call are made from: when it is unchanged
    since the last write, those rows need not be rewritten."""
    return (
        data["started_at"],
        tuple(tuple(leg[key] for key in _LEG_FIELDS) for leg in data["legs"]),
        extensions_of(data),
    )


def extensions_of(data: dict[str, Any]) -> tuple[str, ...]:
    """``Call.extensions()`` of a call's dict form, without rebuilding the call."""
    found = dict.fromkeys(leg["extension"] for leg in data["legs"])
    for extension in (data["caller_extension"], data["answered_by"]):
        if extension:
            found[extension] = None
    for transfer in data["transfers"]:
        if transfer["from"]:
            found[transfer["from"]] = None
    return tuple(found)


@dataclass(frozen=True)
class _Statements:
    upsert: Any
    delete_legs: Any
    delete_extensions: Any
    insert_legs: Any
    insert_extensions: Any


@functools.cache
def _statements(dialect: str) -> _Statements:
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    calls = CallRecord.__table__
    upsert = insert(calls)
    upsert = upsert.on_conflict_do_update(
        index_elements=["id"],
        set_={c.name: upsert.excluded[c.name] for c in calls.columns if c.name != "id"},
    )
    legs, extensions = CallLegRecord.__table__, CallExtensionRecord.__table__
    ids = bindparam("ids", expanding=True)
    return _Statements(
        upsert=upsert,
        delete_legs=delete(legs).where(legs.c.call_id.in_(ids)),
        delete_extensions=delete(extensions).where(extensions.c.call_id.in_(ids)),
        insert_legs=insert(legs),
        insert_extensions=insert(extensions),
    )


@dataclass(frozen=True)
class CallFilter:
    since: datetime | None = None
    until: datetime | None = None
    extension: str | None = None
    direction: str | None = None
    outcome: str | None = None
    missed: bool | None = None
    number: str | None = None
    # The outside party is one of these numbers (a client's); empty: no call matches.
    numbers: tuple[str, ...] | None = None
    pbx: str | None = None
    in_progress: bool | None = None


def involves_extension(extension: str) -> Any:
    """SQL condition: ``extension`` rang, placed, answered or transferred the call
    (``Call.extensions()``): one primary-key lookup a call."""
    involved = CallExtensionRecord.__table__.alias()
    return exists().where(involved.c.call_id == CallRecord.id, involved.c.extension == extension)


async def find_calls(
    session: AsyncSession,
    flt: CallFilter,
    *,
    visible_to_extension: str | bool | None = True,
    limit: int = 50,
    before: tuple[datetime, str] | None = None,
) -> list[dict[str, Any]]:
    """Newest first. ``visible_to_extension``: True for everything, else only calls that
    involve that extension (None: an operator without one sees nothing)."""
    query = calls_query(flt, visible_to_extension=visible_to_extension, limit=limit, before=before)
    return [] if query is None else list((await session.scalars(query)).all())


def calls_query(
    flt: CallFilter,
    *,
    visible_to_extension: str | bool | None = True,
    limit: int = 50,
    before: tuple[datetime, str] | None = None,
) -> Select | None:
    """``find_calls``'s query (of the calls' ``details``); None when nothing can match."""
    if visible_to_extension is None:
        return None
    if flt.numbers is not None and not flt.numbers:
        return None
    extensions = [] if visible_to_extension is True else [str(visible_to_extension)]
    if flt.extension and flt.extension not in extensions:  # the panel sends its own
        extensions.append(flt.extension)
    conditions = [
        column == value
        for column, value in (
            (CallRecord.direction, flt.direction),
            (CallRecord.outcome, flt.outcome),
            (CallRecord.missed, flt.missed),
            (CallRecord.external_number, flt.number),
            (CallRecord.pbx, flt.pbx),
            (CallRecord.in_progress, flt.in_progress),
        )
        if value is not None
    ]
    if flt.numbers:
        conditions.append(CallRecord.external_number.in_(sorted(set(flt.numbers))))
    query = select(CallRecord.details)
    started, call_id = CallRecord.started_at, CallRecord.id
    if extensions and flt.number is None and flt.numbers is None:
        # Walk the extension's own calls newest first in call_extensions' index, fetching
        # each by its key: the period and the cursor bound the walk, so a page costs the
        # same for an operator with a million calls or none (bench/calllog.py).
        involved = CallExtensionRecord
        query = query.join(involved, involved.call_id == CallRecord.id)
        conditions.append(involved.extension == extensions[0])
        started, call_id = involved.started_at, involved.call_id
        extensions = extensions[1:]
    # A number (or a client's few) has a few calls, thousands at most: start from those
    # and look each up by its key. SQLite keeps no statistics to see that for itself.
    conditions += [involves_extension(extension) for extension in extensions]
    if flt.since is not None:
        conditions.append(started >= flt.since)
    if flt.until is not None:
        conditions.append(started < flt.until)
    if before is not None:
        # (started_at, id) < the cursor, written so that the start time bounds an index
        # range; "a < x OR (a = x AND b < y)" was filtered row by row from the newest call
        # (bench/calllog.py: deep pages at 1,000,000 calls went from ~300 ms to ~2 ms).
        at, last = before
        conditions.append(and_(started <= at, or_(started < at, call_id < last)))
    return query.where(*conditions).order_by(started.desc(), call_id.desc()).limit(limit)


async def walk_calls(
    sessions: async_sessionmaker,
    flt: CallFilter,
    *,
    visible_to_extension: str | bool | None = True,
    page: int = 1000,
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every matching call, newest first, in pages of ``page``: a keyset walk with a short
    transaction per page, so a year of calls never sits in memory or holds a snapshot."""
    before: tuple[datetime, str] | None = None
    while True:
        async with sessions() as session:
            calls = await find_calls(
                session, flt, visible_to_extension=visible_to_extension, limit=page, before=before
            )
        if calls:
            yield calls
        if len(calls) < page:
            return
        last = calls[-1]
        before = (datetime.fromisoformat(last["started_at"]), last["id"])


async def recording_counts(session: AsyncSession, call_ids: Iterable[str]) -> dict[str, int]:
    """How many recordings (not deleted by retention) each of these calls has."""
    ids = sorted(set(call_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(Recording.call_id, func.count(Recording.id))
        .where(Recording.call_id.in_(ids), Recording.deleted_at.is_(None))
        .group_by(Recording.call_id)
    )
    return {call_id: count for call_id, count in rows}


async def calls_in_progress(session: AsyncSession, pbx: str) -> list[Call]:
    rows = await session.scalars(
        select(CallRecord.details).where(CallRecord.pbx == pbx, CallRecord.in_progress.is_(True))
    )
    return [Call.from_dict(data) for data in rows]
