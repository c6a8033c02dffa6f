"""``cti demo``: the service with embedded defaults, demo users, a simulated PBX replaying
real Asterisk (or, ``--pbx freeswitch``, FreeSWITCH) calls, and a small client directory:
nothing to set up. ``--pbx panasonic`` or ``--pbx avaya`` adds, next to the simulated
Asterisk, a simulated Panasonic or IP Office printing SMDR records of finished calls."""

from __future__ import annotations

import array
import asyncio
import contextlib
import dataclasses
import itertools
import logging
import math
import os
import secrets
import shutil
import socket
import string
import sys
import tempfile
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from zoneinfo import ZoneInfo

from cti import auth
from cti.clients.builtin import ClientIn, ContactIn, PhoneIn, save_client
from cti.clients.demo_data import demo_clients
from cti.config import (
    Config,
    CrmConfig,
    DatabaseConfig,
    FaxConfig,
    ModemConfig,
    RecordingsConfig,
    ServerConfig,
)
from cti.domain import utcnow
from cti.logs import setup_logging
from cti.pbx import PbxSettings
from cti.service import Service, serve
from gsm_modem.emulator import ModemEmulator
from gsm_modem.pdu import encode_deliver
from pbx_adapters.asterisk.settings import AsteriskSettings
from pbx_adapters.asterisk.simulator import (
    DEFAULT_TRANSCRIPTS,
    LAB_FAX,
    LAB_MONITOR,
    LAB_PBX_OPTIONS,
    AmiSimulator,
    load_all,
    replay_forever,
)
from pbx_adapters.freeswitch.settings import FreeswitchSettings
from pbx_adapters.freeswitch.simulator import LAB_FAX as FS_LAB_FAX
from pbx_adapters.freeswitch.simulator import LAB_PBX_OPTIONS as FS_LAB_OPTIONS
from pbx_adapters.freeswitch.simulator import EslSimulator
from pbx_adapters.freeswitch.simulator import load_all as load_fs_recordings
from pbx_adapters.freeswitch.simulator import replay_forever as replay_fs_forever
from pbx_adapters.smdr.avaya.settings import AvayaSettings
from pbx_adapters.smdr.avaya.simulator import IpOfficeSmdr
from pbx_adapters.smdr.avaya.simulator import print_day as print_avaya
from pbx_adapters.smdr.day import office_day
from pbx_adapters.smdr.panasonic.settings import PanasonicSettings
from pbx_adapters.smdr.panasonic.simulator import NetworkSmdr
from pbx_adapters.smdr.panasonic.simulator import print_day as print_panasonic

PASSWORD_ALPHABET = string.ascii_letters + string.digits
SECONDS_BETWEEN_CALLS = 4.0
SECONDS_BETWEEN_SMS = 45.0
SECONDS_BETWEEN_SMDR_CALLS = 7.0
# What the demo's clients write to the emulated SIM card, in turn.
DEMO_SMS = [
    "Добрый день! Подскажите, когда будет готов наш заказ?",
    "გამარჯობა! შეკვეთა მივიღეთ, გმადლობთ.",
    "សួស្តី! តើខ្ញុំអាចទទួលវិក្កយបត្របានពេលណា?",
    "Hello, please call me back about the invoice.",
]
# The calls that show screen pops best come first.
DEMO_FAX_FILE = "1795361425.85.tif"  # as fax_receive.ami's ReceiveFAX names it
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

# The outside numbers the simulated calls come from, and who they are.
DEMO_CALLERS = [
    (
        "+78125550111",
        ClientIn(
            "ООО «Ромашка»",
            manager_extension="101",
            tags=["VIP"],
            phones=[PhoneIn("+78125550111")],
            contacts=[ContactIn("Сергей Волков", "директор")],
        ),
    ),
    (
        "+995322123456",
        ClientIn(
            "შპს „მზიური“",
            manager_extension="102",
            phones=[PhoneIn("+995322123456")],
            contacts=[ContactIn("ნინო კაპანაძე")],
        ),
    ),
    (
        "+74957770133",
        ClientIn(
            "Иван Петров", kind="person", manager_extension="101", phones=[PhoneIn("+74957770133")]
        ),
    ),
    (
        "+85523880123",
        ClientIn(
            "ក្រុមហ៊ុន អង្គរ",
            manager_extension="103",
            phones=[PhoneIn("+85523880123")],
            contacts=[ContactIn("សុខ ដារ៉ា")],
        ),
    ),
    (
        "+442071234567",
        ClientIn(
            "Acme Trading Ltd",
            manager_extension="102",
            phones=[PhoneIn("+442071234567")],
            contacts=[ContactIn("Jane Smith")],
        ),
    ),
    ("+74951112233", None),  # an unknown caller: a missed call goes to reception
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


def cti_command() -> str:
    """How to run ``cti`` from here: the venv's script, as a path a person can type."""
    script = Path(sys.executable).parent / "cti"
    if not script.exists():
        return f"{sys.executable} -m cti"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


def banner(url: str, users: list[tuple[DemoUser, str, str]], data_dir: Path) -> str:
    lines = [
        "",
        f"CTI demo is running at {url}   (Ctrl-C stops it; Enter shows this again)",
        f"data: {data_dir}",
        "A simulated Asterisk replays recorded calls every few seconds (phones 101 and 102).",
        f"Open {url}/ and sign in: 'reception' sees every call and transfers it to the",
        "client's manager; 'anna' (101) and 'giorgi' (102) get their own screen pops.",
        "An emulated GSM modem sends their SMS (about 3 s each) and receives clients' SMS.",
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
    anna_header = f"-H 'Authorization: Bearer {anna_token}'"
    lines += [
        "",
        "Try:",
        f"  curl {url}/healthz",
        f"  curl {auth_header} {url}/api/calls",
        f"  curl {auth_header} {url}/api/lines",
        f"  curl {auth_header} {url}/api/tasks   # missed calls to return",
        f"  curl -G {auth_header} --data-urlencode 'q=ромашка' {url}/api/clients",
        f"  curl -G {auth_header} --data-urlencode 'number=+7 812 555-01-11' {url}/api/lookup",
        f"  curl -X POST {anna_header} "
        f'-d \'{{"number": "+7 812 555-01-11"}}\' {url}/api/calls   # click-to-dial as anna',
        f"  curl -X POST {anna_header} "
        f'-d \'{{"to": "+7 812 555-01-11", "text": "Ваш заказ готов"}}\' {url}/api/sms',
        f"  curl {auth_header} {url}/api/sms   # sent and received SMS",
        f"  CTI_TOKEN={admin_token} {cti_command()} watch {url}   # live call events",
        "",
    ]
    return "\n".join(lines)


def write_recording(path: Path, seconds: float = 4.0) -> None:
    """A short recording where the PBX would put it: two tones taking turns, 8 kHz mono,
    16-bit PCM, as MixMonitor writes a WAV."""
    rate = 8000
    samples = array.array("h")
    for n in range(int(rate * seconds)):
        t = n / rate
        tone = 440.0 if int(t * 2) % 2 == 0 else 554.0
        fade = min(1.0, t * 10, (seconds - t) * 10)
        samples.append(int(8000 * fade * math.sin(2 * math.pi * tone * t)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


def free_port(host: str, port: int) -> int:
    """``port``, or 0 (any free one) when something already listens there."""
    if port == 0:
        return 0
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            print(f"cti demo: port {port} is taken; using a free one", file=sys.stderr)
            return 0
    return port


def reprint_on_enter(text: str) -> None:
    """Print ``text`` again each time Enter is pressed (stdin a terminal or a pipe)."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno() if sys.stdin else -1

    def readable() -> None:
        if os.read(fd, 4096):
            print(text, flush=True)
        else:  # end of input: nothing more to wait for
            loop.remove_reader(fd)

    with contextlib.suppress(OSError, ValueError):  # a regular file or no stdin: no reprint
        loop.add_reader(fd, readable)


async def seed_directory(service: Service) -> int:
    known = [(number, client) for number, client in DEMO_CALLERS if client is not None]
    async with service.sessions() as session:
        for client in demo_clients(300, first=known):
            await save_client(session, client, service.config.phone.default_region)
        await session.commit()
    return 300


@dataclass
class DemoPbx:
    """A simulated PBX for the demo: its [[pbx]] settings, where its files land, and the
    replay of its recorded calls."""

    settings: PbxSettings
    fax_pbx_dir: str
    recordings_pbx_dir: str
    replay: Callable[[list[str]], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]


async def _asterisk(data_dir: Path, pbx_fax: Path) -> DemoPbx:
    secret = secrets.token_urlsafe(16)
    pbx = AmiSimulator(username="cti", secret=secret)
    await pbx.start()
    recordings = data_dir / "recordings"
    transcripts = dict(load_all(DEFAULT_TRANSCRIPTS))
    pbx.originate_call = transcripts["sip_click_to_dial"]  # click-to-dial rings, talks, ends
    pbx.on_recording = lambda name: write_recording(
        recordings / PurePosixPath(name).relative_to(LAB_MONITOR)
    )
    # The recorded fax call names the TIFF its ReceiveFAX wrote: put it where it is looked for.
    shutil.copyfile(DEFAULT_TRANSCRIPTS / "fax_receive.tif", pbx_fax / DEMO_FAX_FILE)
    settings = AsteriskSettings(
        name="demo-pbx",
        type="asterisk",
        host="127.0.0.1",
        port=pbx.port,
        username="cti",
        secret=secret,
        **LAB_PBX_OPTIONS,
    )
    calls = [(name, transcripts[name]) for name in DEMO_ORDER if name in transcripts]

    def replay(numbers: list[str]) -> Awaitable[None]:
        return replay_forever(pbx, calls, interval=SECONDS_BETWEEN_CALLS, number_pool=numbers)

    return DemoPbx(settings, LAB_FAX, LAB_MONITOR, replay, pbx.stop)


async def _freeswitch(data_dir: Path, pbx_fax: Path) -> DemoPbx:
    password = secrets.token_urlsafe(16)
    switch = EslSimulator(password)
    await switch.start()
    calls = load_fs_recordings()
    switch.originate_call = calls["click_to_dial"]
    # Each replayed fax names a TIFF of its own (rx-<date>-<uuid>.tif): put one there.
    tiff = DEFAULT_TRANSCRIPTS / "fax_receive.tif"
    switch.on_fax = lambda name: shutil.copyfile(tiff, pbx_fax / PurePosixPath(name).name)
    settings = FreeswitchSettings(
        name="demo-fs",
        type="freeswitch",
        host="127.0.0.1",
        port=switch.port,
        password=password,
        **FS_LAB_OPTIONS,
    )

    def replay(numbers: list[str]) -> Awaitable[None]:
        return replay_fs_forever(switch, calls, interval=SECONDS_BETWEEN_CALLS, number_pool=numbers)

    return DemoPbx(settings, FS_LAB_FAX, str(data_dir / "recordings"), replay, switch.stop)


async def _smdr(pbx_type: str) -> DemoPbx:
    """A Panasonic on its network SMDR port, or an IP Office listening for the service,
    printing a finished call of the demo's callers now and then."""
    callers = [(_as_trunk_sends(number), "") for number, _ in DEMO_CALLERS]
    if pbx_type == "panasonic":
        password = secrets.token_urlsafe(12)
        panasonic = NetworkSmdr(password=password)
        await panasonic.start()
        settings: PbxSettings = PanasonicSettings(
            name="demo-panasonic",
            type="panasonic",
            transport="connect",
            host="127.0.0.1",
            port=panasonic.port,
            password=password,
        )
        send, stop = panasonic.print, panasonic.stop

        def lines(calls: list) -> list[str]:
            return print_panasonic(calls).lines[4:]  # no page header each time
    else:
        ip_office = IpOfficeSmdr("listen")
        await ip_office.start()
        settings = AvayaSettings(
            name="demo-ipoffice",
            type="avaya",
            transport="connect",
            host="127.0.0.1",
            port=ip_office.port,
            trunk_prefixes=["9"],
        )
        send, stop = ip_office.send, ip_office.stop

        def lines(calls: list) -> list[str]:
            return print_avaya(calls).lines

    async def replay() -> None:
        zone = ZoneInfo(ServerConfig().time_zone)
        for n in itertools.count():
            await asyncio.sleep(SECONDS_BETWEEN_SMDR_CALLS)
            now = datetime.now(zone).replace(tzinfo=None, microsecond=0)
            [call] = office_day(now, 1, seed=n, callers=callers)
            for line in lines([dataclasses.replace(call, ended=now)]):
                send(line)

    return DemoPbx(settings, "", "", lambda _numbers: replay(), stop)


def _as_trunk_sends(e164: str) -> str:
    """A number as a Russian trunk delivers it: 8 and the national number, or 810 and
    the international one."""
    return "8" + e164[2:] if e164.startswith("+7") else "810" + e164[1:]


async def _run(host: str, port: int, data_dir: Path, fresh: bool, pbx_type: str) -> None:
    modem = ModemEmulator()  # a GSM modem with a SIM card, on a pseudo-terminal
    modem.plug()
    pbx_fax = data_dir / "pbx-fax"
    pbx_fax.mkdir(parents=True, exist_ok=True)
    pbx = await (_freeswitch if pbx_type == "freeswitch" else _asterisk)(data_dir, pbx_fax)
    smdr = await _smdr(pbx_type) if pbx_type in ("panasonic", "avaya") else None
    recordings = data_dir / "recordings"
    config = Config(
        server=ServerConfig(host=host, port=port, data_dir=data_dir, log_format="text"),
        fax=FaxConfig(incoming_dir=str(pbx_fax), pbx_dir=pbx.fax_pbx_dir, group_extensions=["100"]),
        database=DatabaseConfig(auto_migrate=True),
        recordings=RecordingsConfig(dir=str(recordings), pbx_dir=pbx.recordings_pbx_dir),
        crm=CrmConfig(default_manager_extension="100"),
        modem=[ModemConfig(name="demo-sim", port=str(modem.path), ring_extensions=["100"])],
        pbx=[pbx.settings] + ([smdr.settings] if smdr else []),
    )
    background: list[asyncio.Task[None]] = []

    async def started(service: Service, url: str) -> None:
        users = await create_demo_users(service) if fresh else []
        if fresh:
            await seed_directory(service)
        text = (
            banner(url, users, data_dir)
            if users
            else f"\nCTI demo is running at {url} with the users of {data_dir}\n"
        )
        if smdr is not None:
            text += (
                f"\nBeside it, a simulated {pbx_type.capitalize()} prints an SMDR record of a "
                f"finished call every {SECONDS_BETWEEN_SMDR_CALLS:.0f} s ({smdr.settings.name}):"
                "\nits calls reach the call log, missed calls and callback tasks, with no pops."
                f"\n  curl {url}/healthz   # its 'pbx' entry: live_events false, record counts\n"
            )
        print(text, flush=True)
        reprint_on_enter(text)
        replay = pbx.replay([number for number, _ in DEMO_CALLERS])
        background.append(asyncio.create_task(replay))  # type: ignore[arg-type]
        if smdr is not None:
            background.append(asyncio.create_task(smdr.replay([])))  # type: ignore[arg-type]
        background.append(asyncio.create_task(_text_now_and_then(modem)))

    try:
        await serve(config, on_started=started)
    finally:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await pbx.stop()
        if smdr is not None:
            await smdr.stop()
        modem.close()


async def _text_now_and_then(modem: ModemEmulator) -> None:
    """Known clients write to the SIM card: the SMS reach their managers' screens."""
    senders = [number for number, client in DEMO_CALLERS if client is not None]
    for n in itertools.count():
        await asyncio.sleep(SECONDS_BETWEEN_SMS if n else 10.0)
        text, sender = DEMO_SMS[n % len(DEMO_SMS)], senders[n % len(senders)]
        for pdu in encode_deliver(sender, text, reference=n, timestamp=utcnow()):
            modem.deliver_sms(pdu)


def run_demo(host: str, port: int, data_dir: str | None, pbx: str = "asterisk") -> int:
    directory = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="cti-demo-"))
    directory = directory.resolve()
    setup_logging("info", "text")
    # A quiet console: the logins stay on screen. Warnings (a link down) still show.
    for chatty in ("cti", "pbx_adapters", "gsm_modem", "recordings", "crm_bridge", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    fresh = not (directory / "cti.db").exists()
    try:
        asyncio.run(_run(host, free_port(host, port), directory, fresh, pbx))
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
