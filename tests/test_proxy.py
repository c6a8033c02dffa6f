"""Behind a reverse proxy: the client's address and scheme from trusted proxies only."""

import pytest
from helpers import bearer

from cti import auth
from cti.config import Config, DatabaseConfig, ServerConfig
from cti.http.app import build_app
from cti.http.proxy import parse_networks, real_client
from cti.http.session import MAX_FAILURES
from cti.service import Service

PROXIES = parse_networks(["127.0.0.1", "10.0.0.0/8"])


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("127.0.0.1", "203.0.113.9", "203.0.113.9"),
        ("127.0.0.1", "198.51.100.1, 203.0.113.9, 10.1.2.3", "203.0.113.9"),  # last untrusted
        ("192.0.2.50", "203.0.113.9", "192.0.2.50"),  # not a proxy of ours: ignored
        ("127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.1", "10.0.0.1, 10.0.0.2", "10.0.0.1"),  # only proxies: the first
        ("127.0.0.1", "not an address", "not an address"),
    ],
)
def test_the_client_is_the_last_address_a_trusted_proxy_did_not_add(peer, header, client):
    assert real_client(peer, header, PROXIES) == client


@pytest.fixture
async def behind_nginx(db_url, tmp_path, aiohttp_client):
    config = Config(
        server=ServerConfig(data_dir=tmp_path, port=0, trusted_proxies=["127.0.0.1"]),
        database=DatabaseConfig(url=db_url, auto_migrate=True),
    )
    service = await Service.start(config)
    async with service.sessions() as session:
        await auth.create_user(session, "nino", "operator", extension="103", password="пароль-123")
        await session.commit()
    yield await aiohttp_client(build_app(service))
    await service.close()


async def sign_in(client, password: str, address: str):
    return await client.post(
        "/api/session",
        json={"username": "nino", "password": password},
        headers={"X-Forwarded-For": address, "X-Forwarded-Proto": "https"},
    )


async def test_throttling_and_grants_see_the_real_client_behind_a_proxy(behind_nginx) -> None:
    for _ in range(MAX_FAILURES):
        assert (await sign_in(behind_nginx, "guess", "203.0.113.9")).status == 401
    assert (await sign_in(behind_nginx, "пароль-123", "203.0.113.9")).status == 429
    # Nino, from the office: not locked out by the guesser.
    reply = await sign_in(behind_nginx, "пароль-123", "198.51.100.7")
    assert reply.status == 201


async def test_forwarded_headers_from_anyone_else_are_ignored(client, service) -> None:
    async with service.sessions() as session:
        await auth.create_user(session, "nino", "operator", extension="103", password="пароль-123")
        await session.commit()
    for n in range(MAX_FAILURES):  # a different claimed address each time: still one client
        assert (await sign_in(client, "guess", f"203.0.113.{n}")).status == 401
    assert (await sign_in(client, "пароль-123", "198.51.100.7")).status == 429
    assert (await client.get("/api/me", headers=bearer("cti_" + "0" * 43))).status == 401
