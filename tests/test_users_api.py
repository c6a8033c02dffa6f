"""Managing users over the API: what the admins' user page does."""

from helpers import bearer

from cti import auth

PASSWORD = "старый-пароль-1"


async def add(service, username: str, role: str, extension: str | None = None) -> str:
    async with service.sessions() as session:
        user = await auth.create_user(
            session, username, role, extension=extension, password=PASSWORD
        )
        token = await auth.issue_token(session, user)
        await session.commit()
    return token


async def sign_in(client, username: str, password: str = PASSWORD):
    return await client.post("/api/session", json={"username": username, "password": password})


async def test_admins_change_role_extension_and_disable_users(client, service) -> None:
    admin = await add(service, "root", "admin")
    await add(service, "anna", "operator", "101")
    await add(service, "giorgi", "operator", "102")
    url = "/api/users/anna"
    moved = await client.patch(url, json={"extension": "102"}, headers=bearer(admin))
    assert moved.status == 409 and (await moved.json())["error"]["reason"] == "extension_taken"
    change = {"role": "supervisor", "extension": None, "display_name": "Анна П."}
    changed = await client.patch(
        url, json={**change, "time_zone": "Asia/Tbilisi"}, headers=bearer(admin)
    )
    body = await changed.json()
    assert changed.status == 200, body
    assert (body["role"], body["extension"], body["time_zone"]) == (
        "supervisor",
        None,
        "Asia/Tbilisi",
    )
    back = await client.patch(url, json={"role": "operator"}, headers=bearer(admin))
    assert back.status == 422 and "an operator needs one" in (await back.json())["error"]["message"]
    assert (
        await client.patch(url, json={"time_zone": "Mars/Base"}, headers=bearer(admin))
    ).status == 422
    disabled = await client.patch(url, json={"is_active": False}, headers=bearer(admin))
    assert (await disabled.json())["is_active"] is False
    assert (await sign_in(client, "anna")).status == 401
    audit = await (
        await client.get("/api/audit", params={"target": "user:2"}, headers=bearer(admin))
    ).json()
    assert [e["action"] for e in audit["entries"]] == ["user.update", "user.update"]
    assert audit["entries"][0]["details"]["is_active"] == {"from": True, "to": False}
    operator = await add(service, "olga", "operator", "103")
    refused = await client.patch(
        "/api/users/giorgi", json={"role": "admin"}, headers=bearer(operator)
    )
    assert refused.status == 403


async def test_the_last_admin_cannot_be_demoted_or_disabled(client, service) -> None:
    admin = await add(service, "root", "admin")
    for change in ({"role": "supervisor"}, {"is_active": False}):
        reply = await client.patch("/api/users/root", json=change, headers=bearer(admin))
        assert (
            reply.status == 409 and "last active admin" in (await reply.json())["error"]["message"]
        )
    await add(service, "second", "admin")
    assert (
        await client.patch("/api/users/root", json={"role": "supervisor"}, headers=bearer(admin))
    ).status == 200


async def test_a_password_reset_ends_the_users_sessions(client, service) -> None:
    admin = await add(service, "root", "admin")
    await add(service, "anna", "operator", "101")
    session_token = (await (await sign_in(client, "anna")).json())["token"]
    reset = await client.put(
        "/api/users/anna/password", json={"password": "новый-пароль-2"}, headers=bearer(admin)
    )
    assert (await reset.json()) == {"sessions_ended": 1}
    assert (await client.get("/api/me", headers=bearer(session_token))).status == 401
    assert (await sign_in(client, "anna")).status == 401
    assert (await sign_in(client, "anna", "новый-пароль-2")).status == 201


async def test_users_change_their_own_password_with_the_current_one(client, service) -> None:
    await add(service, "anna", "operator", "101")
    mine = (await (await sign_in(client, "anna")).json())["token"]
    other = (await (await sign_in(client, "anna")).json())["token"]
    url = "/api/users/anna/password"
    wrong = await client.put(
        url, json={"password": "новый-пароль-2", "current_password": "x"}, headers=bearer(mine)
    )
    assert wrong.status == 403
    ok = await client.put(
        url, json={"password": "новый-пароль-2", "current_password": PASSWORD}, headers=bearer(mine)
    )
    assert (await ok.json()) == {"sessions_ended": 1}  # the other browser, not this one
    assert (await client.get("/api/me", headers=bearer(mine))).status == 200
    assert (await client.get("/api/me", headers=bearer(other))).status == 401
    assert (
        await client.put(
            "/api/users/root/password", json={"password": "12345678"}, headers=bearer(mine)
        )
    ).status == 403


async def test_everyone_sets_their_own_time_zone(client, service) -> None:
    token = await add(service, "sophea", "sales", "103")
    reply = await client.patch(
        "/api/me", json={"time_zone": "Asia/Phnom_Penh"}, headers=bearer(token)
    )
    assert (await reply.json())["time_zone"] == "Asia/Phnom_Penh"
    me = await (await client.get("/api/me", headers=bearer(token))).json()
    assert me["time_zone"] == "Asia/Phnom_Penh"
    cleared = await client.patch("/api/me", json={"time_zone": None}, headers=bearer(token))
    assert (await cleared.json())["time_zone"] is None
    ws = await client.ws_connect("/ws", headers=bearer(token))
    hello = await ws.receive_json()
    assert hello["office"] == {"time_zone": "Europe/Moscow", "region": "RU"}
    assert hello["user"]["time_zone"] is None
    await ws.close()


async def test_everyone_gives_their_own_email_for_fax_notices(client, service) -> None:
    token = await add(service, "nino", "sales", "104")
    reply = await client.patch(
        "/api/me", json={"email": "nino@office.example"}, headers=bearer(token)
    )
    assert (await reply.json())["email"] == "nino@office.example"
    bad = await client.patch("/api/me", json={"email": "not an address"}, headers=bearer(token))
    assert bad.status == 422
    me = await (await client.get("/api/me", headers=bearer(token))).json()
    assert me["email"] == "nino@office.example"
