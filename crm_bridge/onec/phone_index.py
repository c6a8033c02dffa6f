"""The base's phone numbers, kept locally: OData cannot find a normalized number inside
the free text 1C stores, so the connector keeps number → owners here and asks 1C only to
confirm a hit. Sans-I/O: rows in, changes out; the refresh (``refresh.py``) does the I/O.

An owner is a partner, a contact person or a counterparty, by its reference. Each owner
is kept with the ``DataVersion`` it was read at: a refresh lists every owner's
``DataVersion`` (cheap) and re-reads the contact information of those that changed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
import phonenumbers

from cti.phone import NotAPhoneNumber, ParsedNumber, parse_number, to_e164

OwnerKind = Literal["partner", "contact", "counterparty"]
SNAPSHOT_VERSION = 1


@dataclass(frozen=True, slots=True, order=True)
class Owner:
    kind: OwnerKind
    ref: str


def numbers_in(stored: Any, presentation: Any, region: str) -> set[str]:
    """The E.164 numbers of one contact information row.

    ``stored`` is 1C's ``НомерТелефона`` (the number with its country and area codes,
    as digits or written; often empty in real bases); ``presentation`` the row's
    ``Представление`` as a person typed it, which may hold several numbers and an
    extension. Both are read; what phonenumbers does not accept as a valid number is
    left out (``НомерТелефонаБезКодов`` alone is never used: it lacks the codes)."""
    found: set[str] = set()
    if isinstance(stored, str) and stored.strip():
        text = stored.strip()
        number = to_e164(text, region)
        digits = re.sub(r"\D", "", text)
        if number is None and not text.startswith("+") and 10 <= len(digits) <= 15:
            number = to_e164("+" + digits, region)  # digits that start with the country code
        if number:
            found.add(number)
    if isinstance(presentation, str) and presentation.strip():
        try:  # one number as people write it, maybe with "доб. 12": parsed once
            written: ParsedNumber | None = parse_number(presentation, region)
        except NotAPhoneNumber:
            written = None
        if written is not None:
            if written.e164:
                found.add(written.e164)
            return found
        # Several numbers, or words around them: found in the text (3x slower).
        for hit in phonenumbers.PhoneNumberMatcher(presentation[:1000], region):
            found.add(phonenumbers.format_number(hit.number, phonenumbers.PhoneNumberFormat.E164))
    return found


class PhoneIndex:
    """number → owners, and each owner's numbers and ``DataVersion``."""

    def __init__(self) -> None:
        self._versions: dict[Owner, str] = {}
        self._numbers: dict[Owner, tuple[str, ...]] = {}
        self._owners: dict[str, set[Owner]] = {}

    def __len__(self) -> int:
        return len(self._owners)

    @property
    def owners(self) -> int:
        return len(self._versions)

    def find(self, number: str) -> list[Owner]:
        return sorted(self._owners.get(number, ()))

    def numbers_of(self, owner: Owner) -> tuple[str, ...]:
        return self._numbers.get(owner, ())

    def all_owners(self) -> list[Owner]:
        return list(self._versions)

    def known(self, kind: OwnerKind) -> dict[str, str]:
        """The refs of one kind, with the ``DataVersion`` each was read at."""
        return {o.ref: v for o, v in self._versions.items() if o.kind == kind}

    def put(self, owner: Owner, version: str, numbers: Iterable[str]) -> None:
        self._unlink(owner)
        kept = tuple(sorted(set(numbers)))
        self._versions[owner] = version
        if kept:
            self._numbers[owner] = kept
        for number in kept:
            self._owners.setdefault(number, set()).add(owner)

    def remove(self, owner: Owner) -> None:
        self._unlink(owner)
        self._versions.pop(owner, None)

    def _unlink(self, owner: Owner) -> None:
        for number in self._numbers.pop(owner, ()):
            owners = self._owners.get(number)
            if owners is not None:
                owners.discard(owner)
                if not owners:
                    del self._owners[number]

    def changes(self, kind: OwnerKind, live: Mapping[str, str]) -> tuple[list[str], list[str]]:
        """Compare the index with 1C's list of (ref → DataVersion) of one kind (deleted
        objects left out): the refs to read again, and the refs that are gone."""
        known = self.known(kind)
        changed = [ref for ref, version in live.items() if known.get(ref) != version]
        gone = [ref for ref in known if ref not in live]
        return changed, gone

    # -- a snapshot on disk, so that a restart does not read the whole base again ------

    def save(self, path: Path) -> None:
        owners = [
            [o.kind, o.ref, v, list(self._numbers.get(o, ()))] for o, v in self._versions.items()
        ]
        data = orjson.dumps({"version": SNAPSHOT_VERSION, "owners": owners})
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)  # never a half-written snapshot

    @classmethod
    def load(cls, path: Path) -> PhoneIndex:
        """The saved index; an empty one when there is none or it cannot be read."""
        index = cls()
        try:
            data = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return index
        if not isinstance(data, dict) or data.get("version") != SNAPSHOT_VERSION:
            return index
        for item in data.get("owners") or ():
            try:
                kind, ref, version, numbers = item
            except (TypeError, ValueError):
                continue
            if kind in ("partner", "contact", "counterparty"):
                index.put(Owner(kind, str(ref)), str(version), [str(n) for n in numbers])
        return index
