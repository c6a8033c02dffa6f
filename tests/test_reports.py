"""Call reports: grouping in the supervisor's time zone, per operator, timely callbacks;
over the API as JSON and CSV (SQLite and PostgreSQL)."""

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from helpers import bearer

from crm_bridge.models import CallbackTask
from cti.calls import Call, CallLeg
from cti.callstore import upsert_calls
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
        "/api/reports/calls", params={**period, "format": "csv"}, headers=bearer(boss)
    )
    assert exported.headers["Content-Type"].startswith("text/csv")
    [line] = list(csv.DictReader(io.StringIO(await exported.text())))
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
