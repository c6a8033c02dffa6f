"""Received faxes (issue 16, and issue 15's D6: the TIFF reachable through the API): the
lab's recorded fax call and the TIFF its ReceiveFAX wrote become a fax document with its
pages, a PDF and a thumbnail, for the sender's responsible manager, and only them."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import bearer, eventually, new_token
from lab import FIXTURES, lab_pbx
from sqlalchemy import select

from cti.clients.builtin import ClientIn, PhoneIn, save_client
from cti.clients.models import Activity
from cti.config import Config, DatabaseConfig, FaxConfig, ServerConfig
from cti.http.app import build_app
from cti.service import Service
from pbx_adapters.asterisk.simulator import AmiSimulator, load_transcript

SECRET = "fax-secret"
SHARED_TIFF = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "fax"
TIFF = SHARED_TIFF / "received-2pages.tif"
# What the transcript's ReceiveFAX named the file on the lab machine.
PBX_DIR, TIFF_NAME = "/tmp/astlab/fax", "1795361425.85.tif"  # noqa: S108
SENDER = "+74951230000"

pytestmark = pytest.mark.skipif(
    not TIFF.exists(), reason=f"needs {TIFF} (../shared/fixtures beside the checkout)"
)


@pytest.fixture
async def pbx() -> AsyncIterator[AmiSimulator]:
    sim = AmiSimulator(username="cti", secret=SECRET)
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
def incoming(tmp_path: Path) -> Path:
    folder = tmp_path / "pbx-fax"
    folder.mkdir()
    return folder


@pytest.fixture
async def service(db_url, tmp_path, pbx, incoming) -> AsyncIterator[Service]:
    config = Config(
        server=ServerConfig(data_dir=tmp_path),
        database=DatabaseConfig(url=db_url, auto_migrate=True),
        pbx=[lab_pbx(pbx.port, SECRET)],
        fax=FaxConfig(incoming_dir=str(incoming), pbx_dir=PBX_DIR, missing_after_seconds=30),
    )
    service = await Service.start(config)
    await asyncio.wait_for(service.pbx["lab"].link_up.wait(), 10)
    yield service
    await service.close()


async def with_manager(service: Service) -> dict[str, str]:
    """The sender is a client whose manager is 102; tokens of each kind of reader."""
    tokens = {
        "supervisor": await new_token(service, "supervisor"),
        "manager": await new_token(service, "sales", extension="102"),
        "colleague": await new_token(service, "operator", extension="101"),
    }
    async with service.sessions() as session:
        await save_client(
            session, ClientIn("ООО Факс", manager_extension="102", phones=[PhoneIn(SENDER)]), "RU"
        )
        await session.commit()
    return tokens


async def faxes(client, token: str) -> list[dict]:
    response = await client.get("/api/faxes", headers=bearer(token))
    assert response.status == 200, await response.text()
    return (await response.json())["faxes"]


async def test_a_received_fax_becomes_a_document_for_its_manager(
    service, pbx, incoming, aiohttp_client
) -> None:
    tokens = await with_manager(service)
    client = await aiohttp_client(build_app(service))
    events = service.bus.subscribe(prefixes=["fax."])
    shutil.copyfile(TIFF, incoming / TIFF_NAME)
    await pbx.play(load_transcript(FIXTURES / "fax_receive.ami"))

    async def received() -> bool:
        found = await faxes(client, tokens["supervisor"])
        return bool(found) and found[0]["status"] == "received"

    await eventually(received)
    [fax] = await faxes(client, tokens["supervisor"])
    assert (fax["direction"], fax["number"], fax["pages"], fax["resolution"]) == (
        "in",
        SENDER,
        2,
        "204x196",
    )
    assert fax["client"]["name"] == "ООО Факс" and fax["assignee_extension"] == "102"
    assert fax["call_id"] and set(fax["files"]) == {"pdf", "tiff", "thumbnail"}
    # Its reader sees it; a colleague does not.
    assert [f["id"] for f in await faxes(client, tokens["manager"])] == [fax["id"]]
    assert await faxes(client, tokens["colleague"]) == []
    denied = await client.get(fax["files"]["pdf"], headers=bearer(tokens["colleague"]))
    assert denied.status == 403
    # The pages: the TIFF as the PBX wrote it, a 2-page PDF, a PNG thumbnail.
    tiff = await client.get(fax["files"]["tiff"], headers=bearer(tokens["manager"]))
    assert tiff.status == 200 and await tiff.read() == TIFF.read_bytes()
    pdf = await (await client.get(fax["files"]["pdf"], headers=bearer(tokens["manager"]))).read()
    assert pdf.startswith(b"%PDF") and b"/Count 2" in pdf
    png = await client.get(fax["files"]["thumbnail"], headers=bearer(tokens["manager"]))
    assert (await png.read()).startswith(b"\x89PNG")
    # Each opening is audited.
    response = await client.get(
        f"/api/faxes/{fax['id']}/views", headers=bearer(tokens["supervisor"])
    )
    views = (await response.json())["views"]
    assert sorted(v["what"] for v in views) == ["pdf", "thumbnail", "tiff"]
    # The manager's desk is told; the client's history has it.
    event = await asyncio.wait_for(events.get(), 5)
    assert (event.type, event.fax_id, event.assignee_extensions) == (
        "fax.received",
        fax["id"],
        ("102",),
    )
    async with service.sessions() as session:
        kinds = list(await session.scalars(select(Activity.kind)))
    assert "fax" in kinds


async def test_a_fax_whose_tiff_comes_late_is_pending_then_received(
    service, pbx, incoming, aiohttp_client
) -> None:
    tokens = await with_manager(service)
    client = await aiohttp_client(build_app(service))
    await pbx.play(load_transcript(FIXTURES / "fax_receive.ami"))
    await eventually(lambda: _one(client, tokens["supervisor"]))
    [fax] = await faxes(client, tokens["supervisor"])
    assert fax["status"] == "pending" and fax["files"] == {}
    response = await client.get(f"/api/faxes/{fax['id']}/pdf", headers=bearer(tokens["manager"]))
    assert response.status == 404
    assert "not arrived" in (await response.json())["error"]["message"]
    shutil.copyfile(TIFF, incoming / TIFF_NAME)
    await service.faxes.inbox.retry_pending()
    [fax] = await faxes(client, tokens["supervisor"])
    assert (fax["status"], fax["pages"]) == ("received", 2)


async def test_a_tiff_that_is_no_fax_fails_with_the_reason(
    service, pbx, incoming, aiohttp_client
) -> None:
    tokens = await with_manager(service)
    client = await aiohttp_client(build_app(service))
    (incoming / TIFF_NAME).write_bytes(b"II*\x00" + b"\xff" * 500)  # a TIFF header, then junk
    await pbx.play(load_transcript(FIXTURES / "fax_receive.ami"))
    await eventually(lambda: _status(client, tokens["supervisor"], "failed"))
    [fax] = await faxes(client, tokens["supervisor"])
    assert "not a fax image" in fax["error"] and fax["files"] == {}


async def _one(client, token: str) -> bool:
    return len(await faxes(client, token)) == 1


async def _status(client, token: str, status: str) -> bool:
    found = await faxes(client, token)
    return bool(found) and found[0]["status"] == status


async def test_retention_deletes_old_faxes_files_and_says_so(
    service, pbx, incoming, aiohttp_client
) -> None:
    tokens = await with_manager(service)
    client = await aiohttp_client(build_app(service))
    shutil.copyfile(TIFF, incoming / TIFF_NAME)
    await pbx.play(load_transcript(FIXTURES / "fax_receive.ami"))
    await eventually(lambda: _status(client, tokens["supervisor"], "received"))
    [fax] = await faxes(client, tokens["supervisor"])
    assert await service.faxes.inbox.purge(days=0) == 1  # everything is older than now
    assert not any((service.config.fax_dir).rglob("fax-*"))
    response = await client.get(fax["files"]["pdf"], headers=bearer(tokens["manager"]))
    assert response.status == 404
    assert "retention" in (await response.json())["error"]["message"]


async def test_the_dialplan_can_upload_the_tiff_instead_of_a_mounted_folder(
    db_url, tmp_path, pbx, aiohttp_client
) -> None:
    config = Config(
        server=ServerConfig(data_dir=tmp_path),
        database=DatabaseConfig(url=db_url, auto_migrate=True),
        pbx=[lab_pbx(pbx.port, SECRET)],
    )
    service = await Service.start(config)
    try:
        await asyncio.wait_for(service.pbx["lab"].link_up.wait(), 10)
        tokens = await with_manager(service)
        pbx_token = await new_token(service, "receptionist", username="pbx-fax")
        client = await aiohttp_client(build_app(service))
        await pbx.play(load_transcript(FIXTURES / "fax_receive.ami"))
        await eventually(lambda: _status(client, tokens["supervisor"], "pending"))
        for bad in ("../x.tif", "a.exe", "/etc/passwd"):
            response = await client.post(
                "/api/faxes/incoming",
                params={"file": bad},
                data=b"II*\x00",
                headers=bearer(pbx_token),
            )
            assert response.status == 422, bad
        response = await client.post(
            "/api/faxes/incoming",
            params={"file": TIFF_NAME},
            data=TIFF.read_bytes(),
            headers=bearer(pbx_token),
        )
        assert response.status == 201, await response.text()
        [fax] = await faxes(client, tokens["supervisor"])
        assert (fax["status"], fax["pages"]) == ("received", 2)
        denied = await client.post(
            "/api/faxes/incoming",
            params={"file": "x.tif"},
            data=b"II*",
            headers=bearer(tokens["manager"]),
        )
        assert denied.status == 403  # sales staff cannot drop files in
    finally:
        await service.close()


async def test_faxes_are_found_by_status_and_by_client_or_number(
    service, pbx, incoming, aiohttp_client
) -> None:
    tokens = await with_manager(service)
    client = await aiohttp_client(build_app(service))
    shutil.copyfile(TIFF, incoming / TIFF_NAME)
    await pbx.play(load_transcript(FIXTURES / "fax_receive.ami"))
    await eventually(lambda: _status(client, tokens["supervisor"], "received"))

    async def found(**params: str) -> int:
        response = await client.get(
            "/api/faxes", params=params, headers=bearer(tokens["supervisor"])
        )
        return len((await response.json())["faxes"])

    assert await found(q="факс") == 1  # the client's name, any case
    assert await found(q="1230000") == 1  # part of the number
    assert await found(q="%") == 0  # a LIKE wildcard is only a character
    assert await found(status="received") == 1 and await found(status="failed") == 0
