"""Sending faxes (issue 16): documents converted to TIFF-F, a durable job queue with
HylaFAX's retry rules, the API, and a restart in the middle of a job. The PBX here is a
stand-in that answers each try as a script says; tests/test_lab_asterisk.py sends through
the real lab Asterisk."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from aiohttp import FormData
from fax_docs import needs_ghostscript, page, pdf, tiff
from helpers import bearer, eventually, new_token
from PIL import Image

from cti.config import FaxConfig
from cti.db.models import FaxDocument
from cti.events import FaxAttempt
from cti.http.app import build_app
from fax import outbox as outbox_module
from fax.convert import ConversionError, to_fax
from fax.outbox import FaxOutbox

# -- conversion --------------------------------------------------------------------------


def fax_pages(path: Path) -> list[tuple[tuple[int, int], tuple[float, float], str]]:
    with Image.open(path) as image:
        found = []
        for index in range(image.n_frames):
            image.seek(index)
            found.append((image.size, image.info["dpi"], image.info["compression"]))
        return found


@needs_ghostscript
def test_a_pdf_becomes_tiff_f_pages(tmp_path) -> None:
    out = tmp_path / "out.tif"
    converted = to_fax([pdf(tmp_path / "two.pdf")], out, "fine", max_pages=10)
    assert (converted.pages, converted.resolution) == (2, "204x196")
    assert fax_pages(out) == [((1728, 2291), (204.0, 196.0), "group3")] * 2


def test_images_and_a_multipage_tiff_in_one_fax_at_normal_resolution(tmp_path) -> None:
    png, jpeg, tiff = tmp_path / "a.png", tmp_path / "b.jpg", tmp_path / "c.tif"
    page(1).save(png)
    page(2, (800, 600)).save(jpeg)  # landscape: fitted to the page, not stretched
    page(3).save(tiff, save_all=True, append_images=[page(4)])
    out = tmp_path / "out.tif"
    converted = to_fax([png, jpeg, tiff], out, "normal", max_pages=10)
    assert converted.pages == 4
    assert {p[:2] for p in fax_pages(out)} == {((1728, 1146), (204.0, 98.0))}


@needs_ghostscript
@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"PK\x03\x04 a zip, or anything else", "not a PDF, PNG, JPEG or TIFF"),
        (b"%PDF-1.4\n garbage that no renderer takes", "ghostscript cannot render"),
        (b"\x89PNG\r\n\x1a\n broken", "cannot be read as an image"),
    ],
)
def test_what_cannot_be_a_fax_is_refused_with_the_reason(tmp_path, content, words) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(content)
    with pytest.raises(ConversionError, match=words):
        to_fax([bad], tmp_path / "out.tif", "fine", max_pages=10)


@needs_ghostscript
@needs_ghostscript
def test_letter_pages_are_shorter_than_a4(tmp_path) -> None:
    out = tmp_path / "out.tif"
    to_fax([pdf(tmp_path / "one.pdf", 1)], out, "fine", max_pages=3, paper="letter")
    assert fax_pages(out) == [((1728, 2156), (204.0, 196.0), "group3")]


def test_pages_beyond_the_limit_are_refused(tmp_path) -> None:
    with pytest.raises(ConversionError, match="more pages than"):
        to_fax([pdf(tmp_path / "five.pdf", pages=5)], tmp_path / "out.tif", "fine", max_pages=3)


def test_a_decompression_bomb_is_refused(tmp_path) -> None:
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # 400 Mpx, a few KB on disk
    with pytest.raises(ConversionError, match="cannot be read"):
        to_fax([bomb], tmp_path / "out.tif", "fine", max_pages=3)


# -- the queue ---------------------------------------------------------------------------


class ScriptedLine:
    """The PBX's fax line: each try ends as the next item of ``results`` says."""

    def __init__(self, bus, results: list[FaxAttempt | str]) -> None:
        self.bus = bus
        self.results = results
        self.sent: list[tuple[str, str]] = []

    async def __call__(self, number: str, file: str, request_id: str) -> None:
        self.sent.append((number, file))
        result = self.results.pop(0)
        if isinstance(result, str):  # a dial that failed: busy, no_answer, ...
            result = FaxAttempt(request_id=request_id, success=False, code=result, reason=result)
        else:
            result = dataclasses.replace(result, request_id=request_id)
        asyncio.get_running_loop().call_soon(self.bus.publish_nowait, result)


def attempt(**fields) -> FaxAttempt:
    return FaxAttempt(request_id="", **fields)


QUICK = dict(busy_retry_seconds=0.05, no_answer_retry_seconds=0.1, retry_seconds=0.05)


async def outbox_with(service, tmp_path, results, **options) -> tuple[FaxOutbox, ScriptedLine]:
    """An outbox of quick retries on the service's database (its own outbox stopped)."""
    await service.faxes.outbox.stop()
    line = ScriptedLine(service.bus, results)
    outbox = FaxOutbox(
        service.sessions, tmp_path / "faxes", FaxConfig(**{**QUICK, **options}), service.bus, line
    )
    await outbox.start()
    return outbox, line


async def job_of(service, job_id: int) -> FaxDocument:
    async with service.sessions() as session:
        return await session.get_one(FaxDocument, job_id)


async def finished(service, job_id: int) -> FaxDocument:
    async def done() -> bool:
        return (await job_of(service, job_id)).status in ("done", "failed")

    await eventually(done)
    return await job_of(service, job_id)


async def test_a_busy_line_is_dialled_again_until_the_fax_goes(service, tmp_path) -> None:
    results = ["busy", "no_answer", attempt(success=True, connected=True, pages=2)]
    outbox, line = await outbox_with(service, tmp_path, results)
    try:
        job = await outbox.submit(
            "+74951234567", [tiff(tmp_path / "a.tif")], "fine", username="anna", extension="101"
        )
        done = await finished(service, job.id)
        assert (done.status, done.dials, done.tries, done.pages) == ("done", 3, 1, 2)
        assert len(line.sent) == 3 and line.sent[0][1].endswith(f"fax-{job.id}.tif")
    finally:
        await outbox.stop()


async def test_a_fax_queued_without_a_wake_still_goes_out(service, tmp_path, monkeypatch) -> None:
    """Queued on another node whose notice never came (NATS away): the sending node finds
    it on its own next look."""
    monkeypatch.setattr(outbox_module, "IDLE_SECONDS", 0.2)
    outbox, line = await outbox_with(service, tmp_path, [attempt(success=True, pages=2)])
    outbox.announce = lambda: None  # the notice that would have woken it is lost
    try:
        job = await outbox.submit(
            "+74951234567", [tiff(tmp_path / "a.tif")], "fine", username="anna", extension="101"
        )
        assert (await finished(service, job.id)).status == "done" and len(line.sent) == 1
    finally:
        await outbox.stop()


async def test_a_number_that_never_answers_fails_after_max_dials(service, tmp_path) -> None:
    outbox, line = await outbox_with(service, tmp_path, ["no_answer"] * 5, max_dials=3)
    try:
        job = await outbox.submit(
            "+74951234567", [tiff(tmp_path / "a.tif", 1)], "fine", username="a", extension=None
        )
        failed = await finished(service, job.id)
        assert (failed.status, failed.dials) == ("failed", 3)
        assert failed.error == "3 dials: no_answer" and len(line.sent) == 3
    finally:
        await outbox.stop()


async def test_transmissions_that_fail_stop_after_max_tries(service, tmp_path) -> None:
    broken = attempt(
        success=False,
        code="failed",
        reason="Error before FAX transmission started.",
        connected=True,
    )
    outbox, _ = await outbox_with(service, tmp_path, [broken] * 3, max_tries=2)
    try:
        job = await outbox.submit(
            "+74951234567", [tiff(tmp_path / "a.tif", 1)], "fine", username="a", extension=None
        )
        failed = await finished(service, job.id)
        assert (failed.status, failed.tries) == ("failed", 2)
        assert "transmissions failed: Error before FAX" in failed.error
    finally:
        await outbox.stop()


async def test_a_restart_requeues_a_dial_but_never_resends_what_may_have_gone(
    service, tmp_path
) -> None:
    outbox, line = await outbox_with(service, tmp_path, [attempt(success=True, connected=True)] * 2)
    await outbox.stop()  # jobs stay in the database; nothing sends them now
    jobs = []
    for status in ("dialing", "sending", "done"):
        job = await outbox.submit(
            "+74951234567",
            [tiff(tmp_path / f"{status}.tif", 1)],
            "fine",
            username="a",
            extension=None,
        )
        async with service.sessions() as session:
            row = await session.get_one(FaxDocument, job.id)
            row.status = status
            await session.commit()
        jobs.append(job.id)
    again, line = await outbox_with(service, tmp_path, [attempt(success=True, connected=True)])
    try:
        dialing, sending, done = jobs
        assert (await finished(service, dialing)).status == "done"
        unknown = await job_of(service, sending)
        assert unknown.status == "failed" and unknown.error.startswith("unknown")
        assert (await job_of(service, done)).status == "done"
        assert len(line.sent) == 1  # only the one that had not reached anyone
    finally:
        await again.stop()


async def test_a_fax_waits_for_the_pbx_link_without_spending_a_dial(service, tmp_path) -> None:
    from cti.pbx import PbxLinkDown

    await service.faxes.outbox.stop()
    calls = []

    async def link_down_first(number: str, file: str, request_id: str) -> None:
        calls.append(request_id)
        if len(calls) == 1:
            raise PbxLinkDown("PBX lab is not connected")
        result = FaxAttempt(request_id=request_id, success=True, connected=True)
        asyncio.get_running_loop().call_soon(service.bus.publish_nowait, result)

    outbox = FaxOutbox(
        service.sessions, tmp_path / "faxes", FaxConfig(), service.bus, link_down_first
    )
    await outbox.start()
    try:
        job = await outbox.submit(
            "+74951234567", [tiff(tmp_path / "a.tif", 1)], "fine", username="a", extension=None
        )
        await eventually(lambda: _is(service, job.id, "requeued"))
        assert (await job_of(service, job.id)).dials == 0
    finally:
        await outbox.stop()


async def _is(service, job_id: int, status: str) -> bool:
    return (await job_of(service, job_id)).status == status


# -- the API -----------------------------------------------------------------------------


def form(number: str, *files: tuple[str, bytes], resolution: str = "fine") -> FormData:
    data = FormData(default_to_multipart=True)
    data.add_field("number", number)
    data.add_field("resolution", resolution)
    for name, content in files:
        data.add_field("files", content, filename=name, content_type="application/octet-stream")
    return data


async def test_the_api_sends_a_fax_and_shows_it_to_its_sender_only(
    service, tmp_path, aiohttp_client
) -> None:
    line = ScriptedLine(service.bus, [attempt(success=True, connected=True, pages=2)])
    service.faxes.outbox.send = line
    client = await aiohttp_client(build_app(service))
    anna = await new_token(service, "sales", extension="101")
    boris = await new_token(service, "sales", extension="102")
    document = tiff(tmp_path / "a.tif").read_bytes()
    response = await client.post(
        "/api/faxes", data=form("8 495 123-45-67", ("Договор.tif", document)), headers=bearer(anna)
    )
    assert response.status == 202, await response.text()
    job = await response.json()
    assert (job["direction"], job["number"], job["pages"], job["status"]) == (
        "out",
        "+74951234567",
        2,
        "queued",
    )
    await eventually(lambda: _status(client, anna, job["id"], "done"))
    mine = await client.get("/api/faxes", params={"direction": "out"}, headers=bearer(anna))
    assert [f["id"] for f in (await mine.json())["faxes"]] == [job["id"]]
    theirs = await client.get(f"/api/faxes/{job['id']}", headers=bearer(boris))
    assert theirs.status == 403
    pdf_back = await client.get(f"/api/faxes/{job['id']}/pdf", headers=bearer(anna))
    assert (await pdf_back.read()).startswith(b"%PDF")


@pytest.mark.parametrize(
    ("kwargs", "status", "words"),
    [
        (dict(number="not a number", files=[("a.pdf", b"%PDF-")]), 422, "phone number"),
        (dict(number="+74951234567", files=[]), 422, "attach"),
        (dict(number="+74951234567", files=[("a.zip", b"PK\x03\x04zip")]), 422, "not a PDF"),
    ],
)
async def test_the_api_refuses_what_it_cannot_send(
    service, aiohttp_client, kwargs, status, words
) -> None:
    service.faxes.outbox.send = ScriptedLine(service.bus, [])
    client = await aiohttp_client(build_app(service))
    token = await new_token(service, "sales", extension="101")
    response = await client.post(
        "/api/faxes", data=form(kwargs["number"], *kwargs["files"]), headers=bearer(token)
    )
    assert response.status == status
    assert words in (await response.json())["error"]["message"]
    listed = await client.get("/api/faxes", headers=bearer(token))
    assert (await listed.json())["faxes"] == []  # nothing half-made is left


async def test_the_api_refuses_json_and_too_big_uploads_and_a_service_without_a_fax_line(
    service, aiohttp_client
) -> None:
    client = await aiohttp_client(build_app(service))
    token = await new_token(service, "sales", extension="101")
    response = await client.post(
        "/api/faxes", json={"number": "+74951234567"}, headers=bearer(token)
    )
    assert response.status == 503  # no PBX: nothing can be sent
    service.faxes.outbox.send = ScriptedLine(service.bus, [])
    response = await client.post(
        "/api/faxes", json={"number": "+74951234567"}, headers=bearer(token)
    )
    assert response.status == 415
    big = b"%PDF-" + b"0" * (21 << 20)
    response = await client.post(
        "/api/faxes", data=form("+74951234567", ("big.pdf", big)), headers=bearer(token)
    )
    assert response.status == 413


async def _status(client, token: str, fax_id: int, status: str) -> bool:
    response = await client.get(f"/api/faxes/{fax_id}", headers=bearer(token))
    return (await response.json())["status"] == status


async def test_the_sender_gets_an_email_when_the_fax_is_sent(service, tmp_path) -> None:
    import socket

    from aiosmtpd.controller import Controller

    from cti import auth

    class Mailbox:
        def __init__(self) -> None:
            self.envelopes: list = []

        async def handle_DATA(self, server, session, envelope) -> str:
            self.envelopes.append(envelope)
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=port)
    smtp.start()
    async with service.sessions() as session:
        anna = await auth.create_user(session, "anna-fax", "sales", extension="101")
        anna.email = "anna@office.example"
        await session.commit()
    outbox, _ = await outbox_with(
        service,
        tmp_path,
        [attempt(success=True, connected=True, pages=1, remote_station="+7 495 ROMASHKA")],
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        mail_from="cti@office.example",
    )
    try:
        job = await outbox.submit(
            "+74951234567",
            [tiff(tmp_path / "a.tif", 1)],
            "fine",
            username="anna-fax",
            extension="101",
        )
        await eventually(lambda: mailbox.envelopes)
        [mail] = mailbox.envelopes
        assert mail.rcpt_tos == ["anna@office.example"]
        text = mail.content.decode()
        assert "Subject: Fax to +74951234567 sent" in text and f"Fax {job.id}" in text
        assert "ROMASHKA" in text
    finally:
        await outbox.stop()
        smtp.stop()


async def test_the_api_retries_a_failed_fax_and_cancels_a_waiting_one(
    service, tmp_path, aiohttp_client
) -> None:
    broken = attempt(success=False, code="failed", reason="remote hung up", connected=True)
    service.faxes.outbox.options = FaxConfig(max_tries=1)
    line = ScriptedLine(service.bus, [broken, attempt(success=True, connected=True)])
    service.faxes.outbox.send = line
    client = await aiohttp_client(build_app(service))
    anna = await new_token(service, "sales", extension="101")
    document = tiff(tmp_path / "a.tif", 1).read_bytes()
    response = await client.post(
        "/api/faxes", data=form("+74951234567", ("a.tif", document)), headers=bearer(anna)
    )
    fax_id = (await response.json())["id"]
    await eventually(lambda: _status(client, anna, fax_id, "failed"))
    again = await client.post(f"/api/faxes/{fax_id}/retry", headers=bearer(anna))
    assert again.status == 200 and (await again.json())["dials"] == 0
    await eventually(lambda: _status(client, anna, fax_id, "done"))
    late = await client.delete(f"/api/faxes/{fax_id}", headers=bearer(anna))
    assert late.status == 409  # sent: nothing to cancel
    await service.faxes.outbox.stop()  # the next one waits: it can be cancelled
    response = await client.post(
        "/api/faxes", data=form("+74951234567", ("b.tif", document)), headers=bearer(anna)
    )
    waiting = (await response.json())["id"]
    cancelled = await client.delete(f"/api/faxes/{waiting}", headers=bearer(anna))
    assert cancelled.status == 200 and (await cancelled.json())["status"] == "cancelled"
