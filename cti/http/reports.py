"""Reports over the API: per day, hour or operator; JSON for the page's charts, or CSV.

Per day and per hour every day (hour of the day) of the period has a row, quiet ones too,
in the viewer's time zone ``tz``; the CSV has the same rows and columns as the JSON. A
period is at most ``MAX_PERIOD`` long (so at most 367 day rows); a longer one is refused
with a 422 that says so.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import select

from cti.clients.models import CallbackTask
from cti.db.models import CallLegRecord, CallRecord
from cti.domain import Outcome, Role
from cti.http.api import Api, json_response, read_query
from cti.http.errors import ApiError
from cti.http.keys import SERVICE_KEY
from cti.reports import COLUMNS, ReportCall, build_report

MAX_PERIOD = timedelta(days=366)  # a year, a leap year's too
CONVERSATIONS = ("called_back", "called_again")  # how a callback task closes by talking


class ReportQuery(BaseModel):
    since: AwareDatetime
    until: AwareDatetime
    group: Literal["day", "hour", "operator"] = "day"
    tz: str = Field("UTC", max_length=64, description="IANA time zone, e.g. Europe/Moscow")
    callback_minutes: int = Field(60, ge=1, le=7 * 24 * 60)
    format: Literal["json", "csv"] = "json"


class Report(BaseModel):
    group: str
    rows: list[dict[str, object]]


def add_routes(api: Api) -> None:
    @api.operation(
        "GET",
        "/api/reports/calls",
        summary="Calls, answered, missed, waits, talk and timely callbacks, per day, hour "
        "of the day or operator (CSV with format=csv); every day or hour of the period "
        "(at most 366 days) has a row, quiet ones with zero counts and empty averages",
        tag="reports",
        query=ReportQuery,
        response=Report,
        roles=(Role.SUPERVISOR,),
    )
    async def calls_report(request: web.Request) -> web.StreamResponse:
        query = read_query(request, ReportQuery)
        if not timedelta(0) < query.until - query.since <= MAX_PERIOD:
            raise ApiError(422, "until: must be after since, at most 366 days later")
        try:
            tz = ZoneInfo(query.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ApiError(422, f"tz: no time zone {query.tz!r}") from None
        async with request.app[SERVICE_KEY].sessions() as session:
            calls = await _calls(session, query)
        period = (query.since, query.until)
        rows = build_report(calls, query.group, tz, query.callback_minutes, period)
        if query.format == "csv":
            return _csv(rows, f"calls-by-{query.group}.csv")
        return json_response(Report(group=query.group, rows=rows))


async def _calls(session, query: ReportQuery) -> list[ReportCall]:
    period = (
        CallRecord.started_at >= query.since,
        CallRecord.started_at < query.until,
        CallRecord.in_progress.is_(False),
    )
    rows = await session.execute(
        select(
            CallRecord.id,
            CallRecord.started_at,
            CallRecord.direction,
            CallRecord.answered_by,
            CallRecord.missed,
            CallRecord.wait_seconds,
            CallRecord.talk_seconds,
            CallRecord.answered_at.is_not(None).label("answered"),
            CallRecord.caller_extension,
            (CallRecord.outcome == Outcome.UNKNOWN.value).label("unknown"),
        ).where(*period)
    )
    rang: dict[str, set[str]] = {}
    legs = await session.execute(
        select(CallLegRecord.call_id, CallLegRecord.extension)
        .join(CallRecord, CallRecord.id == CallLegRecord.call_id)
        .where(*period)
    )
    for call_id, extension in legs:
        rang.setdefault(call_id, set()).add(extension)
    callbacks = {
        call_id: closed - created
        for call_id, created, closed in await session.execute(
            select(CallbackTask.missed_call_id, CallbackTask.created_at, CallbackTask.closed_at)
            .join(CallRecord, CallRecord.id == CallbackTask.missed_call_id)
            .where(*period, CallbackTask.closed_reason.in_(CONVERSATIONS))
        )
    }
    return [
        ReportCall(
            started_at=row.started_at,
            direction=row.direction,
            answered_by=row.answered_by,
            missed=row.missed,
            wait_seconds=row.wait_seconds,
            talk_seconds=row.talk_seconds,
            rang=tuple(sorted(rang.get(row.id, ()))),
            callback_after=callbacks.get(row.id),
            answered=row.answered,
            caller=row.caller_extension,
            unknown=bool(row.unknown),
        )
        for row in rows
    ]


def _csv(rows: list[dict[str, object]], filename: str) -> web.Response:
    """The rows as the table shows them; None (nothing to average) is an empty cell."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
