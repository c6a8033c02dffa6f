"""Call recordings: attaching files to calls, serving them, retention."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import async_sessionmaker

from cti.config import Config
from recordings.retention import Retention
from recordings.store import RecordingStore
from recordings.watcher import RecordingWatcher


@dataclass
class Recordings:
    """The store (a CallStore hook), the watcher and the retention task, as configured."""

    store: RecordingStore
    watcher: RecordingWatcher | None
    retention: Retention | None

    @classmethod
    def create(cls, sessions: async_sessionmaker, config: Config) -> Recordings:
        options = config.recordings
        store = RecordingStore(sessions, config.recordings_dir, options)
        watcher = None
        if options.watch_dir:
            watcher = RecordingWatcher(
                store,
                Path(options.watch_dir),
                every=options.watch_seconds,
                match_seconds=options.match_seconds,
                region=config.phone.default_region,
                pbx_names=[pbx.name for pbx in config.pbx],
            )
        retention = Retention(store, options.retention_days) if options.retention_days else None
        return cls(store, watcher, retention)

    def start(self) -> None:
        self.store.start()
        for task in (self.watcher, self.retention):
            if task is not None:
                task.start()

    async def stop(self) -> None:
        for task in (self.watcher, self.retention):
            if task is not None:
                await task.stop()
        await self.store.stop()
