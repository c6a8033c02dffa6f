"""A first look at a modem from the command line: ``cti modem probe`` and ``cti sms send``.

Both open the port themselves with the same driver the service uses (so the service must
not be holding it), run the same init sequence, and say in words what is wrong when it
fails, with what usually fixes it (docs/modem.md has the whole story).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from cti.config import ModemConfig
from gsm_modem.modem import GsmModem
from gsm_modem.pdu import encode_submit

# What a failure's text says -> what usually fixes it.
HINTS = (
    ("Permission denied", "add the service's user to the dialout group (then log in again)"),
    ("could not exclusively lock", "the port is in use: is the service running?"),
    ("Device or resource busy", "another program holds the port: see docs/modem.md"),
    ("No such file", "no such port: `ls -l /dev/serial/by-id/` lists the modems plugged in"),
    ("asks for a PIN", "the SIM asks for its PIN: give it with --pin (or [[modem]] pin)"),
    ("refused the configured PIN", "a wrong PIN: after three the SIM wants its PUK"),
    ("asks for SIM PUK", "the SIM is blocked: unblock it with its PUK in a phone"),
    ("SIM not inserted", "no SIM card: insert one (with the modem off)"),
    (
        "no answer to",
        "nothing answers AT here: try the modem's other ports, and check that ModemManager "
        "leaves it alone (docs/modem.md)",
    ),
)


@dataclass
class _Reports:
    """Stands in for the link registry: keeps what the driver reports."""

    changed: asyncio.Event = field(default_factory=asyncio.Event)
    last: tuple[bool, str] | None = None

    async def report(self, name: str, up: bool, detail: str = "") -> None:
        self.last = (up, detail)
        self.changed.set()


@dataclass(frozen=True)
class ProbeResult:
    ready: bool
    detail: str  # why not, when not ready
    identity: dict[str, str]
    status: dict[str, object]

    def hints(self) -> list[str]:
        return [hint for needle, hint in HINTS if needle.lower() in self.detail.lower()]


@contextlib.asynccontextmanager
async def opened(config: ModemConfig, wait: float) -> AsyncIterator[tuple[GsmModem, ProbeResult]]:
    """The modem initialised (or the first reason it is not), closed again afterwards."""
    reports = _Reports()
    modem = GsmModem(config, on_event=lambda event: None, links=reports, poll_interval=None)
    await modem.start()
    try:
        try:
            async with asyncio.timeout(wait):
                await reports.changed.wait()
        except TimeoutError:
            reports.last = (False, f"no answer within {wait:.0f} s")
        up, detail = reports.last or (False, "")
        yield (
            modem,
            ProbeResult(up and modem.ready, "" if up else detail, modem.identity, modem.status),
        )
    finally:
        await modem.stop()


async def probe(config: ModemConfig, wait: float = 30.0) -> ProbeResult:
    async with opened(config, wait) as (_, result):
        return result


async def send(config: ModemConfig, number: str, text: str, wait: float = 30.0) -> list[int]:
    """Send one SMS (in as many parts as it needs); the modem's reference of each part.
    RuntimeError with the reason when the modem is not ready."""
    async with opened(config, wait) as (modem, result):
        if not result.ready:
            raise RuntimeError(result.detail)
        references = []
        for part in encode_submit(number, text, reference=secrets.randbelow(256)):
            references.append(await modem.send_pdu(part.hex, part.tpdu_length))
        return references
