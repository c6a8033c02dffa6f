"""Recordings the PBX announced whose file never came, or came empty: "pending" while the
call goes on and for [recordings] missing_after_seconds after it, then "missing", logged
once (across restarts too); a file that still comes later is available all the same.
SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from helpers import bearer, eventually
from sqlalchemy import select

from cti.calls import Call
from cti.config import Config, DatabaseConfig, RecordingsConfig, ServerConfig
from cti.db.models import CallRecord, Recording
from cti.domain import Direction, Outcome, utcnow
from cti.service import Service
from recordings.store import has_audio

WAV = Path(__file__).resolve().parent / "fixtures" / "recordings" / "1795362636.6.wav"
MONITOR = "/var/spool/asterisk/monitor"
GRACE = timedelta(minutes=10)


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    return Config(
        server=ServerConfig(data_dir=tmp_path, port=0),
        database=DatabaseConfig(url=db_url, auto_migrate=True),
        recordings=RecordingsConfig(
            dir=str(tmp_path / "recs"),
            pbx_dir=MONITOR,
            missing_after_seconds=GRACE.total_seconds(),
        ),
    )


@pytest.fixture
async def service(config: Config) -> AsyncIterator[Service]:
    """The service, without its own rounds of the check: the tests run it by hand."""
    svc = await Service.start(config)
    try:
        await quiet(svc)
        yield svc
    finally:
        await svc.close()


async def quiet(service: Service) -> None:
    for job in service.recordings.jobs:
        if job.name == "recordings-missing":
            await job.stop()


def header_only(path: Path) -> Path:
    """A WAV as MixMonitor leaves it when nothing was recorded: the 44-byte header."""
    path.write_bytes(WAV.read_bytes()[:44])
    return path


async def store_call(
    service: Service, call_id: str, ended: datetime | None, name: str | None = None
) -> None:
    """A missed call (or one going on, ``ended`` None) whose recording the PBX announced
    as ``<name or call_id>.wav``."""
    started = (ended or utcnow()) - timedelta(seconds=40)
    call = Call(
        id=call_id,
        pbx="office",
        started_at=started,
        direction=Direction.INBOUND,
        external_number="+78125550101",
        ended_at=ended,
        outcome=Outcome.NO_ANSWER if ended else None,
        missed=ended is not None,
        recordings=[f"{MONITOR}/{name or call_id}.wav"],
    )
    service.call_store.save([call])
    await service.call_store.flush()


async def state(service: Service, call_id: str, now: datetime | None = None) -> str:
    async with service.sessions() as session:
        call = await session.get_one(CallRecord, call_id)
        [row] = await session.scalars(select(Recording).where(Recording.call_id == call_id))
    return service.recordings.store.state_of(row, call, now).state


async def size_of(service: Service, call_id: str) -> int | None:
    async with service.sessions() as session:
        return await session.scalar(select(Recording.size).where(Recording.call_id == call_id))


def test_an_empty_file_or_a_header_only_wav_is_no_audio(tmp_path: Path) -> None:
    assert has_audio(WAV)
    assert not has_audio(tmp_path / "never.wav")
    assert not has_audio(header_only(tmp_path / "header.wav"))
    (tmp_path / "empty.wav").write_bytes(b"")
    assert not has_audio(tmp_path / "empty.wav")
    (tmp_path / "empty.opus").write_bytes(b"")
    assert not has_audio(tmp_path / "empty.opus")
    (tmp_path / "some.opus").write_bytes(b"OggS" + bytes(100))
    assert has_audio(tmp_path / "some.opus")
    assert not has_audio(tmp_path)  # a folder is no recording
    # Being recorded: MixMonitor's header still says 0 bytes of data, samples follow.
    head = bytearray(WAV.read_bytes()[:44])
    head[40:44] = bytes(4)
    (tmp_path / "growing.wav").write_bytes(bytes(head) + b"\x01\x02" * 80)
    assert has_audio(tmp_path / "growing.wav")
    # Another chunk before the data (odd-sized, so padded): header only, then with audio.
    fmt = WAV.read_bytes()[12:36]
    note = b"LIST" + (3).to_bytes(4, "little") + b"abc\x00"
    wav = b"RIFF" + bytes(4) + b"WAVE" + fmt + note + b"data" + bytes(4)
    (tmp_path / "listed.wav").write_bytes(wav)
    assert not has_audio(tmp_path / "listed.wav")
    (tmp_path / "listed.wav").write_bytes(wav + b"\x00\x10" * 8)
    assert has_audio(tmp_path / "listed.wav")


async def test_a_recording_that_never_came_is_missing_after_the_grace_and_logged_once(
    config, service, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="cti.recordings")
    root = service.recordings.store.root
    now = utcnow()
    await store_call(service, "pbx:1.1", now - GRACE - timedelta(minutes=5))  # no file
    await store_call(service, "pbx:1.2", now - GRACE - timedelta(minutes=5))  # empty WAV
    header_only(root / "pbx:1.2.wav")
    await store_call(service, "pbx:1.3", now - timedelta(minutes=1))  # just ended
    await store_call(service, "pbx:1.4", now - GRACE - timedelta(minutes=5))  # came
    shutil.copy(WAV, root / "pbx:1.4.wav")
    await store_call(service, "pbx:1.5", None)  # still going on, for an hour already
    async with service.sessions() as session:
        call = await session.get_one(CallRecord, "pbx:1.5")
        call.started_at = now - timedelta(hours=1)
        await session.commit()

    assert [await state(service, f"pbx:1.{n}") for n in range(1, 6)] == [
        "missing",  # the API says so at once, before the check has run
        "missing",
        "pending",
        "available",
        "pending",
    ]
    assert await service.recordings.missing.run() == 2
    warnings = [r for r in caplog.records if "never arrived" in r.getMessage()]
    assert [(r.fields["call"], r.getMessage()) for r in warnings] == [
        ("pbx:1.1", "a call's recording never arrived: there is no file"),
        ("pbx:1.2", "a call's recording never arrived: the file is empty"),
    ]
    assert all(r.levelno == logging.WARNING for r in warnings)
    assert [await size_of(service, f"pbx:1.{n}") for n in range(1, 6)] == [
        0,
        0,
        None,  # not settled yet
        WAV.stat().st_size,
        None,
    ]
    assert await service.recordings.missing.run() == 0  # once only

    # The grace of the call that just ended runs out; the long call ends.
    later = now + GRACE + timedelta(minutes=1)
    assert await state(service, "pbx:1.3", later) == "missing"
    assert await service.recordings.missing.run(later) == 1
    assert await service.recordings.missing.run(later) == 0
    await store_call(service, "pbx:1.5", later - timedelta(minutes=1))
    assert await state(service, "pbx:1.5", later) == "pending"
    assert await state(service, "pbx:1.5", later + GRACE) == "missing"

    # A file that comes after all (a slow copy) is served all the same.
    shutil.copy(WAV, root / "pbx:1.1.wav")
    assert await state(service, "pbx:1.1") == "available"
    # Retention took it: deleted, whatever the file.
    async with service.sessions() as session:
        [row] = await session.scalars(select(Recording).where(Recording.call_id == "pbx:1.2"))
        row.deleted_at = now
        await session.commit()
    assert await state(service, "pbx:1.2") == "deleted"

    # Another start on the same database: what was logged is not logged again.
    caplog.clear()
    other = await Service.start(config)
    try:
        await quiet(other)  # its first round ran at start
        assert await other.recordings.missing.run() == 0
        assert await other.recordings.missing.run(later) == 0
    finally:
        await other.close()
    assert [r.fields["call"] for r in caplog.records if "never arrived" in r.getMessage()] == []


async def test_the_check_runs_by_itself(config, tmp_path) -> None:
    options = config.recordings.model_copy(update={"missing_after_seconds": 0.2})
    service = await Service.start(config.model_copy(update={"recordings": options}))
    try:
        await store_call(service, "pbx:2.1", utcnow())

        async def settled() -> bool:
            return await size_of(service, "pbx:2.1") == 0

        await eventually(settled, 5)
        assert await state(service, "pbx:2.1") == "missing"
    finally:
        await service.close()


async def test_the_api_says_missing_and_serves_no_empty_file(service, client, make_user) -> None:
    supervisor = await make_user("supervisor")
    root = service.recordings.store.root
    now = utcnow()
    await store_call(service, "pbx:3.1", now - GRACE - timedelta(minutes=1))
    await store_call(service, "pbx:3.2", now - GRACE - timedelta(minutes=1))
    header_only(root / "pbx:3.2.wav")
    await store_call(service, "pbx:3.3", now - timedelta(minutes=1))
    header_only(root / "pbx:3.3.wav")
    await store_call(service, "pbx:3.4", now - GRACE - timedelta(minutes=1))
    shutil.copy(WAV, root / "pbx:3.4.wav")

    async def listed(call_id: str) -> dict:
        reply = await client.get(f"/api/calls/{call_id}/recordings", headers=bearer(supervisor))
        assert reply.status == 200
        [recording] = (await reply.json())["recordings"]
        return recording

    expected = {
        "pbx:3.1": ("missing", False, None),
        "pbx:3.2": ("missing", False, None),  # a header and no audio: no recording
        "pbx:3.3": ("pending", False, None),
        "pbx:3.4": ("available", True, WAV.stat().st_size),
    }
    for call_id, (state_, available, size) in expected.items():
        recording = await listed(call_id)
        assert (recording["state"], recording["available"], recording["size"]) == (
            state_,
            available,
            size,
        ), call_id
        assert recording["deleted"] is False
        fetched = await client.get(f"/api/recordings/{recording['id']}", headers=bearer(supervisor))
        assert fetched.status == (200 if available else 404), call_id
        if state_ == "missing":
            assert "not available yet" not in (await fetched.json())["error"]["message"]
        elif state_ == "pending":
            assert "not available yet" in (await fetched.json())["error"]["message"]


async def test_a_dropped_file_takes_the_place_of_an_empty_one(service, tmp_path) -> None:
    root = service.recordings.store.root
    ended = utcnow() - GRACE - timedelta(minutes=1)
    await store_call(service, "pbx:1795400300.5", ended, name="1795400300.5")
    header_only(root / "1795400300.5.wav")  # MixMonitor wrote nothing but its header
    assert await state(service, "pbx:1795400300.5") == "missing"
    dropped = tmp_path / "1795400300.5.wav"
    shutil.copy(WAV, dropped)
    path = await service.recordings.store.attach_file("pbx:1795400300.5", ended, dropped)
    assert path == "1795400300.5.wav"  # the same recording, not a second one
    assert (root / path).read_bytes() == WAV.read_bytes()
    assert await state(service, "pbx:1795400300.5") == "available"
    assert await size_of(service, "pbx:1795400300.5") == WAV.stat().st_size
