"""What a crash loses, checked by killing the service (SIGKILL) in the middle of a burst of
calls: docs/architecture.md, "What a crash loses", promises exactly what is asserted here.

A real ``cti serve`` process follows the AMI simulator. Calls start every few
milliseconds and each stays up while the next ones start, so at any moment some ring,
some talk and many have ended. Just before the kill the test reads the stored calls
(what was committed by then); the service is then killed, the PBX goes on (calls end
that nobody hears, new ones start), the service is started again on the same database
and the calls still up finish.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from lab import FIXTURES, lab_pbx_toml
from sqlalchemy import select

from cti.callstore import WRITE_INTERVAL_SECONDS
from cti.clients.models import CallbackTask
from cti.db.engine import create_engine, session_factory
from cti.db.models import CallRecord
from pbx_adapters.asterisk.simulator import (
    AmiSimulator,
    external_numbers,
    load_transcript,
    refresh_ids,
)

SECRET = "crash-secret"
BEFORE_KILL = 260  # calls started before the kill
DURING_DOWNTIME = 40  # calls started while the service is down
LIVE = 12  # calls up at once: call i ends when call i + LIVE starts
START_EVERY = 0.012  # seconds between two calls' starts
# A change is committed within the write interval of its happening; the margin is for
# a loaded CI machine (the writer's batches, the database's syncs).
SETTLED = WRITE_INTERVAL_SECONDS + 1.5


def scripts() -> list[tuple[str, list[dict[str, str]], int]]:
    """(kind, frames, where the second part starts): an answered and a missed call."""
    found = []
    for kind in ("sip_inbound_answered", "sip_inbound_missed"):
        frames = load_transcript(FIXTURES / f"{kind}.ami")
        ring = next(i for i, f in enumerate(frames) if f.get("Event") == "DialBegin")
        found.append((kind, frames, ring + 1))
    return found


class Burst:
    """The calls: call i is made of transcript ``kind`` with fresh ids and its own
    number; ``first`` is its frames up to ringing, ``rest`` what follows."""

    def __init__(self, count: int) -> None:
        self.calls: list[dict[str, Any]] = []
        kinds = scripts()
        for index in range(count):
            kind, frames, split = kinds[index % len(kinds)]
            (outside,) = external_numbers(frames)
            number = f"{outside[:-4]}{index:04d}"
            fresh = refresh_ids(frames, seq=index + 1, number_map={outside: number})
            self.calls.append(
                {
                    "kind": kind,
                    "number": number,
                    "id": f"lab:{next(f['Linkedid'] for f in fresh if 'Linkedid' in f)}",
                    "first": fresh[:split],
                    "rest": fresh[split:],
                    "ended_at": None,  # monotonic time its last frame went out
                }
            )

    async def play(self, pbx: AmiSimulator, start: int, stop: int) -> None:
        """Start calls ``start``..``stop - 1``; each start ends the call LIVE before it."""
        for index in range(start, stop):
            await pbx.play(self.calls[index]["first"])
            if index >= LIVE:
                await self.finish(pbx, index - LIVE)
            await asyncio.sleep(START_EVERY)

    async def finish(self, pbx: AmiSimulator, index: int) -> None:
        call = self.calls[index]
        if call["ended_at"] is None:
            await pbx.play(call["rest"])
            call["ended_at"] = time.monotonic()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def config_file(tmp_path: Path, db_url: str, ami_port: int, port: int) -> Path:
    path = tmp_path / "cti.toml"
    path.write_text(
        f"""
[server]
host = "127.0.0.1"
port = {port}
data_dir = "{tmp_path / "data"}"

[database]
url = "{db_url}"
auto_migrate = true
{lab_pbx_toml(ami_port, SECRET)}""",
        encoding="utf-8",
    )
    return path


async def start_service(config: Path, port: int, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cti", "serve", "-c", str(config), stdout=out, stderr=out
        )
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.returncode is None, tail(log)
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if (await response.json())["status"] == "ok":  # database and PBX up
                        return process
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.1)
    process.kill()
    raise AssertionError(f"the service never became healthy:\n{tail(log)}")


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def stored(db_url: str) -> dict[str, dict[str, Any]]:
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as session:
            rows = await session.scalars(select(CallRecord.details))
            return {call["id"]: call for call in rows}
    finally:
        await engine.dispose()


async def open_tasks(db_url: str) -> list[str]:
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as session:
            rows = await session.scalars(
                select(CallbackTask.number).where(CallbackTask.closed_at.is_(None))
            )
            return list(rows)
    finally:
        await engine.dispose()


FINAL = ("outcome", "missed", "answered_by", "answered_at", "ended_at", "talk_seconds")


async def test_a_service_killed_mid_burst_loses_only_what_it_had_not_committed(
    db_url, tmp_path
) -> None:
    pbx = AmiSimulator(username="cti", secret=SECRET)
    await pbx.start()
    log = tmp_path / "service.log"
    port = free_port()
    config = config_file(tmp_path, db_url, pbx.port, port)
    burst = Burst(BEFORE_KILL + DURING_DOWNTIME)
    process = await start_service(config, port, log)
    try:
        await burst.play(pbx, 0, BEFORE_KILL)
        killed_at = time.monotonic()
        committed = await stored(db_url)  # at least what the killed process had committed
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()
        await burst.play(pbx, BEFORE_KILL, len(burst.calls))  # nobody listens
        process = await start_service(config, port, log)
        for index in range(len(burst.calls) - LIVE, len(burst.calls)):
            await burst.finish(pbx, index)  # the calls still up when it came back
        await asyncio.sleep(0.5)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)  # a clean stop writes what is pending
            await process.wait()
        await pbx.stop()
    after = await stored(db_url)
    calls = {call["id"]: call for call in burst.calls}

    # Nothing is stored twice, nor anything the PBX did not say.
    assert set(after) <= set(calls)
    # What was committed stays, and a call committed as ended is not changed by the crash.
    assert set(committed) <= set(after)
    for call_id, before in committed.items():
        if not before["in_progress"]:
            assert {k: after[call_id][k] for k in FINAL} == {k: before[k] for k in FINAL}
    # Every call that ended SETTLED seconds before the kill was committed, as it ended.
    settled = [c for c in burst.calls if c["ended_at"] and c["ended_at"] < killed_at - SETTLED]
    assert len(settled) > BEFORE_KILL // 2
    for call in settled:
        assert committed[call["id"]]["in_progress"] is False, call["id"]
    # Whatever it had committed before the kill is logged, and ended; the calls started
    # while it was down and still up when it came back are logged from the PBX's channels.
    heard = [c for c in burst.calls if c["id"] in committed]
    still_up = burst.calls[-LIVE:]
    for call in heard + still_up:
        logged = after.get(call["id"])
        assert logged is not None, call["id"]
        assert logged["in_progress"] is False
        expected_missed = call["kind"] == "sip_inbound_missed"
        if logged["ended_while_disconnected"]:
            # It ended while the service was down: how is unknown, and unknown is not
            # missed (only the PBX says a call was missed).
            assert not logged["missed"]
        else:
            assert logged["missed"] is expected_missed, call["id"]
            assert logged["outcome"] == ("no_answer" if expected_missed else "answered")
    # The calls that rang and ended entirely while it was down were never heard of.
    unheard = burst.calls[BEFORE_KILL : len(burst.calls) - LIVE]
    assert not {c["id"] for c in unheard} & set(after)
    # One callback task per missed call, none twice (the follow-ups are caught up once).
    missed_numbers = sorted(c["external_number"] for c in after.values() if c["missed"])
    assert sorted(await open_tasks(db_url)) == missed_numbers
