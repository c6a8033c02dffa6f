"""`cti modem probe` and `cti sms send`, against the emulator in a process of its own
(as a real modem is: another party on the other end of the port)."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run_cti


def emulator(*options: str) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gsm_modem.emulator", "--send-delay", "0.05", *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield process.stdout.readline().strip()  # the port's path
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def port() -> Iterator[str]:
    yield from emulator()


@pytest.fixture
def locked_port() -> Iterator[str]:
    yield from emulator("--pin", "4321")


def test_probe_prints_what_the_modem_is(port: str, tmp_path: Path) -> None:
    result = run_cti("modem", "probe", port, "--timeout", "15", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{port}: ready"
    assert "Emulated GSM Modem 1" in lines[1] and "356938035643809" in lines[2]
    assert "home, MegaFon" in result.stdout and "dBm" in result.stdout


def test_probe_says_what_is_wrong_and_what_fixes_it(locked_port: str, tmp_path: Path) -> None:
    result = run_cti("modem", "probe", locked_port, "--timeout", "15", cwd=tmp_path)
    assert result.returncode == 1
    assert f"{locked_port}: not ready: the SIM asks for a PIN" in result.stdout
    assert "hint: the SIM asks for its PIN: give it with --pin" in result.stdout
    unlocked = run_cti("modem", "probe", locked_port, "--pin", "4321", cwd=tmp_path)
    assert unlocked.returncode == 0, unlocked.stdout
    missing = run_cti("modem", "probe", str(tmp_path / "ttyUSB9"), "--timeout", "5", cwd=tmp_path)
    assert missing.returncode == 1 and "hint: no such port" in missing.stdout


def test_sms_send_sends_one_message_through_the_modem(port: str, tmp_path: Path) -> None:
    config = tmp_path / "cti.toml"
    config.write_text(f'[[modem]]\nname = "sim1"\nport = "{port}"\n', encoding="utf-8")
    result = run_cti("sms", "send", "8 916 123-45-67", "Проверка связи", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"sent to +79161234567 through {port}: 1 part")
    refused = run_cti("sms", "send", "hello", "x", cwd=tmp_path)
    assert refused.returncode == 2 and "'hello' is not a phone number" in refused.stderr


def test_probe_while_something_holds_the_port_says_so(port: str, tmp_path: Path) -> None:
    import serial

    with serial.Serial(port, exclusive=True):  # as the running service holds it
        result = run_cti("modem", "probe", port, "--timeout", "5", cwd=tmp_path)
    assert result.returncode == 1
    assert "hint: the port is in use: is the service running?" in result.stdout
