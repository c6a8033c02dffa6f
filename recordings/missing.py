"""Recordings the PBX announced whose file never came (MixMonitor started, but the call
was missed or abandoned before anything was written, or the file stayed empty).

Once a call has been over for ``[recordings] missing_after_seconds``, each of its
recordings not settled yet (``size`` None) is settled: the file's size if it holds audio,
else 0 and one warning naming the call and the file. Settled rows are not looked at
again, so each missing recording is logged once, across restarts too; the API tells
listeners ``missing`` from the same rule (``RecordingStore.state_of``), whether or not
this has run yet.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select

from cti.db.models import CallRecord, Recording
from cti.domain import utcnow
from recordings.store import RecordingStore

log = logging.getLogger("cti.recordings.missing")

BATCH = 500


class MissingRecordings:
    def __init__(self, store: RecordingStore) -> None:
        self.store = store

    async def run(self, now: datetime | None = None) -> int:
        """Settle the recordings whose wait is over; returns how many were missing."""
        now = now or utcnow()
        ended_before = now - self.store.missing_after
        missing, after = 0, 0
        while True:
            async with self.store.sessions() as session:
                found = (
                    await session.execute(
                        select(Recording, CallRecord)
                        .join(CallRecord, CallRecord.id == Recording.call_id)
                        .where(
                            Recording.size.is_(None),
                            Recording.deleted_at.is_(None),
                            Recording.id > after,
                            CallRecord.in_progress.is_(False),
                            func.coalesce(CallRecord.ended_at, CallRecord.started_at)
                            < ended_before,
                        )
                        .order_by(Recording.id)
                        .limit(BATCH)
                    )
                ).all()
                if not found:
                    break
                after = found[-1][0].id
                for recording, call in found:
                    file = self.store.audio_of(recording.path)
                    if file is not None:
                        recording.size = file.stat().st_size
                        continue
                    recording.size = 0
                    missing += 1
                    there = self.store.file_of(recording.path)
                    log.warning(
                        "a call's recording never arrived: %s",
                        "the file is empty" if there and there.exists() else "there is no file",
                        extra={
                            "fields": {
                                "call": call.id,
                                "recording": recording.id,
                                "path": recording.path,
                                "call_ended": call.ended_at.isoformat() if call.ended_at else None,
                            }
                        },
                    )
                await session.commit()
        return missing
