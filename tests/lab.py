"""The lab PBX behind ../shared/fixtures/asterisk20 and what each of its calls must be."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pbx_adapters.asterisk.settings import AsteriskSettings as PbxConfig
from pbx_adapters.asterisk.simulator import LAB_PBX_OPTIONS

# The recorded transcripts, as shipped in the package (byte-identical to
# ../shared/fixtures/asterisk20: test_ami_simulator checks).
FIXTURES = Path(__file__).resolve().parents[1] / "pbx_adapters" / "asterisk" / "transcripts"
SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "asterisk20"

# The lab simulates the outside world with Local channels in contexts callers, remote
# and inbound; its DIDs arrive in "inbound" and "inbound-sip".
LAB_TRUNKS = LAB_PBX_OPTIONS["trunk_channels"]
LAB_INBOUND_CONTEXTS = LAB_PBX_OPTIONS["inbound_contexts"]

# The README's table, normalized for region RU. The lab's MixMonitor records every call
# to DIDs 4951000/4952000, missed and busy ones included: the streams name the files.
EXPECTED = {
    "sip_inbound_answered": dict(
        direction="inbound",
        external_number="+78125550101",
        external_name="Мария Сидорова",
        did="4952000",
        rung=["101"],
        answered_by="101",
        outcome="answered",
        missed=False,
        recordings=1,
    ),
    "sip_inbound_missed": dict(
        direction="inbound",
        external_number="+78125550102",
        external_name="ООО Ромашка",
        did="4952000",
        rung=["101"],
        answered_by=None,
        outcome="no_answer",
        missed=True,
        recordings=1,
    ),
    "sip_ringgroup_answered": dict(
        direction="inbound",
        external_number="+78125550104",
        did="4952001",
        rung=["101", "102"],
        answered_by="102",
        outcome="answered",
        missed=False,
    ),
    "sip_queue_answered": dict(
        direction="inbound",
        external_number="+78125550105",
        external_name="Queue Caller",
        did="4952002",
        rung=["101", "102"],
        answered_by="101",
        outcome="answered",
        missed=False,
        queue="support",
    ),
    "sip_click_to_dial": dict(
        direction="outbound",
        external_number="+78125550107",
        did=None,
        rung=["101"],
        answered_by=None,
        outcome="answered",
        missed=False,
        caller_extension="101",
    ),
    "sip_internal_call": dict(
        direction="internal",
        external_number=None,
        did=None,
        rung=["102"],
        answered_by="102",
        outcome="answered",
        missed=False,
        caller_extension="101",
    ),
    "sip_blind_transfer_refer": dict(
        direction="inbound",
        external_number="+78125550108",
        external_name="Transfer Client",
        did="4952000",
        rung=["101", "102"],
        answered_by="102",
        outcome="answered",
        missed=False,
        transfers=[("blind", "101", "102")],
        recordings=1,
    ),
    "inbound_answered": dict(
        direction="inbound",
        external_number="+78121234567",
        external_name="Иван Петров",
        did="4951000",
        rung=["101"],
        answered_by="101",
        outcome="answered",
        missed=False,
        recordings=1,
    ),
    "queue_answered": dict(
        direction="inbound",
        external_number="+74957654321",
        external_name="Client Q",
        did="4951002",
        rung=["101", "102"],
        answered_by="102",
        outcome="answered",
        missed=False,
        queue="sales",
    ),
    "busy_extension": dict(
        direction="inbound",
        external_number="+74950000002",
        did="4951000",
        rung=["101"],
        answered_by=None,
        outcome="busy",
        missed=True,
        recordings=1,
    ),
    "fax_receive": dict(
        direction="inbound",
        external_number="+74951230000",
        external_name="Fax Sender",
        did="4951003",
        rung=[],
        answered_by=None,
        outcome="answered",
        missed=False,
        fax_pages=2,
    ),
}


def check_call(name: str, call: dict) -> None:
    """Assert a stored or tracked call (as ``Call.to_dict()``) against the table."""
    expected = EXPECTED[name]
    for key in ("direction", "external_number", "did", "answered_by", "outcome", "missed"):
        assert call[key] == expected[key], f"{name}: {key} is {call[key]!r}"
    for key in ("external_name", "queue", "caller_extension"):
        if key in expected:
            assert call[key] == expected[key], f"{name}: {key} is {call[key]!r}"
    assert [leg["extension"] for leg in call["legs"]] == expected["rung"], name
    transfers = [(t["kind"], t["from"], t["to"]) for t in call["transfers"]]
    assert transfers == expected.get("transfers", []), name
    assert len(call["recordings"]) == expected.get("recordings", 0), name
    if "fax_pages" in expected:
        assert call["fax"]["pages"] == expected["fax_pages"]
    assert call["ended_at"] is not None and not call["in_progress"]
    assert call["started_at"] <= (call["answered_at"] or call["ended_at"]) <= call["ended_at"]


def lab_pbx(port: int, secret: str, **overrides: Any) -> PbxConfig:
    """PBX "lab": the simulator on ``port``, with the lab's channels and contexts, and
    timings short enough for tests."""
    options: dict[str, Any] = {
        **LAB_PBX_OPTIONS,
        "ping_interval": 0.3,
        "reconnect_max_seconds": 0.5,
        **overrides,
    }
    return PbxConfig(
        name="lab",
        type="asterisk",
        host="127.0.0.1",
        port=port,
        username="cti",
        secret=secret,
        **options,
    )


def lab_pbx_toml(port: int, secret: str) -> str:
    """``lab_pbx`` as a ``[[pbx]]`` section of a configuration file (for ``cti serve``)."""
    trunks = ", ".join(f"'{p}'" for p in LAB_TRUNKS)
    contexts = ", ".join(f'"{c}"' for c in LAB_INBOUND_CONTEXTS)
    return f"""
[[pbx]]
name = "lab"
type = "asterisk"
host = "127.0.0.1"
port = {port}
username = "cti"
secret = "{secret}"
trunk_channels = [{trunks}]
inbound_contexts = [{contexts}]
ping_interval = 0.3
reconnect_max_seconds = 0.5
"""
