"""A job run every so often in a task of its own; a failed round is logged, not fatal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from cti.tasks import TaskMonitor, cancel

log = logging.getLogger("cti.periodic")


class Periodic:
    def __init__(
        self,
        name: str,
        seconds: float,
        job: Callable[[], Awaitable[object]],
        tasks: TaskMonitor | None = None,
    ) -> None:
        self.name = name
        self.seconds = seconds
        self.job = job
        self.tasks = tasks or TaskMonitor()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = self.tasks.spawn(self._run(), self.name)

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.job()
            except Exception:
                log.exception("%s failed; trying again in %s s", self.name, self.seconds)
            await asyncio.sleep(self.seconds)
