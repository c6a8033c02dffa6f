"""The one thing the core knows about a phone system: the ``PbxAdapter`` interface.

An adapter turns its PBX's protocol into the core's call events (published on the bus,
the calls handed to the call store) and the core's commands into the PBX's actions.
The core asks it for its lines and live calls, and commands it: dial, transfer, hang
up, record, fax. Failures come back as the exceptions below, whatever the PBX said.

Adapters are plugins. Each package under ``pbx_adapters/`` offers a ``PbxPlugin`` (its
``[[pbx]]`` options and how to build it) under the ``cti.pbx_adapters`` entry point,
named by its ``type``; ``build_pbx`` picks one by that name. Adding a PBX is adding a
package and one line to ``[project.entry-points."cti.pbx_adapters"]`` in pyproject.toml:
nothing in the core changes, and the core imports no adapter.
"""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, SecretStr, StringConstraints

from cti.domain import LineState, known_time_zone, utcnow

if TYPE_CHECKING:
    from pathlib import Path

    from prometheus_client import CollectorRegistry, Counter

    from cti.bus import EventBus
    from cti.calls import Call, CallSink
    from cti.directory import Directory
    from cti.links import LinkRegistry
    from cti.tasks import TaskMonitor

ENTRY_POINT_GROUP = "cti.pbx_adapters"

LinkName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class PbxError(Exception):
    """A command the PBX did not carry out; the message is worded for the user."""


class PbxLinkDown(PbxError):
    """The PBX is not connected: the command was not sent (or its answer never came)."""


class PbxCallNotFound(PbxError):
    """The PBX has no live call by that id, or no party of it to act on."""


class PbxRefused(PbxError):
    """The PBX answered the command with an error (its reason is the message)."""


class PbxUnsupported(PbxError):
    """This PBX (or its adapter) cannot do that."""


@dataclass(frozen=True, slots=True)
class DialPlaced:
    """A click-to-dial the PBX took; its outcome follows as an ``OriginateResult``."""

    request_id: str
    extension: str
    number: str  # the digits sent to the PBX


class PbxSettings(BaseModel):
    """What every ``[[pbx]]`` entry has; each adapter's settings add its own options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: LinkName = ""  # empty: "pbx<index>"
    type: str
    enabled: bool = True

    def secrets(self) -> list[str]:
        """Every secret option's value, for the log redactor."""
        values = [getattr(self, key) for key in type(self).model_fields]
        return [v.get_secret_value() for v in values if isinstance(v, SecretStr)]


def regular_expressions(
    patterns: list[str], *, group: str | None = None, names: str = ""
) -> list[str]:
    """For an adapter's settings validators: ``patterns`` compile (and each has the
    named ``group``, which ``names`` something); ValueError saying which one does not."""
    for pattern in patterns:
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"{pattern!r} is not a regular expression: {e}") from None
        if group is not None and group not in compiled.groupindex:
            raise ValueError(f"{pattern!r} needs a group (?P<{group}>...) for {names}")
    return patterns


def time_zone_name(name: str) -> str:
    """For an adapter's settings validators: ``name`` is an IANA time zone, or empty
    (the office's); ValueError otherwise."""
    if name and not known_time_zone(name):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Moscow)")
    return name


_COUNTERS: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, Counter]] = (
    weakref.WeakKeyDictionary()
)


def adapter_counter(
    context: PbxContext, name: str, documentation: str, labels: list[str]
) -> Counter | None:
    """A Prometheus counter in the service's registry, made once however many adapters
    ask for it (several links of one type share it, told apart by their labels); None
    when the context has no registry."""
    from prometheus_client import Counter

    if context.metrics is None:
        return None
    made = _COUNTERS.setdefault(context.metrics, {})
    if name not in made:
        made[name] = Counter(name, documentation, labels, registry=context.metrics)
    return made[name]


@dataclass(frozen=True)
class PbxContext:
    """What the core gives every adapter it builds."""

    region: str  # for numbers written without a country code
    bus: EventBus  # where call events go
    links: LinkRegistry  # where the link's state goes (registered under the adapter's name)
    store: CallSink
    directory: Directory  # for the PBX's own questions (caller name, routing)
    tasks: TaskMonitor | None = None
    clock: Callable[[], datetime] = utcnow
    time_zone: str = "UTC"  # the office's, for PBXs that write wall-clock times
    data_dir: Path | None = None  # where an adapter may keep files of its own
    metrics: CollectorRegistry | None = None  # where an adapter may add its counters
    recordings_dir: Path | None = None  # where a recording an adapter fetches is written


class PbxAdapter(Protocol):
    """One configured PBX: its link, its calls and its commands."""

    name: str

    async def start(self, restore: list[Call]) -> None:
        """Connect (and keep reconnecting); ``restore``: the calls stored as in progress."""
        ...

    async def stop(self) -> None: ...

    @property
    def connected(self) -> bool: ...

    def lines(self) -> Mapping[str, LineState]:
        """Every extension's line state the PBX has told of (a read-only view)."""
        ...

    def live_call(self, call_id: str) -> Call | None:
        """The call as the adapter follows it now, if it is in progress on this PBX."""
        ...

    async def dial(self, extension: str, number: str) -> DialPlaced:
        """Click-to-dial: ring ``extension``, then dial ``number`` from it."""
        ...

    async def transfer(self, call_id: str, extension: str, *, attended: bool = False) -> None:
        """Send the outside party of a live call to ``extension``; returns once the PBX
        took the command (the move itself arrives as a ``call.transferred``)."""
        ...

    async def hang_up(self, call_id: str) -> None: ...

    async def start_recording(self, call_id: str) -> None: ...

    async def stop_recording(self, call_id: str) -> None: ...

    @property
    def sends_faxes(self) -> bool:
        """Whether ``send_fax`` can work here (configured, supported)."""
        ...

    async def send_fax(self, number: str, file: str, request_id: str) -> None:
        """Dial ``number`` and send it the TIFF-F ``file`` (a path as the PBX names it).
        Returns once the PBX took the request; how it went arrives as a ``FaxAttempt``
        event with ``request_id``."""
        ...

    def calls_named_by(self, file_name: str) -> list[str]:
        """Ids of calls this PBX's references in a file name point at (a recording the
        PBX named after its own call id), most likely first; [] when none."""
        ...


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """An HTTP request a cloud PBX sent to ``/pbx/<name>/<path>``, as the adapter sees it:
    no token came with it, so the adapter checks the provider's signature first."""

    method: str
    path: str  # after /pbx/<name>/
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    remote: str


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    status: int = 200
    text: str = ""
    content_type: str = "text/plain"


class WebhookReceiver(Protocol):
    """An adapter the PBX calls over HTTP (a cloud PBX's event webhooks)."""

    async def webhook(self, request: WebhookRequest) -> WebhookResponse: ...


class PbxService(Protocol):
    """Something an adapter package runs beside its links (a server the PBX calls)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class PbxPlugin:
    """An adapter package's offer: its ``[[pbx]]`` options and how to build it."""

    settings: type[PbxSettings]
    build: Callable[[Any, PbxContext], PbxAdapter]
    # Top-level configuration sections the package owns besides its [[pbx]] options
    # (e.g. for a server the PBX calls, or a script that runs on the PBX's host)...
    sections: dict[str, type[BaseModel]] = field(default_factory=dict)
    # ...and what it runs from them with the service, given {section name: its values}.
    services: Callable[[dict[str, Any], PbxContext], list[PbxService]] | None = None


@functools.cache
def plugins() -> dict[str, PbxPlugin]:
    """The installed adapters by ``type``."""
    return {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}


def build_pbx(settings: PbxSettings, context: PbxContext) -> PbxAdapter:
    """The adapter ``settings.type`` names (the configuration has checked it exists)."""
    return plugins()[settings.type].build(settings, context)
