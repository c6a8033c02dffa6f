"""Call recordings: a lab call replayed over AMI gets its MixMonitor file attached and
served (whole, in ranges, only to those who may hear it, every fetch audited); paths that
would leave the recordings folder are never served; dropped files are matched to calls;
old ones are deleted. SQLite and PostgreSQL."""

import asyncio
import logging
import os
import random
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import bearer, eventually
from lab import FIXTURES, lab_pbx
from sqlalchemy import select

from cti.calls import Call
from cti.config import Config, DatabaseConfig, RecordingsConfig, ServerConfig
from cti.db.models import Recording
from cti.domain import Direction, Outcome, utcnow
from cti.service import Service
from pbx_adapters.asterisk.simulator import AmiSimulator, load_transcript
from recordings.store import inside

# MixMonitor files from the lab Asterisk (copies of ../shared/fixtures/recordings).
WAVS = Path(__file__).resolve().parent / "fixtures" / "recordings"
CALL_ID = "lab:1795362636.6"  # sip_inbound_answered: MixMonitor writes 1795362636.6.wav
WAV = WAVS / "1795362636.6.wav"
LAB_MONITOR = "/tmp/astlab/monitor"  # noqa: S108 (the lab PBX's folder, only a name here)
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
    await asyncio.wait_for(service.pbx["lab"].connected.wait(), 10)
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
