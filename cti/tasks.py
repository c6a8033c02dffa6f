"""The service's long-running tasks, watched: one that dies of an exception is a fault.

A consumer loop (the live feed, the caller identifier, the call store's writer, the
outboxes) skips and logs an event it cannot handle and goes on; should a task die all
the same, its end is logged at once with its exception, and ``/healthz`` shows it dead
(status ``degraded``) until the service restarts. A task that returns (its loop saw the
service stopping) or is cancelled ended on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("cti.tasks")


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (None: nothing to do) and wait until it has ended."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class TaskMonitor:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._dead: dict[str, str] = {}

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coroutine`` as a task that lasts until the service stops it."""
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks[name] = task
        self._dead.pop(name, None)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        name = task.get_name()
        if self._tasks.get(name) is task:
            del self._tasks[name]
        error = None if task.cancelled() else task.exception()
        if error is None:
            return  # cancelled or returned: stopped on purpose
        log.error("background task %s died", name, exc_info=error)
        self._dead[name] = f"{type(error).__name__}: {error}"[:300]

    def status(self) -> dict[str, object]:
        """For /healthz: the running tasks' names, and the dead ones with why."""
        return {
            "running": sorted(self._tasks),
            "dead": [{"name": n, "error": why} for n, why in sorted(self._dead.items())],
        }

    @property
    def all_alive(self) -> bool:
        return not self._dead
