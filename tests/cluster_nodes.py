"""Several real ``cti serve`` processes on one PostgreSQL database and one NATS server
(docs/deploy.md), following the AMI simulator: for the tests of tests/test_cluster.py.

NATS: ``CTI_TEST_NATS_URL`` (default nats://127.0.0.1:4222, JetStream on); without one the
tests skip, unless ``CTI_TEST_REQUIRE_NATS=1`` (set by .ci/run), which fails them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lab import lab_pbx_toml

from cti.auth import create_user, issue_token
from cti.db.engine import create_engine, session_factory
from cti.db.migrate import upgrade

NATS_URL = os.environ.get("CTI_TEST_NATS_URL", "nats://127.0.0.1:4222")
REQUIRE_NATS = os.environ.get("CTI_TEST_REQUIRE_NATS") == "1"
SECRET = "cluster-secret"
LEASE_SECONDS = 2.0


async def nats_or_skip() -> None:
    import nats

    try:
        nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
        await nc.jetstream().account_info()
        await nc.close()
    except Exception as e:
        if REQUIRE_NATS:
            pytest.fail(f"NATS with JetStream at {NATS_URL} is required: {e!r}")
        pytest.skip(f"no NATS with JetStream at {NATS_URL} (set CTI_TEST_NATS_URL): {e!r}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.returncode is None, self.tail()
            health = await self.health()
            if health is not None and health["status"] == "ok":
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"node {self.name} never became healthy:\n{self.tail()}")

    async def health(self) -> dict[str, Any] | None:
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{self.url}/healthz", timeout=aiohttp.ClientTimeout(2)) as r:
                    return await r.json()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None

    async def leads(self) -> list[str]:
        health = await self.health()
        return [] if health is None else health.get("cluster", {}).get("leads", [])

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.signal(signal.SIGCONT)  # a paused node must be able to stop
        self.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Cluster:
    nodes: list[Node]
    db_url: str
    tokens: dict[str, str] = field(default_factory=dict)  # username -> token

    async def leader(self, duty: str = "pbx:lab", seconds: float = 30) -> Node:
        """The node that leads ``duty`` (waiting until one does)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process and node.process.returncode is None and duty in await node.leads():
                    return node
            await asyncio.sleep(0.1)
        raise AssertionError(
            f"no node leads {duty}:\n" + "\n".join(n.tail(1500) for n in self.nodes)
        )

    async def stop(self) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes))


def node_config(
    tmp: Path, name: str, port: int, db_url: str, ami_port: int, stream: str, extra: str = ""
) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(
        f"""
[server]
host = "127.0.0.1"
port = {port}
data_dir = "{tmp / name}"
ws_heartbeat_seconds = 5

[database]
url = "{db_url}"
auto_migrate = true

[cluster]
nats_url = "{NATS_URL}"
node = "{name}"
stream = "{stream}"
lease_seconds = {LEASE_SECONDS}
{lab_pbx_toml(ami_port, SECRET)}{extra}""",
        encoding="utf-8",
    )
    return path


async def start_cluster(
    tmp: Path, db_url: str, ami_port: int, count: int, extra: str = ""
) -> Cluster:
    """``count`` nodes; ``extra``: more of their configuration (TOML)."""
    stream = f"cti_test_{uuid.uuid4().hex[:10]}"
    nodes = []
    for index in range(count):
        name = f"node{index + 1}"
        port = free_port()
        config = node_config(tmp, name, port, db_url, ami_port, stream, extra)
        nodes.append(Node(name, port, config, tmp / f"{name}.log"))
    cluster = Cluster(nodes, db_url)
    cluster.tokens = await make_users(db_url)
    await asyncio.gather(*(node.start() for node in nodes))
    return cluster


async def make_users(db_url: str) -> dict[str, str]:
    engine = create_engine(db_url)
    try:
        await upgrade(engine)
        tokens = {}
        async with session_factory(engine)() as session:
            for username, role, extension in (
                ("reception", "receptionist", None),
                ("boss", "supervisor", None),
                ("anna", "operator", "101"),
            ):
                user = await create_user(session, username, role, extension=extension)
                tokens[username] = await issue_token(session, user, label="cluster test")
            await session.commit()
        return tokens
    finally:
        await engine.dispose()


class Desk:
    """A live connection on one node, resuming elsewhere when asked: its frames kept."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.frames: list[dict[str, Any]] = []
        self.hellos: list[dict[str, Any]] = []
        self.stream: str | None = None
        self.last_seq = 0
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, node: Node) -> dict[str, Any]:
        await self.close()
        self._http = aiohttp.ClientSession()
        params = {"stream": self.stream, "last_seq": str(self.last_seq)} if self.stream else {}
        self._ws = await self._http.ws_connect(
            f"{node.url}/ws", headers={"Authorization": f"Bearer {self.token}"}, params=params
        )
        hello = await self._ws.receive_json(timeout=10)
        assert hello["type"] == "hello", hello
        self.hellos.append(hello)
        self.stream = hello["stream"]
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return hello

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frame = msg.json()
            self.frames.append(frame)
            if frame["type"] not in ("heartbeat", "pong"):
                self.last_seq = max(self.last_seq, frame["seq"])

    def first_pops(self) -> dict[str, int]:
        """How many times each call was popped as ringing afresh (a first pop: a card
        not seen before, in a pop frame or a resync's state)."""
        seen: set[str] = set()
        counts: dict[str, int] = {}
        for frame in self.frames:
            cards = [frame["data"]] if frame["type"] == "pop" else []
            if frame["type"] == "resync":
                seen |= {card["call_id"] for card in frame["state"]["pops"]}
            for card in cards:
                if card["call_id"] not in seen:
                    seen.add(card["call_id"])
                    counts[card["call_id"]] = counts.get(card["call_id"], 0) + 1
        return counts

    def resyncs(self) -> list[str]:
        return [f["reason"] for f in self.frames if f["type"] == "resync"]

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        self._ws = self._http = self._reader = None

    @property
    def closed(self) -> bool:
        return self._ws is None or self._ws.closed
