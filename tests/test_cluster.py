"""Several nodes on one PostgreSQL and one NATS (docs/deploy.md): one leader per link,
failover without a lost or doubled call or pop, a paused leader that wakes up fenced off,
and outboxes that send each item once. The nodes are real ``cti serve`` processes
following the AMI simulator, which replays the recorded Asterisk 20 calls."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import aiohttp
from cluster_nodes import LEASE_SECONDS, SECRET, Desk, nats_or_skip, start_cluster
from helpers import eventually
from test_crash import Burst as CrashBurst
from test_crash import open_tasks, stored

from cti.clients.models import CrmOutbox
from cti.cluster.lease import HOLD_FRACTION, RENEWALS, Lease
from cti.cluster.node import asyncpg_dsn
from cti.crm_outbox import CallReportOutbox
from cti.db.engine import create_engine, session_factory
from cti.db.migrate import upgrade
from gsm_modem.emulator import ModemEmulator
from pbx_adapters.asterisk.simulator import AmiSimulator

# -- the lease ------------------------------------------------------------------------------


async def test_one_node_holds_a_lease_until_it_goes(pg_url) -> None:
    dsn = asyncpg_dsn(pg_url)
    first, second = Lease(dsn, "pbx:lab", 2.0), Lease(dsn, "pbx:lab", 2.0)
    try:
        assert await first.try_acquire() and first.held
        assert not await second.try_acquire() and not second.held
        assert await first.renew()
        await first.release()  # as a killed node's closed socket does
        assert not first.held
        assert await second.try_acquire()
    finally:
        await first.release()
        await second.release()


async def test_a_holder_that_stops_renewing_stops_holding_before_the_server_lets_go(
    pg_url,
) -> None:
    """A paused leader: it counts its lease out by itself first; the database ends its
    session (and lock) only after, and another node takes the lease."""
    dsn = asyncpg_dsn(pg_url)
    paused, other = Lease(dsn, "pbx:lab", 2.0), Lease(dsn, "pbx:lab", 2.0)
    try:
        assert await paused.try_acquire()
        started = time.monotonic()
        while paused.held:
            assert not await other.try_acquire()  # nobody else while it holds
            await asyncio.sleep(0.1)
        assert time.monotonic() - started < 2.0 * HOLD_FRACTION + 0.2
        deadline = time.monotonic() + 5
        while not await other.try_acquire():
            assert time.monotonic() < deadline, "the server never ended the paused session"
            await asyncio.sleep(0.2)
        assert time.monotonic() - started >= 1.9  # not before its lease ran out there
        assert not await paused.renew()  # woken up: its session is gone, and it knows
    finally:
        await paused.release()
        await other.release()


# -- outboxes ---------------------------------------------------------------------------------


class CountingCrm:
    """A CRM that takes its time and counts what it was told."""

    last_skip_reason = None

    def __init__(self) -> None:
        self.started: Counter[str] = Counter()
        self.finished: Counter[str] = Counter()

    async def call_started(self, call: dict[str, Any]) -> str:
        self.started[call["id"]] += 1
        await asyncio.sleep(0.01)
        return f"crm-{call['id']}"

    async def call_finished(self, call: dict[str, Any], call_id: str) -> None:
        self.finished[call["id"]] += 1
        await asyncio.sleep(0.01)

    async def close(self) -> None:
        pass


async def test_two_nodes_draining_one_outbox_send_each_call_once(pg_url) -> None:
    engine = create_engine(pg_url)
    try:
        await upgrade(engine)
        sessions = session_factory(engine)
        now = datetime.now(UTC)
        async with sessions() as session:
            for n in range(40):
                call = {"id": f"lab:{n}", "direction": "inbound"}
                session.add(CrmOutbox(call_id=call["id"], call=call, next_attempt_at=now))
            await session.commit()
        crm = CountingCrm()
        nodes = [CallReportOutbox(sessions, crm), CallReportOutbox(sessions, crm)]

        async def drain(outbox: CallReportOutbox) -> None:
            while await outbox.send_due():
                pass

        await asyncio.gather(*(drain(outbox) for outbox in nodes))
        assert set(crm.started) == {f"lab:{n}" for n in range(40)}
        assert set(crm.started.values()) == {1} and set(crm.finished.values()) == {1}
    finally:
        await engine.dispose()


# -- real nodes -------------------------------------------------------------------------------


class Burst(CrashBurst):
    """The crash test's calls, each cut where an operator's phone has started ringing
    (its pop is out): ``first`` to there, ``rest`` after."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        for call in self.calls:
            frames = call["first"] + call["rest"]
            ring = next(
                i
                for i, f in enumerate(frames)
                if f.get("Event") == "DialBegin" and f.get("DestChannel", "").startswith("SIP/")
            )
            call["first"], call["rest"] = frames[: ring + 1], frames[ring + 1 :]


async def all_popped(desks: list[Desk], calls: list[dict[str, Any]]) -> None:
    wanted = {call["id"] for call in calls}
    try:
        await eventually(lambda: all(wanted <= set(desk.first_pops()) for desk in desks), 20)
    except TimeoutError:
        missing = [sorted(wanted - set(desk.first_pops())) for desk in desks]
        raise AssertionError(f"pops missing, by desk: {missing}") from None


async def all_logged_as_ended(db_url: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    async def done() -> bool:
        found = await stored(db_url)
        return all(c["id"] in found and not found[c["id"]]["in_progress"] for c in calls)

    try:
        await eventually(done, 20)
    except TimeoutError:
        found = await stored(db_url)
        not_ended = [
            (c["id"], "in progress" if c["id"] in found else "absent")
            for c in calls
            if found.get(c["id"], {}).get("in_progress", True)
        ]
        raise AssertionError(f"not logged as ended: {not_ended}") from None
    return await stored(db_url)


def assert_logged_as_played(after: dict[str, Any], calls: list[dict[str, Any]]) -> None:
    """The log a single node would keep of these calls: each once, as it went."""
    assert set(after) == {call["id"] for call in calls}
    for call in calls:
        logged = after[call["id"]]
        missed = call["kind"] == "sip_inbound_missed"
        assert not logged["ended_while_disconnected"], call["id"]
        assert logged["missed"] is missed, call["id"]
        assert logged["outcome"] == ("no_answer" if missed else "answered"), call["id"]


async def test_killing_the_leader_loses_and_doubles_nothing(pg_url, tmp_path) -> None:
    await nats_or_skip()
    pbx = AmiSimulator(username="cti", secret=SECRET)
    await pbx.start()
    cluster = await start_cluster(tmp_path, pg_url, pbx.port, 3)
    desks = [Desk(cluster.tokens["reception"]) for _ in cluster.nodes]
    burst = Burst(60)
    try:
        for desk, node in zip(desks, cluster.nodes, strict=True):
            await desk.connect(node)
        leader = await cluster.leader()
        await eventually(lambda: pbx.connections == 1)  # the leader alone drives the link
        calls = burst.calls
        for index in range(30):  # 0..19 end, 20..29 still ring when the leader dies
            await pbx.play(calls[index]["first"])
            if index < 20:
                await burst.finish(pbx, index)
        await all_popped(desks, calls[:30])
        await asyncio.sleep(0.5)  # the calls ringing are written down (200 ms)

        killed_at = time.monotonic()
        leader.signal(signal.SIGKILL)
        await leader.process.wait()
        survivors = [node for node in cluster.nodes if node is not leader]
        new_leader = await cluster.leader()
        took_over = time.monotonic() - killed_at
        assert new_leader in survivors and took_over < 4 * LEASE_SECONDS
        await eventually(lambda: pbx.connections == 1, 15)

        # The desk on the dead node comes back on another and gets exactly what it missed.
        moved = desks[cluster.nodes.index(leader)]
        await eventually(lambda: moved.closed)
        hello = await moved.connect(survivors[0])
        assert hello["resumed"] is True

        for index in range(20, 30):
            await burst.finish(pbx, index)
        for index in range(30, 60):
            await pbx.play(calls[index]["first"])
            await burst.finish(pbx, index)
        await all_popped(desks, calls)
        after = await all_logged_as_ended(pg_url, calls)
    finally:
        for desk in desks:
            await desk.close()
        await cluster.stop()
        await pbx.stop()

    assert_logged_as_played(after, calls)
    for desk in desks:  # every call popped once on every desk, the moved one too
        assert set(desk.first_pops().values()) == {1}
        assert desk.resyncs() == ["connect"]  # its first connection's; the move resumed
    missed = sorted(c["external_number"] for c in after.values() if c["missed"])
    assert sorted(await open_tasks(pg_url)) == missed  # one task per missed call


async def test_a_paused_leader_wakes_up_fenced_off(pg_url, tmp_path) -> None:
    await nats_or_skip()
    pbx = AmiSimulator(username="cti", secret=SECRET)
    await pbx.start()
    cluster = await start_cluster(tmp_path, pg_url, pbx.port, 2)
    burst = Burst(18)
    calls = burst.calls
    try:
        leader = await cluster.leader()
        (other,) = [node for node in cluster.nodes if node is not leader]
        desk = Desk(cluster.tokens["reception"])
        await desk.connect(other)
        for index in range(6):
            await pbx.play(calls[index]["first"])
            await burst.finish(pbx, index)
        await all_popped([desk], calls[:6])
        await all_logged_as_ended(pg_url, calls[:6])  # what a pause (as a crash) can lose

        leader.signal(signal.SIGSTOP)  # a partition: it neither answers nor hangs up
        paused_at = time.monotonic()
        assert await cluster.leader() is other
        # Not before its lease ran out: a whole one after its last renewal, which came at
        # most a quarter of one before the pause.
        assert time.monotonic() - paused_at >= LEASE_SECONDS * (1 - 1 / RENEWALS) - 0.1
        await eventually(lambda: pbx.connections == 2, 15)  # and the paused one's
        for index in range(6, 12):
            await pbx.play(calls[index]["first"])  # the paused node's link buffers these
            await burst.finish(pbx, index)
        await all_popped([desk], calls[:12])

        leader.signal(signal.SIGCONT)
        await asyncio.sleep(1.5)  # it reads what it missed, and finds its lease gone
        assert "pbx:lab" not in await leader.leads()
        assert "pbx:lab" in await other.leads()
        for index in range(12, 18):
            await pbx.play(calls[index]["first"])
            await burst.finish(pbx, index)
        await all_popped([desk], calls)
        after = await all_logged_as_ended(pg_url, calls)
        await asyncio.sleep(0.5)  # anything the woken node might still write or pop
        after = await stored(pg_url)
    finally:
        await desk.close()
        await cluster.stop()
        await pbx.stop()

    assert_logged_as_played(after, calls)
    assert set(desk.first_pops().values()) == {1}  # nothing popped twice
    assert "stepping down" in leader.tail(200_000) or "no longer leads" in leader.tail(200_000)


async def test_any_node_answers_for_links_another_node_leads(pg_url, tmp_path) -> None:
    """Click-to-dial and hang-up sent to a node that does not lead the PBX reach the one
    that does; an SMS sent to a node that does not lead the modem is sent by the one
    that does."""
    await nats_or_skip()
    pbx = AmiSimulator(username="cti", secret=SECRET)
    await pbx.start()
    async with ModemEmulator(send_delay=0.01, status_report_delay=0.05) as modem:
        extra = f'\n[[modem]]\nname = "sim1"\nport = "{modem.path}"\n'
        cluster = await start_cluster(tmp_path, pg_url, pbx.port, 2, extra)
        try:
            pbx_leader = await cluster.leader()
            modem_leader = await cluster.leader("modem:sim1")
            (not_pbx,) = [node for node in cluster.nodes if node is not pbx_leader]
            (not_modem,) = [node for node in cluster.nodes if node is not modem_leader]
            anna = {"Authorization": f"Bearer {cluster.tokens['anna']}"}
            boss = {"Authorization": f"Bearer {cluster.tokens['boss']}"}
            async with aiohttp.ClientSession() as http:
                dial = {"number": "+74951234567"}
                async with http.post(f"{not_pbx.url}/api/calls", json=dial, headers=anna) as r:
                    assert r.status == 202, await r.text()
                [originate] = [a for a in pbx.actions if a.get("Action") == "Originate"]
                assert originate["Exten"].endswith("4951234567")

                call = Burst(1).calls[0]
                await pbx.play(call["first"])  # ringing, at the leader
                url = f"{not_pbx.url}/api/calls/{call['id']}/hangup"

                async def hang_up() -> bool:  # 404 until the leader has followed the call
                    async with http.post(url, json={}, headers=boss) as r:
                        assert r.status in (202, 404), await r.text()
                        return r.status == 202

                await eventually(hang_up)
                [hangup] = [a for a in pbx.actions if a.get("Action") == "Hangup"]
                assert hangup["Channel"] in {f.get("Channel") for f in call["first"]}

                text = {"to": "+79161234567", "text": "Привет из другого узла"}
                async with http.post(f"{not_modem.url}/api/sms", json=text, headers=anna) as r:
                    assert r.status == 202, await r.text()
                    queued = await r.json()
                await eventually(lambda: len(modem.sent) == 1, 15)

                async def delivered() -> bool:
                    url = f"{not_modem.url}/api/sms/{queued['id']}"
                    async with http.get(url, headers=anna) as r:
                        return (await r.json())["status"] == "delivered"

                await eventually(delivered, 15)
        finally:
            await cluster.stop()
            await pbx.stop()
