"""The scripted PBX's asyncio shell: plays its script after start, answers commands."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from types import MappingProxyType

from cti.calls import Call
from cti.domain import LineState
from cti.events import FaxAttempt, OriginateResult
from cti.pbx import DialPlaced, PbxCallNotFound, PbxContext, PbxLinkDown, PbxUnsupported
from pbx_adapters.scripted.calls import ScriptedCalls
from pbx_adapters.scripted.settings import ScriptedSettings, Step

log = logging.getLogger("cti.scripted")


class ScriptedAdapter:
    def __init__(self, settings: ScriptedSettings, context: PbxContext) -> None:
        self.name = settings.name
        self.settings = settings
        self.context = context
        self.calls = ScriptedCalls(settings.name, context.region)
        self.dialled: list[DialPlaced] = []  # click-to-dials asked for, for tests to see
        self.faxed: list[tuple[str, str]] = []  # (number, file) of faxes sent
        self._up = False
        self._player: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._up

    async def start(self, restore: list[Call]) -> None:
        self._up = True
        await self.context.links.report(self.name, True, "scripted")
        self._player = asyncio.create_task(self._play_script(), name=f"scripted-{self.name}")

    async def stop(self) -> None:
        self._up = False
        if self._player is not None:
            self._player.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._player

    def play(self, step: Step) -> None:
        """Report one step now, as the PBX would."""
        for event in self.calls.apply(step, self.context.clock()):
            self.context.bus.publish_nowait(event)
        self.context.store.save(self.calls.take_changed())

    async def _play_script(self) -> None:
        for step in self.settings.script:
            await asyncio.sleep(step.after)
            try:
                self.play(step)
            except ValueError as e:  # a script error is the script's, not the service's
                log.warning("scripted PBX %s: %s", self.name, e)

    def lines(self) -> Mapping[str, LineState]:
        return MappingProxyType(self.calls.lines)  # a view: looked up per pop, never copied

    def live_call(self, call_id: str) -> Call | None:
        return self.calls.calls.get(call_id)

    def calls_named_by(self, file_name: str) -> list[str]:
        return [call_id for call_id in self.calls.calls if call_id.split(":", 1)[1] in file_name]

    async def dial(self, extension: str, number: str) -> DialPlaced:
        if not self._up:
            raise PbxLinkDown(f"PBX {self.name} is not connected")
        placed = DialPlaced(uuid.uuid4().hex, extension, number)
        self.dialled.append(placed)
        self.context.bus.publish_nowait(
            OriginateResult(
                request_id=placed.request_id, extension=extension, number=number, success=True
            )
        )
        return placed

    async def transfer(self, call_id: str, extension: str, *, attended: bool = False) -> None:
        call = self._live(call_id)
        self.play(Step(event="transfer", call=call.pbx_ref["script"], extension=extension))

    async def hang_up(self, call_id: str) -> None:
        call = self._live(call_id)
        self.play(Step(event="end", call=call.pbx_ref["script"]))

    async def start_recording(self, call_id: str) -> None:
        raise PbxUnsupported("the scripted PBX does not record")

    async def stop_recording(self, call_id: str) -> None:
        raise PbxUnsupported("the scripted PBX does not record")

    @property
    def sends_faxes(self) -> bool:
        return True

    async def send_fax(self, number: str, file: str, request_id: str) -> None:
        """Every fax "goes through" a second later: the demo's fax line."""
        if not self._up:
            raise PbxLinkDown(f"PBX {self.name} is not connected")
        self.faxed.append((number, file))
        attempt = FaxAttempt(request_id=request_id, success=True, connected=True)
        asyncio.get_running_loop().call_later(1.0, self.context.bus.publish_nowait, attempt)

    def _live(self, call_id: str) -> Call:
        call = self.calls.calls.get(call_id)
        if call is None:
            raise PbxCallNotFound(f"no live call {call_id!r} on PBX {self.name}")
        return call
