"""``cti demo``: the service with embedded defaults, demo users, nothing to set up."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import string
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cti import auth
from cti.config import Config, DatabaseConfig, ServerConfig
from cti.logs import setup_logging
from cti.service import Service, serve

PASSWORD_ALPHABET = string.ascii_letters + string.digits


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
        "",
        f"{'user':<10} {'role':<13} {'ext':<4} {'password':<11} API token",
    ]
    for demo, token, password in users:
        lines.append(
            f"{demo.username:<10} {demo.role:<13} {demo.extension or '-':<4} {password:<11} {token}"
        )
    admin_token = users[0][1]
    lines += [
        "",
        "Try:",
        f"  curl {url}/healthz",
        f"  curl -H 'Authorization: Bearer {admin_token}' {url}/api/me",
        f"  curl -H 'Authorization: Bearer {admin_token}' {url}/api/users",
        "",
    ]
    return "\n".join(lines)


def run_demo(host: str, port: int, data_dir: str | None) -> int:
    directory = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="cti-demo-"))
    config = Config(
        server=ServerConfig(host=host, port=port, data_dir=directory.resolve(), log_format="text"),
        database=DatabaseConfig(auto_migrate=True),
    )
    setup_logging("info", "text")
    fresh = not (directory / "cti.db").exists()

    async def started(service: Service, url: str) -> None:
        users = await create_demo_users(service) if fresh else []
        if users:
            print(banner(url, users, directory), flush=True)
        else:
            print(f"\nCTI demo is running at {url} with the users of {directory}\n", flush=True)

    try:
        asyncio.run(serve(config, on_started=started))
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
