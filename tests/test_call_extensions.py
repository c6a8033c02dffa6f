"""The calls an extension is involved in (``call_extensions``): the migration's back-fill,
the writer keeping it in step, and ``find_calls`` reading an operator's log from it with
every filter and the keyset cursor. SQLite and PostgreSQL."""

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import finished_call
from sqlalchemy import delete, select

from cti.calls import Call, CallLeg, CallTransfer
from cti.callstore import CallFilter, find_calls, upsert_calls
from cti.db import migrate
from cti.db.engine import create_engine, session_factory
from cti.db.models import CallExtensionRecord
from cti.domain import Direction, TransferKind

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def make_call(
    call_id: str, at: datetime, *, transferred_by: str | None = None, **details: Any
) -> Call:
    """``finished_call``, and ``transferred_by`` handed it on to 199."""
    transfers = [CallTransfer(TransferKind.BLIND, transferred_by, "199", at)]
    return finished_call(call_id, at, transfers=transfers if transferred_by else None, **details)


ODD_CALLS = [
    # A ring group answered by its second phone.
    make_call("group", T0, rang=("101", "102"), answered_by="102"),
    # Dialled from the phone: the tracker records no leg, only who placed it.
    make_call("dialled", T0, caller="105", direction=Direction.OUTBOUND),
    # Transferred by someone on neither a leg nor the answer (only in the details' JSON).
    make_call("handed-on", T0, rang=("103",), answered_by="103", transferred_by="107"),
    # Abandoned in the IVR: no extension at all.
    make_call("ivr", T0),
]


async def stored_extensions(sessions) -> set[tuple[str, str, datetime]]:
    async with sessions() as session:
        rows = await session.execute(
            select(
                CallExtensionRecord.call_id,
                CallExtensionRecord.extension,
                CallExtensionRecord.started_at,
            )
        )
        return {tuple(row) for row in rows}


def expected_extensions(calls: list[Call]) -> set[tuple[str, str, datetime]]:
    return {(c.id, ext, c.started_at) for c in calls for ext in c.extensions()}


@pytest.fixture
async def sessions(db_url: str):
    engine = create_engine(db_url)
    await migrate.upgrade(engine)
    yield session_factory(engine)
    await engine.dispose()


async def test_the_migration_back_fills_every_extension_a_call_involves(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        # Calls as the writer stored them before 0008: their rows and legs only.
        await migrate.upgrade(engine)
        sessions = session_factory(engine)
        async with sessions() as session:
            await upsert_calls(session, [c.to_dict() for c in ODD_CALLS])
            await session.execute(delete(CallExtensionRecord))
            await session.commit()
        await migrate.downgrade(engine, "0007")
        await migrate.upgrade(engine)
        stored = await stored_extensions(sessions)
    finally:
        await engine.dispose()
    assert stored == expected_extensions(ODD_CALLS)
    assert {ext for call_id, ext, _ in stored if call_id == "handed-on"} == {"103", "107"}


async def test_the_writer_replaces_a_calls_extensions_as_it_changes(sessions) -> None:
    call = make_call("c1", T0, rang=("101",))
    async with sessions() as session:
        await upsert_calls(session, [call.to_dict()])
        await session.commit()
    assert await stored_extensions(sessions) == {("c1", "101", T0)}
    # The ring group moves on to 102, who answers and hands the call to 103.
    call.legs.append(CallLeg("102", T0 + timedelta(seconds=10)))
    call.answered_by = "102"
    call.transfers.append(CallTransfer(TransferKind.ATTENDED, "102", "103", T0))
    call.legs.append(CallLeg("103", T0 + timedelta(seconds=40)))
    async with sessions() as session:
        await upsert_calls(session, [call.to_dict()])
        await upsert_calls(session, [call.to_dict()])  # the same state twice: no duplicates
        await session.commit()
    assert await stored_extensions(sessions) == expected_extensions([call])
    assert len(await stored_extensions(sessions)) == 3


def office_calls(count: int, seed: int) -> list[Call]:
    """Calls among 101-106 and a few outside numbers; every fifth starts together with
    the one before, so the cursor's tie-break on the id is exercised."""
    rng = random.Random(seed)
    calls: list[Call] = []
    at = T0
    for n in range(count):
        if n % 5:
            at += timedelta(minutes=rng.randint(1, 90))
        rang = tuple(rng.sample(["101", "102", "103", "104"], rng.randint(0, 2)))
        answered = rng.choice([None, *rang]) if rang else None
        caller = rng.choice([None, None, "105"]) if not rang else None
        calls.append(
            make_call(
                f"call-{n:04d}",
                at,
                number=rng.choice(["+78121234567", "+74950000001", "+995322000000", None]),
                rang=rang,
                answered_by=answered,
                caller=caller,
                transferred_by="106" if answered and rng.random() < 0.1 else None,
                direction=Direction.OUTBOUND if caller else Direction.INBOUND,
            )
        )
    return calls


def newest_first(calls: list[Call]) -> list[str]:
    return [c.id for c in sorted(calls, key=lambda c: (c.started_at, c.id), reverse=True)]


async def every_page(sessions, flt: CallFilter, visible: str | bool | None) -> list[str]:
    found: list[str] = []
    before = None
    while True:
        async with sessions() as session:
            page = await find_calls(
                session, flt, visible_to_extension=visible, limit=7, before=before
            )
        found += [call["id"] for call in page]
        if len(page) < 7:
            return found
        before = (datetime.fromisoformat(page[-1]["started_at"]), page[-1]["id"])


async def test_an_operators_log_holds_exactly_their_calls_page_by_page(sessions) -> None:
    calls = office_calls(150, seed=7)
    async with sessions() as session:
        await upsert_calls(session, [c.to_dict() for c in calls])
        await session.commit()
    week = (T0 + timedelta(days=1), T0 + timedelta(days=3))
    cases: list[tuple[CallFilter, str | bool | None]] = [
        (CallFilter(), "101"),
        (CallFilter(extension="101"), "101"),  # the panel sends its own extension
        (CallFilter(), "106"),  # only ever transferred calls
        (CallFilter(), "199"),  # a new operator: no calls
        (CallFilter(), None),  # an operator without an extension sees nothing
        (CallFilter(since=week[0], until=week[1]), "102"),
        (CallFilter(number="+78121234567"), "103"),
        (CallFilter(numbers=("+74950000001", "+995322000000")), "101"),
        (CallFilter(numbers=()), True),
        (CallFilter(missed=True, direction="inbound"), "104"),
        (CallFilter(extension="105", direction="outbound"), True),  # a supervisor's filter
        (CallFilter(extension="102"), "101"),  # both must be involved
        (CallFilter(extension="102", number="+74950000001", since=week[0]), True),
        (CallFilter(since=week[0]), True),
    ]
    for flt, visible in cases:
        wanted = [
            c
            for c in calls
            if (visible is True or visible in c.extensions())
            and (flt.extension is None or flt.extension in c.extensions())
            and (flt.number is None or c.external_number == flt.number)
            and (flt.numbers is None or c.external_number in flt.numbers)
            and (flt.missed is None or c.missed == flt.missed)
            and (flt.direction is None or c.direction == flt.direction)
            and (flt.since is None or c.started_at >= flt.since)
            and (flt.until is None or c.started_at < flt.until)
        ]
        assert await every_page(sessions, flt, visible) == newest_first(wanted), (flt, visible)
    # The cases above are not vacuous.
    assert sum(1 for c in calls if "106" in c.extensions()) >= 3
