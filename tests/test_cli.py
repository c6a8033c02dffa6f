"""The ``cti`` command line, run as a user would run it."""

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from helpers import CTI, bearer, eventually, run_cti

from cti import __version__


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "cti.toml"
    path.write_text(
        '[server]\nport = 0\nlog_level = "debug"\n'
        '[[pbx]]\nname = "office"\ntype = "asterisk"\nhost = "127.0.0.1"\nport = 1\n'
        'username = "cti"\nsecret = "Ami-Secret-42"\n',
        encoding="utf-8",
    )
    return path


def test_version_and_help(tmp_path: Path) -> None:
    result = run_cti("--version", cwd=tmp_path)
    assert result.stdout.strip() == f"cti {__version__}"
    for command in (["serve"], ["demo"], ["db", "upgrade"], ["user", "add"], ["check-config"]):
        result = run_cti(*command, "--help", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "usage: cti" in result.stdout


def test_serve_refuses_an_unmigrated_database(tmp_path: Path, config_file: Path) -> None:
    result = run_cti("serve", "--config", str(config_file), cwd=tmp_path)
    assert result.returncode == 1
    assert f"run `cti db upgrade -c {config_file}`" in result.stderr  # works when copied
    assert "Traceback" not in result.stderr


def test_user_add_prints_a_token_once(tmp_path: Path, config_file: Path) -> None:
    assert run_cti("db", "upgrade", "-c", str(config_file), cwd=tmp_path).returncode == 0
    result = run_cti(
        "user",
        "add",
        "anna",
        "--role",
        "operator",
        "--extension",
        "101",
        "--display-name",
        "Анна Петрова",
        "--password",
        "-c",
        str(config_file),
        cwd=tmp_path,
        stdin="long password\n",
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"API token \(shown this once\): cti_\S{40,}", result.stdout)
    listing = run_cti("user", "list", "-c", str(config_file), cwd=tmp_path)
    assert "anna" in listing.stdout and "Анна Петрова" in listing.stdout
    assert "cti_" not in listing.stdout
    again = run_cti("user", "add", "anna", "--role", "sales", "-c", str(config_file), cwd=tmp_path)
    assert again.returncode == 1 and "is taken" in again.stderr
    no_ext = run_cti(
        "user", "add", "boris", "--role", "operator", "-c", str(config_file), cwd=tmp_path
    )
    assert no_ext.returncode == 1 and "an operator needs one" in no_ext.stderr
    revoke = run_cti("user", "revoke", "anna", "-c", str(config_file), cwd=tmp_path)
    assert revoke.stdout.strip() == "revoked 1 token of anna"


def test_cti_finds_cti_toml_and_says_which_database_it_uses(tmp_path: Path) -> None:
    (tmp_path / "cti.toml").write_text('[server]\ndata_dir = "var"\n', encoding="utf-8")
    upgrade = run_cti("db", "upgrade", cwd=tmp_path)
    assert upgrade.returncode == 0, upgrade.stderr
    database = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'cti.db'}"
    assert f"cti: configuration cti.toml, database {database}" in upgrade.stderr
    added = run_cti("user", "add", "nino", "--role", "operator", "--extension", "103", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    listing = run_cti("user", "list", "-c", "cti.toml", cwd=tmp_path)
    assert listing.stdout.splitlines()[0].split() == ["USER", "ROLE", "PHONE", "NAME"]
    assert listing.stdout.splitlines()[1].split()[:3] == ["nino", "operator", "103"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    defaults = run_cti("user", "list", cwd=elsewhere)
    assert "configuration the built-in defaults (no ./cti.toml, no $CTI_CONFIG)" in defaults.stderr
    assert "run `cti db upgrade`" in defaults.stderr


def test_a_bad_environment_override_names_the_variable(tmp_path: Path, config_file: Path) -> None:
    result = run_cti(
        "check-config", "-c", str(config_file), cwd=tmp_path, env={"CTI_SERVER_PORT": "abc"}
    )
    assert result.returncode == 2
    assert "environment variable CTI_SERVER_PORT: Input should be a valid integer" in result.stderr
    assert str(config_file) not in result.stderr


def test_an_extension_another_user_has_needs_force(tmp_path: Path, config_file: Path) -> None:
    c = ("-c", str(config_file))
    assert run_cti("db", "upgrade", *c, cwd=tmp_path).returncode == 0
    first = run_cti(
        "user", "add", "anna", "--role", "operator", "--extension", "101", *c, cwd=tmp_path
    )
    assert first.returncode == 0
    again = run_cti(
        "user", "add", "olga", "--role", "operator", "--extension", "101", *c, cwd=tmp_path
    )
    assert again.returncode == 1
    assert "extension 101 is already anna's phone; add --force" in again.stderr
    forced = run_cti(
        "user",
        "add",
        "olga",
        "--role",
        "operator",
        "--extension",
        "101",
        "--force",
        *c,
        cwd=tmp_path,
    )
    assert forced.returncode == 0, forced.stderr


def test_watch_says_clearly_what_is_wrong(tmp_path: Path) -> None:
    no_scheme = run_cti("watch", "127.0.0.1:8080", "--token", "cti_x", cwd=tmp_path)
    assert no_scheme.returncode == 2
    assert "give it with its scheme, e.g. http://127.0.0.1:8080" in no_scheme.stderr
    assert "127.0.0.1:8080/ws: 127.0.0.1:8080/ws" not in no_scheme.stderr


def test_watch_prints_a_line_only_when_a_pop_changes() -> None:
    from cti.cli import WatchLines

    card = {"call_id": "c1", "state": "ringing", "number_display": "+7 812 555-01-04",
            "caller_name": None, "client": None, "contact": None, "manager": None,
            "ringing": ["101"], "answered_by": None}  # fmt: skip
    watch = WatchLines()
    first = watch.lines({"type": "pop", "data": card})
    assert len(first) == 1
    history = {**card, "history": [{"kind": "call"}]}  # filled in: the line is the same
    assert watch.lines({"type": "pop", "data": history}) == []
    found = {**card, "client": {"name": "ООО Ромашка"}}
    assert watch.lines({"type": "pop", "data": found})[0].endswith("ООО Ромашка  ringing 101")
    ended = {**found, "state": "ended", "ringing": []}
    assert len(watch.lines({"type": "pop", "data": ended})) == 1


async def read_until(stream: asyncio.StreamReader, pattern: str, seen: list[str]) -> re.Match:
    async with asyncio.timeout(30):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(
                    "process ended before printing " + pattern + "\n" + "".join(seen)
                )
            seen.append(line)
            if match := re.search(pattern, line):
                return match


async def test_serve_answers_health_and_metrics_and_stops_cleanly(
    tmp_path: Path, config_file: Path
) -> None:
    assert run_cti("db", "upgrade", "-c", str(config_file), cwd=tmp_path).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    process = await asyncio.create_subprocess_exec(
        *CTI,
        "serve",
        "--config",
        str(config_file),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    log: list[str] = []
    try:
        match = await read_until(process.stderr, r'"url": "(http://[^"]+)"', log)
        url = match.group(1)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/healthz") as response:
                health = await response.json()
            assert response.status == 200
            assert health["status"] == "degraded"  # the PBX at port 1 is not connected
            assert health["links"][0]["name"] == "office"
            async with http.get(f"{url}/metrics") as response:
                assert "cti_link_up" in await response.text()
            async with http.get(f"{url}/api/me") as response:
                assert response.status == 401
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    output = "".join(log) + rest.decode()
    assert "Ami-Secret-42" not in output
    for line in output.splitlines():
        json.loads(line)  # every log line is one JSON object


async def test_demo_runs_with_users_and_cleans_up(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    process = await asyncio.create_subprocess_exec(
        *CTI,
        "demo",
        "--port",
        "0",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    seen: list[str] = []
    try:
        url = (await read_until(process.stdout, r"running at (http://\S+)", seen)).group(1)
        data_dir = Path((await read_until(process.stdout, r"^data: (.+)$", seen)).group(1))
        anna = await read_until(process.stdout, r"^anna\s+operator\s+101\s+\S+\s+(cti_\S+)", seen)
        await read_until(process.stdout, r"^boss\s+supervisor\s+-\s+\S+\s+cti_", seen)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/api/me", headers=bearer(anna.group(1))) as response:
                me = await response.json()
            assert me["display_name"] == "Анна Петрова"
            async with http.get(f"{url}/healthz") as response:
                assert (await response.json())["status"] == "ok"
        assert (data_dir / "cti.db").exists()
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert not data_dir.exists()  # noqa: ASYNC240 (a single stat after the process ended)


def test_module_entry_point_matches_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("cti")
    if not script.exists():
        pytest.skip("the cti console script is not installed beside this interpreter")
    from subprocess import run

    result = run([str(script), "--version"], capture_output=True, text=True, check=False)
    assert result.stdout.strip() == f"cti {__version__}"


async def test_watch_says_when_the_token_is_refused_and_when_it_ends(client, service, make_user):
    url = f"http://{client.server.host}:{client.server.port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}

    async def watch(token: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *CTI, "watch", url, "--token", token, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    refused = await watch("cti_" + "0" * 43)
    _, err = await asyncio.wait_for(refused.communicate(), 30)
    assert refused.returncode == 1
    assert err.decode().strip() == f"cti watch: {url}/ws: the service refused the token (401)"

    token = await make_user("receptionist", username="maria")
    watching = await watch(token)
    await read_until(watching.stdout, r"calls ringing or in progress", [])
    revoked = await client.delete("/api/users/maria/tokens", headers=bearer(token))
    assert revoked.status == 200  # her own tokens: the open watch ends with them
    _, err = await asyncio.wait_for(watching.communicate(), 30)
    assert "cti watch: the token ended (signed out, expired or revoked)" in err.decode()
    assert watching.returncode == 1


@pytest.mark.parametrize(
    ("pbx", "name"),
    [("freeswitch", "demo-fs"), ("panasonic", "demo-panasonic"), ("avaya", "demo-ipoffice")],
)
async def test_demo_with_another_simulated_pbx_logs_its_calls(tmp_path: Path, pbx, name) -> None:
    """FreeSWITCH instead of the Asterisk; a Panasonic or an IP Office printing SMDR
    records beside it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    process = await asyncio.create_subprocess_exec(
        *CTI, "demo", "--port", "0", "--pbx", pbx, cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    seen: list[str] = []
    try:
        url = (await read_until(process.stdout, r"running at (http://\S+)", seen)).group(1)
        boss = await read_until(process.stdout, r"^boss\s+supervisor\s+-\s+\S+\s+(cti_\S+)", seen)
        async with aiohttp.ClientSession() as http:

            async def logged() -> list[dict]:
                async with http.get(f"{url}/api/calls", headers=bearer(boss.group(1))) as r:
                    calls = (await r.json())["calls"]
                    return [c for c in calls if c["pbx"] == name and not c["in_progress"]]

            await eventually(logged, seconds=60)
            async with http.get(f"{url}/healthz") as response:
                health = await response.json()
            assert health["status"] == "ok", health
            if pbx == "freeswitch":
                assert (await logged())[0]["direction"] == "inbound"
            else:  # beside the simulated Asterisk, telling of finished calls only
                assert {link["name"] for link in health["links"]} == {"demo-pbx", name, "demo-sim"}
                assert health["pbx"][name]["live_events"] is False
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
