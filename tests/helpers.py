"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cti.service import Service

CTI = [sys.executable, "-m", "cti"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def new_token(
    service: Service, role: str, extension: str | None = None, username: str | None = None
) -> str:
    """A new user of ``role`` on ``service``, and their API token."""
    from cti import auth

    async with service.sessions() as session:
        user = await auth.create_user(
            session, username or f"{role}-{uuid.uuid4().hex[:6]}", role, extension=extension
        )
        token = await auth.issue_token(session, user)
        await session.commit()
    return token


def run_cti(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``cti`` command line in a clean CTI_* environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    return subprocess.run(
        [*CTI, *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def eventually(predicate: Callable[[], object], seconds: float = 10.0) -> None:
    """Wait until ``predicate()`` holds (it may be async): the service works on tasks of
    its own, and nothing announces what a test waits for."""
    async with asyncio.timeout(seconds):
        while True:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.02)
