"""A PBX link as every node sees it: driven here while this node leads it, else a command
travels to the node that does (``Messaging.command``), so any node answers any API call.

``ClusterPbx`` is the ``PbxAdapter`` the rest of the service is given: ``dial``,
``transfer`` and the others run on the local adapter when this node leads the link, and
are sent to the leader otherwise; the leader's ``serve`` answers them. A started adapter
is made afresh each time this node takes the link over (``build``), from the calls the
log holds in progress, as after a restart. Its optional parts (a cloud PBX's
``webhook``, an SMDR adapter's ``status`` and ``rejected``) are offered as its type has
them, and travel the same way.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from cti.calls import Call
from cti.cluster.messaging import Messaging
from cti.domain import LineState
from cti.pbx import (
    DialPlaced,
    PbxAdapter,
    PbxCallNotFound,
    PbxError,
    PbxLinkDown,
    PbxRefused,
    PbxUnsupported,
    WebhookRequest,
    WebhookResponse,
)

log = logging.getLogger("cti.cluster")

COMMAND_SECONDS = 10.0  # a command's answer from the leader (an Originate may take seconds)
ERRORS: dict[str, type[PbxError]] = {
    cls.__name__: cls for cls in (PbxLinkDown, PbxCallNotFound, PbxRefused, PbxUnsupported)
}
OPTIONAL = ("webhook", "status", "rejected")  # what only some adapters have


class ClusterPbx:
    def __init__(
        self,
        name: str,
        template: PbxAdapter,
        messaging: Messaging,
        *,
        leading: Callable[[], bool],
    ) -> None:
        self.name = name
        self.template = template  # never started: what this adapter type can do
        self.messaging = messaging
        self.leading = leading
        self.active: PbxAdapter | None = None  # started, while this node leads the link

    @property
    def local(self) -> PbxAdapter | None:
        return self.active if self.leading() else None

    # -- the PbxAdapter interface, here or at the leader ----------------------------------

    async def start(self, restore: list[Call]) -> None:  # the cluster starts ``active``
        raise NotImplementedError("a link is started by the node that leads it")

    async def stop(self) -> None:
        if self.active is not None:
            await self.active.stop()

    @property
    def connected(self) -> bool:
        adapter = self.local
        return adapter.connected if adapter is not None else False

    def lines(self) -> Mapping[str, LineState]:
        adapter = self.local
        return adapter.lines() if adapter is not None else {}

    def live_call(self, call_id: str) -> Call | None:
        adapter = self.local
        return adapter.live_call(call_id) if adapter is not None else None

    async def find_live_call(self, call_id: str) -> Call | None:
        """``live_call``, asked of the leader when it is another node."""
        if (adapter := self.local) is not None:
            return adapter.live_call(call_id)
        found = await self._command("live_call", call_id=call_id)
        return None if found is None else Call.from_dict(found)

    async def current_lines(self) -> Mapping[str, LineState]:
        """``lines``, asked of the leader when it is another node."""
        if (adapter := self.local) is not None:
            return adapter.lines()
        try:
            found = await self._command("lines")
        except PbxLinkDown:
            return {}
        return {ext: LineState(state) for ext, state in found.items()}

    async def dial(self, extension: str, number: str) -> DialPlaced:
        if (adapter := self.local) is not None:
            return await adapter.dial(extension, number)
        return DialPlaced(**await self._command("dial", extension=extension, number=number))

    async def transfer(self, call_id: str, extension: str, *, attended: bool = False) -> None:
        if (adapter := self.local) is not None:
            return await adapter.transfer(call_id, extension, attended=attended)
        await self._command("transfer", call_id=call_id, extension=extension, attended=attended)

    async def hang_up(self, call_id: str) -> None:
        if (adapter := self.local) is not None:
            return await adapter.hang_up(call_id)
        await self._command("hang_up", call_id=call_id)

    async def start_recording(self, call_id: str) -> None:
        if (adapter := self.local) is not None:
            return await adapter.start_recording(call_id)
        await self._command("start_recording", call_id=call_id)

    async def stop_recording(self, call_id: str) -> None:
        if (adapter := self.local) is not None:
            return await adapter.stop_recording(call_id)
        await self._command("stop_recording", call_id=call_id)

    @property
    def sends_faxes(self) -> bool:
        return self.template.sends_faxes

    async def send_fax(self, number: str, file: str, request_id: str) -> None:
        if (adapter := self.local) is not None:
            return await adapter.send_fax(number, file, request_id)
        await self._command("send_fax", number=number, file=file, request_id=request_id)

    def calls_named_by(self, file_name: str) -> list[str]:
        # Made of the file's name alone, the same on every node.
        return (self.local or self.template).calls_named_by(file_name)

    def __getattr__(self, name: str) -> Any:
        """The optional parts, as this adapter type has them."""
        if name not in OPTIONAL or not hasattr(self.template, name):
            raise AttributeError(name)
        return getattr(self, f"_{name}")

    async def _webhook(self, request: WebhookRequest) -> WebhookResponse:
        if (adapter := self.local) is not None:
            return await adapter.webhook(request)  # type: ignore[attr-defined]
        fields = asdict(request)
        fields["body"] = base64.b64encode(request.body).decode()
        try:
            answer = await self._command("webhook", **fields)
        except PbxLinkDown:  # the provider retries a refused event
            return WebhookResponse(503, "no node leads this PBX now")
        return WebhookResponse(**answer)

    def _status(self) -> dict[str, Any]:
        adapter = self.local
        return adapter.status() if adapter is not None else {"led_here": False}  # type: ignore[attr-defined]

    def _rejected(self, limit: int = 50) -> list[dict[str, str]]:
        adapter = self.local
        return adapter.rejected(limit) if adapter is not None else []  # type: ignore[attr-defined]

    # -- the wire ---------------------------------------------------------------------------

    async def _command(self, op: str, **args: Any) -> Any:
        reply = await self.messaging.command(self.name, {"op": op, "args": args}, COMMAND_SECONDS)
        if reply is None:
            raise PbxLinkDown(f"no node leads PBX {self.name!r} now")
        if "error" in reply:
            raise ERRORS.get(reply["error"], PbxRefused)(reply.get("message", ""))
        return reply.get("result")

    async def serve(self, request: dict[str, Any]) -> dict[str, Any]:
        """A command from another node, for this node's adapter (it leads the link)."""
        adapter = self.local
        if adapter is None:
            return {"error": "PbxLinkDown", "message": f"this node no longer leads {self.name!r}"}
        op, args = request.get("op"), request.get("args") or {}
        try:
            return {"result": await _carry_out(adapter, op, args)}
        except PbxError as e:
            return {"error": type(e).__name__, "message": str(e)}


async def _carry_out(adapter: PbxAdapter, op: object, args: dict[str, Any]) -> Any:
    match op:
        case "dial":
            return asdict(await adapter.dial(args["extension"], args["number"]))
        case "transfer":
            await adapter.transfer(
                args["call_id"], args["extension"], attended=bool(args.get("attended"))
            )
        case "hang_up":
            await adapter.hang_up(args["call_id"])
        case "start_recording":
            await adapter.start_recording(args["call_id"])
        case "stop_recording":
            await adapter.stop_recording(args["call_id"])
        case "send_fax":
            await adapter.send_fax(args["number"], args["file"], args["request_id"])
        case "live_call":
            call = adapter.live_call(args["call_id"])
            return None if call is None else call.to_dict()
        case "lines":
            return {ext: state.value for ext, state in adapter.lines().items()}
        case "webhook":
            fields = {**args, "body": base64.b64decode(args["body"])}
            answer = await adapter.webhook(WebhookRequest(**fields))  # type: ignore[attr-defined]
            return asdict(answer)
        case _:
            raise PbxUnsupported(f"no such command: {op!r}")
    return None
