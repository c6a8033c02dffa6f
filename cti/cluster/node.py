"""This node among several (docs/deploy.md): its duties, each led by one node at a time.

A duty is a lease name (``pbx:<name>``, ``modem:<name>``, ``jobs``) with what to do when
this node takes it over and when it hands it over; the service says which
(``cti.service``). Every node competes for every duty it can do; the one that gets the
lease does it until it fails or stops, and another takes over within a few seconds.

Inside a write of the call log, ``fence`` checks again, in the database, that this node
still holds the lease of each link whose calls it writes: a node woken from a pause
writes nothing another node now owns.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from cti.cluster.leadership import Action, Leadership, Metrics
from cti.cluster.lease import Lease
from cti.cluster.messaging import Messaging
from cti.config import ClusterConfig

log = logging.getLogger("cti.cluster")

_ADVISORY_LOCKS = text(
    "SELECT pid, classid::bigint, objid::bigint FROM pg_locks "
    "WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
)


def asyncpg_dsn(database_url: str) -> str:
    """The service's SQLAlchemy URL as asyncpg takes it."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


class Cluster:
    def __init__(
        self,
        config: ClusterConfig,
        database_url: str,
        *,
        replay_seconds: float,
        registry: CollectorRegistry,
    ) -> None:
        self.config = config
        self.node = config.node or f"{socket.gethostname()}-{os.getpid()}"
        self.dsn = asyncpg_dsn(database_url)
        self.messaging = Messaging(
            config.nats_url.get_secret_value(), config.stream, self.node, replay_seconds
        )
        self.metrics = Metrics(registry)
        self.duties: dict[str, Leadership] = {}

    async def connect(self) -> None:
        await self.messaging.connect()
        log.info(
            "joined the cluster",
            extra={"fields": {"node": self.node, "stream": self.messaging.stream_id}},
        )

    def duty(self, name: str, elected: Action, lost: Action) -> Leadership:
        lease = Lease(self.dsn, name, self.config.lease_seconds, node=self.node)
        leadership = self.duties[name] = Leadership(lease, elected, lost, self.metrics)
        return leadership

    def start(self) -> None:
        for leadership in self.duties.values():
            leadership.start()

    async def stop(self) -> None:
        for leadership in self.duties.values():
            await leadership.stop()
        await self.messaging.close()

    def leads(self, name: str) -> bool:
        leadership = self.duties.get(name)
        return leadership is not None and leadership.held

    def status(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "leads": sorted(name for name, duty in self.duties.items() if duty.held),
            "nats": {
                "connected": self.messaging.connected,
                "stream": self.messaging.stream_id,
                "frames_published": self.messaging.published,
                "frames_lost": self.messaging.lost,
            },
        }

    def fence(self, conn: Connection, links: Iterable[str]) -> set[str]:
        """Of these links (PBXs, modems), the ones whose calls this node may write now:
        it holds the lease, and the database agrees (its lock is still this node's).
        The transaction is given a deadline as well: paused in the middle of it for half
        a lease, this node is cut off by the database and its writes rolled back, before
        another node can have taken the lease over (at least three quarters of one)."""
        deadline = int(self.config.lease_seconds * 500)
        conn.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = {deadline}"))
        held = {
            name: duty.lease
            for name in set(links)
            if (duty := self.duties.get(f"pbx:{name}") or self.duties.get(f"modem:{name}"))
            and duty.held
        }
        if not held:
            return set()
        locks = {(pid, classid, objid) for pid, classid, objid in conn.execute(_ADVISORY_LOCKS)}
        return {
            name
            for name, lease in held.items()
            if (lease.backend_pid, *_lock_ids(lease.key)) in locks
        }


def _lock_ids(key: int) -> tuple[int, int]:
    """(classid, objid) of a bigint advisory lock, as pg_locks shows it."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF
