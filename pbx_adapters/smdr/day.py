"""A working day of an office's calls, for the SMDR simulators, tests and the demo.

``office_day`` makes a day of calls of every kind SMDR tells of (answered, missed,
hung up at once, transferred, forwarded off-switch, to voicemail, dialled out,
internal) from a seed; each PBX's simulator prints them its own way and says what each
must come out as (``Expected``), from the scenario, not from the parser.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from cti.calls import Call

EXTENSIONS = ["101", "102", "103", "104", "105"]
# Callers as the trunk delivers them (national format, RU), some with names.
CALLERS = [
    ("84957770133", "ИВАНОВ ИВАН"),
    ("88125550111", "ООО РОМАШКА"),
    ("84951112233", ""),
    ("89161234567", "ПЕТРОВА"),
    ("84997654321", ""),
    ("88005553535", "BANK"),
]
KINDS = [
    ("answered", 40),
    ("missed", 14),
    ("hung_up", 4),
    ("transferred", 8),
    ("forwarded", 3),
    ("voicemail", 4),
    ("dialled", 18),
    ("dialled_unanswered", 4),
    ("internal", 5),
]


@dataclass(frozen=True, slots=True)
class DayCall:
    kind: str
    ended: datetime  # the PBX's wall clock
    number: str  # the outside party, national format ("" for internal calls)
    name: str
    did: str
    extension: str
    other_extension: str  # transferred to, or called (internal)
    ring: int
    talk: int
    talk_after: int = 0  # transferred: the second extension's talk
    forward_to: str = ""


@dataclass(frozen=True, slots=True)
class Expected:
    """What one call must be in the call log."""

    direction: str
    number: str | None  # E.164
    outcome: str
    missed: bool
    answered_by: str | None
    caller_extension: str | None = None
    transferred_to: str | None = None

    @classmethod
    def of(cls, call: Call) -> Expected:
        """What ``call`` is, in these terms: to compare with what it must be."""
        return cls(
            call.direction.value if call.direction else "",
            call.external_number,
            call.outcome.value if call.outcome else "",
            call.missed,
            call.answered_by,
            call.caller_extension,
            call.transfers[-1].to if call.transfers else None,
        )


def office_day(
    day: datetime, calls: int = 300, seed: int = 19, callers: list[tuple[str, str]] | None = None
) -> list[DayCall]:
    """``calls`` calls between 09:00 and 18:00 of ``day``, in the order they end."""
    rng = random.Random(seed)  # noqa: S311 (a simulated day, not a secret)
    pool = callers or CALLERS
    kinds = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    at = day.replace(hour=9, minute=0, second=0, microsecond=0)
    step = timedelta(hours=9) / calls
    made = []
    for _ in range(calls):
        # One minute apart at least: the Panasonic prints minutes, and two records of one
        # extension in one minute would be one record twice.
        at += max(step, timedelta(minutes=1)) + timedelta(seconds=rng.randint(0, 20))
        kind = rng.choices(kinds, weights)[0]
        number, name = rng.choice(pool)
        ext, other = rng.sample(EXTENSIONS, 2)
        talk_after = rng.randint(5, 300) if kind == "transferred" else 0
        # A transferred call's first record ends before its second: after the last call.
        at += timedelta(seconds=talk_after)
        made.append(
            DayCall(
                kind=kind,
                ended=at,
                number="" if kind == "internal" else number,
                name=name if kind not in ("dialled", "dialled_unanswered", "internal") else "",
                did="4951000000" if rng.random() < 0.3 else "",
                extension=ext,
                other_extension=other,
                ring=0 if kind == "hung_up" else rng.randint(2, 40),
                talk=0
                if kind in ("missed", "hung_up", "dialled_unanswered", "voicemail")
                else rng.randint(5, 900),
                talk_after=talk_after,
                forward_to="89031112233" if kind == "forwarded" else "",
            )
        )
    return made
