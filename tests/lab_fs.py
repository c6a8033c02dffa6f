"""The real lab FreeSWITCH (../shared/lab/freeswitch): reaching it, its phones, its ESL.

Tests marked ``lab`` run against it when its Event Socket answers on 127.0.0.1:8021;
elsewhere they skip with the way to start it. ``CTI_TEST_REQUIRE_FS_LAB=1`` (set by
.ci/run, which starts the lab) turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from pbx_adapters.freeswitch.esl import Authenticated, EslClient, Reply
from pbx_adapters.freeswitch.settings import FreeswitchSettings

LAB_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "lab" / "freeswitch"
PREFIX = Path("/opt/lab-freeswitch")
RECORDINGS = PREFIX / "var" / "lib" / "freeswitch" / "recordings"
ESL = ("127.0.0.1", 8021)
PASSWORD = "ClueCon"
PHONES = {"101": ("127.0.0.1", 4451), "102": ("127.0.0.1", 4452), "103": ("127.0.0.1", 4453)}
REQUIRE = os.environ.get("CTI_TEST_REQUIRE_FS_LAB") == "1"


def lab_is_up() -> bool:
    try:
        with socket.create_connection(ESL, timeout=1):
            return True
    except OSError:
        return False


def lab_marks() -> list[pytest.MarkDecorator]:
    up = lab_is_up()
    if REQUIRE and not up:
        pytest.fail(f"CTI_TEST_REQUIRE_FS_LAB=1 but no lab FreeSWITCH at {ESL}", pytrace=False)
    return [
        pytest.mark.lab,
        pytest.mark.skipif(
            not up,
            reason=f"no lab FreeSWITCH at {ESL[0]}:{ESL[1]}: run {LAB_DIR}/start.sh (root)",
        ),
    ]


def lab_settings(**overrides: object) -> FreeswitchSettings:
    """The service's FreeSWITCH adapter configured for the lab, as its README says."""
    options: dict[str, object] = {
        "name": "fs",
        "type": "freeswitch",
        "host": ESL[0],
        "port": ESL[1],
        "password": PASSWORD,
        "domain": "127.0.0.1",
        "context": "default",
        "originate_timeout": 20,
        "reconnect_max_seconds": 1.0,
        "record_file": f"{RECORDINGS}/cti-{{uuid}}.wav",
        **overrides,
    }
    return FreeswitchSettings.model_validate(options)


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


async def command(line: str) -> str:
    """One command on a connection of the test's own (not the service's); its answer."""
    reader, writer = await asyncio.open_connection(*ESL)
    client = EslClient(PASSWORD, [])
    request = None
    try:
        async with asyncio.timeout(15):
            while True:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("the lab closed the Event Socket")
                for item in client.receive(data):
                    if isinstance(item, Authenticated):
                        request = client.send(line)
                    elif isinstance(item, Reply) and item.request == request:
                        return item.text
                writer.write(client.data_to_send())
    finally:
        writer.close()


async def api(line: str) -> str:
    return await command(f"api {line}")


async def call_in(did: str, number: str, name: str, *, talk_seconds: int = 8) -> str:
    """An outside caller dials ``did`` (loopback/<did>/public, as the lab's README does)
    and talks ``talk_seconds`` once answered; returns the caller leg's preset uuid."""
    leg = str(uuid.uuid4())
    variables = (
        f"origination_uuid={leg},origination_caller_id_number={number},"
        f"origination_caller_id_name='{name}',ignore_early_media=true,originate_timeout=60"
    )
    silence = f"silence_stream://{talk_seconds * 1000}"
    await command(f"bgapi originate {{{variables}}}loopback/{did}/public &playback({silence})")
    return leg


async def quiet() -> None:
    """No call left on the switch or a phone (a test that failed may leave one ringing,
    and a baresip phone with a call ringing answers no other)."""
    await api("hupall NORMAL_CLEARING")
    await asyncio.gather(*(phone(extension, "hangup") for extension in PHONES))
    for _ in range(50):
        if '"row_count":0' in await api("show channels as json"):
            return
        await asyncio.sleep(0.1)


def restart_switch() -> None:
    """Stop the lab's FreeSWITCH (not its phones) and start it again, as a crash and a
    restart would: every call on it is gone."""
    pid = int((PREFIX / "var" / "run" / "lab" / "freeswitch.pid").read_text())
    os.kill(pid, 9)
    for _ in range(100):  # start.sh would take a dying process for a running one
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    subprocess.run([str(LAB_DIR / "start.sh")], check=True, capture_output=True)
