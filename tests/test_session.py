"""Browser sign-in: password to session token, expiry, sign-out, throttled guessing."""

import asyncio
import threading
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
    keys = throttle.keys("x", "10.0.0.1")
    for _ in range(session_module.MAX_FAILURES):
        assert throttle.begin(keys) == 0
    assert throttle.begin(keys) > 0
    now[0] = session_module.FAILURE_WINDOW + 1
    assert throttle.begin(keys) == 0


def test_a_stranger_cannot_lock_a_user_out_from_elsewhere() -> None:
    now = [0.0]
    throttle = session_module.LoginThrottle(clock=lambda: now[0])
    stranger, user = throttle.keys("Nino", "203.0.113.9"), throttle.keys("nino", "10.0.0.5")
    for _ in range(session_module.MAX_FAILURES):
        assert throttle.begin(stranger) == 0
    assert throttle.begin(stranger) > 0  # the guesser waits
    assert throttle.begin(user) == 0  # the user, from the office, does not
    throttle.succeeded(user)


def test_a_guess_spread_over_many_addresses_stops_at_the_user_limit() -> None:
    throttle = session_module.LoginThrottle(clock=lambda: 0.0)
    for n in range(session_module.USER_MAX_FAILURES):
        assert throttle.begin(throttle.keys("nino", f"198.51.100.{n}")) == 0
    assert throttle.begin(throttle.keys("nino", "10.0.0.5")) > 0
    assert throttle.begin(throttle.keys("giorgi", "10.0.0.5")) == 0


def test_one_address_trying_every_user_stops() -> None:
    throttle = session_module.LoginThrottle(clock=lambda: 0.0)
    for n in range(session_module.ADDRESS_MAX_FAILURES):
        assert throttle.begin(throttle.keys(f"user{n}", "203.0.113.9")) == 0
    assert throttle.begin(throttle.keys("someone-else", "203.0.113.9")) > 0


async def test_parallel_guesses_are_counted_before_they_are_checked(client, service) -> None:
    await add_user(service)
    guesses = [f"guess-{n}" for n in range(39)] + [PASSWORD]
    replies = await asyncio.gather(*(login(client, password=p) for p in guesses))
    statuses = [r.status for r in replies]
    checked = statuses.count(401) + statuses.count(201)
    assert checked == session_module.MAX_FAILURES
    assert statuses.count(429) == len(guesses) - session_module.MAX_FAILURES


async def test_passwords_are_checked_off_the_event_loop(client, service, monkeypatch) -> None:
    await add_user(service)
    threads = []
    verify = auth.verify_password

    def recording(password_hash, password):
        threads.append(threading.current_thread())
        return verify(password_hash, password)

    monkeypatch.setattr(auth, "verify_password", recording)
    assert (await login(client)).status == 201
    assert (await login(client, username="nobody")).status == 401
    assert len(threads) == 2 and threading.main_thread() not in threads


async def test_a_burst_of_sign_ins_is_turned_away_not_piled_up(
    client, service, monkeypatch
) -> None:
    await add_user(service)
    monkeypatch.setattr(session_module, "SIGN_IN_QUEUE", 2)
    monkeypatch.setattr(session_module, "ADDRESS_MAX_FAILURES", 1000)
    replies = await asyncio.gather(*(login(client, f"user{n}", "x") for n in range(40)))
    statuses = [r.status for r in replies]
    assert set(statuses) == {401, 503}
    assert statuses.count(401) >= session_module.SIGN_IN_SLOTS
    busy = next(r for r in replies if r.status == 503)
    assert busy.headers["Retry-After"] == "1"
    assert (await busy.json())["error"]["code"] == "unavailable"
    assert (await login(client)).status == 201  # and afterwards, sign-in works


async def test_a_token_asked_for_with_a_session_ends_with_it(client, service) -> None:
    await add_user(service)
    session_token = (await (await login(client)).json())["token"]
    reply = await client.post("/api/users/nino/tokens", headers=bearer(session_token))
    assert reply.status == 201
    minted = (await reply.json())["token"]
    async with service.sessions() as session:
        parent = await auth.find_token(session, session_token)
        child = await auth.find_token(session, minted)
        assert child.expires_at == parent.expires_at and child.session_id == parent.id
    assert (await client.get("/api/me", headers=bearer(minted))).status == 200
    await client.delete("/api/session", headers=bearer(session_token))
    assert (await client.get("/api/me", headers=bearer(minted))).status == 401


async def test_a_token_asked_for_with_an_api_token_lasts_until_revoked(client, service) -> None:
    async with service.sessions() as session:
        user = await auth.create_user(session, "robot", "operator", extension="150")
        api_token = await auth.issue_token(session, user, "integration")
        await session.commit()
    reply = await client.post("/api/users/robot/tokens", headers=bearer(api_token))
    minted = (await reply.json())["token"]
    async with service.sessions() as session:
        child = await auth.find_token(session, minted)
        assert child.expires_at is None and child.session_id is None
