"""The reports view in a real Chromium: a month with quiet days has every day, the quiet
ones as zeros and dashes, in the chart as gaps and in the exported CSV as in the table."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from e2e_helpers import (
    ARTIFACTS,
    BROWSER_TESTS,
    CHROMIUM,
    PASSWORD,
    VIEWPORT,
    Office,
    start_office,
    stop_office,
)

from cti.calls import Call, CallLeg
from cti.callstore import upsert_calls
from cti.domain import Direction, LegResult, Outcome

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

pytestmark = BROWSER_TESTS

expect.set_options(timeout=10_000)

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY = datetime(2026, 10, 5, 9, 0, tzinfo=BERLIN)
# Weekdays from 5 to 30 October (the clocks go back on Sunday the 25th); no weekend calls.
WEEKDAYS = [day for day in (MONDAY + timedelta(days=n) for n in range(26)) if day.weekday() < 5]


def stored_call(n: int, at: datetime) -> dict:
    answered = n % 2 == 1
    leg = CallLeg("101", at, ended_at=at + timedelta(seconds=30))
    leg.result = LegResult.ANSWERED if answered else LegResult.NO_ANSWER
    return Call(
        id=f"report-{n}",
        pbx="lab",
        started_at=at,
        direction=Direction.INBOUND,
        external_number="+78125550199",
        legs=[leg],
        answered_by="101" if answered else None,
        answered_at=at + timedelta(seconds=5) if answered else None,
        ended_at=at + timedelta(seconds=65 if answered else 30),
        outcome=Outcome.ANSWERED if answered else Outcome.NO_ANSWER,
        missed=not answered,
    ).to_dict()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def office(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Office]:
    office = await start_office(tmp_path_factory.mktemp("reports"), time_zone="Europe/Berlin")
    async with office.service.sessions() as session:
        await upsert_calls(
            session, [stored_call(n, day.astimezone(UTC)) for n, day in enumerate(WEEKDAYS)]
        )
        await session.commit()
    yield office
    await stop_office(office)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page(office: Office) -> AsyncIterator[object]:
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        context = await browser.new_context(
            viewport=VIEWPORT, locale="en-US", timezone_id="Europe/Berlin", accept_downloads=True
        )
        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        await page.goto(office.url)
        await page.get_by_label(re.compile("User name")).fill("vera")
        await page.locator("#login-password").fill(PASSWORD)
        await page.locator("#login-password").press("Enter")
        await expect(page.locator("#feed-status")).to_have_attribute("data-state", "live")
        yield page
        await browser.close()
        assert not problems, problems


async def show(page, since: str, until: str, group: str = "day") -> list[dict]:
    """Show the report of [since, until] (dates) and return the API's rows."""
    await page.goto(page.url.split("#")[0] + "#reports")
    await page.locator("#report-from").fill(since)
    await page.locator("#report-to").fill(until)
    await page.locator("#report-group").select_option(group)
    async with page.expect_response(lambda r: "/api/reports/calls?" in r.url) as answer:
        await page.locator("#report-apply").click()
    response = await answer.value
    assert response.status == 200
    await expect(page.locator("#report-table")).to_have_attribute("data-state", "ready")
    return (await response.json())["rows"]


async def test_a_month_has_every_day_and_the_csv_is_the_table(page) -> None:
    rows = await show(page, "2026-10-01", "2026-10-31")
    assert [r["key"] for r in rows] == [f"2026-10-{day:02d}" for day in range(1, 32)]
    table = page.locator("#report-rows tr.report-row")
    await expect(table).to_have_count(31)
    weekend = page.locator('#report-rows tr[data-key="2026-10-10"]')
    await expect(weekend.locator('[data-col="calls"]')).to_have_text("0")
    await expect(weekend.locator('[data-col="missed_rate"]')).to_have_text("—")
    await expect(weekend.locator("td").nth(5)).to_have_text("—")  # average wait
    monday = page.locator('#report-rows tr[data-key="2026-10-26"]')  # after the DST change
    await expect(monday.locator('[data-col="calls"]')).to_have_text("1")

    # The chart has a place for every day; the weekend's bars are empty.
    await expect(page.locator("#report-chart-box")).to_be_visible()
    await expect(page.locator("#report-svg g.chart-group")).to_have_count(31)
    quiet = page.locator('#report-svg g.chart-group[data-group="2026-10-11"] rect.bar')
    await expect(quiet).to_have_count(3)
    assert {await bar.get_attribute("data-value") for bar in await quiet.all()} == {"0"}
    await expect(page.locator("#report-empty")).to_be_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "reports-quiet-days.png"), full_page=True)

    async with page.expect_download() as info:
        await page.get_by_role("button", name="Export CSV").click()
    download = await info.value
    text = (await asyncio.to_thread(Path(await download.path()).read_bytes)).decode("utf-8")
    exported = list(csv.DictReader(io.StringIO(text)))
    assert [line["key"] for line in exported] == [r["key"] for r in rows]
    for line, row in zip(exported, rows, strict=True):
        assert line == {k: "" if v is None else str(v) for k, v in row.items()}
        shown = page.locator(f'#report-rows tr[data-key="{row["key"]}"]')
        await expect(shown.locator('[data-col="calls"]')).to_have_text(line["calls"])


async def test_hours_of_a_day_of_23_hours_and_a_period_without_calls(page) -> None:
    rows = await show(page, "2026-03-29", "2026-03-29", group="hour")  # 02:00 never was
    keys = [f"{hour:02d}:00" for hour in range(24) if hour != 2]
    assert [r["key"] for r in rows] == keys
    await expect(page.locator("#report-rows tr.report-row")).to_have_count(23)
    # No calls at all: the rows are there, the chart is not, and the page says why.
    await expect(page.locator("#report-chart-box")).to_be_hidden()
    await expect(page.locator("#report-empty")).to_have_text("No calls in this period.")

    rows = await show(page, "2026-10-25", "2026-10-25", group="hour")  # 25 hours
    assert len(rows) == 24 and rows[9]["key"] == "09:00"
    await expect(page.locator("#report-empty")).to_have_text("No calls in this period.")
    rows = await show(page, "2026-10-26", "2026-10-26", group="hour")
    assert [r["key"] for r in rows if r["calls"]] == ["09:00"]
    await expect(page.locator("#report-empty")).to_be_hidden()
    await expect(page.locator("#report-chart-box")).to_be_visible()
