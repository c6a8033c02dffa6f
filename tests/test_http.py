"""The HTTP API's contract: authentication, roles, error shape, health, metrics, OpenAPI."""

import asyncio
import json

import pytest
from helpers import bearer, new_token

from cti.config import Config, DatabaseConfig, ServerConfig
from cti.db.engine import create_engine
from cti.http.app import build_app
from cti.service import Service
from pbx_adapters.asterisk.settings import AsteriskSettings as PbxConfig


async def assert_error(response, status: int, code: str) -> dict:
    assert response.status == status
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert body["error"]["status"] == status
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize("path", ["/api/me", "/api/users", "/api/openapi.json", "/api/nowhere"])
async def test_api_needs_a_token(client, path: str) -> None:
    response = await client.get(path)
    await assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer cti_not-a-real-token-at-all-0000000000000",
        "Bearer ",
        "Basic YWRtaW46YWRtaW4=",
        "cti_xyz",
    ],
)
async def test_bad_tokens_get_401(client, header: str) -> None:
    response = await client.get("/api/me", headers={"Authorization": header})
    await assert_error(response, 401, "unauthorized")


async def test_me_and_wrong_role(client, make_user) -> None:
    token = await make_user("operator", "101", username="anna")
    response = await client.get("/api/me", headers=bearer(token))
    assert response.status == 200
    me = await response.json()
    assert (me["username"], me["role"], me["extension"]) == ("anna", "operator", "101")
    error = await assert_error(
        await client.get("/api/users", headers=bearer(token)), 403, "forbidden"
    )
    assert "supervisor" in error["message"]


async def test_admin_creates_user_whose_token_works(client, make_user) -> None:
    admin = await make_user("admin")
    response = await client.post(
        "/api/users",
        json={
            "username": "giorgi",
            "role": "operator",
            "extension": "102",
            "display_name": "გიორგი ბერიძე",
            "password": "correct horse",
        },
        headers=bearer(admin),
    )
    assert response.status == 201
    created = await response.json()
    assert created["user"]["display_name"] == "გიორგი ბერიძე"
    me = await client.get("/api/me", headers=bearer(created["token"]))
    assert (await me.json())["username"] == "giorgi"
    again = await client.post(
        "/api/users", json={"username": "giorgi", "role": "sales"}, headers=bearer(admin)
    )
    await assert_error(again, 409, "conflict")
    supervisor = await make_user("supervisor")
    users = await (await client.get("/api/users", headers=bearer(supervisor))).json()
    assert "giorgi" in [u["username"] for u in users["users"]]


async def test_only_admins_create_users(client, make_user) -> None:
    supervisor = await make_user("supervisor")
    response = await client.post(
        "/api/users", json={"username": "x", "role": "sales"}, headers=bearer(supervisor)
    )
    await assert_error(response, 403, "forbidden")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (b'{"username": "x", "role": "king"}', 422, "role"),
        (
            b'{"username": "x", "role": "operator", "extension": "101\\r\\nAction: Originate"}',
            422,
            "extension",
        ),
        (b'{"username": "x", "role": "sales", "password": "short"}', 422, "password"),
        (b'{"username": "x y", "role": "sales"}', 422, None),
        (b'{"username": "x", "role": "operator"}', 422, None),
    ],
)
async def test_bad_bodies_get_clear_errors(client, make_user, body, status, field) -> None:
    admin = await make_user("admin")
    response = await client.post(
        "/api/users", data=body, headers={**bearer(admin), "Content-Type": "application/json"}
    )
    error = await assert_error(
        response, status, "bad_request" if status == 400 else "invalid_request"
    )
    if field:
        assert error["message"].startswith(field)
        assert error["details"][0]["field"] == field


async def test_users_manage_their_own_tokens_only(client, make_user) -> None:
    anna = await make_user("sales", username="anna")
    await make_user("sales", username="boris")
    response = await client.post("/api/users/boris/tokens", headers=bearer(anna))
    await assert_error(response, 403, "forbidden")
    response = await client.post("/api/users/anna/tokens", headers=bearer(anna))
    assert response.status == 201
    second = (await response.json())["token"]
    revoked = await client.delete("/api/users/anna/tokens", headers=bearer(second))
    assert (await revoked.json()) == {"revoked": 2}
    await assert_error(await client.get("/api/me", headers=bearer(anna)), 401, "unauthorized")
    admin = await make_user("admin")
    missing = await client.post("/api/users/nobody/tokens", headers=bearer(admin))
    await assert_error(missing, 404, "not_found")


async def test_unknown_routes_and_methods_use_the_error_shape(client, make_user) -> None:
    token = await make_user("admin")
    await assert_error(
        await client.get("/api/nothing-here", headers=bearer(token)), 404, "not_found"
    )
    await assert_error(
        await client.put("/api/me", headers=bearer(token)), 405, "method_not_allowed"
    )
    await assert_error(await client.get("/nothing"), 404, "not_found")


async def test_openapi_describes_every_operation(client, make_user) -> None:
    token = await make_user("receptionist", "100")
    spec = await (await client.get("/api/openapi.json", headers=bearer(token))).json()
    assert spec["openapi"].startswith("3.")
    assert {"/api/me", "/api/users", "/api/users/{username}/tokens", "/api/openapi.json"} <= set(
        spec["paths"]
    )
    create = spec["paths"]["/api/users"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "UserCreate"
    )
    assert {"201", "401", "403", "409", "422"} <= set(create["responses"])
    assert "UserCreate" in spec["components"]["schemas"]
    for path, path_item in spec["paths"].items():
        for method, operation in path_item.items():
            # Signing in is the one operation without a token; a recording's audio also
            # takes its media grant (a cookie) instead.
            expected = [{"bearer": []}]
            if (path, method) == ("/api/session", "post"):
                expected = []
            elif (path, method) == ("/api/recordings/{recording_id}", "get"):
                expected.append({"media_grant": []})
            assert operation["security"] == expected, path
    grant = spec["paths"]["/api/recordings/{recording_id}/grant"]["post"]
    assert grant["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "GrantOut"
    )
    assert {"401", "403", "404"} <= set(grant["responses"])
    cookie = spec["components"]["securitySchemes"]["media_grant"]
    assert (cookie["type"], cookie["in"], cookie["name"]) == ("apiKey", "cookie", "media_grant")


async def test_healthz_and_metrics_need_no_token(client, make_user) -> None:
    health = await client.get("/healthz")
    assert health.status == 200
    body = await health.json()
    assert body["status"] == "ok"
    assert body["database"]["up"] is True
    token = await make_user("admin")
    await client.get("/api/me", headers=bearer(token))
    metrics = await client.get("/metrics")
    assert metrics.status == 200
    assert metrics.content_type == "text/plain"
    text = await metrics.text()
    assert 'cti_http_requests_total{method="GET",route="/api/me",status="200"} 1.0' in text
    assert 'cti_build_info{version="' in text
    assert "cti_http_request_duration_seconds_bucket" in text


async def test_healthz_reports_links_and_a_dead_database(db_url, tmp_path, aiohttp_client) -> None:
    config = Config(
        server=ServerConfig(data_dir=tmp_path),
        database=DatabaseConfig(url=db_url, auto_migrate=True),
        pbx=[
            PbxConfig(
                name="office", type="asterisk", host="pbx", username="u", secret="ami-secret-value"
            )
        ],
    )
    service = await Service.start(config)
    try:
        client = await aiohttp_client(build_app(service))
        body = await (await client.get("/healthz")).json()
        assert body["status"] == "degraded"
        assert [(link["name"], link["kind"], link["up"]) for link in body["links"]] == [
            ("office", "pbx", False)
        ]
        # The adapter keeps failing to reach host "pbx"; stop it before playing its part.
        await service.pbx["office"].stop()
        await asyncio.sleep(0.05)
        await service.links.report("office", True, "connected")
        body = await (await client.get("/healthz")).json()
        assert body["status"] == "ok" and body["links"][0]["detail"] == "connected"
        assert "ami-secret-value" not in await (await client.get("/healthz")).text()
        metrics = await (await client.get("/metrics")).text()
        assert 'cti_link_up{kind="pbx",name="office"} 1.0' in metrics

        # The database goes away: 503 and "down".
        health = service.database_health
        live_engine = health.engine
        health.engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
        response = await client.get("/healthz")
        assert response.status == 503
        assert (await response.json())["status"] == "down"
        await health.engine.dispose()
        health.engine = live_engine
    finally:
        await service.close()


async def test_internal_errors_are_json_and_hide_details(
    client, service, make_user, monkeypatch
) -> None:
    token = await make_user("admin")

    def broken(*args, **kwargs):
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(service, "sessions", broken)
    response = await client.get("/api/me", headers=bearer(token))
    error = await assert_error(response, 500, "internal_error")
    assert "hunter2" not in error["message"]


async def test_a_directory_given_to_the_service_answers_lookups(
    db_url,
    tmp_path,
    aiohttp_client,
) -> None:
    from cti.directory import InMemoryDirectory, Match

    directory = InMemoryDirectory()
    directory.add("+78125550111", Match("c-1", "ООО «Ромашка»"))
    config = Config(
        server=ServerConfig(data_dir=tmp_path),
        database=DatabaseConfig(url=db_url, auto_migrate=True),
    )
    service = await Service.start(config, directory=directory)
    try:
        client = await aiohttp_client(build_app(service))
        token = await new_token(service, "receptionist", "100")
        response = await client.get("/api/lookup?number=8%20812%20555-01-11", headers=bearer(token))
        body = await response.json()
        assert body["number"] == "+78125550111"
        assert body["match"]["client_name"] == "ООО «Ромашка»"
    finally:
        await service.close()


async def test_requests_the_server_cannot_parse_get_the_json_error_shape(tmp_path) -> None:
    """curl sends a typed query as raw UTF-8: aiohttp refuses it before any middleware."""
    from cti.service import serve

    config = Config(
        server=ServerConfig(data_dir=tmp_path, port=0),
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path}/cti.db", auto_migrate=True),
    )
    stop, started = asyncio.Event(), asyncio.get_running_loop().create_future()
    server = asyncio.create_task(
        serve(config, stop=stop, on_started=lambda service, url: started.set_result(url))
    )
    url = await asyncio.wait_for(started, 20)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write("GET /api/clients?q=ромашка HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    answer = await reader.read(65536)
    writer.close()
    stop.set()
    await asyncio.wait_for(server, 20)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"400" and b"Content-Type: application/json" in head
    error = json.loads(body)["error"]
    assert error["status"] == 400 and error["code"] == "bad_request"
    assert "--data-urlencode" in error["message"], error["message"]
