"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cti.calls import Call, CallLeg, CallTransfer
from cti.domain import Direction, LegResult, Outcome

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


async def receive(ws, seconds: float = 5.0) -> dict:
    """The next frame of a live feed (/ws), as JSON."""
    return await asyncio.wait_for(ws.receive_json(), seconds)


async def open_feed(client, token: str):
    """A /ws connection past its greeting (hello, then resync)."""
    ws = await client.ws_connect("/ws", headers=bearer(token))
    assert (await receive(ws))["type"] == "hello"
    assert (await receive(ws))["type"] == "resync"
    return ws


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


def finished_call(
    call_id: str,
    at: datetime,
    number: str | None = "+78121234567",
    *,
    rang: tuple[str, ...] = (),
    answered_by: str | None = None,
    caller: str | None = None,
    name: str | None = None,
    direction: Direction = Direction.INBOUND,
    transfers: list[CallTransfer] | None = None,
) -> Call:
    """A call that is over: each extension in ``rang`` rang for 20 s; if ``answered_by``
    (one of them) took it after 5 s, it lasted 65 s, else it ended after 20 s."""
    legs = []
    for ext in rang:
        leg = CallLeg(ext, at, ended_at=at + timedelta(seconds=20))
        leg.result = LegResult.ANSWERED if ext == answered_by else LegResult.NO_ANSWER
        legs.append(leg)
    return Call(
        id=call_id,
        pbx="office",
        started_at=at,
        direction=direction,
        external_number=number,
        external_name=name,
        caller_extension=caller,
        legs=legs,
        answered_by=answered_by,
        answered_at=at + timedelta(seconds=5) if answered_by else None,
        ended_at=at + timedelta(seconds=65 if answered_by else 20),
        outcome=Outcome.ANSWERED if answered_by else Outcome.NO_ANSWER,
        missed=answered_by is None and direction is Direction.INBOUND,
        transfers=transfers or [],
    )


async def outbox_entries(service: Service) -> list:
    """The CRM outbox's rows, as the database has them now."""
    from sqlalchemy import select

    from cti.clients.models import CrmOutbox

    async with service.sessions() as session:
        return list(await session.scalars(select(CrmOutbox)))


async def settle_outbox(service: Service, predicate: Callable[[list], object]) -> list:
    """Drive the CRM outbox by hand until its rows satisfy ``predicate``; the rows."""
    async with asyncio.timeout(10):
        while True:
            await service.crm_outbox.send_due()
            entries = await outbox_entries(service)
            if predicate(entries):
                return entries
            await asyncio.sleep(0.02)


def onec_crm(standin, **options):
    """``[crm]`` for the 1C OData stand-in (crm_bridge/onec/standin.py), with ``options``."""
    from pydantic import SecretStr

    from cti.config import CrmConfig

    return CrmConfig(
        type="onec",
        onec_url=standin.url(),
        onec_username=standin.username,
        onec_password=SecretStr(standin.password),
        **options,
    )


async def stored_calls(service: Service) -> list[Call]:
    """Every call the service has written so far, in the order they ended."""
    from sqlalchemy import select

    from cti.db.models import CallRecord

    await service.call_store.flush()
    async with service.sessions() as session:
        rows = await session.scalars(
            select(CallRecord.details).order_by(CallRecord.ended_at, CallRecord.id)
        )
        return [Call.from_dict(details) for details in rows]


async def dial_through_api(service: Service, client, extension: str, number: str):
    """Dial ``number`` from ``extension`` through the API, as its operator: (the request's
    answer, the OriginateResult event that follows)."""
    token = await new_token(service, "operator", extension)
    results = service.bus.subscribe(prefixes=["call.originate"])
    response = await client.post("/api/calls", json={"number": number}, headers=bearer(token))
    assert response.status in (200, 201, 202), await response.text()
    return response, await asyncio.wait_for(results.get(), 5)


async def ended_calls(service: Service) -> list[Call]:
    """The stored calls that are over, once there is one."""

    async def over() -> list[Call]:
        return [c for c in await stored_calls(service) if c.ended_at is not None]

    await eventually(over)
    return await over()
