"""The question every screen pop, AGI lookup and missed call starts with: who is this?

The core depends on the ``Directory`` interface only; the built-in SQL directory and the
external CRM connectors implement it. ``InMemoryDirectory`` serves tests.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from cti.phone import to_e164


@dataclass(frozen=True, slots=True)
class ResponsibleManager:
    name: str
    extension: str | None = None
    phone: str | None = None  # E.164
    user_id: int | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """A directory answer for one phone number."""

    client_id: str
    client_name: str
    kind: Literal["company", "person"] = "company"
    contact_name: str | None = None
    manager: ResponsibleManager | None = None
    tags: tuple[str, ...] = ()
    crm_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        manager = self.manager
        return {
            "client_id": self.client_id,
            "client_name": self.client_name,
            "kind": self.kind,
            "contact_name": self.contact_name,
            "manager": None
            if manager is None
            else {
                "name": manager.name,
                "extension": manager.extension,
                "phone": manager.phone,
                "user_id": manager.user_id,
            },
            "tags": list(self.tags),
            "crm_url": self.crm_url,
        }


@dataclass(frozen=True, slots=True)
class SharedNumber:
    """A number several clients have: who they are (id, name), and nobody picked for it."""

    clients: tuple[tuple[str, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"shared_by": [{"id": cid, "name": name} for cid, name in self.clients]}


Found = Match | SharedNumber | None


async def search_by_number(directory: Directory, text: str, region: str, limit: int) -> list[Match]:
    """``search`` for a CRM that can only be asked by number: a number finds its client,
    anything else nothing."""
    number = to_e164(text, region)
    if number is None or limit < 1:
        return []
    match = await directory.lookup(number)
    return [match] if isinstance(match, Match) else []


class DirectoryUnavailable(Exception):
    """The directory could not be asked (breaker open, timeout, CRM error): not "unknown"."""


class Directory(Protocol):
    async def lookup(self, number: str) -> Found:
        """The client behind an E.164 number; the clients that share it (no guessing); or
        None when unknown."""
        ...

    async def search(self, text: str, limit: int = 20) -> list[Match]:
        """Clients whose name, contact or number contains ``text``."""
        ...


class Later(enum.Enum):
    """A directory's answer that needs waiting for (see ``lookup_now``)."""

    LATER = "later"


LATER = Later.LATER


def lookup_now(directory: Directory, number: str) -> Found | Later:
    """The answer without waiting, from a directory that can give one at once (the
    built-in one on SQLite: a read on this thread in microseconds), so that a screen pop
    shows the client from its first frame; ``LATER`` from any other (an external CRM)."""
    now = getattr(directory, "lookup_now", None)
    return LATER if now is None else now(number)


async def lookup_many(
    directory: Directory, numbers: Iterable[str | None], *, seconds_each: float = 2.0
) -> dict[str, Match]:
    """The clients behind a page of numbers (a call log page, an SMS list): one answer per
    distinct E.164 number; shared, unknown and unanswered numbers are left out, so a
    slow or broken CRM leaves the column empty rather than the page. A directory with a
    ``lookup_many`` of its own (the built-in one: one query) answers in one go."""
    wanted = sorted({n for n in numbers if n and n.startswith("+")})
    if not wanted:
        return {}
    batch = getattr(directory, "lookup_many", None)
    if batch is not None:
        return await batch(wanted)

    async def one(number: str) -> Match | None:
        try:
            async with asyncio.timeout(seconds_each):
                return await match_of(directory, number)
        except TimeoutError:
            return None

    answers = await asyncio.gather(*(one(n) for n in wanted))
    return {n: a for n, a in zip(wanted, answers, strict=True) if a is not None}


async def match_of(directory: Directory, number: str) -> Match | None:
    """The one client behind a number, when the directory can say (shared: nobody)."""
    try:
        found = await directory.lookup(number)
    except DirectoryUnavailable:
        return None
    return found if isinstance(found, Match) else None


def builtin_client_id(match: Match | None) -> int | None:
    """The built-in client's id: its directory's ids are integers in its own API
    (/api/clients/{id}); an external CRM's clients are not in our tables."""
    if match is None or not match.client_id.isdigit():
        return None
    return int(match.client_id)


def client_summary(match: Match | None) -> dict[str, Any] | None:
    """A client as lists show it beside a call or a message: id, name, manager."""
    if match is None:
        return None
    manager, builtin = match.manager, builtin_client_id(match)
    return {
        "id": match.client_id if builtin is None else builtin,
        "name": match.client_name,
        "manager": None
        if manager is None
        else {"name": manager.name, "extension": manager.extension},
    }


@dataclass
class InMemoryDirectory:
    """A directory held in a dict keyed by E.164 number."""

    entries: dict[str, Match] = field(default_factory=dict)

    def add(self, number: str, match: Match) -> None:
        self.entries[number] = match

    async def lookup(self, number: str) -> Match | None:
        return self.entries.get(number)

    async def search(self, text: str, limit: int = 20) -> list[Match]:
        needle = text.casefold()
        found: dict[str, Match] = {}
        for number, match in self.entries.items():
            haystack = f"{number} {match.client_name} {match.contact_name or ''}".casefold()
            if needle in haystack:
                found.setdefault(match.client_id, match)
        return list(found.values())[:limit]
