"""``cti demo``: the service with embedded defaults, demo users, a simulated PBX replaying
real Asterisk calls, and a small client directory: nothing to set up."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import string
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from crm_bridge.directory import InMemoryDirectory, Match, ResponsibleManager
from cti import auth
from cti.config import Config, DatabaseConfig, PbxConfig, ServerConfig
from cti.logs import setup_logging
from cti.service import Service, serve
from pbx_adapters.asterisk.simulator import (
    DEFAULT_TRANSCRIPTS,
    LAB_PBX_OPTIONS,
    AmiSimulator,
    load_all,
    replay_forever,
)

PASSWORD_ALPHABET = string.ascii_letters + string.digits
SECONDS_BETWEEN_CALLS = 4.0
# The calls that show screen pops best come first.
DEMO_ORDER = [
    "sip_inbound_answered",
    "sip_ringgroup_answered",
    "sip_queue_answered",
    "sip_inbound_missed",
    "sip_blind_transfer_refer",
    "sip_click_to_dial",
    "sip_internal_call",
    "inbound_answered",
    "queue_answered",
    "busy_extension",
    "fax_receive",
]


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    extension: str | None
    display_name: str


DEMO_USERS = [
    DemoUser("admin", "admin", None, "Administrator"),
    DemoUser("reception", "receptionist", "100", "Мария Иванова"),
    DemoUser("anna", "operator", "101", "Анна Петрова"),
    DemoUser("giorgi", "operator", "102", "გიორგი ბერიძე"),
    DemoUser("sophea", "sales", "103", "សុភា ចាន់"),
    DemoUser("boss", "supervisor", None, "Ольга Смирнова"),
]

ANNA = ResponsibleManager("Анна Петрова", "101", "+78125550101")
GIORGI = ResponsibleManager("გიორგი ბერიძე", "102", "+995322000102")
# The outside numbers the simulated calls come from, and who they are.
DEMO_CLIENTS = [
    ("+78125550111", Match("c-1", "ООО «Ромашка»", "company", "Сергей Волков", ANNA, ("VIP",))),
    ("+995322123456", Match("c-2", "შპს „მზიური“", "company", "ნინო კაპანაძე", GIORGI)),
    ("+74957770133", Match("c-3", "Иван Петров", "person", None, ANNA)),
    ("+855234567890", Match("c-4", "ក្រុមហ៊ុន អង្គរ", "company", "សុខ ដារ៉ា", GIORGI)),
    ("+442071234567", Match("c-5", "Acme Trading Ltd", "company", "Jane Smith", ANNA)),
]


async def create_demo_users(service: Service) -> list[tuple[DemoUser, str, str]]:
    """Add the demo users; returns each with its API token and web password."""
    created = []
    async with service.sessions() as session:
        for demo in DEMO_USERS:
            password = "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(10))
            user = await auth.create_user(
                session,
                demo.username,
                demo.role,
                extension=demo.extension,
                display_name=demo.display_name,
                password=password,
            )
            token = await auth.issue_token(session, user, label="demo")
            created.append((demo, token, password))
        await session.commit()
    return created


def banner(url: str, users: list[tuple[DemoUser, str, str]], data_dir: Path) -> str:
    lines = [
        "",
        f"CTI demo is running at {url}   (Ctrl-C stops it)",
        f"data: {data_dir}",
        "A simulated Asterisk replays recorded calls every few seconds (phones 101 and 102).",
        "",
        f"{'user':<10} {'role':<13} {'ext':<4} {'password':<11} API token",
    ]
    for demo, token, password in users:
        lines.append(
            f"{demo.username:<10} {demo.role:<13} {demo.extension or '-':<4} {password:<11} {token}"
        )
    admin_token = users[0][1]
    anna_token = next(token for demo, token, _ in users if demo.username == "anna")
    auth_header = f"-H 'Authorization: Bearer {admin_token}'"
    lines += [
        "",
        "Try:",
        f"  curl {url}/healthz",
        f"  curl {auth_header} {url}/api/calls",
        f"  curl {auth_header} {url}/api/lines",
        f"  curl {auth_header} '{url}/api/lookup?number=%2B78125550111'",
        f"  curl -X POST -H 'Authorization: Bearer {anna_token}' "
        f'-d \'{{"number": "+7 812 555-01-11"}}\' {url}/api/calls   # click-to-dial as anna',
        f"  CTI_TOKEN={admin_token} cti watch {url}   # live call events",
        "",
    ]
    return "\n".join(lines)


def demo_directory() -> InMemoryDirectory:
    directory = InMemoryDirectory()
    for number, match in DEMO_CLIENTS:
        directory.add(number, match)
    return directory


async def _run(host: str, port: int, data_dir: Path, fresh: bool) -> None:
    secret = secrets.token_urlsafe(16)
    pbx = AmiSimulator(username="cti", secret=secret)
    await pbx.start()
    config = Config(
        server=ServerConfig(host=host, port=port, data_dir=data_dir, log_format="text"),
        database=DatabaseConfig(auto_migrate=True),
        pbx=[
            PbxConfig(
                name="demo-pbx",
                type="asterisk",
                host="127.0.0.1",
                port=pbx.port,
                username="cti",
                secret=secret,
                **LAB_PBX_OPTIONS,
            )
        ],
    )
    background: list[asyncio.Task[None]] = []

    async def started(service: Service, url: str) -> None:
        users = await create_demo_users(service) if fresh else []
        if users:
            print(banner(url, users, data_dir), flush=True)
        else:
            print(f"\nCTI demo is running at {url} with the users of {data_dir}\n", flush=True)
        transcripts = dict(load_all(DEFAULT_TRANSCRIPTS))
        replay = replay_forever(
            pbx,
            [(name, transcripts[name]) for name in DEMO_ORDER if name in transcripts],
            interval=SECONDS_BETWEEN_CALLS,
            number_pool=[number for number, _ in DEMO_CLIENTS],
        )
        background.append(asyncio.create_task(replay))

    try:
        await serve(config, on_started=started, directory=demo_directory())
    finally:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await pbx.stop()


def run_demo(host: str, port: int, data_dir: str | None) -> int:
    directory = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="cti-demo-"))
    directory = directory.resolve()
    setup_logging("info", "text")
    fresh = not (directory / "cti.db").exists()
    try:
        asyncio.run(_run(host, port, directory, fresh))
    except OSError as e:
        print(
            f"cti demo: cannot listen on {host}:{port}: {e.strerror} "
            "(try --port 0 for a free port)",
            file=sys.stderr,
        )
        return 1
    finally:
        if data_dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    return 0
