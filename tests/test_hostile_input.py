"""Hostile input at the edge: text that is not valid Unicode, NUL, deep nesting, huge
numbers, wrong types. Each is a clear 4xx in the usual error shape, and the live feed
goes on delivering pops afterwards, to everyone."""

import asyncio
import json
import re

import pytest
from helpers import bearer, open_feed, receive
from sqlalchemy import update

from cti.clients.builtin import ClientIn, PhoneIn, save_client
from cti.clients.models import Client
from cti.domain import Direction
from cti.events import CallRinging
from cti.http.keys import API_KEY

CALLER = "+78125550104"
SURROGATE = "vip\ud800"


def ringing(call_id: str, extension: str = "101") -> CallRinging:
    return CallRinging(
        call_id=call_id, extension=extension, direction=Direction.INBOUND, external_number=CALLER
    )


async def pop_of(ws, call_id: str, found: bool = False) -> dict:
    """The first pop of ``call_id`` (with the client filled in, when ``found``)."""
    while True:
        frame = await receive(ws)
        data = frame["data"] if frame["type"] == "pop" else {}
        if data.get("call_id") == call_id and (not found or data["lookup"] == "found"):
            return data


async def send_json(client, method: str, path: str, text: str, token: str | None = None):
    """``text`` as the body, as it is (json= would refuse or re-encode what we send)."""
    headers = {"Content-Type": "application/json", **(bearer(token) if token else {})}
    return await client.request(method, path, data=text.encode(), headers=headers)


async def assert_error(reply, status: int) -> dict:
    assert reply.status == status, await reply.text()
    body = await reply.json()
    assert body["error"]["status"] == status and body["error"]["message"]
    return body["error"]


async def add_client(service) -> int:
    async with service.sessions() as session:
        row = await save_client(session, ClientIn("ООО Ромашка", phones=[PhoneIn(CALLER)]), "RU")
        await session.commit()
        return row.id


async def test_a_lone_surrogate_in_a_client_is_refused_and_pops_go_on(
    client, service, make_user
) -> None:
    token = await make_user("supervisor")
    client_id = await add_client(service)
    ws = await open_feed(client, await make_user("receptionist"))
    async with ws:
        body = json.dumps({"name": "ООО Ромашка", "tags": [SURROGATE], "phones": []})
        for reply in (
            await send_json(client, "POST", "/api/clients", body, token),
            await send_json(client, "PUT", f"/api/clients/{client_id}", body, token),
        ):
            error = await assert_error(reply, 422)
            assert error["message"] == "tags.0: is not valid Unicode (it holds a lone surrogate)"
        assert (await client.get("/api/clients", headers=bearer(token))).status == 200
        await service.bus.publish(ringing("c1"))
        assert (await pop_of(ws, "c1", found=True))["client"]["name"] == "ООО Ромашка"


async def test_bad_text_stored_before_the_fix_still_pops_and_lists(
    client, service, make_user
) -> None:
    client_id = await add_client(service)
    async with service.sessions() as session:  # as an older version let it in
        await session.execute(update(Client).where(Client.id == client_id).values(tags=[SURROGATE]))
        await session.commit()
    ws = await open_feed(client, await make_user("receptionist"))
    async with ws:
        await service.bus.publish(ringing("c1"))
        card = await pop_of(ws, "c1", found=True)
        assert card["client"]["tags"] == ["vip\ufffd"]
        await service.bus.publish(ringing("c2"))
        assert (await pop_of(ws, "c2"))["number"] == CALLER
    listed = await client.get("/api/clients", headers=bearer(await make_user("supervisor")))
    assert listed.status == 200
    assert (await listed.json())["clients"][0]["tags"] == ["vip\ufffd"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, 400, "nested too deeply"),
        ('{"name": ' + "[" * 40 + "]" * 40 + "}", 422, "nested deeper than 32"),
        ('{"name": "a\\u0000b"}', 422, "name: contains a NUL character"),
        ('{"name\\udc80": "a"}', 422, "has a key that is not valid Unicode"),
        ('{"name": ' + "9" * 5000 + "}", 400, "not valid JSON"),
        ('{"name": 1e999}', 422, "name: is not a finite number"),
        ('{"name": NaN}', 400, "NaN is not a JSON number"),
        ('{"name": 99999999999999999999999}', 422, "name: is out of range"),
    ],
)
async def test_hostile_json_bodies_are_4xx(client, make_user, body, status, message) -> None:
    token = await make_user("supervisor")
    for path, who in (("/api/clients", token), ("/api/session", None)):
        error = await assert_error(await send_json(client, "POST", path, body, who), status)
        assert message in error["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/clients/99999999999999999999999"),
        ("GET", "/api/clients/2147483648"),
        ("DELETE", "/api/clients/-1"),
        ("GET", "/api/recordings/999999999999999999"),
        ("DELETE", "/api/contacts/99999999999999999999999"),
    ],
)
async def test_huge_ids_in_paths_are_404(client, make_user, method, path) -> None:
    token = await make_user("supervisor")
    await assert_error(await client.request(method, path, headers=bearer(token)), 404)


async def test_huge_ids_and_bad_text_in_queries_and_paths_are_4xx(client, make_user) -> None:
    token = await make_user("supervisor")
    for path in (
        "/api/calls?client_id=99999999999999999999999",
        "/api/clients?after=99999999999999999999999",
    ):
        await assert_error(await client.get(path, headers=bearer(token)), 422)
    reply = await client.post(
        "/api/tasks/99999999999999999999999/close", headers=bearer(token), json={}
    )
    await assert_error(reply, 404)
    for path in ("/api/clients?q=%00", "/api/calls/%00", "/api/lookup?number=1%00"):
        error = await assert_error(await client.get(path, headers=bearer(token)), 422)
        assert "NUL" in error["message"]


async def raw_request(client, head: bytes) -> tuple[int, dict]:
    """Send bytes no HTTP client library would (headers that are not UTF-8)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(head)
    await writer.drain()
    answer = await reader.read(65536)
    writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1] or b"{}")


async def test_headers_that_are_not_utf8_are_refused(client) -> None:
    for header in (b"Bearer cti_\xed\xa0\x80abc", b"Bearer \xff\xfe"):
        status, body = await raw_request(
            client,
            b"GET /api/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: "
            + header
            + b"\r\n\r\n",
        )
        assert status == 422 and "header Authorization" in body["error"]["message"]


# -- every JSON route, hostile bodies and queries ------------------------------------


def _hostile_bodies(fields: list[str]) -> list[bytes]:
    deep = "[" * 50_000 + "]" * 50_000
    bodies = [deep, "[]", '"text"', "1", "null", "{", '{"a": 1}' * 2, "\ufeff{}"]
    for value in (
        json.dumps(SURROGATE),
        '"\\u0000"',
        "9" * 4400,
        "-" + "9" * 30,
        "1e400",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "{}",
        "[]",
        "true",
        "12",
    ):
        bodies.append("{" + ", ".join(f'"{f}": {value}' for f in fields) + "}")
    return [b.encode("utf-8", "surrogatepass") for b in bodies]


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


async def test_every_json_route_answers_hostile_bodies_with_4xx_and_pops_go_on(
    client, service, make_user
) -> None:
    admin = await make_user("admin", "100")
    await add_client(service)
    operations = [op for op in client.app[API_KEY].operations if op.body is not None]
    assert len(operations) >= 9
    ws = await open_feed(client, await make_user("receptionist"))
    async with ws:
        for op in operations:
            fields = list(op.body.model_fields)
            for body in _hostile_bodies(fields):
                reply = await client.request(
                    op.method,
                    _fill(op.path),
                    data=body,
                    headers={**bearer(admin), "Content-Type": "application/json"},
                )
                assert 400 <= reply.status < 500, (op.method, op.path, body[:80], reply.status)
                assert (await reply.json())["error"]["status"] == reply.status
        await service.bus.publish(ringing("after-the-fuzz"))
        assert (await pop_of(ws, "after-the-fuzz"))["number"] == CALLER


async def test_every_query_route_answers_hostile_values_with_4xx(client, make_user) -> None:
    admin = await make_user("admin", "100")
    operations = [op for op in client.app[API_KEY].operations if op.query is not None]
    assert operations
    hostile = ["%00", "%ED%A0%80", "9" * 4400, "-" + "9" * 30, "1e400", "%5B%5D", "nan"]
    for op in operations:
        for name in op.query.model_fields:
            for value in hostile:
                reply = await client.request(
                    op.method, f"{_fill(op.path)}?{name}={value}", headers=bearer(admin)
                )
                assert reply.status < 500, (op.path, name, value, reply.status)
                if reply.status >= 400:
                    assert (await reply.json())["error"]["status"] == reply.status
