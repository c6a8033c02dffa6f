"""The real lab Asterisk (../shared/lab/asterisk): reaching it, its phones and its AMI.

Tests marked ``lab`` run against it when it answers on 127.0.0.1:5038; elsewhere they
skip with the way to start it. ``CTI_TEST_REQUIRE_LAB=1`` (set by .ci/run, which starts
the lab) turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import socket
import uuid
from pathlib import Path

import pytest
from cdr_db import LAB_CDR_COLUMNS, CdrTable

from pbx_adapters.asterisk.settings import AsteriskSettings

LAB_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "lab" / "asterisk"
PREFIX = Path("/opt/lab-asterisk")
MONITOR = PREFIX / "var" / "spool" / "asterisk" / "monitor"
# cdr_custom's Master.csv (with Linkedid): Asterisk writes it once the directory exists.
CDR_CSV = PREFIX / "var" / "log" / "asterisk" / "cdr-custom" / "Master.csv"
AMI = ("127.0.0.1", 5038)
PHONES = {"101": ("127.0.0.1", 4441), "102": ("127.0.0.1", 4442)}
REQUIRE = os.environ.get("CTI_TEST_REQUIRE_LAB") == "1"


def lab_is_up() -> bool:
    try:
        with socket.create_connection(AMI, timeout=1):
            return True
    except OSError:
        return False


def lab_marks() -> list[pytest.MarkDecorator]:
    up = lab_is_up()
    if REQUIRE and not up:
        pytest.fail(f"CTI_TEST_REQUIRE_LAB=1 but no lab AMI at {AMI}", pytrace=False)
    return [
        pytest.mark.lab,
        pytest.mark.skipif(
            not up, reason=f"no lab Asterisk at {AMI[0]}:{AMI[1]}: run {LAB_DIR}/start.sh (root)"
        ),
    ]


def lab_settings(**overrides: object) -> AsteriskSettings:
    """The service's Asterisk adapter configured for the lab, as its README says."""
    options: dict[str, object] = {
        "name": "lab",
        "type": "asterisk",
        "host": AMI[0],
        "port": AMI[1],
        "username": "cti",
        "secret": "ctisecret",
        "trunk_channels": [r"^Local/[^@]+@(?:callers|remote|inbound|outbound)-"],
        "inbound_contexts": ["inbound", "agi-test"],
        "originate_channel": "SIP/{extension}",
        "originate_context": "internal",
        "transfer_context": "internal",
        "originate_timeout": 20,
        "ping_interval": 2.0,
        **overrides,
    }
    return AsteriskSettings.model_validate(options)


async def phone(extension: str, command: str, params: str = "") -> None:
    """Tell a baresip phone what to do (ctrl_tcp: one netstring of JSON per connection)."""
    body = json.dumps({"command": command, "params": params, "token": uuid.uuid4().hex})
    reader, writer = await asyncio.open_connection(*PHONES[extension])
    writer.write(f"{len(body)}:{body},".encode())
    await writer.drain()
    try:
        await asyncio.wait_for(reader.read(4096), 2)
    except TimeoutError:
        pass
    writer.close()
    await writer.wait_closed()


async def ami_action(**fields: str) -> dict[str, str]:
    """One action on a connection of the test's own (not the service's), and its response."""
    reader, writer = await asyncio.open_connection(*AMI)
    await reader.readline()  # the banner

    async def send(action: dict[str, str]) -> dict[str, str]:
        writer.write(("".join(f"{k}: {v}\r\n" for k, v in action.items()) + "\r\n").encode())
        await writer.drain()
        while True:
            block = (await reader.readuntil(b"\r\n\r\n")).decode()
            frame = dict(line.split(": ", 1) for line in block.split("\r\n") if ": " in line)
            if frame.get("ActionID") == action["ActionID"]:
                return frame

    try:
        await send({"Action": "Login", "Username": "cti", "Secret": "ctisecret", "ActionID": "l"})
        return await send({"ActionID": uuid.uuid4().hex, **fields})
    finally:
        writer.close()
        await writer.wait_closed()


class CdrPump:
    """Copies the rows the lab Asterisk adds to its CDR file into a CDR table while it
    runs, as ``cdr_adaptive_odbc`` would write them to FreePBX's ``asteriskcdrdb.cdr``."""

    def __init__(self, table: CdrTable) -> None:
        CDR_CSV.parent.mkdir(parents=True, exist_ok=True)
        self.table = table
        self.offset = CDR_CSV.stat().st_size if CDR_CSV.exists() else 0
        self.copied: list[dict[str, str]] = []
        self._task: asyncio.Task[None] | None = None

    async def copy_new(self) -> list[dict[str, str]]:
        if not CDR_CSV.exists():
            return []
        with CDR_CSV.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        reader = csv.reader(io.StringIO(complete.decode("utf-8")))
        rows = [dict(zip(LAB_CDR_COLUMNS, row, strict=True)) for row in reader if row]
        await self.table.insert(rows)
        self.copied += rows
        return rows

    async def _run(self) -> None:
        while True:
            await self.copy_new()
            await asyncio.sleep(0.3)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.copy_new()


async def call_in(
    did: str, number: str, name: str, hold_seconds: int = 8, context: str = "inbound-sip"
) -> dict[str, str]:
    """An outside caller (the lab's ``callers`` context) dials ``did`` in ``context``: the
    SIP phones' DIDs, or "inbound" (simulated handsets), "agi-test"."""
    return await ami_action(
        Action="Originate",
        Channel=f"Local/{hold_seconds}@callers",
        Context=context,
        Exten=did,
        Priority="1",
        CallerID=f'"{name}" <{number}>',
        Async="true",
    )
