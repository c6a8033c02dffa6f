"""Several nodes (docs/deploy.md): the pop latency through NATS next to one node's, in the
same run, and how long a failover takes.

- one node: ``cti serve`` on its own (no NATS), the clients on it;
- a cluster: ``--nodes`` nodes on one PostgreSQL database and one NATS server, the
  clients spread over them; the PBX link led by one of them, its pops reaching the
  clients on every node through the JetStream stream.

Both follow this script's AMI server, which plays the recorded ``sip_inbound_answered``
call (bench/screenpop.py's calls) at ``--rate`` calls/s for ``--seconds``; the latency is
from the DialBegin frame written to the AMI socket to the first ``pop`` at each client.

Then, ``--failovers`` times: the node leading the PBX is killed (SIGKILL) while calls go
on, and the time is taken until the first frame published by the node that takes over
reaches a client (the link up again: it took the lease, started the adapter, logged in to
the PBX and loaded its state), then the killed node is started again. Also printed: the
calls lost to the failover, rung and gone while no node led the link (the PBX tells no one
of them; after a restart the same is true; this AMI server has no channels to list, where
a PBX's would let the new leader adopt the calls still up).

Usage: python bench/cluster.py [--nodes 3] [--clients 200] [--receptionists 20]
       [--rate 20] [--seconds 15] [--failovers 3]
NATS at BENCH_NATS_URL (default nats://127.0.0.1:4222), PostgreSQL at
BENCH_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from scratch_postgres import scratch_postgres  # bench/, beside this script
from screenpop import (
    PBX_NAME,
    RINGING_DELAY,
    TRANSCRIPT,
    AmiServer,
    Call,
    Clients,
    ClientSpec,
    create_users,
    free_port,
    load_script,
    make_calls,
    ms,
    pbx_toml,
    population,
    quantiles,
    raise_fd_limit,
    stop_process,
    wait_healthy,
)

NATS_URL = os.environ.get("BENCH_NATS_URL", "nats://127.0.0.1:4222")
LEASE_SECONDS = 3.0
FAILOVER_WAIT = 30.0  # seconds a takeover may take before the bench gives up on it


class StampedClients(Clients):
    """Clients that also keep when a link came up (a ``link.state`` frame saying so)."""

    def __init__(self, specs: list[ClientSpec]) -> None:
        super().__init__(specs)
        self.links_up: list[float] = []

    def frame(self, client, payload: bytes, now: float) -> None:  # type: ignore[no-untyped-def]
        super().frame(client, payload, now)
        if b'"link.state"' in payload[:40] and b'"up": true' in payload:
            self.links_up.append(now)


@dataclass
class Node:
    name: str
    port: int
    config: Path
    log: Path
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cti", "serve", "-c", str(self.config),
                stdout=out, stderr=out,
            )  # fmt: skip
        await wait_healthy(self.url, self.process, self.log)

    async def leads(self, duty: str) -> bool:
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{self.url}/healthz") as response:
                    body = await response.json()
        except (aiohttp.ClientError, OSError):
            return False
        return duty in body.get("cluster", {}).get("leads", [])


@dataclass
class Result:
    title: str
    latencies: list[float] = field(default_factory=list)
    missing: int = 0
    failovers: list[float] = field(default_factory=list)
    lost_calls: list[int] = field(default_factory=list)


def write_config(
    tmp: Path, name: str, port: int, db_url: str, ami_port: int, stream: str | None
) -> Path:
    cluster = (
        f'[cluster]\nnats_url = "{NATS_URL}"\nnode = "{name}"\nstream = "{stream}"\n'
        f"lease_seconds = {LEASE_SECONDS}\n"
        if stream
        else ""
    )
    pbx = pbx_toml(ami_port, "reconnect_max_seconds = 0.5\n")
    path = tmp / f"{name}.toml"
    path.write_text(
        f"""
[server]
host = "127.0.0.1"
port = {port}
data_dir = "{tmp / name}"

[database]
url = "{db_url}"
auto_migrate = true

{cluster}{pbx}""",
        encoding="utf-8",
    )
    return path


async def play(ami: AmiServer, calls: list[Call], rate: float, args: argparse.Namespace) -> dict:
    """Start ``calls`` at ``rate``/s; each call's DialBegin time by its key."""
    stamps: dict[str, float] = {}
    tasks = []

    async def one(call: Call) -> None:
        ami.send(call.setup)
        stamps[call.key] = ami.send(call.ring)
        await asyncio.sleep(RINGING_DELAY)
        ami.send(call.ringing)
        await asyncio.sleep(args.ring_seconds)
        ami.send(call.answer)
        await asyncio.sleep(args.talk_seconds)
        ami.send(call.hangup)

    begin = time.monotonic()
    for index, call in enumerate(calls):
        delay = begin + index / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(call)))
    await asyncio.gather(*tasks)
    return stamps


def latencies(clients: list[StampedClients], stamps: dict[str, float]) -> tuple[list[float], int]:
    """Every delivery's latency, and the deliveries that never came."""
    found = []
    got = 0
    for group in clients:
        for key, _index, at, _state in group.first_pops:
            if key in stamps:
                found.append(at - stamps[key])
                got += 1
    return found, got


async def run(
    args: argparse.Namespace, db_url: str, specs: list[ClientSpec], clustered: bool
) -> Result:
    count = args.nodes if clustered else 1
    result = Result(f"{count} nodes on NATS" if clustered else "one node")
    tmp = Path(tempfile.mkdtemp(prefix="cti-bench-cluster-"))
    ami = AmiServer()
    ami_port = await ami.start()
    await create_users(db_url, specs)
    stream = f"cti_bench_{uuid.uuid4().hex[:8]}" if clustered else None
    nodes = []
    for index in range(count):
        name = f"node{index + 1}"
        port = free_port()
        config = write_config(tmp, name, port, db_url, ami_port, stream)
        nodes.append(Node(name, port, config, tmp / f"{name}.log"))
    groups = [StampedClients(specs[i::count]) for i in range(count)]
    script = load_script(Path(TRANSCRIPT))
    try:
        await asyncio.gather(*(node.start() for node in nodes))
        async with asyncio.timeout(20):
            await ami.ready.wait()
        for node, group in zip(nodes, groups, strict=True):
            await group.connect("127.0.0.1", node.port)
        await asyncio.sleep(1)
        calls = make_calls(script, specs, int(args.rate * args.seconds))
        stamps = await play(ami, calls, args.rate, args)
        await asyncio.sleep(2)
        result.latencies, got = latencies(groups, stamps)
        expected = sum(
            sum(1 for s in specs if s.sees_all or s.extension == c.extension) for c in calls
        )
        result.missing = expected - got
        popped = {key for group in groups for key, *_ in group.first_pops}
        unpopped = [i for i, c in enumerate(calls) if c.key not in popped]
        if unpopped:
            print(f"  calls with no pop at all: {unpopped[:20]} of {len(calls)}")
        for _ in range(args.failovers if clustered else 0):
            await failover(args, nodes, groups, ami, script, specs, result)
    finally:
        for group in groups:
            group.close()
        for node in nodes:
            if node.process is not None:
                await stop_process(node.process)
        await ami.stop()
    return result


async def failover(
    args: argparse.Namespace,
    nodes: list[Node],
    groups: list[StampedClients],
    ami: AmiServer,
    script,  # type: ignore[no-untyped-def]
    specs: list[ClientSpec],
    result: Result,
) -> None:
    duty = f"pbx:{PBX_NAME}"
    leaders = [node for node in nodes if await node.leads(duty)]
    assert leaders and leaders[0].process is not None, "no node leads the PBX"
    leader = leaders[0]
    assert leader.process is not None
    watched = [g for n, g in zip(nodes, groups, strict=True) if n is not leader]
    calls = make_calls(script, specs, int(args.rate * 10))  # calls go on meanwhile
    lost_before = ami.lost_sends
    killed = time.monotonic()
    leader.process.send_signal(signal.SIGKILL)
    await leader.process.wait()
    playing = asyncio.create_task(play(ami, calls, args.rate, args))
    first = None
    deadline = killed + FAILOVER_WAIT
    while first is None and time.monotonic() < deadline:
        after = [at for group in watched for at in group.links_up if at > killed]
        first = min(after) if after else None
        await asyncio.sleep(0.01)
    await playing
    if first is not None:
        result.failovers.append(first - killed)
    result.lost_calls.append((ami.lost_sends - lost_before) // 5)  # 5 writes a call
    await leader.start()  # back, as a follower now
    index = nodes.index(leader)
    groups[index].close()
    fresh = StampedClients(groups[index].specs)
    await fresh.connect("127.0.0.1", leader.port)
    groups[index] = fresh
    await asyncio.sleep(LEASE_SECONDS)


def report(result: Result) -> None:
    print(f"\n== {result.title}")
    p50, p99, top = quantiles(result.latencies)
    print(
        f"  pop latency, {len(result.latencies):,} deliveries: p50 {ms(p50)}  p99 {ms(p99)}  "
        f"max {ms(top)}; missing {result.missing}"
    )
    if result.failovers:
        print(
            "  failover (leader killed -> the new leader's link up, at a client): "
            + ", ".join(f"{s:.2f} s" for s in result.failovers)
            + f"; mean {statistics.mean(result.failovers):.2f} s (lease {LEASE_SECONDS:g} s)"
        )
        print(f"  calls rung while no node led the link (lost): {result.lost_calls}")


async def main(args: argparse.Namespace) -> None:
    specs = population(args.clients, args.receptionists, False)
    raise_fd_limit(4 * len(specs) + 200)
    print(
        f"clients: {len(specs)} ({args.receptionists} receptionists), {args.rate:g} calls/s "
        f"for {args.seconds:g} s; NATS at {NATS_URL}"
    )
    results = []
    async with scratch_postgres("cti_bench_cluster_one") as url:
        if url is None:
            return
        results.append(await run(args, url, specs, clustered=False))
        report(results[-1])
    async with scratch_postgres("cti_bench_cluster") as url:
        assert url is not None
        results.append(await run(args, url, specs, clustered=True))
        report(results[-1])
    one, many = (quantiles(r.latencies) for r in results)
    print(f"\n== through NATS / one node: p50 {many[0] / one[0]:.2f}x, p99 {many[1] / one[1]:.2f}x")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--receptionists", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--ring-seconds", type=float, default=1.0)
    parser.add_argument("--talk-seconds", type=float, default=1.5)
    parser.add_argument("--failovers", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
