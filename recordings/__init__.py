"""Call recordings: attaching files to calls, serving them, missing ones, retention."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cti.config import Config
from cti.periodic import Periodic
from cti.tasks import TaskMonitor
from recordings.missing import MissingRecordings
from recordings.retention import DAY, Retention
from recordings.store import RecordingStore
from recordings.watcher import RecordingWatcher

MISSING_CHECK_SECONDS = 60.0  # how often calls past missing_after_seconds are looked at


@dataclass
class Recordings:
    """The store (a CallStore hook), the watcher, the check for recordings that never
    came and the retention task, as configured."""

    store: RecordingStore
    missing: MissingRecordings
    retention: Retention | None
    jobs: list[Periodic]

    @classmethod
    def create(
        cls,
        store: RecordingStore,
        config: Config,
        tasks: TaskMonitor | None = None,
        *,
        calls_named_by: Callable[[str], list[str]] = lambda _name: [],
    ) -> Recordings:
        """``calls_named_by``: the calls a file's name refers to, as the PBX adapters
        read it (the watcher matches dropped files with it)."""
        options = config.recordings
        missing = MissingRecordings(store)
        every = min(MISSING_CHECK_SECONDS, options.missing_after_seconds)
        jobs = [Periodic("recordings-missing", every, missing.run, tasks)]
        if options.watch_dir:
            watcher = RecordingWatcher(
                store,
                Path(options.watch_dir),
                every=options.watch_seconds,
                match_seconds=options.match_seconds,
                region=config.phone.default_region,
                calls_named_by=calls_named_by,
            )
            jobs.append(Periodic("recordings-watcher", options.watch_seconds, watcher.scan, tasks))
        retention = None
        if options.retention_days:
            retention = Retention(store, options.retention_days)
            jobs.append(Periodic("recordings-retention", DAY, retention.run, tasks))  # at start too
        return cls(store, missing, retention, jobs)

    def start(self) -> None:
        self.store.start()
        for job in self.jobs:
            job.start()

    async def stop(self) -> None:
        for job in self.jobs:
            await job.stop()
        await self.store.stop()
