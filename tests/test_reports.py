"""Call reports: grouping in the supervisor's time zone, per operator, timely callbacks;
over the API as JSON and CSV (SQLite and PostgreSQL)."""

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from helpers import bearer

from cti.calls import Call, CallLeg
from cti.callstore import upsert_calls
from cti.clients.models import CallbackTask
from cti.domain import Direction, LegResult, Outcome
from cti.reports import ReportCall, build_report

MOSCOW = ZoneInfo("Europe/Moscow")
T0 = datetime(2026, 11, 2, 20, 30, tzinfo=UTC)  # 23:30 in Moscow: still 2 November there


def report_call(at: datetime, **fields) -> ReportCall:
    values = dict(
        direction="inbound",
        answered_by=None,
        missed=False,
        wait_seconds=None,
        talk_seconds=None,
        rang=("101",),
    )
    values.update(fields)
    return ReportCall(started_at=at, **values)


def test_days_in_the_supervisors_time_zone() -> None:
    calls = [
        report_call(T0, answered_by="101", wait_seconds=4, talk_seconds=60),
        report_call(T0 + timedelta(hours=1), missed=True),  # 00:30 on 3 November in Moscow
        report_call(T0 + timedelta(hours=2), answered_by="101", wait_seconds=10, talk_seconds=20),
    ]
    rows = build_report(calls, "day", MOSCOW, callback_minutes=60)
    assert [(r["key"], r["calls"], r["answered"], r["missed"]) for r in rows] == [
        ("2026-11-02", 1, 1, 0),
        ("2026-11-03", 2, 1, 1),
    ]
    assert rows[1]["missed_rate"] == 0.5
    assert rows[1]["average_wait_seconds"] == 10 and rows[1]["average_talk_seconds"] == 20
    assert [r["key"] for r in build_report(calls, "hour", MOSCOW, 60)] == [
        "00:00",
        "01:00",
        "23:00",
    ]


def test_per_operator_and_callbacks_in_time() -> None:
    calls = [
        report_call(T0, answered_by="102", rang=("101", "102"), wait_seconds=6),
        report_call(T0, missed=True, rang=("101", "102"), callback_after=timedelta(minutes=20)),
        report_call(T0, missed=True, rang=("101",), callback_after=timedelta(hours=3)),
        report_call(T0, missed=True, rang=("101",)),  # never called back
    ]
    rows = {r["key"]: r for r in build_report(calls, "operator", MOSCOW, callback_minutes=60)}
    assert (rows["101"]["calls"], rows["101"]["answered"], rows["101"]["missed"]) == (4, 0, 3)
    assert rows["101"]["called_back_in_time"] == 1
    assert (rows["102"]["calls"], rows["102"]["answered"], rows["102"]["missed"]) == (2, 1, 1)
    assert rows["102"]["average_wait_seconds"] == 6
    assert build_report([], "operator", MOSCOW, 60) == []


ADDING_UP = ("answered", "answered_elsewhere", "missed", "not_answered", "unknown", "outgoing")


def test_every_rows_calls_add_up_and_say_where_each_call_went() -> None:
    """Anna: 14 calls, 5 answered, 3 missed, and nothing said what the other 6 were."""
    calls = [
        *[report_call(T0, answered_by="101", rang=("101",)) for _ in range(5)],
        *[report_call(T0, missed=True, rang=("101", "102")) for _ in range(3)],
        *[report_call(T0, answered_by="102", rang=("101", "102")) for _ in range(2)],  # ring group
        report_call(T0, direction="outbound", caller="101", rang=("101",), answered=True),
        report_call(T0, direction="outbound", caller="101", rang=("101",), answered=False),
        report_call(T0, direction="internal", caller="101", rang=("102",), answered_by="102"),
        report_call(T0, direction="internal", caller="102", rang=("101",)),  # 101 never took it
        report_call(T0, answered=True, rang=()),  # the fax machine answered
    ]
    operators = {r["key"]: r for r in build_report(calls, "operator", MOSCOW, 60)}
    anna = operators["101"]
    assert anna["calls"] == 14
    assert {col: anna[col] for col in ADDING_UP} == {
        "answered": 5,
        "answered_elsewhere": 2,
        "missed": 3,
        "not_answered": 1,
        "unknown": 0,
        "outgoing": 3,
    }
    assert anna["outgoing_answered"] == 2
    for rows in (operators.values(), build_report(calls, "day", MOSCOW, 60)):
        for row in rows:
            assert sum(row[col] for col in ADDING_UP) == row["calls"], row
    [day] = build_report(calls, "day", MOSCOW, 60)
    assert (day["answered"], day["outgoing"], day["missed"]) == (8, 4, 3)


def test_a_call_whose_end_nobody_saw_counts_as_unknown_not_missed() -> None:
    """Issue 15, D1: it rang while the PBX link was down and ended unseen."""
    calls = [
        report_call(T0, missed=True, rang=("101",)),
        report_call(T0, unknown=True, rang=("101",)),
    ]
    for grouping in ("operator", "day"):
        [row] = build_report(calls, grouping, MOSCOW, 60)
        assert (row["calls"], row["missed"], row["unknown"]) == (2, 1, 1)
        assert row["missed_rate"] == 0.5
        assert sum(row[col] for col in ADDING_UP) == row["calls"]


def stored_call(call_id: str, at: datetime, *, answered_by: str | None, missed: bool) -> dict:
    leg = CallLeg("101", at, ended_at=at + timedelta(seconds=30))
    leg.result = LegResult.ANSWERED if answered_by else LegResult.NO_ANSWER
    call = Call(
        id=call_id,
        pbx="office",
        started_at=at,
        direction=Direction.INBOUND,
        external_number="+78125550101",
        legs=[leg],
        answered_by=answered_by,
        answered_at=at + timedelta(seconds=5) if answered_by else None,
        ended_at=at + timedelta(seconds=65 if answered_by else 30),
        outcome=Outcome.ANSWERED if answered_by else Outcome.NO_ANSWER,
        missed=missed,
    )
    return call.to_dict()


async def test_report_api_json_and_csv(client, service, make_user) -> None:
    async with service.sessions() as session:
        await upsert_calls(
            session,
            [
                stored_call("a1", T0, answered_by="101", missed=False),
                stored_call("m1", T0 + timedelta(minutes=10), answered_by=None, missed=True),
                stored_call("old", T0 - timedelta(days=30), answered_by="101", missed=False),
            ],
        )
        session.add(
            CallbackTask(
                number="+78125550101",
                assignee_extension="101",
                missed_call_id="m1",
                created_at=T0 + timedelta(minutes=11),
                closed_at=T0 + timedelta(minutes=31),
                closed_reason="called_back",
            )
        )
        await session.commit()
    boss = await make_user("supervisor")
    period = {"since": "2026-11-01T00:00:00+03:00", "until": "2026-11-08T00:00:00+03:00"}
    reply = await client.get(
        "/api/reports/calls",
        params={**period, "group": "operator", "tz": "Europe/Moscow", "callback_minutes": 30},
        headers=bearer(boss),
    )
    assert reply.status == 200
    [row] = (await reply.json())["rows"]
    assert (row["key"], row["calls"], row["answered"], row["missed"]) == ("101", 2, 1, 1)
    assert row["called_back_in_time"] == 1 and row["average_talk_seconds"] == 60

    exported = await client.get(
        "/api/reports/calls",
        params={**period, "tz": "Europe/Moscow", "format": "csv"},
        headers=bearer(boss),
    )
    assert exported.headers["Content-Type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(await exported.text())))
    assert [line["key"] for line in lines] == [f"2026-11-0{day}" for day in range(1, 8)]
    [line] = [line for line in lines if line["calls"] != "0"]
    assert line["key"] == "2026-11-02" and line["calls"] == "2" and line["missed"] == "1"

    operator = await make_user("operator", "101")
    assert (
        await client.get("/api/reports/calls", params=period, headers=bearer(operator))
    ).status == 403
    for bad in ({"tz": "Mars/Olympus"}, {"until": "2028-01-01T00:00:00Z"}):
        refused = await client.get(
            "/api/reports/calls", params={**period, **bad}, headers=bearer(boss)
        )
        assert refused.status == 422


# -- every day and hour of the period, quiet ones too -------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")  # 2026: 23 hours on 29 March, 25 hours on 25 October


def berlin(*when: int) -> datetime:
    return datetime(*when, tzinfo=BERLIN)


def test_every_day_of_the_period_has_a_row_across_dst_changes() -> None:
    # Spring: 29 March has 23 hours and no calls.
    spring = (berlin(2026, 3, 28), berlin(2026, 3, 31))
    calls = [
        report_call(berlin(2026, 3, 28, 23, 30), answered_by="101", wait_seconds=3),
        report_call(berlin(2026, 3, 30, 0, 15), missed=True),
    ]
    rows = build_report(calls, "day", BERLIN, 60, period=spring)
    assert [(r["key"], r["calls"], r["missed"]) for r in rows] == [
        ("2026-03-28", 1, 0),
        ("2026-03-29", 0, 0),
        ("2026-03-30", 1, 1),
    ]
    quiet = rows[1]
    assert quiet["answered"] == quiet["called_back_in_time"] == 0
    # Nothing to average is no average at all, not 0.
    assert quiet["missed_rate"] is None
    assert quiet["average_wait_seconds"] is None and quiet["average_talk_seconds"] is None

    # Autumn: 25 October has 25 hours; 23:30 that evening is still the 25th, and the
    # 26th (no calls) is there once.
    autumn = (berlin(2026, 10, 24), berlin(2026, 10, 27))
    calls = [report_call(berlin(2026, 10, 25, 23, 30)), report_call(berlin(2026, 10, 24, 0, 0))]
    rows = build_report(calls, "day", BERLIN, 60, period=autumn)
    assert [(r["key"], r["calls"]) for r in rows] == [
        ("2026-10-24", 1),
        ("2026-10-25", 1),
        ("2026-10-26", 0),
    ]
    assert build_report([], "day", BERLIN, 60, period=autumn)[2]["key"] == "2026-10-26"
    # A period that starts or ends inside a day still has that day.
    partial = (berlin(2026, 10, 24, 18), berlin(2026, 10, 26, 0, 1))
    assert [r["key"] for r in build_report([], "day", BERLIN, 60, period=partial)] == [
        "2026-10-24",
        "2026-10-25",
        "2026-10-26",
    ]


def test_every_hour_of_the_day_in_the_period_has_a_row() -> None:
    every = [f"{hour:02d}:00" for hour in range(24)]
    # A day of 23 hours: 02:00 never happens.
    spring = (berlin(2026, 3, 29), berlin(2026, 3, 30))
    rows = build_report([], "hour", BERLIN, 60, period=spring)
    assert [r["key"] for r in rows] == [h for h in every if h != "02:00"]
    assert all(r["calls"] == 0 and r["missed_rate"] is None for r in rows)
    # A day of 25 hours: both hours from 02:00 to 03:00 count in 02:00.
    autumn = (berlin(2026, 10, 25), berlin(2026, 10, 26))
    first, second = (
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
    )
    assert first.astimezone(BERLIN).hour == second.astimezone(BERLIN).hour == 2
    calls = [report_call(first, answered_by="101", talk_seconds=30), report_call(second)]
    rows = build_report(calls, "hour", BERLIN, 60, period=autumn)
    assert [r["key"] for r in rows] == every
    [two] = [r for r in rows if r["calls"]]
    assert (two["key"], two["calls"], two["answered"], two["missed_rate"]) == ("02:00", 2, 1, 0.0)
    assert two["average_talk_seconds"] == 30
    # A week: every hour; a morning: its hours only; a zone 5:45 ahead of UTC.
    week = (berlin(2026, 10, 19), berlin(2026, 10, 26))
    assert [r["key"] for r in build_report([], "hour", BERLIN, 60, period=week)] == every
    morning = (berlin(2026, 10, 20, 9), berlin(2026, 10, 20, 12))
    assert [r["key"] for r in build_report([], "hour", BERLIN, 60, period=morning)] == [
        "09:00",
        "10:00",
        "11:00",
    ]
    nepal = (datetime(2026, 1, 1, 0, 0, tzinfo=UTC), datetime(2026, 1, 1, 1, 0, tzinfo=UTC))
    assert [r["key"] for r in build_report([], "hour", ZoneInfo("Asia/Kathmandu"), 60, nepal)] == [
        "05:00",  # 05:45 to 06:45
        "06:00",
    ]
    # Per operator there is no calendar to fill.
    assert build_report([], "operator", BERLIN, 60, period=week) == []


async def test_report_api_has_every_day_and_the_csv_is_the_table(
    client, service, make_user
) -> None:
    # A month in Berlin with a DST change; calls on weekdays only, none at the weekends.
    monday = datetime(2026, 10, 5, 9, 0, tzinfo=BERLIN)
    weekdays = [
        monday + timedelta(days=d) for d in range(27) if (monday + timedelta(days=d)).weekday() < 5
    ]
    async with service.sessions() as session:
        await upsert_calls(
            session,
            [
                stored_call(
                    f"c{n}",
                    day.astimezone(UTC),
                    answered_by="101" if n % 2 else None,
                    missed=not n % 2,
                )
                for n, day in enumerate(weekdays)
            ],
        )
        await session.commit()
    boss = await make_user("supervisor")
    month = {
        "since": berlin(2026, 10, 1).isoformat(),
        "until": berlin(2026, 11, 1).isoformat(),
        "tz": "Europe/Berlin",
    }
    reply = await client.get("/api/reports/calls", params=month, headers=bearer(boss))
    assert reply.status == 200
    rows = (await reply.json())["rows"]
    assert [r["key"] for r in rows] == [f"2026-10-{day:02d}" for day in range(1, 32)]
    by_day = {r["key"]: r for r in rows}
    assert by_day["2026-10-10"]["calls"] == by_day["2026-10-11"]["calls"] == 0  # a weekend
    assert by_day["2026-10-10"]["average_talk_seconds"] is None
    assert by_day["2026-10-10"]["missed_rate"] is None
    assert sum(r["calls"] for r in rows) == len(weekdays)
    assert by_day["2026-10-26"]["calls"] == 1  # after the clocks went back

    exported = await client.get(
        "/api/reports/calls", params={**month, "format": "csv"}, headers=bearer(boss)
    )
    lines = list(csv.DictReader(io.StringIO(await exported.text())))
    as_text = [{k: "" if v is None else str(v) for k, v in r.items()} for r in rows]
    assert lines == as_text

    hours = await client.get(
        "/api/reports/calls", params={**month, "group": "hour"}, headers=bearer(boss)
    )
    rows = (await hours.json())["rows"]
    assert len(rows) == 24 and sum(r["calls"] for r in rows) == len(weekdays)
    assert [r["key"] for r in rows if r["calls"]] == ["09:00"]
    exported = await client.get(
        "/api/reports/calls",
        params={**month, "group": "hour", "format": "csv"},
        headers=bearer(boss),
    )
    lines = list(csv.DictReader(io.StringIO(await exported.text())))
    assert lines == [{k: "" if v is None else str(v) for k, v in r.items()} for r in rows]

    # An empty report per operator still has the table's columns.
    empty = await client.get(
        "/api/reports/calls",
        params={
            **month,
            "since": berlin(2025, 1, 1).isoformat(),
            "until": berlin(2025, 2, 1).isoformat(),
            "group": "operator",
            "format": "csv",
        },
        headers=bearer(boss),
    )
    assert (await empty.text()).splitlines() == [
        "key,calls,answered,answered_elsewhere,missed,not_answered,unknown,outgoing,"
        "outgoing_answered,missed_rate,average_wait_seconds,average_talk_seconds,"
        "called_back_in_time"
    ]

    # A period longer than the cap: refused, saying why.
    too_long = await client.get(
        "/api/reports/calls",
        params={**month, "until": berlin(2027, 10, 3).isoformat()},
        headers=bearer(boss),
    )
    assert too_long.status == 422
    assert "at most 366 days" in (await too_long.json())["error"]["message"]
