"""Asterisk restarted (``core restart now``) in the middle of a ringing call, against the
lab (issue 15). Last of the lab tests: the PBX it leaves behind is a fresh one, and the
test waits until its phones are registered again."""

from __future__ import annotations

import asyncio
import subprocess

from helpers import eventually
from lab_pbx import PREFIX, call_in, lab_marks
from test_lab_faults import (  # noqa: F401
    calls_of,
    cdr,
    lab_config,
    one_call,
    open_tasks,
    pump,
    started,
)

pytestmark = lab_marks()


def cli(command: str) -> str:
    asterisk = str(PREFIX / "sbin" / "asterisk")
    done = subprocess.run([asterisk, "-rx", command], capture_output=True, text=True, timeout=10)
    return done.stdout


def phones_registered() -> bool:
    try:
        peers = cli("sip show peers")
    except (subprocess.SubprocessError, OSError):
        return False
    return "2 online" in peers


async def test_asterisk_restarts_while_a_call_rings(tmp_path, pump) -> None:  # noqa: F811
    service = await started(lab_config(tmp_path, pump.table, reconnect_max_seconds=2))
    try:
        lab = service.pbx["lab"]
        number = "+78125550219"
        await call_in("4952000", number, "Restart Caller", hold_seconds=20)
        await eventually(lambda: lab.lines().get("101") == "ringing")
        await asyncio.sleep(2)
        cli("core restart now")  # hangs every channel up, says so, then goes
        await eventually(lambda: not lab.connected, seconds=10)
        await eventually(lambda: lab.connected, seconds=60)
        call = await one_call(service, number)
        # The PBX told us how it ended, before it went: nobody answered and the caller was
        # gone (a DialEnd NOANSWER, or only the hangups: which comes first varies with the
        # restart). A customer who never got through: missed, call back.
        assert call["outcome"] in ("no_answer", "abandoned")
        assert (call["missed"], call["answered_by"]) == (True, None)
        assert not call["ended_while_disconnected"]
        assert lab.tracker.active_calls() == []
        await eventually(lambda: _task_for(service, number))
        # Its CDR rows, read after the reconnect, add nothing: the call is logged once.
        await eventually(lambda: number in {r["src"] for r in pump.copied}, seconds=20)
        await asyncio.sleep(1)
        assert len(await calls_of(service, number)) == 1
    finally:
        await service.close()
        await eventually(lambda: asyncio.to_thread(phones_registered), seconds=60)


async def _task_for(service, number: str) -> bool:
    return number in await open_tasks(service)
