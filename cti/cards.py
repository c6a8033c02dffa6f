"""Screen-pop frames from bus events: the cards (``cti.screenpop.PopBoard``, sans-I/O)
plus what needs a loop: the history and tasks loaded for a card, and line states
coalesced. Frames go out through ``publish`` (the feed's ``append``), which numbers them.

Line states change in bursts (a ring group sets several phones ringing at once) and go
to everyone, so they are coalesced into one ``lines`` frame at most every LINES_INTERVAL;
less often with many viewers, since each frame is a write to every one of them: the
interval grows so that line states cost about LINE_SENDS_PER_SECOND writes a second
(200 ms up to 200 viewers, 1 s for 1,000; bench/screenpop.py).

A card is sent whole each time it changes (a client replaces it by its call id); once the
directory has said who calls, the card is filled in with that client's recent history
and open tasks by ``enrich``, in a task of its own so that no pop waits for it (or, for
an enricher that reads ``at_once``, right after the frame is out). Where the directory
can answer without waiting (the built-in one on SQLite: a read of tens of microseconds
on this thread), ``identify_now`` fills a new card in before its first frame: it shows
the client and the responsible manager at once, in one frame instead of two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from cti.events import CallIdentified, CallRinging, DomainEvent, LineStateChanged
from cti.screenpop import PopBoard, PopCard

log = logging.getLogger("cti.cards")

LINES_INTERVAL = 0.2
LINE_SENDS_PER_SECOND = 1000

# (kind, audience: the extensions it concerns, None: everyone, data) -> frame sent
Publish = Callable[[str, frozenset[str] | None, Any], object]
History = tuple[list[dict[str, Any]], list[dict[str, Any]]]  # (history, open tasks)


class Enricher(Protocol):
    """(call id, number, directory match) -> a pop card's history and open tasks."""

    at_once: bool  # ``now`` answers without waiting (else only the call does)

    async def __call__(
        self, call_id: str, number: str | None, match: dict[str, Any] | None
    ) -> History: ...

    def now(self, call_id: str, number: str | None, match: dict[str, Any] | None) -> History: ...


# A ringing call's ``call.identified``, when the directory can say at once; else None.
IdentifyNow = Callable[[CallRinging], CallIdentified | None]


class PopCards:
    """Call and line-state events in, ``pop`` and ``lines`` frames out."""

    def __init__(
        self,
        publish: Publish,
        *,
        line_of: Callable[[str], str | None],
        enrich: Enricher | None = None,
        identify_now: IdentifyNow | None = None,
        viewers: Callable[[], int] = lambda: 0,
    ) -> None:
        self.publish = publish
        self.viewers = viewers
        self.line_of = line_of
        self.enrich = enrich
        self.identify_now = identify_now
        self.board = PopBoard()
        self._changed_lines: dict[str, str] = {}
        self._lines_flush: asyncio.TimerHandle | None = None
        self._enrichments: set[asyncio.Task[None]] = set()

    def handle(self, event: DomainEvent) -> None:
        if isinstance(event, LineStateChanged):
            self._changed_lines[event.extension] = event.state.value
            if self._lines_flush is None:
                loop = asyncio.get_running_loop()
                interval = max(LINES_INTERVAL, self.viewers() / LINE_SENDS_PER_SECOND)
                self._lines_flush = loop.call_later(interval, self._flush_lines)
            return
        card = self.board.feed(event)
        if card is None:
            return
        if isinstance(event, CallRinging) and card.lookup == "pending":
            identified = self.identify_now(event) if self.identify_now else None
            if identified is not None and self.board.feed(identified) is not None:
                event = identified  # the card shows who calls from its first frame
        self._publish_card(card)
        if isinstance(event, CallIdentified) and self.enrich is not None:
            self._start_enrichment(card)

    def visible(
        self, sees_all: bool, extension: str | None, line_of: Callable[[str], str | None]
    ) -> list[dict[str, Any]]:
        """The cards of the calls in progress a viewer may see, for its resync."""
        return [
            card.to_dict(line_of)
            for card in self.board.cards.values()
            if sees_all or extension in card.extensions
        ]

    async def stop(self) -> None:
        tasks = list(self._enrichments)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._lines_flush is not None:
            self._lines_flush.cancel()
        close = getattr(self.enrich, "close", None)  # e.g. PopHistory's reader
        if close is not None:
            await close()

    def _publish_card(self, card: PopCard) -> None:
        self.publish("pop", frozenset(card.extensions), card.to_dict(self.line_of))

    def _flush_lines(self) -> None:
        self._lines_flush = None
        changed, self._changed_lines = self._changed_lines, {}
        # Every PBX's view of each line, not only the one that spoke last.
        changed = {ext: self.line_of(ext) or state for ext, state in changed.items()}
        if changed:
            try:
                self.publish("lines", None, changed)
            except Exception:
                log.exception("live feed skipped a lines frame")

    def _enrich_now(self, card: PopCard) -> None:
        assert self.enrich is not None
        try:
            self._fill(card, self.enrich.now(card.call_id, card.number, card.match))
        except Exception:
            log.exception("could not load the history for a screen pop")

    def _fill(self, card: PopCard, found: History) -> None:
        changed = self.board.enrich(card.call_id, *found)
        if changed is not None:
            self._publish_card(changed)

    def _start_enrichment(self, card: PopCard) -> None:
        loop = asyncio.get_running_loop()
        if self.enrich is not None and self.enrich.at_once:  # after this frame, no task
            loop.call_soon(self._enrich_now, card)
            return

        async def enrich() -> None:
            assert self.enrich is not None
            try:
                self._fill(card, await self.enrich(card.call_id, card.number, card.match))
            except Exception:
                log.exception("could not load the history for a screen pop")

        task = loop.create_task(enrich())
        self._enrichments.add(task)
        task.add_done_callback(self._enrichments.discard)
