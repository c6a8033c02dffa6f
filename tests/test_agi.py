"""AGI caller lookup and routing: the shared rules, the cti-agi script as Asterisk runs it,
the FastAGI server over TCP, and GET /api/lookup."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from asterisk.agi import AGIHangup
from helpers import bearer
from pydantic import SecretStr

from cti.directory import InMemoryDirectory, Match, ResponsibleManager
from cti.http.api import Api
from cti.http.app import build_app
from cti.http.lookup import DIRECTORY_KEY
from cti.http.lookup import add_routes as add_lookup_routes
from cti.service import Service
from pbx_adapters.asterisk.agi import (
    LookupFailed,
    agi_value,
    agi_variables,
    http_lookup,
    match_from_answer,
    normalize_caller,
    parse_agi_environment,
    run,
    set_variable_command,
    with_deadline,
)
from pbx_adapters.asterisk.fastagi import FastAgiServer, parse_listen, start_fastagi
from pbx_adapters.asterisk.settings import AgiConfig

REPO = Path(__file__).resolve().parent.parent
SCRIPT_TOKEN = "t0ken-s3cret"

ROMASHKA = "+78125550101"
NIKORA = "+995322123456"
ROMASHKA_MATCH = Match(
    client_id="c1",
    client_name="ООО «Ромашка»",
    contact_name="Анна Петрова",
    manager=ResponsibleManager("Иван Сидоров", extension="101", phone="+78125550199"),
)
NIKORA_MATCH = Match(
    client_id="c2",
    client_name="შპს ნიკორა",
    manager=ResponsibleManager("გიორგი ბერიძე", extension="205"),
)


@pytest.fixture
def directory() -> InMemoryDirectory:
    return InMemoryDirectory({ROMASHKA: ROMASHKA_MATCH, NIKORA: NIKORA_MATCH})


# --- the shared rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("88125550101", ROMASHKA),
        ("+78125550101", ROMASHKA),
        ("8 (812) 555-01-01", ROMASHKA),
        ("8125550101", ROMASHKA),
        (" +7 812 555 01 01 ", ROMASHKA),
        ("+995 32 212 3456", NIKORA),
        ("810995322123456", NIKORA),  # through the RU international prefix 810
    ],
)
def test_caller_ids_become_e164(raw: str, expected: str) -> None:
    assert normalize_caller(raw, "RU") == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "101",
        "12",
        "123456",
        "abc",
        "unknown",
        "anonymous",
        "+",
        "()--",
        "+7812\r\nAction: Originate",
        "+78125550101\r\nAction: Originate",
        "+78125550101\x00",
        '+78125550101" "x',
        "sip:+78125550101@trunk",
        "٨٨١٢٥٥٥٠١٠١",  # Arabic-Indic digits: not what a PBX sends
        "1" * 40,
        "+7 000",
    ],
)
def test_extensions_and_garbage_are_unknown(raw: str) -> None:
    assert normalize_caller(raw, "RU") is None


def test_agi_value_keeps_any_script_and_drops_what_breaks_the_line() -> None:
    assert agi_value("შპს ნიკორა") == "შპს ნიკორა"
    assert agi_value('ООО "Вектор"\r\nAction: Originate\x00') == "ООО Вектор Action: Originate"
    assert agi_value("back\\slash\ud800 end") == "backslash end"
    assert agi_value("Я" * 500) == "Я" * 80


def test_lookup_variables() -> None:
    assert agi_variables("lookup", ROMASHKA_MATCH) == {
        "CALLERID(name)": "Анна Петрова — ООО «Ромашка»"
    }
    assert agi_variables("lookup", NIKORA_MATCH) == {"CALLERID(name)": "შპს ნიკორა"}
    assert agi_variables("lookup", None) == {}
    quoted = Match(client_id="c3", client_name='ООО "Вектор"\n')
    assert agi_variables("lookup", quoted) == {"CALLERID(name)": "ООО Вектор"}
    assert agi_variables("lookup", Match(client_id="c4", client_name='""')) == {}


def test_route_variables() -> None:
    assert agi_variables("route", ROMASHKA_MATCH) == {"CTI_MANAGER_EXTENSION": "101"}
    assert agi_variables("route", NIKORA_MATCH) == {"CTI_MANAGER_EXTENSION": "205"}
    assert agi_variables("route", None) == {"CTI_MANAGER_EXTENSION": ""}
    no_manager = Match(client_id="c5", client_name="ИП Иванов")
    assert agi_variables("route", no_manager) == {"CTI_MANAGER_EXTENSION": ""}
    # The extension ends up in Dial(PJSIP/${CTI_MANAGER_EXTENSION}): digits only.
    sneaky = Match(
        client_id="c6", client_name="x", manager=ResponsibleManager("m", extension="101&SIP/666")
    )
    assert agi_variables("route", sneaky) == {"CTI_MANAGER_EXTENSION": ""}


def test_unknown_command_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown AGI command"):
        agi_variables("originate", ROMASHKA_MATCH)


def test_set_variable_command() -> None:
    assert (
        set_variable_command("CALLERID(name)", 'შპს "ნიკორა"\r\n')
        == 'SET VARIABLE "CALLERID(name)" "შპს ნიკორა"'
    )


def test_agi_environment_parsing() -> None:
    data = "agi_callerid: 88125550101\r\nagi_calleridname: Анна\r\nagi_accountcode: \n".encode()
    assert parse_agi_environment(data + b"agi_dnid: \xff1\n") == {
        "agi_callerid": "88125550101",
        "agi_calleridname": "Анна",
        "agi_accountcode": "",
        "agi_dnid": "\ufffd1",
    }


def test_answer_bodies() -> None:
    assert match_from_answer({"number": ROMASHKA, "match": None}) is None
    match = match_from_answer({"number": ROMASHKA, "match": ROMASHKA_MATCH.to_dict()})
    assert match is not None
    assert agi_variables("lookup", match) == agi_variables("lookup", ROMASHKA_MATCH)
    assert agi_variables("route", match) == {"CTI_MANAGER_EXTENSION": "101"}
    for body in ([], {"number": ROMASHKA}, {"match": "x"}, {"match": {"client_name": 5}}):
        with pytest.raises(LookupFailed):
            match_from_answer(body)


# --- run(): the script's logic with an injected AGI ----------------------------------------


class FakeAgi:
    def __init__(self, callerid: str, *, hangup: bool = False) -> None:
        self.env = {"agi_callerid": callerid, "agi_request": "cti-agi"}
        self.hangup = hangup
        self.variables: dict[str, str] = {}
        self.messages: list[str] = []

    def set_variable(self, name: str, value: str) -> None:
        if self.hangup:
            raise AGIHangup("User hungup during execution")
        self.variables[name] = value

    def verbose(self, message: str, level: int = 1) -> None:
        self.messages.append(message)


def test_run_sets_variables_of_a_known_caller(directory: InMemoryDirectory) -> None:
    asked: list[str] = []

    def lookup(number: str) -> Match | None:
        asked.append(number)
        return directory.entries.get(number)

    agi = FakeAgi("8 (812) 555-01-01")
    assert run("lookup", agi, lookup, "RU") == 0
    assert asked == [ROMASHKA]
    assert agi.variables == {"CALLERID(name)": "Анна Петрова — ООО «Ромашка»"}
    assert agi.messages == []


def test_run_does_not_ask_about_extensions() -> None:
    def lookup(number: str) -> Match | None:
        raise AssertionError("an extension was looked up")

    agi = FakeAgi("101")
    assert run("route", agi, lookup, "RU") == 0
    assert agi.variables == {"CTI_MANAGER_EXTENSION": ""}


@pytest.mark.parametrize("error", [LookupFailed("the service answered HTTP 401"), KeyError("x")])
def test_run_treats_a_failed_lookup_as_unknown(error: Exception) -> None:
    def lookup(number: str) -> Match | None:
        raise error

    agi = FakeAgi("+78125550101")
    assert run("route", agi, lookup, "RU") == 0
    assert agi.variables == {"CTI_MANAGER_EXTENSION": ""}
    assert len(agi.messages) == 1
    assert "treated as unknown" in agi.messages[0]


def test_run_survives_a_hangup_and_an_unknown_command() -> None:
    agi = FakeAgi("+78125550101", hangup=True)
    assert run("lookup", agi, lambda n: ROMASHKA_MATCH, "RU") == 0
    agi = FakeAgi("+78125550101")
    assert run("dial", agi, lambda n: ROMASHKA_MATCH, "RU") == 0
    assert agi.variables == {}
    assert "unknown command" in agi.messages[0]


def test_deadline_bounds_a_hanging_lookup() -> None:
    def hangs(number: str) -> Match | None:
        time.sleep(3)
        return None

    started = time.monotonic()
    with pytest.raises(LookupFailed, match=r"did not answer within 0\.2 s"):
        with_deadline(hangs, 0.2)("+78125550101")
    assert time.monotonic() - started < 1.5
    assert with_deadline(lambda n: ROMASHKA_MATCH, 1)(ROMASHKA) is ROMASHKA_MATCH


# --- http_lookup against a stand-in service ---------------------------------------------------


class FakeService:
    """A stand-in for the service's /api/lookup: answers as told, remembers the requests."""

    def __init__(self) -> None:
        self.requests: list[web.Request] = []
        self.status = 200
        self.body: bytes = b'{"number": "+78125550101", "match": null}'
        self.release = asyncio.Event()
        self.hang = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/lookup", self.lookup)
        app.router.add_get("/elsewhere", self.lookup)
        return app

    async def lookup(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        if self.hang:
            await asyncio.wait_for(self.release.wait(), 10)
        if self.status == 302:
            raise web.HTTPFound("/elsewhere")
        return web.Response(status=self.status, body=self.body, content_type="application/json")


@pytest.fixture
async def fake_service(aiohttp_server) -> AsyncIterator[tuple[FakeService, str]]:
    fake = FakeService()
    server = await aiohttp_server(fake.app())
    yield fake, str(server.make_url("")).rstrip("/")
    fake.release.set()


async def test_http_lookup_asks_with_the_token_and_an_encoded_number(fake_service) -> None:
    fake, url = fake_service
    fake.body = f'{{"number": "{ROMASHKA}", "match": {_json(ROMASHKA_MATCH.to_dict())}}}'.encode()
    config = AgiConfig(service_url=url + "/", token=SecretStr("t0ken"), timeout=2)
    match = await asyncio.to_thread(http_lookup, ROMASHKA, config)
    assert match is not None and match.client_name == "ООО «Ромашка»"
    request = fake.requests[0]
    assert request.query["number"] == ROMASHKA  # "+" sent as %2B, not a space
    assert request.headers["Authorization"] == "Bearer t0ken"


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (401, b'{"error": {}}', "HTTP 401"),
        (200, b"<html>not json</html>", "not JSON"),
        (200, b'{"unexpected": true}', "no 'match'"),
        (302, b"", "HTTP 302"),  # a redirect is not followed: the token stays put
        (500, b"", "HTTP 500"),
    ],
)
async def test_http_lookup_failures(fake_service, status: int, body: bytes, reason: str) -> None:
    fake, url = fake_service
    fake.status, fake.body = status, body
    config = AgiConfig(service_url=url, token=SecretStr("t0ken"), timeout=2)
    with pytest.raises(LookupFailed, match=reason) as caught:
        await asyncio.to_thread(http_lookup, ROMASHKA, config)
    assert "t0ken" not in str(caught.value)
    assert len(fake.requests) == 1


def test_http_lookup_needs_a_token_and_an_http_url() -> None:
    with pytest.raises(LookupFailed, match="no \\[agi\\] token"):
        http_lookup(ROMASHKA, AgiConfig())
    with pytest.raises(LookupFailed, match="http://"):
        http_lookup(ROMASHKA, AgiConfig(service_url="file:///etc", token=SecretStr("t")))


# --- the cti-agi script, as Asterisk runs it -------------------------------------------------


def agi_stdin(callerid: str, command: str, answers: int = 5) -> bytes:
    """What Asterisk writes to an AGI script: its environment, then an answer per command."""
    env = {
        "agi_request": "cti-agi",
        "agi_channel": "PJSIP/trunk-00000011",
        "agi_language": "ru",
        "agi_type": "PJSIP",
        "agi_uniqueid": "1714557600.17",
        "agi_version": "20.7.0",
        "agi_callerid": callerid,
        "agi_calleridname": "Неизвестный",
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": "78122000000",
        "agi_rdnis": "unknown",
        "agi_context": "from-trunk",
        "agi_extension": "78122000000",
        "agi_priority": "2",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140245231531584",
        "agi_arg_1": command,
    }
    lines = "".join(f"{key}: {value}\n" for key, value in env.items())
    return (lines + "\n" + "200 result=1\n" * answers).encode()


async def run_script(
    command: str, callerid: str, config: str, tmp_path: Path
) -> tuple[int, list[str], str, float]:
    """Run cti-agi in a process of its own: (exit code, stdout lines, stderr, seconds)."""
    config_file = tmp_path / "cti.toml"
    config_file.write_text(config, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    env["CTI_CONFIG"] = str(config_file)
    env["LC_ALL"] = "C"  # Asterisk may start us in any locale: UTF-8 must survive anyway
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pbx_adapters.asterisk.agi",
        command,
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(agi_stdin(callerid, command)), 30)
    elapsed = time.monotonic() - started
    assert process.returncode is not None
    return process.returncode, out.decode("utf-8").splitlines(), err.decode(), elapsed


def agi_config(url: str, token: str | None = SCRIPT_TOKEN, timeout: float = 1.0) -> str:
    lines = ["[agi]", f'service_url = "{url}"', f"timeout = {timeout}"]
    if token is not None:
        lines.append(f'token = "{token}"')
    return "\n".join([*lines, "", "[phone]", 'default_region = "RU"', ""])


def lookup_app(service: Service, directory: InMemoryDirectory) -> web.Application:
    """The service's app with GET /api/lookup and a directory (added here until build_app
    does it itself)."""
    app = build_app(service)
    if not any(r.resource and r.resource.canonical == "/api/lookup" for r in app.router.routes()):
        api = Api()
        add_lookup_routes(api)
        api.add_routes(app)
    app[DIRECTORY_KEY] = directory
    return app


@pytest.mark.parametrize(
    ("command", "callerid", "line"),
    [
        ("lookup", "88125550101", 'SET VARIABLE "CALLERID(name)" "Анна Петрова — ООО «Ромашка»"'),
        ("lookup", "+995 32 212 3456", 'SET VARIABLE "CALLERID(name)" "შპს ნიკორა"'),
        ("route", "8 (812) 555-01-01", 'SET VARIABLE "CTI_MANAGER_EXTENSION" "101"'),
        ("route", "+78125550000", 'SET VARIABLE "CTI_MANAGER_EXTENSION" ""'),
    ],
)
async def test_script_end_to_end_against_the_service(
    service: Service,
    make_user,
    directory: InMemoryDirectory,
    aiohttp_server,
    tmp_path: Path,
    command: str,
    callerid: str,
    line: str,
) -> None:
    token = await make_user("receptionist")
    server = await aiohttp_server(lookup_app(service, directory))
    url = str(server.make_url("")).rstrip("/")
    code, out, err, _ = await run_script(command, callerid, agi_config(url, token), tmp_path)
    assert code == 0
    assert out == [line]
    assert token not in err


async def test_script_leaves_the_name_of_an_unknown_caller(fake_service, tmp_path: Path) -> None:
    fake, url = fake_service
    code, out, _, _ = await run_script("lookup", "88125550102", agi_config(url), tmp_path)
    assert code == 0
    assert out == []  # CALLERID(name) untouched, nothing to report
    assert fake.requests[0].query["number"] == "+78125550102"


async def test_script_when_the_service_is_down(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    config = agi_config(f"http://127.0.0.1:{port}")
    code, out, err, elapsed = await run_script("route", "+78125550101", config, tmp_path)
    assert code == 0
    assert out[0] == 'SET VARIABLE "CTI_MANAGER_EXTENSION" ""'
    assert out[1].startswith('VERBOSE "cti-agi: route: the service is unreachable')
    assert len(out) == 2
    assert elapsed < 5
    assert SCRIPT_TOKEN not in "\n".join(out) + err


async def test_script_does_not_wait_for_a_hanging_service(fake_service, tmp_path: Path) -> None:
    fake, url = fake_service
    fake.hang = True
    config = agi_config(url, timeout=0.5)
    code, out, _, elapsed = await run_script("route", "+78125550101", config, tmp_path)
    assert code == 0
    assert out[0] == 'SET VARIABLE "CTI_MANAGER_EXTENSION" ""'
    assert "within 0.5 s" in out[1] or "timed out" in out[1]
    assert elapsed < 4


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ("wrong", "HTTP 401"),
        ("no token", "no [agi] token is configured"),
        ("broken", "cannot be read (ConfigError)"),
    ],
)
async def test_script_failures_are_reported_and_harmless(
    fake_service, tmp_path: Path, config: str, reason: str
) -> None:
    fake, url = fake_service
    fake.status = 401
    text = {
        "wrong": agi_config(url),
        "no token": agi_config(url, token=None),
        "broken": f'[agi]\nservice_url = "{url}"\ntoken = 12345678\n',
    }[config]
    code, out, err, _ = await run_script("lookup", "+78125550101", text, tmp_path)
    assert code == 0
    assert len(out) == 1
    assert out[0].startswith('VERBOSE "cti-agi: lookup: ') and reason in out[0]
    assert SCRIPT_TOKEN not in out[0] + err and "12345678" not in out[0] + err


# --- the FastAGI server -----------------------------------------------------------------------


class FailingDirectory(InMemoryDirectory):
    async def lookup(self, number: str) -> Match | None:
        raise RuntimeError("the CRM is down")


class SlowDirectory(InMemoryDirectory):
    async def lookup(self, number: str) -> Match | None:
        await asyncio.sleep(5)
        return ROMASHKA_MATCH


@pytest.fixture
async def fastagi(directory: InMemoryDirectory) -> AsyncIterator[FastAgiServer]:
    server = await start_fastagi(directory, "RU", "127.0.0.1", 0, lookup_timeout=0.3)
    yield server
    await server.stop()


def fastagi_request(script: str, callerid: str, newline: str = "\n") -> bytes:
    env = [
        "agi_network: yes",
        f"agi_network_script: {script}",
        f"agi_request: agi://127.0.0.1:4573/{script}",
        "agi_channel: PJSIP/trunk-00000012",
        "agi_language: ka",
        f"agi_callerid: {callerid}",
        "agi_calleridname: ნინო",
        "agi_context: from-trunk",
        "agi_accountcode: ",
    ]
    return (newline.join(env) + newline + newline).encode()


async def fastagi_call(port: int, request: bytes) -> list[str]:
    """Talk FastAGI as Asterisk does: send the environment, answer each command."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    commands = []
    try:
        while line := await asyncio.wait_for(reader.readline(), 5):
            commands.append(line.decode("utf-8"))
            writer.write(b"200 result=1\n")
            await writer.drain()
    finally:
        writer.close()
    return commands


@pytest.mark.parametrize(
    ("script", "callerid", "command"),
    [
        ("lookup", "+995 32 212 3456", 'SET VARIABLE "CALLERID(name)" "შპს ნიკორა"\n'),
        ("lookup", "88125550101", 'SET VARIABLE "CALLERID(name)" "Анна Петрова — ООО «Ромашка»"\n'),
        ("route", "+995322123456", 'SET VARIABLE "CTI_MANAGER_EXTENSION" "205"\n'),
        ("route", "+78125550000", 'SET VARIABLE "CTI_MANAGER_EXTENSION" ""\n'),
        ("route", "101", 'SET VARIABLE "CTI_MANAGER_EXTENSION" ""\n'),
        ("route/?from=trunk", "+995322123456", 'SET VARIABLE "CTI_MANAGER_EXTENSION" "205"\n'),
    ],
)
async def test_fastagi_answers(
    fastagi: FastAgiServer, script: str, callerid: str, command: str
) -> None:
    assert await fastagi_call(fastagi.port, fastagi_request(script, callerid)) == [command]


async def test_fastagi_unknown_caller_keeps_its_name(fastagi: FastAgiServer) -> None:
    assert await fastagi_call(fastagi.port, fastagi_request("lookup", "unknown")) == []


async def test_fastagi_unknown_script_is_closed(fastagi: FastAgiServer) -> None:
    assert await fastagi_call(fastagi.port, fastagi_request("originate", ROMASHKA)) == []


async def test_fastagi_survives_broken_connections(fastagi: FastAgiServer) -> None:
    # Closed before the blank line: panoramisk's own reader spins the event loop forever here.
    _, writer = await asyncio.open_connection("127.0.0.1", fastagi.port)
    writer.write(fastagi_request("lookup", ROMASHKA)[:40])
    await writer.drain()
    writer.close()
    # CRLF line ends and a caller name that is not UTF-8.
    crlf = fastagi_request("route", ROMASHKA, newline="\r\n").replace("ნინო".encode(), b"\xff")
    assert await fastagi_call(fastagi.port, crlf) == [
        'SET VARIABLE "CTI_MANAGER_EXTENSION" "101"\n'
    ]
    # An endless environment.
    _, writer = await asyncio.open_connection("127.0.0.1", fastagi.port)
    writer.write(b"agi_x: " + b"y" * 100_000 + b"\n")
    await writer.drain()
    writer.close()
    request = fastagi_request("lookup", NIKORA)
    assert await fastagi_call(fastagi.port, request) == [
        'SET VARIABLE "CALLERID(name)" "შპს ნიკორა"\n'
    ]


@pytest.mark.parametrize("directory_class", [FailingDirectory, SlowDirectory])
async def test_fastagi_directory_trouble_means_unknown(directory_class: type) -> None:
    server = await start_fastagi(directory_class(), "RU", "127.0.0.1", 0, lookup_timeout=0.3)
    try:
        for _ in range(2):  # and the server still answers afterwards
            started = time.monotonic()
            answer = await fastagi_call(server.port, fastagi_request("route", ROMASHKA))
            assert answer == ['SET VARIABLE "CTI_MANAGER_EXTENSION" ""\n']
            assert time.monotonic() - started < 2
            assert await fastagi_call(server.port, fastagi_request("lookup", ROMASHKA)) == []
    finally:
        await server.stop()


async def test_fastagi_stop_ends_conversations_in_progress(directory: InMemoryDirectory) -> None:
    server = await start_fastagi(directory, "RU", "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(fastagi_request("route", ROMASHKA))
    assert await reader.readline() == b'SET VARIABLE "CTI_MANAGER_EXTENSION" "101"\n'
    await asyncio.wait_for(server.stop(), 5)  # while it waits for Asterisk's answer
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:4573") == ("127.0.0.1", 4573)
    for bad in ("4573", "host:", "host:99999", ":4573"):
        with pytest.raises(ValueError):
            parse_listen(bad)


# --- GET /api/lookup --------------------------------------------------------------------------


@pytest.fixture
async def lookup_client(service: Service, directory: InMemoryDirectory, aiohttp_client):
    return await aiohttp_client(lookup_app(service, directory))


async def test_lookup_needs_a_token(lookup_client) -> None:
    response = await lookup_client.get("/api/lookup", params={"number": ROMASHKA})
    assert response.status == 401


@pytest.mark.parametrize("params", [{}, {"number": ""}, {"number": "abc"}, {"number": "101"}])
async def test_lookup_refuses_what_is_not_a_number(
    lookup_client, make_user, params: dict[str, str]
) -> None:
    token = await make_user("receptionist")
    response = await lookup_client.get("/api/lookup", params=params, headers=bearer(token))
    assert response.status == 422
    body = await response.json()
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["details"][0]["field"] == "number"


@pytest.mark.parametrize("role", ["receptionist", "operator", "sales", "supervisor", "admin"])
async def test_lookup_finds_a_client(lookup_client, make_user, role: str) -> None:
    token = await make_user(role, extension="102" if role == "operator" else None)
    response = await lookup_client.get(
        "/api/lookup", params={"number": "8 (812) 555-01-01"}, headers=bearer(token)
    )
    assert response.status == 200
    assert await response.json() == {"number": ROMASHKA, "match": ROMASHKA_MATCH.to_dict()}


async def test_lookup_of_an_unknown_number(lookup_client, make_user) -> None:
    token = await make_user("sales")
    response = await lookup_client.get(
        "/api/lookup", params={"number": "+78125550000"}, headers=bearer(token)
    )
    assert response.status == 200
    assert await response.json() == {"number": "+78125550000", "match": None}


def test_lookup_is_described_in_openapi() -> None:
    api = Api()
    add_lookup_routes(api)
    operation = api.openapi()["paths"]["/api/lookup"]["get"]
    [parameter] = operation["parameters"]
    assert (parameter["name"], parameter["in"], parameter["required"]) == ("number", "query", True)
    assert {"200", "401", "403", "422"} <= set(operation["responses"])


def _json(data: Any) -> str:
    import json

    return json.dumps(data, ensure_ascii=False)


async def test_the_service_answers_fastagi_when_configured(tmp_path) -> None:
    """[agi] fastagi_listen starts the FastAGI server with the service's own directory."""
    import socket

    from cti.config import Config, DatabaseConfig, ServerConfig
    from cti.directory import Match, ResponsibleManager
    from cti.service import serve
    from pbx_adapters.asterisk.settings import AgiConfig

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    directory = InMemoryDirectory()
    directory.add(
        "+78125550111", Match("c-1", "ООО «Ромашка»", manager=ResponsibleManager("Анна", "101"))
    )
    config = Config(
        server=ServerConfig(data_dir=tmp_path, port=0),
        database=DatabaseConfig(auto_migrate=True),
        agi=AgiConfig(fastagi_listen=f"127.0.0.1:{port}"),
    )
    stop, started = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(
        serve(config, stop=stop, directory=directory, on_started=lambda *_: started.set())
    )
    try:
        await asyncio.wait_for(started.wait(), 10)
        commands = await fastagi_call(port, fastagi_request("route", "8 812 555-01-11"))
        assert commands == ['SET VARIABLE "CTI_MANAGER_EXTENSION" "101"\n']
    finally:
        stop.set()
        await asyncio.wait_for(server, 10)
