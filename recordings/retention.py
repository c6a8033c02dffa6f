"""Deleting recordings older than ``[recordings] retention_days``: at start-up, then daily.

The file goes; its row stays, marked deleted, so the call log still says there was one
(and the PBX announcing the same call again does not bring it back).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from cti.db.models import Recording
from cti.domain import utcnow
from recordings.store import RecordingStore

log = logging.getLogger("cti.recordings.retention")

DAY = 24 * 3600
BATCH = 500


class Retention:
    def __init__(self, store: RecordingStore, days: int) -> None:
        self.store = store
        self.days = days

    async def run(self, now: datetime | None = None) -> int:
        """Delete what is past retention; returns how many recordings went."""
        now = now or utcnow()
        cutoff = now - timedelta(days=self.days)
        deleted, oldest, after = 0, None, 0
        while True:
            async with self.store.sessions() as session:
                rows = (
                    await session.scalars(
                        select(Recording)
                        .where(
                            Recording.deleted_at.is_(None),
                            Recording.created_at < cutoff,
                            Recording.id > after,
                        )
                        .order_by(Recording.id)
                        .limit(BATCH)
                    )
                ).all()
                if not rows:
                    break
                after = rows[-1].id
                for recording in rows:
                    # Only a path inside the folder is touched; a symlink itself is
                    # removed, never what it points to.
                    if self.store.file_of(recording.path) is not None:
                        try:
                            (self.store.root / recording.path).unlink(missing_ok=True)
                        except OSError as e:
                            log.warning("cannot delete an old recording: %s", e)
                            continue
                    recording.deleted_at = now
                    deleted += 1
                    if oldest is None or recording.created_at < oldest:
                        oldest = recording.created_at
                await session.commit()
        if deleted and oldest is not None:
            log.info(
                "deleted %d recordings older than %d days, the oldest from %s",
                deleted,
                self.days,
                oldest.date().isoformat(),
                extra={"fields": {"count": deleted, "oldest": oldest.isoformat()}},
            )
        return deleted
