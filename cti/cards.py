"""Screen-pop frames from bus events: the cards (``cti.screenpop.PopBoard``, sans-I/O)
plus what needs a loop: the history and tasks loaded for a card, and line states
coalesced. Frames go out through ``publish`` (the feed's ``append``), which numbers them.

Line states change in bursts (a ring group sets several phones ringing at once) and go
to everyone, so they are coalesced into one ``lines`` frame at most every LINES_INTERVAL.

A card is sent whole each time it changes (a client replaces it by its call id); once the
directory has said who calls, the card is filled in with that client's recent history
and open tasks by ``enrich``, in a task of its own so that no pop waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cti.events import CallIdentified, DomainEvent, LineStateChanged
from cti.screenpop import PopBoard, PopCard

log = logging.getLogger("cti.cards")

LINES_INTERVAL = 0.2

# (kind, audience: the extensions it concerns, None: everyone, data) -> frame sent
Publish = Callable[[str, frozenset[str] | None, Any], object]
# (call id, number, directory match) -> (history, open tasks) for a pop card
Enricher = Callable[
    [str, str | None, dict[str, Any] | None],
    Awaitable[tuple[list[dict[str, Any]], list[dict[str, Any]]]],
]


class PopCards:
    """Call and line-state events in, ``pop`` and ``lines`` frames out."""

    def __init__(
        self,
        publish: Publish,
        *,
        line_of: Callable[[str], str | None],
        enrich: Enricher | None = None,
    ) -> None:
        self.publish = publish
        self.line_of = line_of
        self.enrich = enrich
        self.board = PopBoard()
        self._changed_lines: dict[str, str] = {}
        self._lines_flush: asyncio.TimerHandle | None = None
        self._enrichments: set[asyncio.Task[None]] = set()

    def handle(self, event: DomainEvent) -> None:
        if isinstance(event, LineStateChanged):
            self._changed_lines[event.extension] = event.state.value
            if self._lines_flush is None:
                loop = asyncio.get_running_loop()
                self._lines_flush = loop.call_later(LINES_INTERVAL, self._flush_lines)
            return
        card = self.board.feed(event)
        if card is not None:
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
            close()

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

    def _start_enrichment(self, card: PopCard) -> None:
        async def enrich() -> None:
            assert self.enrich is not None
            try:
                history, tasks = await self.enrich(card.call_id, card.number, card.match)
            except Exception:
                log.exception("could not load the history for a screen pop")
                return
            changed = self.board.enrich(card.call_id, history, tasks)
            if changed is not None:
                self._publish_card(changed)

        task = asyncio.get_running_loop().create_task(enrich())
        self._enrichments.add(task)
        task.add_done_callback(self._enrichments.discard)
