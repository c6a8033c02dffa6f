"""Open live connections and the tokens they were opened with.

A WebSocket authenticates once, when it opens; the token may end afterwards (sign-out,
expiry, ``cti user revoke`` from another process, a disabled user). Every ``interval``
seconds one query finds which of the open connections' tokens still authenticate, and
the others are closed (4401). A revocation through this service's own API asks for that
check at once (``recheck_soon``). At shutdown every connection is closed (1001), so
stopping never waits for browsers to hang up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Protocol

from sqlalchemy.ext.asyncio import async_sessionmaker

from cti.auth import valid_token_ids
from cti.tasks import TaskMonitor, cancel

log = logging.getLogger("cti.sockets")


class Connection(Protocol):
    async def close(self, *, code: int, message: bytes) -> object: ...


CLOSE_UNAUTHORIZED = 4401  # application close codes mirror HTTP statuses
CLOSE_GOING_AWAY = 1001


class SocketGuard:
    def __init__(
        self, sessions: async_sessionmaker, tasks: TaskMonitor, interval: float = 3.0
    ) -> None:
        self.sessions = sessions
        self.tasks = tasks
        self.interval = interval
        self._open: dict[Connection, int] = {}  # connection -> its token's id
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = self.tasks.spawn(self._run(), "socket-guard")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    def add(self, connection: Connection, token_id: int) -> None:
        self._open[connection] = token_id

    def remove(self, connection: Connection) -> None:
        self._open.pop(connection, None)

    def recheck_soon(self) -> None:
        self._wakeup.set()

    async def close_all(self, reason: str = "the service is stopping") -> None:
        connections, self._open = self._open, {}
        await asyncio.gather(
            *(_close(c, CLOSE_GOING_AWAY, reason) for c in connections),
            return_exceptions=True,
        )

    async def recheck(self) -> int:
        """Close the connections whose token no longer authenticates; returns how many."""
        if not self._open:
            return 0
        snapshot = dict(self._open)
        async with self.sessions() as session:
            valid = await valid_token_ids(session, snapshot.values())
        ended = [c for c, token in snapshot.items() if token not in valid]
        for connection in ended:
            self._open.pop(connection, None)
        await asyncio.gather(
            *(_close(c, CLOSE_UNAUTHORIZED, "signed out or token ended") for c in ended),
            return_exceptions=True,
        )
        if ended:
            log.info("closed live connections whose token ended: %d", len(ended))
        return len(ended)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self.recheck()
            except Exception:
                log.exception("could not check the live connections' tokens; trying again")


def _close(connection: Connection, code: int, reason: str) -> Awaitable[object]:
    return connection.close(code=code, message=reason.encode())
