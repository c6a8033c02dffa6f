"""Record the lab Asterisk's AMI stream while a scenario runs: ``python tests/lab_record.py NAME``.

The transcripts in tests/fixtures/lab/ were made with it (the lab must be up, see
tests/lab_pbx.py). Each is the raw byte stream of one AMI connection, as the shared ones are.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # the tests' own modules, as pytest has them
from lab_pbx import AMI, PREFIX, ami_action, call_in, phone

OUT = Path(__file__).parent / "fixtures" / "lab"


def channel_of(extension: str) -> str:
    """The name of the extension's live SIP channel (the newest one)."""
    out = subprocess.run(
        [str(PREFIX / "sbin" / "asterisk"), "-rx", "core show channels concise"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    prefix = f"SIP/{extension}-"
    names = [line.split("!")[0] for line in out.splitlines() if line.startswith(prefix)]
    return sorted(names)[-1]


async def atxfer(extension: str, target: str) -> None:
    reply = await ami_action(
        Action="Atxfer", Channel=channel_of(extension), Exten=target, Context="internal"
    )
    print("Atxfer:", reply)


async def attended_transfer_completed() -> None:
    """101 answers, consults 102 (who answers), hangs up: the caller talks to 102."""
    await call_in("4952000", "+78125550121", "Attended Client", hold_seconds=22)
    await asyncio.sleep(2)
    await phone("101", "accept")
    await asyncio.sleep(3)
    await atxfer("101", "102")  # 102 rings ~3 s later (features.conf transferdigittimeout)
    await asyncio.sleep(5)
    await phone("102", "accept")
    await asyncio.sleep(3)
    await phone("101", "hangup")
    await asyncio.sleep(12)


async def attended_transfer_blond_rejected() -> None:
    """101 answers, starts a transfer to 102, hangs up while 102 rings; 102 rejects;
    Asterisk rings 101 back (atxferdropcall = no), 101 answers, then the caller hangs up."""
    await call_in("4952000", "+78125550122", "Blond Client", hold_seconds=26)
    await asyncio.sleep(2)
    await phone("101", "accept")
    await asyncio.sleep(3)
    await atxfer("101", "102")
    await asyncio.sleep(4)
    await phone("101", "hangup")
    await asyncio.sleep(2)
    await phone("102", "hangup")
    await asyncio.sleep(3)
    await phone("101", "accept")
    await asyncio.sleep(14)


async def attended_transfer_blond_recall_unanswered() -> None:
    """As above, but nobody takes the recall: the caller gives up."""
    await call_in("4952000", "+78125550123", "Recall Client", hold_seconds=24)
    await asyncio.sleep(2)
    await phone("101", "accept")
    await asyncio.sleep(3)
    await atxfer("101", "102")
    await asyncio.sleep(4)
    await phone("101", "hangup")
    await asyncio.sleep(2)
    await phone("102", "hangup")
    await asyncio.sleep(16)


async def attended_transfer_blond_caller_gave_up() -> None:
    """101 answers, starts a transfer to 102 and hangs up at once; 102 rings on until the
    caller gives up."""
    await call_in("4952000", "+78125550121", "Attended Client", hold_seconds=22)
    await asyncio.sleep(2)
    await phone("101", "accept")
    await asyncio.sleep(3)
    await atxfer("101", "102")
    await asyncio.sleep(2.6)
    await phone("101", "hangup")
    await asyncio.sleep(18)


async def fax_send() -> None:
    """What the adapter's send_fax does: the far end (the lab's own ReceiveFAX DID)
    originated into faxsend with FAXFILE set; ~35 s for the lab's 2-page file."""
    await ami_action(
        Action="Originate",
        ActionID="cti-fax-7-lab",
        Channel="Local/4951003@inbound",
        Context="faxsend",
        Exten="s",
        Priority="1",
        Timeout="60000",
        Async="true",
        Variable=f"FAXFILE={PREFIX}/var/lib/asterisk/fax/send.tif,CTI_FAX_ID=7",
    )
    await asyncio.sleep(45)


SCENARIOS: dict[str, Callable[[], Awaitable[None]]] = {
    "fax_send": fax_send,
    "attended_transfer_blond_caller_gave_up": attended_transfer_blond_caller_gave_up,
    "attended_transfer_completed": attended_transfer_completed,
    "attended_transfer_blond_rejected": attended_transfer_blond_rejected,
    "attended_transfer_blond_recall_unanswered": attended_transfer_blond_recall_unanswered,
}


async def record(name: str) -> None:
    reader, writer = await asyncio.open_connection(*AMI)
    writer.write(b"Action: Login\r\nUsername: cti\r\nSecret: ctisecret\r\nActionID: rec\r\n\r\n")
    await writer.drain()
    chunks: list[bytes] = []

    async def pump() -> None:
        while data := await reader.read(65536):
            chunks.append(data)

    task = asyncio.create_task(pump())
    await asyncio.sleep(1)
    await SCENARIOS[name]()
    await asyncio.sleep(2)
    task.cancel()
    writer.close()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.ami").write_bytes(b"".join(chunks))
    print(name, sum(map(len, chunks)), "bytes")


if __name__ == "__main__":
    asyncio.run(record(sys.argv[1]))
