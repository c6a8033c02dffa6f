"""Browser sign-in: password to session token, expiry, sign-out, throttled guessing."""

from datetime import timedelta

from helpers import bearer
from sqlalchemy import update

from cti import auth
from cti.db.models import ApiToken
from cti.domain import utcnow
from cti.http import session as session_module

PASSWORD = "ქართული-пароль"


async def add_user(service, username: str = "nino", password: str = PASSWORD) -> None:
    async with service.sessions() as session:
        await auth.create_user(session, username, "operator", extension="103", password=password)
        await session.commit()


async def login(client, username: str = "nino", password: str = PASSWORD):
    return await client.post("/api/session", json={"username": username, "password": password})


async def test_sign_in_returns_a_session_token_that_works_and_expires(client, service) -> None:
    await add_user(service)
    reply = await login(client)
    assert reply.status == 201
    body = await reply.json()
    assert body["user"]["extension"] == "103" and body["user"]["role"] == "operator"
    me = await client.get("/api/me", headers=bearer(body["token"]))
    assert (await me.json())["username"] == "nino"
    async with service.sessions() as session:
        await session.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == auth.hash_token(body["token"]))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    assert (await client.get("/api/me", headers=bearer(body["token"]))).status == 401


async def test_sign_out_ends_only_that_session(client, service) -> None:
    await add_user(service)
    first = (await (await login(client)).json())["token"]
    second = (await (await login(client)).json())["token"]
    out = await client.delete("/api/session", headers=bearer(first))
    assert out.status == 200 and (await out.json()) == {"ended": True}
    assert (await client.get("/api/me", headers=bearer(first))).status == 401
    assert (await client.get("/api/me", headers=bearer(second))).status == 200


async def test_wrong_password_and_unknown_user_look_the_same(client, service) -> None:
    await add_user(service)
    wrong = await login(client, password="nope")
    unknown = await login(client, username="nobody")
    assert wrong.status == unknown.status == 401
    assert (await wrong.json())["error"]["message"] == (await unknown.json())["error"]["message"]
    assert (await client.post("/api/session", json={"username": "nino"})).status == 422


async def test_guessing_is_throttled(client, service) -> None:
    await add_user(service)
    for _ in range(session_module.MAX_FAILURES):
        assert (await login(client, password="guess")).status == 401
    blocked = await login(client)  # even the right password waits now
    assert blocked.status == 429
    assert 0 < int(blocked.headers["Retry-After"]) <= session_module.FAILURE_WINDOW + 1


def test_throttle_forgets_old_failures() -> None:
    now = [0.0]
    throttle = session_module.LoginThrottle(clock=lambda: now[0])
    for _ in range(session_module.MAX_FAILURES):
        throttle.failed("user:x")
    assert throttle.retry_after("user:x", "addr:y") > 0
    now[0] = session_module.FAILURE_WINDOW + 1
    assert throttle.retry_after("user:x") == 0
