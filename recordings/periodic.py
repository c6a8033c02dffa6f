"""A job run every so often in a task of its own; a failed round is logged, not fatal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("cti.recordings")


class Periodic:
    def __init__(self, name: str, seconds: float, job: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self.seconds = seconds
        self.job = job
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.job()
            except Exception:
                log.exception("%s failed; trying again in %s s", self.name, self.seconds)
            await asyncio.sleep(self.seconds)
