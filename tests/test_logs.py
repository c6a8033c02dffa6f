import io
import json
import logging

import pytest
from sqlalchemy import select

from cti.logs import SecretRedactor, setup_logging


@pytest.fixture
def log_output() -> io.StringIO:
    stream = io.StringIO()
    setup_logging("debug", "json", stream=stream)
    yield stream
    setup_logging("info", "json")


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_keep_utf8_and_fields(log_output: io.StringIO) -> None:
    logging.getLogger("cti.test").info("звонок от %s", "Анна", extra={"fields": {"ext": "101"}})
    [entry] = lines(log_output)
    assert entry["message"] == "звонок от Анна"
    assert entry["ext"] == "101"
    assert entry["level"] == "info"
    assert "Анна" in log_output.getvalue()  # not \\u-escaped


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("Action: Login\r\nUsername: cti\r\nSecret: hunter2-ami\r\n", "hunter2-ami"),
        ("header Authorization: Bearer cti_abcdefghijklmnopqrstuvwxyz012345", "cti_abcdefghij"),
        ("token cti_abcdefghijklmnopqrstuvwxyz012345 used", "cti_abcdefghij"),
        ("connect url=amqp://x?password=pa55word&y=1", "pa55word"),
        ('{"pin": "4321", "port": "/dev/ttyUSB0"}', "4321"),
    ],
)
def test_secret_shapes_are_redacted(log_output: io.StringIO, message: str, secret: str) -> None:
    logging.getLogger("cti.test").warning(message)
    assert secret not in log_output.getvalue()
    assert "***" in log_output.getvalue()


def test_registered_secrets_are_redacted_in_args_fields_and_tracebacks(
    log_output: io.StringIO,
) -> None:
    from cti.logs import redactor

    redactor.add_secret("Zq9-registered-secret")
    log = logging.getLogger("cti.test")
    log.info(
        "login with %s", "Zq9-registered-secret", extra={"fields": {"s": "Zq9-registered-secret"}}
    )
    try:
        raise RuntimeError("failed with Zq9-registered-secret")
    except RuntimeError:
        log.exception("oops")
    out = log_output.getvalue()
    assert "Zq9-registered-secret" not in out
    entries = lines(log_output)
    assert entries[0]["message"] == "login with ***"
    assert entries[0]["s"] == "***"
    assert "RuntimeError: failed with ***" in entries[1]["exception"]


def test_short_values_are_not_registered() -> None:
    redactor = SecretRedactor()
    redactor.add_secret("12")
    assert redactor.redact("call 12 to 112") == "call 12 to 112"


async def test_debug_logs_never_carry_sql_parameters(
    log_output: io.StringIO, db_url, tmp_path, aiohttp_client, capsys
) -> None:
    """With log_level "debug" and [database] echo on: the statements are logged, the
    password and token hashes and the SMS texts they carry are not."""
    from helpers import bearer

    from cti import auth
    from cti.config import Config, DatabaseConfig, ServerConfig
    from cti.db.models import ApiToken, User
    from cti.http.app import build_app
    from cti.service import Service

    config = Config(
        server=ServerConfig(data_dir=tmp_path, port=0, log_level="debug"),
        database=DatabaseConfig(url=db_url, auto_migrate=True, echo=True),
    )
    service = await Service.start(config)
    try:
        client = await aiohttp_client(build_app(service))
        async with service.sessions() as session:
            await auth.create_user(
                session, "nino", "sales", extension="105", password="Пароль-1234"
            )
            await session.commit()
        reply = await client.post(
            "/api/session", json={"username": "nino", "password": "Пароль-1234"}
        )
        token = (await reply.json())["token"]
        text = "Секретное предложение для клиента"
        await client.post(
            "/api/sms", json={"to": "+79161234567", "text": text}, headers=bearer(token)
        )
        await client.get("/api/me", headers=bearer(token))
        async with service.sessions() as session:
            password_hash = await session.scalar(select(User.password_hash))
            token_hash = await session.scalar(select(ApiToken.token_hash))
    finally:
        await service.close()
    out = log_output.getvalue() + capsys.readouterr().out
    assert "SELECT" in out and "INSERT INTO api_tokens" in out  # the statements are there
    for secret in (password_hash, password_hash.split("$")[-1], token_hash, text, token):
        assert secret not in out
