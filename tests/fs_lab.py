"""The lab FreeSWITCH behind ../shared/fixtures/freeswitch and what each of its calls must be."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pbx_adapters.freeswitch.settings import (
    DEFAULT_EXTENSION_CHANNELS,
    DEFAULT_OUTSIDE_CHANNELS,
    FreeswitchSettings,
)
from pbx_adapters.freeswitch.simulator import DEFAULT_TRANSCRIPTS, LAB_PBX_OPTIONS
from pbx_adapters.freeswitch.tracker import CallTracker

HERE = Path(__file__).resolve().parent
# The recordings shipped in the package (gzipped copies of the shared *.json.esl) and
# the answer key (a copy of the shared expected.json: test_freeswitch_esl checks both).
SHIPPED = DEFAULT_TRANSCRIPTS
ANSWERS = json.loads((HERE / "fixtures" / "freeswitch" / "expected.json").read_text())
SHARED = HERE.parents[1] / "shared" / "fixtures" / "freeswitch"
SCENARIOS = sorted(ANSWERS)


def new_tracker(**options: Any) -> CallTracker:
    return CallTracker(
        "fs",
        extension_channels=DEFAULT_EXTENSION_CHANNELS,
        outside_channels=DEFAULT_OUTSIDE_CHANNELS,
        **options,
    )


def check_call(name: str, call: dict) -> None:
    """Assert a stored or tracked call (``Call.to_dict()``) against the answer key.

    The key's ``answered_by`` is "+7…" for an outbound call the far end answered and
    "fax" for a fax machine: our vocabulary has no extension for either (None).
    """
    [want] = ANSWERS[name]["calls"]
    assert call["direction"] == want["direction"], name
    assert call["external_number"] == want["external_number"], name
    assert call["external_name"] == want["caller_name"], name
    assert call["did"] == want["did"], name
    assert call["queue"] == want["queue"], name
    assert call["outcome"] == want["outcome"], name
    assert call["missed"] is want["missed"], name
    answered_by = want["answered_by"]
    if answered_by is not None and not answered_by.isdigit():
        answered_by = None
    assert call["answered_by"] == answered_by, name
    assert sorted(leg["extension"] for leg in call["legs"]) == sorted(want["rang"]), name
    transfers = [(t["kind"], t["from"], t["to"]) for t in call["transfers"]]
    assert transfers == [(t["kind"], t["from"], t["to"]) for t in want["transfers"]], name
    if "caller_extension" in want or "extension" in want:
        assert call["caller_extension"] == want.get("caller_extension", want.get("extension"))
    if name == "fax_receive":
        assert call["fax"]["pages"] == 1 and call["fax"]["status"] == "received"
    assert call["ended_at"] is not None and not call["in_progress"], name
    assert call["started_at"] <= (call["answered_at"] or call["ended_at"]) <= call["ended_at"]


def lab_pbx(
    port: int,
    password: str = "ClueCon",  # noqa: S107 - the lab switch's password
    **overrides: Any,
) -> FreeswitchSettings:
    """PBX "fs": a switch on ``port`` set up as the lab, with timings short for tests."""
    options: dict[str, Any] = {
        **LAB_PBX_OPTIONS,
        "heartbeat_timeout": 2.0,
        "reconnect_max_seconds": 0.5,
        **overrides,
    }
    return FreeswitchSettings(
        name="fs", type="freeswitch", host="127.0.0.1", port=port, password=password, **options
    )
