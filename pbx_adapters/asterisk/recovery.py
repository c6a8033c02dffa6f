"""What the live feed missed, from the PBX's CDR: run after every (re)connect.

Two things come of it. Calls the tracker followed whose end it did not see (the link
was down) are closed as the CDR says they ended (``CallTracker.resync``), instead of
"unknown". Calls that came and went entirely while the link or the service was down
are stored from the CDR, marked ``recovered_from_cdr``; a missed one opens a callback
task like any other (the call store's follow-ups do that). Idempotent: a call that is
followed now, ended live, or is stored already is never written again, so any number of
reconnects and restarts reading the same rows add each call once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from cti.bus import EventBus
from cti.calls import Call, CallSink
from cti.events import CallEnded
from pbx_adapters.asterisk.cdr import CdrCalls
from pbx_adapters.asterisk.cdr_reader import CdrReader
from pbx_adapters.asterisk.channels import ChannelMap
from pbx_adapters.asterisk.settings import AsteriskSettings

log = logging.getLogger("cti.asterisk.cdr")

READ_TIMEOUT = 5.0  # a CDR database that does not answer in time is skipped this round
MARGIN = timedelta(minutes=2)  # rows from a little before the link went down


class CdrRecovery:
    def __init__(self, config: AsteriskSettings, channel_map: ChannelMap, region: str) -> None:
        assert config.cdr_url is not None
        self.reader = CdrReader(
            config.cdr_url.get_secret_value(), config.cdr_table, config.cdr_timezone
        )
        self.calls = CdrCalls(config.name, channel_map, region, config.inbound_contexts)
        self.lookback = timedelta(hours=config.cdr_lookback_hours)
        self.pbx = config.name
        self.failing = False  # logged once per outage of the CDR database

    def window_start(
        self, vanished: list[Call], lost_at: datetime | None, now: datetime
    ) -> datetime:
        """Since when to read: the earliest call that ended unseen, or the moment the
        link was lost; at start-up, ``cdr_lookback_hours`` back."""
        moments = [call.started_at for call in vanished]
        if lost_at is not None:
            moments.append(lost_at)
        floor = now - self.lookback
        return max(floor, min(moments) - MARGIN) if moments else floor

    async def records(self, since: datetime) -> dict[str, Call]:
        """The CDR's calls since then, by Linkedid; empty when the CDR cannot be read."""
        try:
            rows = await self.reader.rows_since(since)
        except Exception as e:  # a CDR database down must not keep the link down
            if not self.failing:
                log.warning(
                    "cannot read the CDR: %s", type(e).__name__, extra={"fields": {"pbx": self.pbx}}
                )
            self.failing = True
            return {}
        if self.failing:
            log.info("the CDR can be read again", extra={"fields": {"pbx": self.pbx}})
        self.failing = False
        return self.calls.by_linkedid(rows)

    async def store_unseen(
        self,
        records: dict[str, Call],
        followed: Callable[[str], bool],
        store: CallSink,
        bus: EventBus,
    ) -> list[Call]:
        """Store the calls nobody saw: not ``followed`` by the tracker, not stored yet."""
        candidates = [call for call in records.values() if not followed(call.id)]
        if not candidates:
            return []
        known = await store.known([call.id for call in candidates])
        new = [call for call in candidates if call.id not in known]
        if not new:
            return []
        store.save(new)
        for call in new:
            assert call.outcome is not None and call.ended_at is not None
            bus.publish_nowait(
                CallEnded(
                    call_id=call.id,
                    outcome=call.outcome,
                    missed=call.missed,
                    involved_extensions=call.extensions(),
                    at=call.ended_at,
                )
            )
        log.info(
            "calls recovered from the CDR",
            extra={
                "fields": {"pbx": self.pbx, "calls": len(new), "missed": sum(c.missed for c in new)}
            },
        )
        return new

    async def close(self) -> None:
        await self.reader.close()
