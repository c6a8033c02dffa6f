"""What the live feed missed, from Asterisk's CDR (issue 15): calls that ended while the
AMI link was down end as the CDR says, and calls that came and went while the service
was stopped appear, once, with callback tasks for the missed ones. The CDR is a table
shaped like FreePBX's asteriskcdrdb.cdr, in the MariaDB (and the PostgreSQL) on this
machine, filled with rows the lab Asterisk wrote (tests/fixtures/lab/cdr-custom.csv)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from cdr_db import CdrTable, cdr_table, lab_rows
from conftest import POSTGRES_URL, REQUIRE_POSTGRES, _postgres_reachable
from helpers import eventually
from lab import FIXTURES, LAB_INBOUND_CONTEXTS, LAB_TRUNKS, lab_pbx
from sqlalchemy import select
from test_asterisk_adapter import SECRET, stored_calls

from cti.clients.models import CallbackTask
from cti.config import Config, DatabaseConfig, ServerConfig
from cti.service import Service
from pbx_adapters.asterisk.cdr import CdrCalls, CdrRow
from pbx_adapters.asterisk.channels import ChannelMap
from pbx_adapters.asterisk.simulator import AmiSimulator, load_transcript, refresh_ids

# The lab's trunks include its simulated PSTN ("remote"), which the CDR's click-to-dial
# row dials.
TRUNKS = [*LAB_TRUNKS, r"^Local/[^@]+@(?:outbound)-"]


def shifted(rows: list[dict[str, str]], end: datetime) -> list[dict[str, str]]:
    """The rows moved in time so that the last call ends at ``end`` (they were recorded
    on 2026-12-02; the lookback window is counted from now)."""
    last = max(datetime.fromisoformat(r["end"] or r["start"]) for r in rows).replace(tzinfo=UTC)
    delta = end - last

    def move(value: str) -> str:
        if not value:
            return value
        moved = datetime.fromisoformat(value).replace(tzinfo=UTC) + delta
        return moved.strftime("%Y-%m-%d %H:%M:%S")

    return [
        {**r, "start": move(r["start"]), "answer": move(r["answer"]), "end": move(r["end"])}
        for r in rows
    ]


def as_cdr_row(row: dict[str, str]) -> CdrRow:
    return CdrRow(
        calldate=datetime.fromisoformat(row["start"]).replace(tzinfo=UTC),
        **{k: row[k] for k in ("src", "dst", "dcontext", "clid", "channel", "dstchannel")},
        disposition=row["disposition"],
        duration=int(row["duration"]),
        billsec=int(row["billsec"]),
        uniqueid=row["uniqueid"],
        linkedid=row["linkedid"],
    )


def test_the_lab_cdr_rows_become_the_calls_they_were() -> None:
    calls = CdrCalls("lab", ChannelMap(trunk_patterns=TRUNKS), "RU", LAB_INBOUND_CONTEXTS)
    by_number = {
        c.external_number: c for c in calls.by_linkedid(as_cdr_row(r) for r in lab_rows()).values()
    }
    summary = {
        number: (c.direction, c.outcome, c.missed, c.answered_by, [leg.result for leg in c.legs])
        for number, c in by_number.items()
    }
    assert summary == {
        # The caller hung up after 2 s: the CDR says NO ANSWER, as for one that rang out.
        "+78125550199": ("inbound", "no_answer", True, None, ["no_answer"]),
        "+78125550131": ("inbound", "answered", False, "101", ["answered"]),
        "+78125550132": ("inbound", "no_answer", True, None, ["no_answer"]),
        "+78125550133": ("inbound", "answered", False, "102", ["no_answer", "answered"]),
        "+78125550134": ("outbound", "answered", False, None, []),
    }
    missed = by_number["+78125550132"]
    assert (missed.external_name, missed.did) == ("Пропущенный Клиент", "4952000")
    assert missed.ended_at - missed.started_at == timedelta(seconds=10)
    click = by_number["+78125550134"]
    assert click.caller_extension == "101" and click.talk_seconds == 6
    assert all(c.recovered_from_cdr and c.ended_while_disconnected for c in by_number.values())


@pytest.fixture(params=["mariadb", "postgresql"])
async def cdr(request: pytest.FixtureRequest) -> AsyncIterator[CdrTable]:
    if request.param == "postgresql" and not await _postgres_reachable():
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required but does not answer")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} does not answer")
    async for table in cdr_table(request.param, POSTGRES_URL):
        yield table


@pytest.fixture
async def pbx() -> AsyncIterator[AmiSimulator]:
    sim = AmiSimulator(username="cti", secret=SECRET)
    await sim.start()
    yield sim
    await sim.stop()


def config_with_cdr(tmp_path, port: int, cdr: CdrTable, **cdr_options: object) -> Config:
    return Config(
        server=ServerConfig(data_dir=tmp_path),
        database=DatabaseConfig(
            url=f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}", auto_migrate=True
        ),
        pbx=[
            lab_pbx(
                port,
                SECRET,
                trunk_channels=TRUNKS,
                cdr_url=cdr.url,
                cdr_table=cdr.table,
                **cdr_options,
            )
        ],
    )


async def tasks_of(service: Service) -> list[CallbackTask]:
    async with service.sessions() as session:
        return list(await session.scalars(select(CallbackTask).order_by(CallbackTask.number)))


async def start(config: Config) -> Service:
    service = await Service.start(config)
    await asyncio.wait_for(service.pbx["lab"].link_up.wait(), 10)
    return service


async def test_calls_made_while_the_service_was_stopped_appear_once_from_the_cdr(
    cdr, pbx, tmp_path
) -> None:
    await cdr.insert(shifted(lab_rows(), datetime.now(UTC) - timedelta(hours=1)))
    config = config_with_cdr(tmp_path, pbx.port, cdr)
    for _ in range(2):  # a second start reads the same rows and adds nothing
        service = await start(config)
        try:
            await eventually(lambda s=service: _count(s, 5))
            calls = {c["external_number"]: c for c in await stored_calls(service)}
            assert len(calls) == 5
            assert all(c["recovered_from_cdr"] for c in calls.values())
            assert {n for n, c in calls.items() if c["missed"]} == {"+78125550199", "+78125550132"}
            await eventually(lambda s=service: _tasks(s, 2))
            tasks = await tasks_of(service)
            assert [(t.number, t.missed_calls) for t in tasks] == [
                ("+78125550132", 1),
                ("+78125550199", 1),
            ]
        finally:
            await service.close()


async def _count(service: Service, n: int) -> bool:
    return len(await stored_calls(service)) == n


async def _tasks(service: Service, n: int) -> bool:
    return len(await tasks_of(service)) == n


def ringing_then_unseen(name: str, seq: int) -> tuple[list[dict], int, str]:
    """A transcript with fresh ids, where it starts ringing, and its call's Linkedid."""
    frames = refresh_ids(load_transcript(FIXTURES / f"{name}.ami"), seq=seq)
    linkedid = next(f["Linkedid"] for f in frames if f.get("Event") == "Newchannel")
    ringing = next(i for i, f in enumerate(frames) if f.get("Event") == "DialBegin") + 1
    return frames, ringing, linkedid


@pytest.mark.parametrize(
    ("disposition", "billsec", "outcome", "missed", "talk"),
    [("NO ANSWER", 0, "no_answer", True, None), ("ANSWERED", 8, "answered", False, 8.0)],
)
async def test_a_call_that_ended_while_the_link_was_down_ends_as_the_cdr_says(
    cdr, pbx, tmp_path, disposition, billsec, outcome, missed, talk
) -> None:
    service = await start(config_with_cdr(tmp_path, pbx.port, cdr))
    try:
        adapter = service.pbx["lab"]
        frames, cut, linkedid = ringing_then_unseen("sip_inbound_missed", seq=70)
        await pbx.play(frames[:cut])
        await eventually(lambda: adapter.tracker.active_calls())
        [live] = adapter.tracker.active_calls()
        started = live.started_at
        # Asterisk's CDR row of the call (it is read only when the link comes back).
        calldate = started.replace(microsecond=0)
        await cdr.insert(
            [
                {
                    "start": calldate.strftime("%Y-%m-%d %H:%M:%S"),
                    "src": "88125550102",
                    "dst": "4952000",
                    "dcontext": "inbound-sip",
                    "clid": '"ООО Ромашка" <88125550102>',
                    "channel": "Local/14@callers-00000001;1",
                    "dstchannel": "SIP/101-00000001",
                    "lastapp": "Dial",
                    "disposition": disposition,
                    "duration": str(billsec + 2),
                    "billsec": str(billsec),
                    "uniqueid": linkedid,
                    "linkedid": linkedid,
                }
            ]
        )
        # The link goes down, and the call ends unseen.
        pbx.drop_clients()
        await pbx.play(frames[cut:])
        await eventually(lambda: adapter.connected and not adapter.tracker.calls)
        [call] = await stored_calls(service)
        assert (call["outcome"], call["missed"], call["talk_seconds"]) == (outcome, missed, talk)
        assert call["recovered_from_cdr"] and call["ended_while_disconnected"]
        assert not call["end_unknown"]  # the CDR says when it ended
        ended = datetime.fromisoformat(call["ended_at"])
        assert ended == calldate + timedelta(seconds=billsec + 2)
        await eventually(lambda: _tasks(service, 1 if missed else 0))
        assert len(await tasks_of(service)) == (1 if missed else 0)
    finally:
        await service.close()


async def test_a_cdr_that_cannot_be_read_leaves_the_link_up_and_the_outcome_unknown(
    pbx, tmp_path, caplog
) -> None:
    down = CdrTable("mysql://cti:cdr-password-x@127.0.0.1:9/asteriskcdrdb", "cdr")
    service = await start(config_with_cdr(tmp_path, pbx.port, down))
    try:
        adapter = service.pbx["lab"]
        frames, cut, _ = ringing_then_unseen("sip_inbound_missed", seq=71)
        await pbx.play(frames[:cut])
        await eventually(lambda: adapter.tracker.active_calls())
        caplog.set_level(logging.INFO)
        pbx.drop_clients()
        await pbx.play(frames[cut:])
        await eventually(lambda: adapter.connected and not adapter.tracker.calls)
        [call] = await stored_calls(service)
        assert (call["outcome"], call["end_unknown"], call["missed"]) == ("unknown", True, False)
        assert "cannot read the CDR" in caplog.text
        assert "cdr-password-x" not in caplog.text
    finally:
        await service.close()


def test_a_bad_cdr_url_is_refused_without_showing_its_password(tmp_path) -> None:
    from cti.config import ConfigError, load_config

    path = tmp_path / "cti.toml"
    path.write_text(
        '[[pbx]]\nname = "a"\ntype = "asterisk"\nhost = "h"\nusername = "u"\nsecret = "s"\n'
        'cdr_url = "sqlite://cti:hunter2@host/cdr"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert "cdr_url" in str(error.value) and "mysql://" in str(error.value)
    assert "hunter2" not in str(error.value)
