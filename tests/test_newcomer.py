"""A newcomer's first hour, as a script: every command of README.md, top to bottom, in a
fresh copy of the project, then every command the demo prints. Any that fails fails this.

The README's second command (`.venv/bin/pytest`) is this suite itself: it is checked to
be what CI runs, not run again. Installing takes a minute or two (pip, from PyPI).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = [m[1] for m in re.finditer(r"```sh\n(.*?)```", README, re.S)]
ANNA_PASSWORD = "newcomer-пароль-1"


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not shutil.which("git") or not _pypi_reachable(),
    reason="needs git and PyPI (the README's install); run where pypi.org answers",
)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """The project's files as a new clone has them, in a directory of their own."""
    target = tmp_path_factory.mktemp("newcomer") / "cti-middleware"
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CTI_", "VIRTUAL_ENV"))}
    return {**env, **extra}


def lines_of(block: str) -> list[str]:
    return [line for line in block.splitlines() if line.strip()]


def read_until(process: subprocess.Popen, pattern: str, seconds: float = 60) -> list[str]:
    """The lines the process prints until one matches ``pattern``."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line.rstrip("\n"))
        if re.search(pattern, line):
            return seen
    raise AssertionError(f"no {pattern!r} in:\n" + "\n".join(seen))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_readme_and_the_demo_work_as_written(fresh: Path) -> None:
    install_and_demo, tests, for_real = BLOCKS[0], BLOCKS[1], BLOCKS[2]
    assert ".venv/bin/pytest" in (ROOT / ".ci" / "run").read_text() and tests.strip() == (
        ".venv/bin/pytest"
    )

    # 1. The first command: install, then the demo.
    *install, demo_command = (part.strip() for part in install_and_demo.strip().split("&&"))
    for command in install:
        done = subprocess.run(
            ["bash", "-c", command], cwd=fresh, env=clean_env(), capture_output=True, text=True,
            timeout=900, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{command}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    demo = subprocess.Popen(
        ["bash", "-c", f"exec {demo_command}"], cwd=fresh, env=clean_env(), text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        banner = read_until(demo, r"live call events")
        url = re.search(r"CTI demo is running at (\S+)", "\n".join(banner))[1]
        tries = [line.strip() for line in banner[banner.index("Try:") + 1 :]]
        assert len(tries) >= 8
        for command in tries:
            if " watch " in command:
                watch_demo(command.split("#")[0], fresh)
                continue
            # As printed, failing on an HTTP error as it would show in the terminal.
            checked = command.replace("curl ", "curl -sS --fail-with-body ", 1)
            done = subprocess.run(
                ["bash", "-c", checked], cwd=fresh, capture_output=True, text=True, timeout=30,
                check=False,
            )  # fmt: skip
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        # The click-to-dial it printed rings, talks and ends: the call is in the log.
        admin = re.search(r"^admin\s.*\s(cti_\S+)$", "\n".join(banner), re.M)[1]
        wait_for_outbound_call(url, admin)
        demo.stdin.write("\n")  # Enter: the logins again
        demo.stdin.flush()
        assert any(line.startswith("anna ") for line in read_until(demo, r"live call events"))
        data_dir = Path(re.search(r"^data: (.+)$", "\n".join(banner), re.M)[1])
        assert data_dir.is_dir()
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        demo.wait(30)
    assert demo.returncode == 0
    assert not data_dir.exists()  # the demo removes its data

    # 3. Running it for real: every line, in order, in one shell.
    *setup, serve = lines_of(for_real)
    port = str(free_port())  # the example's 8080 may be taken on a test machine
    done = subprocess.run(
        ["bash", "-e", "-c", "\n".join(setup)], cwd=fresh, env=clean_env(CTI_SERVER_PORT=port),
        input=f"{ANNA_PASSWORD}\n", capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "added anna (operator, extension 101)" in done.stdout
    assert "configuration cti.toml, database sqlite+aiosqlite:///" in done.stderr
    server = subprocess.Popen(
        ["bash", "-c", f"{setup[0]}\nexec {serve}"], cwd=fresh,
        env=clean_env(CTI_SERVER_PORT=port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        health = wait_for_health(f"http://127.0.0.1:{port}")
        assert health in (200, 503)
        signed_in = request(
            f"http://127.0.0.1:{port}/api/session",
            data=f'{{"username": "anna", "password": "{ANNA_PASSWORD}"}}'.encode(),
        )
        assert signed_in[0] == 201, signed_in
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert server.returncode == 0


def watch_demo(command: str, cwd: Path) -> None:
    watch = subprocess.Popen(
        ["bash", "-c", command], cwd=cwd, text=True, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        read_until(watch, r"^connected as admin", seconds=20)
    finally:
        os.killpg(watch.pid, signal.SIGTERM)  # the shell and cti watch in it
        watch.wait(10)


def request(url: str, token: str | None = None, data: bytes | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    sent = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 (localhost)
    try:
        with urllib.request.urlopen(sent, timeout=10) as answer:  # noqa: S310
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for_outbound_call(url: str, token: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, body = request(f"{url}/api/calls?direction=outbound&limit=5", token)
        if status == 200 and '"originate_id": "' in body and '"outcome": "answered"' in body:
            return
        time.sleep(1)
    raise AssertionError(f"no click-to-dial call in the log: {body}")


def wait_for_health(base: str) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            return request(f"{base}/healthz")[0]
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{base}/healthz never answered")
