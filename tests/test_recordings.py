"""Call recordings: a lab call replayed over AMI gets its MixMonitor file attached and
served (whole, in ranges, only to those who may hear it, every fetch audited); paths that
would leave the recordings folder are never served; dropped files are matched to calls;
old ones are deleted. SQLite and PostgreSQL."""

import asyncio
import json
import logging
import os
import random
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import bearer, eventually
from lab import FIXTURES, lab_pbx
from sqlalchemy import select

from cti.calls import Call, FaxInfo
from cti.config import Config, DatabaseConfig, RecordingsConfig, ServerConfig
from cti.db.models import CallRecord, Recording
from cti.domain import Direction, Outcome, utcnow
from cti.service import Service
from pbx_adapters.asterisk.simulator import LAB_MONITOR, AmiSimulator, load_transcript
from recordings.store import inside

# MixMonitor files from the lab Asterisk (copies of ../shared/fixtures/recordings).
WAVS = Path(__file__).resolve().parent / "fixtures" / "recordings"
CALL_ID = "lab:1795362636.6"  # sip_inbound_answered: MixMonitor writes 1795362636.6.wav
WAV = WAVS / "1795362636.6.wav"
DAY = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture
async def pbx() -> AsyncIterator[AmiSimulator]:
    sim = AmiSimulator(username="cti", secret="lab", chunking=random.Random(5), max_chunk=200)
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
def config(db_url: str, tmp_path: Path, pbx: AmiSimulator) -> Config:
    (tmp_path / "drop").mkdir()
    return Config(
        server=ServerConfig(data_dir=tmp_path, port=0),
        database=DatabaseConfig(url=db_url, auto_migrate=True),
        pbx=[lab_pbx(pbx.port, "lab")],
        recordings=RecordingsConfig(
            dir=str(tmp_path / "recs"),
            pbx_dir=LAB_MONITOR,
            watch_dir=str(tmp_path / "drop"),
            watch_seconds=0.05,
            match_seconds=120,
            retention_days=30,
        ),
    )


def recs(service: Service) -> Path:
    return service.recordings.store.root


async def rows_of(service: Service, call_id: str) -> list[Recording]:
    async with service.sessions() as session:
        found = await session.scalars(
            select(Recording).where(Recording.call_id == call_id).order_by(Recording.id)
        )
        return list(found)


async def store_call(
    service: Service,
    call_id: str,
    number: str | None = None,
    started: datetime = DAY,
    minutes: float = 5,
    recordings: list[str] | None = None,
) -> None:
    call = Call(
        id=call_id,
        pbx="lab",
        started_at=started,
        direction=Direction.INBOUND,
        external_number=number,
        answered_by="101",
        answered_at=started + timedelta(seconds=10),
        ended_at=started + timedelta(minutes=minutes),
        outcome=Outcome.ANSWERED,
        recordings=recordings or [],
    )
    service.call_store.save([call])
    await service.call_store.flush()


async def test_a_replayed_call_is_served_whole_and_in_ranges_to_those_on_it(
    pbx, service, client, make_user
) -> None:
    supervisor = await make_user("supervisor", username="boss")
    anna = await make_user("operator", "101", username="anna")  # answered the call
    giorgi = await make_user("operator", "102", username="giorgi")  # was not on it
    reception = await make_user("receptionist", "100")
    await asyncio.wait_for(service.pbx["lab"].link_up.wait(), 10)
    frames = load_transcript(FIXTURES / "sip_inbound_answered.ami")
    cut = next(i for i, f in enumerate(frames) if f.get("Event") == "BridgeEnter")
    await pbx.play(frames[:cut])  # MixMonitor has started; the call goes on

    async def listed(token: str = supervisor) -> list[dict]:
        response = await client.get(f"/api/calls/{CALL_ID}/recordings", headers=bearer(token))
        if response.status == 404:  # not stored yet
            return []
        assert response.status == 200, await response.text()
        return (await response.json())["recordings"]

    await eventually(listed)
    [recording] = await listed()
    assert recording["available"] is False and recording["size"] is None
    assert recording["content_type"] == "audio/wav" and recording["source"] == "pbx"
    url = f"/api/recordings/{recording['id']}"
    response = await client.get(url, headers=bearer(supervisor))
    assert response.status == 404
    assert "not available yet" in (await response.json())["error"]["message"]

    # The PBX's folder is mounted as the recordings folder: the file appears there.
    shutil.copy(WAV, recs(service) / WAV.name)
    data = WAV.read_bytes()
    await pbx.play(frames[cut:])
    await eventually(lambda: not service.pbx["lab"].tracker.calls)
    await service.call_store.flush()
    [recording] = await listed()  # written many times, attached once
    assert recording["available"] is True and recording["size"] == len(data) == 95724

    response = await client.get(url, headers=bearer(supervisor))
    assert response.status == 200
    assert await response.read() == data
    assert response.headers["Content-Type"] == "audio/wav"
    assert response.headers["Content-Disposition"].startswith("inline")
    assert response.headers["Cache-Control"] == "private"
    assert response.headers["Accept-Ranges"] == "bytes"

    response = await client.get(url, headers={**bearer(supervisor), "Range": "bytes=0-99"})
    assert response.status == 206
    assert await response.read() == data[:100]
    assert response.headers["Content-Range"] == f"bytes 0-99/{len(data)}"

    response = await client.get(url, headers={**bearer(supervisor), "Range": "bytes=999999-"})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{len(data)}"

    response = await client.get(url, headers=bearer(anna))
    assert response.status == 200 and await response.read() == data
    assert [r["id"] for r in await listed(anna)] == [recording["id"]]

    response = await client.get(url, headers=bearer(giorgi))
    assert response.status == 403
    response = await client.get(f"/api/calls/{CALL_ID}/recordings", headers=bearer(giorgi))
    assert response.status == 404  # as the call itself: not even whether it exists
    assert (await client.get(url, headers=bearer(reception))).status == 403
    assert (await client.get("/api/recordings/999999", headers=bearer(supervisor))).status == 404
    assert (await client.get("/api/recordings/..%2F1", headers=bearer(supervisor))).status == 404

    response = await client.get(f"{url}/listens", headers=bearer(supervisor))
    listens = (await response.json())["listens"]
    # Newest first; every authorized request for the file, the unsatisfiable range too.
    assert [(x["username"], x["range"]) for x in listens] == [
        ("anna", None),
        ("boss", "bytes=999999-"),
        ("boss", "bytes=0-99"),
        ("boss", None),
    ]
    assert all(x["remote"] == "127.0.0.1" for x in listens)
    assert (await client.get(f"{url}/listens", headers=bearer(anna))).status == 403


async def test_a_path_out_of_the_folder_is_never_attached_nor_served(
    service, client, make_user, tmp_path
) -> None:
    supervisor = await make_user("supervisor")
    root = recs(service)
    secret = tmp_path / "secret.wav"
    secret.write_text("TOPSECRET")
    (root / "out.wav").symlink_to(secret)
    (root / "db.wav").symlink_to(tmp_path / "test.db")
    (root / "ok.wav").write_bytes(b"RIFF....")
    (root / "notes.txt").write_text("not audio")
    await store_call(
        service,
        "lab:1.1",
        recordings=[f"{LAB_MONITOR}/../../../etc/passwd.wav", "/elsewhere/ok.wav"],
    )
    [attached] = await rows_of(service, "lab:1.1")  # the one under ../ was refused
    assert attached.path == "ok.wav"  # outside pbx_dir: by its name alone
    await store_call(service, "lab:1.2", recordings=[f"{LAB_MONITOR}/ok.wav"])
    assert await rows_of(service, "lab:1.2") == []  # a file is one call's only
    async with service.sessions() as session:
        for path in ("../../etc/passwd", "/etc/passwd", "out.wav", "sub/../../secret.wav"):
            session.add(
                Recording(call_id="lab:1.1", path=path, content_type="audio/wav", source="pbx")
            )
        session.add(
            Recording(call_id="lab:1.1", path="notes.txt", content_type="text/plain", source="pbx")
        )
        await session.commit()
    rows = await rows_of(service, "lab:1.1")
    assert len(rows) == 6
    for row in rows[1:]:
        response = await client.get(f"/api/recordings/{row.id}", headers=bearer(supervisor))
        assert response.status == 404, row.path
        assert "TOPSECRET" not in await response.text()
    listed = await client.get("/api/calls/lab:1.1/recordings", headers=bearer(supervisor))
    assert [r["available"] for r in (await listed.json())["recordings"]] == [True] + [False] * 5
    response = await client.get(f"/api/recordings/{rows[0].id}", headers=bearer(supervisor))
    assert response.status == 200 and await response.read() == b"RIFF...."

    assert inside(root, "ok.wav") == root / "ok.wav"
    assert inside(root, "2026/11/x.wav") == root / "2026/11/x.wav"  # not there yet: fine
    for bad in ("", "a\x00.wav", "/etc/passwd", "../x.wav", "a/../../x.wav", "out.wav"):
        assert inside(root, bad) is None, bad
    assert inside(root, "db.wav") is None  # inside tmp_path, but not in the folder
    assert inside(root, "notes.txt") is None  # not audio


async def test_dropped_files_are_matched_by_call_id_or_number_and_time(
    service, client, make_user, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="cti.recordings")
    drop = Path(service.config.recordings.watch_dir)
    await store_call(service, "lab:1795400000.7", "+78125550101")
    await store_call(service, "lab:1795400100.9", "+78125550102", DAY + timedelta(hours=1))
    await store_call(service, "lab:1795300100.2", "+78125550102", DAY - timedelta(days=1))
    await store_call(service, "lab:1795400200.3", "+78125550103", DAY + timedelta(hours=2))
    await store_call(
        service,
        "lab:1795400300.5",
        "+78125550104",
        DAY + timedelta(hours=3),
        recordings=[f"{LAB_MONITOR}/1795400300.5.wav"],  # announced, copied here later
    )
    local = (DAY + timedelta(hours=1, minutes=1)).astimezone()  # names use local time
    by_number = f"in-101-88125550102-{local:%Y%m%d-%H%M%S}.wav"
    for name in ("1795400000.7.wav", by_number, "rec-88125550103.wav", "1795400300.5.wav"):
        shutil.copy(WAV, drop / name)
    ended = (DAY + timedelta(hours=2, minutes=5, seconds=30)).timestamp()
    os.utime(drop / "rec-88125550103.wav", (ended, ended))  # no time in the name: mtime
    (drop / "mystery-88125550199.wav").write_bytes(b"RIFF")
    (drop / "readme.txt").write_text("not a recording")

    await eventually(
        lambda: sorted(p.name for p in drop.iterdir()) == ["mystery-88125550199.wav", "readme.txt"]
    )
    expected = [
        ("lab:1795400000.7", "2026/11/1795400000.7.wav"),
        ("lab:1795400100.9", f"2026/11/{by_number}"),
        ("lab:1795400200.3", "2026/11/rec-88125550103.wav"),
        ("lab:1795400300.5", "1795400300.5.wav"),  # where the PBX said it would be
    ]

    async def all_attached() -> bool:  # a file is moved first, then its row written
        found = [[row.path for row in await rows_of(service, c)] for c, _ in expected]
        return found == [[p] for _, p in expected]

    await eventually(all_attached)
    for call_id, path in expected:
        [row] = await rows_of(service, call_id)
        assert row.path == path
        assert (recs(service) / path).read_bytes() == WAV.read_bytes()
        assert row.size == WAV.stat().st_size
    assert await rows_of(service, "lab:1795300100.2") == []  # the same number a day before
    [row] = await rows_of(service, "lab:1795400000.7")
    assert row.source == "watched" and row.content_type == "audio/wav"
    supervisor = await make_user("supervisor")
    response = await client.get(f"/api/recordings/{row.id}", headers=bearer(supervisor))
    assert response.status == 200

    await asyncio.sleep(0.3)  # several more looks at the folder
    unmatched = [r for r in caplog.records if "matches no call" in r.getMessage()]
    assert [r.fields["file"] for r in unmatched] == ["mystery-88125550199.wav"]  # logged once


async def test_old_recordings_are_deleted_at_start_up_and_logged(
    config, service, client, make_user, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="cti.recordings")
    supervisor = await make_user("supervisor")
    root = recs(service)
    now = utcnow()
    old, older, recent = (
        now - timedelta(days=40),
        now - timedelta(days=100),
        now - timedelta(days=2),
    )
    for n, started in enumerate((old, recent, older)):
        await store_call(
            service, f"lab:1.{n}", started=started, recordings=[f"{LAB_MONITOR}/{n}.wav"]
        )
        (root / f"{n}.wav").write_bytes(b"RIFF")
    assert await service.recordings.retention.run() == 2
    assert not (root / "0.wav").exists() and not (root / "2.wav").exists()
    assert (root / "1.wav").exists()
    [message] = [r.getMessage() for r in caplog.records if "deleted" in r.getMessage()]
    assert message == (
        f"deleted 2 recordings older than 30 days, the oldest from {older.date().isoformat()}"
    )
    [row] = await rows_of(service, "lab:1.0")
    assert row.deleted_at is not None
    listed = await client.get("/api/calls/lab:1.0/recordings", headers=bearer(supervisor))
    assert (await listed.json())["recordings"][0]["deleted"] is True
    response = await client.get(f"/api/recordings/{row.id}", headers=bearer(supervisor))
    assert response.status == 404
    # The PBX announcing the call again does not bring it back.
    await store_call(service, "lab:1.0", started=old, recordings=[f"{LAB_MONITOR}/0.wav"])
    assert len(await rows_of(service, "lab:1.0")) == 1
    assert await service.recordings.retention.run() == 0

    # At start-up: another instance on the same database deletes what is due by then.
    await store_call(service, "lab:1.3", started=old, recordings=[f"{LAB_MONITOR}/3.wav"])
    (root / "3.wav").write_bytes(b"RIFF")
    other = await Service.start(config.model_copy(update={"pbx": []}))
    try:
        await eventually(lambda: not (root / "3.wav").exists())
    finally:
        await other.close()


FAKE_FFMPEG = """#!/bin/sh
# Takes "-i <in> ... <out>" and writes <out> as a copy of <in>.
while [ $# -gt 1 ]; do [ "$1" = "-i" ] && input="$2"; shift; done
cp "$input" "$1"
"""


async def test_transcoding_to_opus_with_ffmpeg(config, tmp_path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ffmpeg").write_text(FAKE_FFMPEG)
    (bin_dir / "ffmpeg").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    options = config.recordings.model_copy(update={"transcode": "opus"})
    service = await Service.start(config.model_copy(update={"pbx": [], "recordings": options}))
    try:
        root = recs(service)
        shutil.copy(WAV, root / "call.wav")
        await store_call(service, "lab:7.1", recordings=[f"{LAB_MONITOR}/call.wav"])
        # The row is updated before the WAV goes.
        await eventually(lambda: not (root / "call.wav").exists())
        [row] = await rows_of(service, "lab:7.1")
        assert (row.path, row.content_type) == ("call.opus", "audio/ogg")
        assert row.size == WAV.stat().st_size
        # The PBX announcing the .wav again does not attach it a second time.
        await store_call(service, "lab:7.1", recordings=[f"{LAB_MONITOR}/call.wav"])
        assert len(await rows_of(service, "lab:7.1")) == 1
    finally:
        await service.close()


async def test_without_ffmpeg_the_wav_stays_and_it_is_said_once(
    config, tmp_path, monkeypatch, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="cti.recordings")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    options = config.recordings.model_copy(update={"transcode": "opus"})
    service = await Service.start(config.model_copy(update={"pbx": [], "recordings": options}))
    try:
        root = recs(service)
        for n in (1, 2):
            shutil.copy(WAV, root / f"{n}.wav")
            await store_call(service, f"lab:8.{n}", recordings=[f"{LAB_MONITOR}/{n}.wav"])
        await asyncio.sleep(0.2)
        assert (root / "1.wav").exists() and (root / "2.wav").exists()
        warnings = [r for r in caplog.records if "needs ffmpeg" in r.getMessage()]
        assert len(warnings) == 1
        [row] = await rows_of(service, "lab:8.1")
        assert row.content_type == "audio/wav"
    finally:
        await service.close()


@pytest.mark.skipif(
    not (Path(__file__).resolve().parents[2] / "shared").is_dir(),
    reason="../shared is not beside this checkout",
)
def test_fixture_recordings_are_the_labs_own() -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "recordings"
    for wav in shared.glob("*.wav"):
        assert (WAVS / wav.name).read_bytes() == wav.read_bytes()


def test_only_those_who_talked_were_on_the_call() -> None:
    from cti.calls import Call, CallLeg, CallTransfer
    from cti.domain import TransferKind

    at = datetime(2026, 11, 23, 9, tzinfo=UTC)
    call = Call(id="c", pbx="lab", started_at=at, answered_by="102")
    call.legs = [CallLeg("101", at), CallLeg("102", at, answered_at=at)]  # a ring group
    assert call.participants() == ("102",) and "101" in call.extensions()
    call.transfers = [CallTransfer(TransferKind.BLIND, "102", "105", at)]
    assert call.participants() == ("102", "105")


def grant_cookie(response) -> tuple[str, dict[str, str]]:
    """The media grant's value and attributes (lower-case names) from a Set-Cookie."""
    [header] = response.headers.getall("Set-Cookie")
    first, *attributes = (part.strip() for part in header.split(";"))
    name, _, value = first.partition("=")
    assert name == "media_grant"
    found = {}
    for attribute in attributes:
        key, _, val = attribute.partition("=")
        found[key.lower()] = val
    return value, found


async def test_a_media_grant_opens_one_recording_to_the_browser_without_the_token(
    service, client, make_user, caplog, monkeypatch
) -> None:
    """The page's way to stream: a cookie from POST .../grant stands in for the token on
    that recording's URL only, with Range requests, audited, never logged."""
    import cti.http.recordings as recordings_api

    caplog.set_level(logging.DEBUG)  # the access log and everything else
    anna = await make_user("operator", "101", username="anna")  # answered both calls
    giorgi = await make_user("operator", "102", username="giorgi")
    boss = await make_user("supervisor", username="boss")
    data = WAV.read_bytes()
    for n in (1, 2):
        shutil.copy(WAV, recs(service) / f"{n}.wav")
        await store_call(service, f"lab:9.{n}", recordings=[f"{LAB_MONITOR}/{n}.wav"])
    [a], [b] = await rows_of(service, "lab:9.1"), await rows_of(service, "lab:9.2")
    url_a, url_b = f"/api/recordings/{a.id}", f"/api/recordings/{b.id}"

    response = await client.post(f"{url_a}/grant", headers=bearer(anna))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["url"] == url_a and body["expires_in"] == recordings_api.GRANT_SECONDS
    assert response.headers["Cache-Control"] == "no-store"
    value, attributes = grant_cookie(response)
    assert attributes["path"] == url_a and attributes["max-age"] == "600"
    assert attributes["samesite"] == "Strict" and "httponly" in attributes
    assert "secure" not in attributes  # plain http here; https gets Secure
    assert anna not in value and anna.removeprefix("cti_") not in value

    # The client's cookie jar acts as a browser's: the cookie goes to that URL only.
    response = await client.get(url_a, headers={"Range": "bytes=0-99"})
    assert response.status == 206
    assert await response.read() == data[:100]
    assert response.headers["Content-Range"] == f"bytes 0-99/{len(data)}"
    response = await client.get(url_a)
    assert response.status == 200 and await response.read() == data
    response = await client.get(url_b)  # no cookie for B: as without a token
    assert response.status == 401
    assert (await client.get(f"{url_a}/listens")).status == 401  # the token only there
    client.session.cookie_jar.clear()

    async def with_cookie(url: str, cookie: str, status: int, words: str) -> None:
        response = await client.get(url, headers={"Cookie": f"media_grant={cookie}"})
        assert response.status == status, await response.text()
        error = (await response.json())["error"]
        assert error["status"] == status and words in error["message"]

    await with_cookie(url_b, value, 403, "another recording")  # A's grant does not open B
    body, _, signature = value.rpartition(".")
    _, *rest = body.split(".")
    await with_cookie(url_b, ".".join([str(b.id), *rest, signature]), 401, "not valid")
    forged = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    await with_cookie(url_a, f"{body}.{forged}", 401, "not valid")
    await with_cookie(url_a, "1.2.3.4", 401, "not valid")
    other_key = recordings_api.MediaGrant(a.id, 1, 1, 2**40).signed(b"k" * 32)
    await with_cookie(url_a, other_key, 401, "not valid")

    later = recordings_api.GRANT_SECONDS + 1
    monkeypatch.setattr(recordings_api, "_clock", lambda: time.time() + later)
    await with_cookie(url_a, value, 401, "expired")
    monkeypatch.undo()

    # Someone who was not on the call gets no grant; the bearer token still works as ever.
    response = await client.post(f"{url_a}/grant", headers=bearer(giorgi))
    assert response.status == 403 and "Set-Cookie" not in response.headers
    assert (await response.json())["error"]["code"] == "forbidden"
    assert (await client.post("/api/recordings/99999/grant", headers=bearer(anna))).status == 404
    response = await client.get(url_a, headers={**bearer(boss), "Range": "bytes=10-19"})
    assert response.status == 206 and await response.read() == data[10:20]

    # Every listen is audited as before: who, and the Range the browser asked for.
    response = await client.get(f"{url_a}/listens", headers=bearer(boss))
    listens = (await response.json())["listens"]
    assert [(x["username"], x["range"]) for x in listens] == [
        ("boss", "bytes=10-19"),
        ("anna", None),
        ("anna", "bytes=0-99"),
    ]

    # The grant ends with the session it was asked with.
    response = await client.post(f"{url_a}/grant", headers=bearer(anna))
    second, _ = grant_cookie(response)
    client.session.cookie_jar.clear()
    response = await client.get(url_a, headers={"Cookie": f"media_grant={second}"})
    assert response.status == 200
    assert (await client.delete("/api/session", headers=bearer(anna))).status == 200
    await with_cookie(url_a, second, 401, "has ended")

    # Neither the token nor a grant reaches the log (the access log included) or the audit.
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert any(r.name == "aiohttp.access" for r in caplog.records)
    assert url_a in logged
    audit = await (await client.get(f"{url_a}/listens", headers=bearer(boss))).text()
    assert '"anna"' in audit
    for secret in (anna, anna.removeprefix("cti_"), value, signature, second):
        assert secret not in logged
        assert secret not in audit


def test_a_media_grant_is_read_only_with_its_key() -> None:
    from cti.http.recordings import MediaGrant

    grant = MediaGrant(recording_id=7, user_id=3, token_id=11, expires=1_800_000_000)
    value = grant.signed(b"k" * 32)
    assert value.startswith("7.3.11.1800000000.")
    assert MediaGrant.read(b"k" * 32, value) == grant
    assert MediaGrant.read(b"x" * 32, value) is None
    for bad in ("", "7.3.11.1800000000", value + "x", "٧" + value[1:], value.replace("7", "8", 1)):
        assert MediaGrant.read(b"k" * 32, bad) is None, bad


async def test_the_api_never_shows_the_pbx_file_paths(pbx, service, client, make_user) -> None:
    """A call's recordings (and a fax's file) are the PBX's own paths: the call log, one
    call, the CSV export and the live feed show how many there are, never where."""
    boss = await make_user("supervisor", username="boss")
    anna = await make_user("operator", "101", username="anna")
    fax_file = "/var/spool/asterisk/fax/1795362700.1.tif"
    fax_call = Call(
        id="lab:1795362700.1",
        pbx="lab",
        started_at=DAY,
        direction=Direction.INBOUND,
        external_number="+78125550109",
        answered_at=DAY,
        ended_at=DAY + timedelta(minutes=1),
        outcome=Outcome.ANSWERED,
        fax=FaxInfo(2, fax_file),
        recordings=[f"{LAB_MONITOR}/1795362700.1.wav"],
    )
    service.call_store.save([fax_call])
    await asyncio.wait_for(service.pbx["lab"].link_up.wait(), 10)
    async with client.ws_connect("/ws?events=calls", headers=bearer(boss)) as ws:
        await pbx.play(load_transcript(FIXTURES / "sip_inbound_answered.ami"))
        frames = []
        while not any(f["type"] == "call.ended" for f in frames):
            frames.append(await asyncio.wait_for(ws.receive_json(), 5))
    await eventually(lambda: not service.pbx["lab"].tracker.calls)
    await service.call_store.flush()
    await eventually(lambda: rows_of(service, CALL_ID))
    async with service.sessions() as session:
        stored = (await session.get_one(CallRecord, CALL_ID)).details
    assert stored["recordings"] == [f"{LAB_MONITOR}/1795362636.6.wav"]  # kept, for the store
    assert {f["type"] for f in frames} >= {"pop", "call.ringing", "call.answered"}

    def leaks(text: str) -> bool:
        return any(word in text for word in (LAB_MONITOR, "1795362636.6.wav", fax_file, ".tif"))

    assert not leaks(json.dumps(frames, ensure_ascii=False))
    for token in (boss, anna):
        response = await client.get("/api/calls", headers=bearer(token))
        text = await response.text()
        assert response.status == 200 and not leaks(text)
        calls = {c["id"]: c for c in json.loads(text)["calls"]}
        assert calls[CALL_ID]["recording_count"] == 1 and "recordings" not in calls[CALL_ID]
        response = await client.get(f"/api/calls/{CALL_ID}", headers=bearer(token))
        text = await response.text()
        assert response.status == 200 and not leaks(text)
        call = json.loads(text)
        assert call["recording_count"] == 1 and call["answered_by"] == "101"
        assert "recordings" not in call and call["legs"]
    response = await client.get(f"/api/calls/{fax_call.id}", headers=bearer(boss))
    call = await response.json()
    assert call["fax"] == {"pages": 2} and call["recording_count"] == 1
    assert not leaks(json.dumps(call))
    response = await client.get("/api/calls/export", headers=bearer(boss))
    text = await response.text()
    assert response.status == 200 and CALL_ID in text and not leaks(text)
    response = await client.get(f"/api/calls/{CALL_ID}/recordings", headers=bearer(boss))
    assert response.status == 200 and not leaks(await response.text())


async def test_a_recording_whose_file_was_removed_says_it_was_deleted(
    pbx, service, client, make_user
) -> None:
    """Issue 15, D10: not "never arrived" for a file that was there and was removed."""
    supervisor = await make_user("supervisor", username="boss")
    await asyncio.wait_for(service.pbx["lab"].link_up.wait(), 10)
    frames = load_transcript(FIXTURES / "sip_inbound_answered.ami")
    shutil.copy(WAV, recs(service) / WAV.name)
    await pbx.play(frames)
    await eventually(lambda: not service.pbx["lab"].tracker.calls)
    await service.call_store.flush()

    async def listed() -> list[dict]:
        response = await client.get(f"/api/calls/{CALL_ID}/recordings", headers=bearer(supervisor))
        return (await response.json())["recordings"] if response.status == 200 else []

    await eventually(listed)
    [recording] = await listed()
    url = f"/api/recordings/{recording['id']}"
    assert (await client.get(url, headers=bearer(supervisor))).status == 200
    (recs(service) / WAV.name).unlink()
    response = await client.get(url, headers=bearer(supervisor))
    assert response.status == 404
    assert "was deleted" in (await response.json())["error"]["message"]
    [recording] = await listed()
    assert (recording["state"], recording["deleted"]) == ("deleted", True)
