import re
from pathlib import Path

import pytest
from helpers import run_cti

from cti.config import ConfigError, load_config
from cti.pbx import plugins


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cti.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_need_no_file(tmp_path: Path) -> None:
    config = load_config(None, environ={})
    assert config.server.port == 8080
    assert config.phone.default_region == "RU"
    assert config.database_url.startswith("sqlite+aiosqlite:///")
    assert config.database_url.endswith("cti.db")
    assert config.pbx == [] and config.modem == []


def test_example_file_is_valid_and_documents_every_option() -> None:
    example = Path(__file__).parents[1] / "cti.example.toml"
    config = load_config(example, environ={})
    assert config.pbx[0].type == "asterisk"
    text = example.read_text(encoding="utf-8")
    for section in type(config).model_fields:
        value = getattr(config, section)
        model = type(value[0] if isinstance(value, list) else value)
        for key in model.model_fields:
            assert f"\n{key} =" in text, f"cti.example.toml does not document {section}.{key}"


def test_example_file_documents_every_option_of_every_pbx_type() -> None:
    """Each adapter owns its [[pbx]] options; the example shows each type's, the first
    as the entry in use, the others commented out."""
    text = (Path(__file__).parents[1] / "cti.example.toml").read_text(encoding="utf-8")
    for name, plugin in plugins().items():
        assert f'type = "{name}"' in text, f"cti.example.toml shows no [[pbx]] of type {name}"
        for key in plugin.settings.model_fields:
            assert re.search(rf"^(# )?{key} =", text, re.M), f"[[pbx]] {name}: {key}"
        for section, model in plugin.sections.items():
            assert f"\n[{section}]\n" in text
            for key in model.model_fields:
                assert f"\n{key} =" in text, f"cti.example.toml does not document {section}.{key}"


def test_file_values_and_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[server]
port = 9000
data_dir = "var"
[phone]
default_region = "ge"
[[pbx]]
type = "asterisk"
host = "10.0.0.5"
username = "cti"
secret = "s3cret-ami"
[[modem]]
port = "/dev/ttyUSB0"
pin = "1234"
""",
    )
    config = load_config(path, environ={})
    assert config.server.port == 9000
    assert config.server.data_dir == tmp_path / "var"  # relative to the file
    assert config.phone.default_region == "GE"
    assert config.pbx[0].name == "pbx0" and config.pbx[0].port == 5038
    assert config.modem[0].name == "modem0" and config.modem[0].baudrate == 115200
    assert config.secrets() == ["s3cret-ami", "1234"]
    assert "s3cret-ami" not in repr(config)


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[pbx]]
type = "asterisk"
host = "pbx.local"
username = "cti"
secret = "from-file"
""",
    )
    config = load_config(
        path,
        environ={
            "CTI_SERVER_PORT": "8181",
            "CTI_DATABASE_AUTO_MIGRATE": "true",
            "CTI_PBX_0_SECRET": "from-env",
            "CTI_CONFIG": "ignored",
            "CTI_TEST_ANYTHING": "ignored",
        },
    )
    assert config.server.port == 8181
    assert config.database.auto_migrate is True
    assert config.pbx[0].secret.get_secret_value() == "from-env"


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("[server]\nprot = 1\n", {}, "server.prot: unknown option (did you mean port?)"),
        ("[server]\nport = 'abc'\n", {}, "server.port: Input should be a valid integer"),
        ("[server]\nport = 70000\n", {}, "server.port: Input should be less than or equal"),
        ("[phone]\ndefault_region = 'XX'\n", {}, "phone.default_region: 'XX' is not"),
        (
            "[[pbx]]\ntype = 'asterisk'\nhost = 'h'\nsecret = 'x'\n",
            {},
            "pbx[0].username: is required",
        ),
        (
            "[[pbx]]\ntype = 'mitel'\nhost = 'h'\nusername = 'u'\nsecret = 'x'\n",
            {},
            "pbx[0].type: Input should be 'asterisk'",
        ),
        ("[database]\nurl = 'mysql://x'\n", {}, "database.url: must start with"),
        ("[server\n", {}, "not valid TOML"),
        ("", {"CTI_SERVR_PORT": "1"}, "CTI_SERVR_PORT: no section [servr] (did you mean server?)"),
        ("", {"CTI_PBX_0_HOST": "h"}, "there are 0 [[pbx]] entries"),
        (
            "[server]\nport = 8080\n",
            {"CTI_SERVER_PORT": "eighty"},  # named as the variable, not as the file's key
            "environment variable CTI_SERVER_PORT: Input should be a valid integer",
        ),
        ("", {"CTI_PBX_0_PORT": "x"}, "there are 0 [[pbx]] entries"),
    ],
)
def test_bad_configuration_names_key_and_problem(
    tmp_path: Path, text: str, environ: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ=environ)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml", environ={})


def test_secret_value_is_not_echoed_in_errors(tmp_path: Path) -> None:
    text = "[[pbx]]\ntype = 'asterisk'\nhost = 'h'\nusername = 'u'\nsecret = 987654321\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    assert "pbx[0].secret: Input should be a valid string" in str(caught.value)
    assert "987654321" not in str(caught.value)


def test_duplicate_link_names_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[pbx]]
name = "main"
type = "asterisk"
host = "h"
username = "u"
secret = "x"
[[modem]]
name = "main"
port = "/dev/ttyUSB0"
""",
    )
    with pytest.raises(ConfigError, match="repeated: main"):
        load_config(path, environ={})


def test_cli_reports_a_broken_config_in_one_line_and_fails(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 'abc'\n")
    result = run_cti("serve", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cti: configuration error: ")
    assert "server.port" in lines[0]


def test_check_config_hides_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[pbx]]
type = "asterisk"
host = "h"
username = "u"
secret = "very-secret-ami"
""",
    )
    result = run_cti("check-config", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"host": "h"' in result.stdout
    assert "very-secret-ami" not in result.stdout
