"""CRM connectors: the resilience layer, the generic HTTP/JSON connector and Bitrix24.

The HTTP and Bitrix24 connectors talk to local aiohttp servers that implement the request
and answer shapes the connectors rely on (for Bitrix24: as its REST documentation shows
them). None of this was run against a real Bitrix24 portal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from crm_bridge.bitrix24 import (
    Bitrix24CallReporter,
    Bitrix24Client,
    Bitrix24Directory,
    Bitrix24Error,
)
from crm_bridge.connectors import build_call_reporter, build_directory
from crm_bridge.http_json import HttpJsonDirectory, HttpJsonError, resolve_path
from crm_bridge.resilience import DirectoryUnavailable, ResilientDirectory
from cti.calls import Call, CallLeg
from cti.config import CrmConfig
from cti.directory import InMemoryDirectory, Match, ResponsibleManager
from cti.domain import Direction, Outcome

ROMASHKA = "+78125550101"
TBILISI = "+995322000102"
PHNOM_PENH = "+85523000103"
UNKNOWN = "+78125559999"

MATCH = Match("c1", "ООО «Ромашка»", contact_name="Иван Петров")


# --- the resilience layer --------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeDirectory:
    """Answers from a dict; can fail, or hold every answer until ``gate`` is set."""

    def __init__(self, entries: dict[str, Match] | None = None) -> None:
        self.entries = dict(entries or {})
        self.calls: list[str] = []
        self.fail = False
        self.gate: asyncio.Event | None = None
        self.closed = False

    async def lookup(self, number: str) -> Match | None:
        self.calls.append(number)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("CRM down")
        return self.entries.get(number)

    async def search(self, text: str, limit: int = 20) -> list[Match]:
        self.calls.append(f"search:{text}")
        return [m for m in self.entries.values() if text in m.client_name][:limit]

    async def close(self) -> None:
        self.closed = True


def resilient(inner: FakeDirectory, clock: FakeClock, **options: Any) -> ResilientDirectory:
    settings: dict[str, Any] = {
        "timeout_seconds": 1.0,
        "cache_seconds": 300,
        "breaker_failures": 3,
        "breaker_reset_seconds": 30,
    }
    return ResilientDirectory(inner, clock=clock, **{**settings, **options})


async def test_cache_answers_found_and_unknown_numbers_until_the_ttl() -> None:
    clock, fake = FakeClock(), FakeDirectory({ROMASHKA: MATCH})
    directory = resilient(fake, clock)
    assert await directory.lookup(ROMASHKA) == MATCH
    assert await directory.lookup(UNKNOWN) is None
    clock.now += 299
    assert await directory.lookup(ROMASHKA) == MATCH
    assert await directory.lookup(UNKNOWN) is None
    assert fake.calls == [ROMASHKA, UNKNOWN]
    assert (directory.hits, directory.misses) == (2, 2)

    clock.now += 1  # both expire
    assert await directory.lookup(ROMASHKA) == MATCH
    assert await directory.lookup(UNKNOWN) is None
    assert fake.calls == [ROMASHKA, UNKNOWN, ROMASHKA, UNKNOWN]


async def test_cache_is_bounded_lru_and_can_be_off() -> None:
    clock, fake = FakeClock(), FakeDirectory()
    directory = resilient(fake, clock, max_cache_entries=2)
    for number in ("+1", "+2", "+1", "+3"):  # +2 is the least recently used
        await directory.lookup(number)
    await directory.lookup("+1")
    await directory.lookup("+2")
    assert fake.calls == ["+1", "+2", "+3", "+2"]

    uncached = resilient(FakeDirectory(), clock, cache_seconds=0)
    await uncached.lookup(ROMASHKA)
    await uncached.lookup(ROMASHKA)
    assert uncached.misses == 2 and uncached.hits == 0


async def test_failures_are_not_cached_and_raise_directory_unavailable() -> None:
    clock, fake = FakeClock(), FakeDirectory({ROMASHKA: MATCH})
    directory = resilient(fake, clock)
    fake.fail = True
    with pytest.raises(DirectoryUnavailable, match="CRM down"):
        await directory.lookup(ROMASHKA)
    fake.fail = False
    assert await directory.lookup(ROMASHKA) == MATCH
    assert directory.failures == 1 and len(fake.calls) == 2


async def test_breaker_opens_stays_open_then_lets_one_trial_through() -> None:
    clock, fake = FakeClock(), FakeDirectory({ROMASHKA: MATCH})
    directory = resilient(fake, clock)
    fake.fail = True
    for i in range(3):
        assert directory.breaker_state == "closed"
        with pytest.raises(DirectoryUnavailable):
            await directory.lookup(f"+7812555000{i}")
    assert directory.breaker_state == "open"

    clock.now += 29.9  # still open: nobody is asked
    with pytest.raises(DirectoryUnavailable, match="circuit open"):
        await directory.lookup(ROMASHKA)
    with pytest.raises(DirectoryUnavailable, match="circuit open"):
        await directory.search("Ромашка")
    assert len(fake.calls) == 3 and directory.rejected == 2

    clock.now += 0.1
    assert directory.breaker_state == "half-open"
    fake.fail, fake.gate = False, asyncio.Event()
    trial = asyncio.create_task(directory.lookup(ROMASHKA))
    await asyncio.sleep(0)
    with pytest.raises(DirectoryUnavailable):  # only one trial at a time
        await directory.lookup(UNKNOWN)
    fake.gate.set()
    assert await trial == MATCH
    assert directory.breaker_state == "closed"
    assert await directory.lookup(UNKNOWN) is None
    assert directory.stats()["breaker"] == "closed"


async def test_a_failed_trial_reopens_the_breaker() -> None:
    clock, fake = FakeClock(), FakeDirectory()
    directory = resilient(fake, clock, breaker_failures=1)
    fake.fail = True
    with pytest.raises(DirectoryUnavailable):
        await directory.lookup(ROMASHKA)
    clock.now += 30
    with pytest.raises(DirectoryUnavailable, match="CRM down"):  # the trial
        await directory.lookup(ROMASHKA)
    assert directory.breaker_state == "open"
    with pytest.raises(DirectoryUnavailable, match="circuit open"):
        await directory.lookup(ROMASHKA)
    assert len(fake.calls) == 2


async def test_concurrent_lookups_of_one_number_are_one_request() -> None:
    clock, fake = FakeClock(), FakeDirectory({ROMASHKA: MATCH})
    fake.gate = asyncio.Event()
    directory = resilient(fake, clock)
    waiters = [asyncio.create_task(directory.lookup(ROMASHKA)) for _ in range(5)]
    await asyncio.sleep(0)
    waiters[0].cancel()  # one caller giving up does not cancel the others' request
    fake.gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == [MATCH] * 4
    assert fake.calls == [ROMASHKA]
    assert (directory.misses, directory.coalesced) == (1, 4)


async def test_a_slow_crm_times_out_as_unavailable() -> None:
    fake = FakeDirectory()
    fake.gate = asyncio.Event()  # never set
    directory = resilient(fake, FakeClock(), timeout_seconds=0.05)
    with pytest.raises(DirectoryUnavailable, match=r"did not answer within 0\.05 s"):
        await directory.lookup(ROMASHKA)
    assert directory.timeouts == 1 and directory.failures == 1


async def test_search_and_close_pass_through() -> None:
    fake = FakeDirectory({ROMASHKA: MATCH})
    directory = resilient(fake, FakeClock())
    assert await directory.search("Ромашка") == [MATCH]
    await directory.close()
    assert fake.closed


# --- the generic HTTP/JSON connector ---------------------------------------------------------


class FakeCrm:
    """GET /clients/{number}: answers set per number as (status, body, content type)."""

    def __init__(self) -> None:
        self.requests: list[web.Request] = []
        self.answers: dict[str, tuple[int, bytes, str]] = {}
        self.release = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/clients/{number}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        number = request.match_info["number"]
        if number == "slow":
            await asyncio.wait_for(self.release.wait(), 2)
        status, body, content_type = self.answers.get(number, (404, b"", "application/json"))
        response = web.Response(status=status, body=body)
        response.headers["Content-Type"] = content_type
        return response

    def json(self, number: str, text: str, status: int = 200) -> None:
        self.answers[number] = (status, text.encode(), "application/json; charset=utf-8")


FIELDS = {
    "client_id": "id",
    "client_name": "company.title",
    "contact_name": "contacts.0.name",
    "manager_name": "owner.name",
    "manager_extension": "owner.ext",
    "manager_phone": "owner.mobile",
    "tags": "labels",
    "crm_url": "url",
}


@pytest.fixture
async def crm(aiohttp_server) -> AsyncIterator[tuple[FakeCrm, HttpJsonDirectory]]:
    fake = FakeCrm()
    server = await aiohttp_server(fake.app())
    url = str(server.make_url("/clients/")) + "{number}?key=url-s3cret"
    directory = HttpJsonDirectory(
        url, headers={"Authorization": "Bearer h3ader-s3cret"}, fields=FIELDS, region="RU"
    )
    yield fake, directory
    fake.release.set()
    await directory.close()


async def test_http_found_with_dotted_paths_headers_and_an_encoded_number(crm, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    fake, directory = crm
    fake.json(
        ROMASHKA,
        """{"id": 17, "company": {"title": "ООО «Ромашка»"},
            "contacts": [{"name": "Иван Петров"}, {"name": "Мария"}],
            "owner": {"name": "Анна Петрова", "ext": 101, "mobile": "8 (921) 555-01-01"},
            "labels": ["vip", "опт"], "url": "https://crm.example/clients/17"}""",
    )
    match = await directory.lookup(ROMASHKA)
    assert match == Match(
        client_id="17",
        client_name="ООО «Ромашка»",
        kind="company",
        contact_name="Иван Петров",
        manager=ResponsibleManager("Анна Петрова", "101", "+79215550101"),
        tags=("vip", "опт"),
        crm_url="https://crm.example/clients/17",
    )
    request = fake.requests[0]
    assert request.raw_path.startswith("/clients/%2B78125550101?")
    assert request.headers["Authorization"] == "Bearer h3ader-s3cret"
    logged = str([r.__dict__ for r in caplog.records if r.name.startswith("crm_bridge")])
    assert "s3cret" not in logged and "s3cret" not in repr(directory)


async def test_http_list_answer_georgian_and_a_person(crm) -> None:
    fake, directory = crm
    directory.fields = {**directory.fields, "client_name": "name", "kind": "type"}
    fake.json(
        TBILISI,
        '[{"id": "g-2", "name": "გიორგი ბერიძე", "type": "person", "url": "javascript:x"},'
        ' {"id": "g-3", "name": "second"}]',
    )
    match = await directory.lookup(TBILISI)
    assert match is not None
    assert (match.client_id, match.client_name, match.kind) == ("g-2", "გიორგი ბერიძე", "person")
    assert match.manager is None and match.crm_url is None  # only http(s) links


async def test_http_decodes_the_declared_charset(crm) -> None:
    fake, directory = crm
    body = '{"company": {"title": "Завод"}}'.encode("cp1251")
    fake.answers[ROMASHKA] = (200, body, "application/json; charset=windows-1251")
    match = await directory.lookup(ROMASHKA)
    assert match is not None and match.client_name == "Завод"
    assert match.client_id == ROMASHKA  # no id in the answer: the number stands in


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, '{"error": "not found"}'),
        (200, ""),
        (200, "  \n"),
        (200, "null"),
        (200, "[]"),
        (200, '{"id": 5, "company": {}}'),  # no client name
        (200, '{"id": 5, "company": {"title": "  "}}'),
    ],
)
async def test_http_unknown(crm, status: int, body: str) -> None:
    fake, directory = crm
    fake.json(ROMASHKA, body, status)
    assert await directory.lookup(ROMASHKA) is None


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (500, '{"error": "boom"}', "HTTP 500"),
        (401, "", "HTTP 401"),
        (302, "", "HTTP 302"),  # redirects are not followed: the headers stay put
        (200, "<html>oops</html>", "not JSON"),
        (200, '"a string"', "JSON str"),
    ],
)
async def test_http_failures(crm, status: int, body: str, reason: str) -> None:
    fake, directory = crm
    fake.json(ROMASHKA, body, status)
    with pytest.raises(HttpJsonError, match=reason) as caught:
        await directory.lookup(ROMASHKA)
    assert "s3cret" not in str(caught.value)


async def test_http_timeout_and_failures_through_the_resilience_layer(crm) -> None:
    fake, directory = crm
    wrapped = ResilientDirectory(directory, timeout_seconds=0.1, breaker_failures=2)
    with pytest.raises(DirectoryUnavailable, match="did not answer"):
        await wrapped.lookup("slow")
    fake.json(ROMASHKA, "{", 200)
    with pytest.raises(DirectoryUnavailable, match="not JSON"):
        await wrapped.lookup(ROMASHKA)
    assert (wrapped.timeouts, wrapped.failures, wrapped.breaker_state) == (1, 2, "open")


async def test_http_search_is_by_number_only(crm) -> None:
    fake, directory = crm
    fake.json(ROMASHKA, '{"company": {"title": "ООО «Ромашка»"}}')
    assert await directory.search("Ромашка") == []
    assert [m.client_name for m in await directory.search("8 812 555-01-01")] == ["ООО «Ромашка»"]


def test_http_configuration_errors_and_paths() -> None:
    with pytest.raises(ValueError, match="unknown http_fields: owner"):
        HttpJsonDirectory("https://crm/{number}", fields={"owner": "x"})
    with pytest.raises(ValueError, match="must contain"):
        HttpJsonDirectory("https://crm/")
    document = {"a": {"b": [{"c": 1}, {"c": 2}]}, "n": None}
    assert resolve_path(document, "a.b.1.c") == 2
    assert resolve_path(document, "a.b.-1.c") == 2
    assert resolve_path(document, "a.b.5.c") is None
    assert resolve_path(document, "a.b.c") is None
    assert resolve_path(document, "n.x") is None


# --- Bitrix24 ----------------------------------------------------------------------------


class FakePortal:
    """The Bitrix24 REST methods the connector uses, as the documentation shows them."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.phones: dict[str, dict[str, list[int]]] = {}
        self.entities: dict[str, dict[int, dict[str, Any]]] = {
            "contact": {},
            "company": {},
            "lead": {},
        }
        self.users: dict[int, dict[str, Any]] = {}
        self.errors: dict[str, tuple[int, str, str]] = {}  # method -> (status, code, text)
        self.calls: dict[str, dict[str, Any]] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/rest/1/hookkey/{method}", self.handle)
        return app

    @property
    def methods(self) -> list[str]:
        return [method for method, _ in self.requests]

    def bodies(self, method: str) -> list[dict[str, Any]]:
        return [body for m, body in self.requests if m == method]

    async def handle(self, request: web.Request) -> web.Response:
        assert request.match_info["method"].endswith(".json")
        assert request.content_type == "application/json"
        method = request.match_info["method"].removesuffix(".json")
        body = await request.json()
        self.requests.append((method, body))
        if method in self.errors:
            status, code, text = self.errors[method]
            return web.json_response({"error": code, "error_description": text}, status=status)
        try:
            result = getattr(self, method.replace(".", "_"))(body)
        except LookupError as exc:
            return web.json_response({"error": "", "error_description": str(exc)}, status=400)
        return web.json_response({"result": result, "time": {"start": 1.0, "finish": 1.1}})

    def crm_duplicate_findbycomm(self, body: dict[str, Any]) -> Any:
        assert body["type"] == "PHONE" and body["entity_type"] in ("CONTACT", "COMPANY", "LEAD")
        found: dict[str, list[int]] = {}
        for value in body["values"]:
            ids = self.phones.get(value, {}).get(body["entity_type"])
            if ids:
                found[body["entity_type"]] = ids
        return found or []  # PHP's empty array

    def _get(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        entity = self.entities[kind].get(int(body["id"]))
        if entity is None:
            raise LookupError("Not found")
        return entity

    def crm_contact_get(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._get("contact", body)

    def crm_company_get(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._get("company", body)

    def crm_lead_get(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._get("lead", body)

    def user_get(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        user = self.users.get(int(body["filter"]["ID"]))
        return [user] if user else []

    def telephony_externalcall_register(self, body: dict[str, Any]) -> dict[str, Any]:
        assert {"USER_ID", "PHONE_NUMBER", "TYPE"} <= body.keys()
        call_id = f"externalCall.{len(self.calls) + 1:032x}.1714557600"
        self.calls[call_id] = body
        return {"CALL_ID": call_id, "CRM_CREATED_LEAD": None, "CRM_CREATED_ENTITIES": []}

    def telephony_externalcall_finish(self, body: dict[str, Any]) -> dict[str, Any]:
        if body["CALL_ID"] not in self.calls:
            raise LookupError("Call is not found (call should be registered prior to finishing)")
        return {"CALL_ID": body["CALL_ID"], "CALL_FAILED_CODE": body["STATUS_CODE"]}


@pytest.fixture
async def portal(aiohttp_server) -> AsyncIterator[tuple[FakePortal, Bitrix24Client]]:
    fake = FakePortal()
    server = await aiohttp_server(fake.app())
    client = Bitrix24Client(str(server.make_url("/rest/1/hookkey/")))
    yield fake, client
    await client.close()


async def test_bitrix_contact_with_a_company(portal) -> None:
    fake, client = portal
    fake.phones[ROMASHKA] = {"CONTACT": [43, 44]}
    fake.entities["contact"][43] = {
        "ID": "43",
        "NAME": "Иван",
        "LAST_NAME": "Петров",
        "COMPANY_ID": "12",
        "ASSIGNED_BY_ID": "6",
    }
    fake.entities["company"][12] = {"ID": "12", "TITLE": "ООО «Ромашка»", "ASSIGNED_BY_ID": "7"}
    fake.users[7] = {
        "ID": "7",
        "NAME": "Анна",
        "LAST_NAME": "Петрова",
        "UF_PHONE_INNER": "101",
        "PERSONAL_MOBILE": "+7 (921) 555-01-01",
    }
    directory = Bitrix24Directory(client, users={"199": 7})
    match = await directory.lookup(ROMASHKA)
    assert match == Match(
        client_id="company:12",
        client_name="ООО «Ромашка»",
        kind="company",
        contact_name="Иван Петров",
        manager=ResponsibleManager("Анна Петрова", "101", "+79215550101"),
        crm_url=f"{client.portal_url}/crm/contact/details/43/",
    )
    assert fake.requests == [
        (
            "crm.duplicate.findbycomm",
            {"entity_type": "CONTACT", "type": "PHONE", "values": [ROMASHKA]},
        ),
        ("crm.contact.get", {"id": 43}),
        ("crm.company.get", {"id": 12}),
        ("user.get", {"filter": {"ID": 7}}),
    ]
    await directory.lookup(ROMASHKA)  # the manager is remembered for a while
    assert fake.methods.count("user.get") == 1


async def test_bitrix_company_only_with_the_extension_from_the_user_map(portal) -> None:
    fake, client = portal
    fake.phones[TBILISI] = {"COMPANY": [5]}
    fake.entities["company"][5] = {"ID": "5", "TITLE": "შპს თბილისი", "ASSIGNED_BY_ID": "8"}
    fake.users[8] = {"ID": "8", "NAME": "გიორგი", "LAST_NAME": "ბერიძე", "UF_PHONE_INNER": ""}
    match = await Bitrix24Directory(client, users={"102": 8}).lookup(TBILISI)
    assert match == Match(
        client_id="company:5",
        client_name="შპს თბილისი",
        kind="company",
        manager=ResponsibleManager("გიორგი ბერიძე", "102"),
        crm_url=f"{client.portal_url}/crm/company/details/5/",
    )
    entity_types = [b["entity_type"] for b in fake.bodies("crm.duplicate.findbycomm")]
    assert entity_types == ["CONTACT", "COMPANY"]


async def test_bitrix_lead_and_a_refused_user_get(portal) -> None:
    fake, client = portal
    fake.phones[PHNOM_PENH] = {"LEAD": [77]}
    fake.entities["lead"][77] = {
        "ID": "77",
        "TITLE": "Звонок",
        "NAME": "សុខា",
        "LAST_NAME": "ចាន់",
        "ASSIGNED_BY_ID": "9",
    }
    # A webhook without the "user" scope: the client still comes through.
    fake.errors["user.get"] = (401, "insufficient_scope", "The request requires higher privileges")
    match = await Bitrix24Directory(client, users={"103": 9}).lookup(PHNOM_PENH)
    assert match == Match(
        client_id="lead:77",
        client_name="សុខា ចាន់",
        kind="person",
        manager=ResponsibleManager("Bitrix24 user 9", "103"),
        tags=("lead",),
        crm_url=f"{client.portal_url}/crm/lead/details/77/",
    )


async def test_bitrix_nothing_found_skips_deleted_entities(portal) -> None:
    fake, client = portal
    fake.phones[UNKNOWN] = {"CONTACT": [404]}  # in the duplicate index, since deleted
    assert await Bitrix24Directory(client).lookup(UNKNOWN) is None
    assert fake.methods == [
        "crm.duplicate.findbycomm",
        "crm.contact.get",
        "crm.duplicate.findbycomm",
        "crm.duplicate.findbycomm",
    ]
    entity_types = [b["entity_type"] for b in fake.bodies("crm.duplicate.findbycomm")]
    assert entity_types == ["CONTACT", "COMPANY", "LEAD"]


async def test_bitrix_api_error_names_the_method_never_the_webhook(portal, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    fake, client = portal
    fake.errors["crm.duplicate.findbycomm"] = (
        401,
        "INVALID_CREDENTIALS",
        "Invalid request credentials",
    )
    directory = Bitrix24Directory(client)
    with pytest.raises(Bitrix24Error) as caught:
        await directory.lookup(ROMASHKA)
    error = caught.value
    assert (
        str(error) == "crm.duplicate.findbycomm: INVALID_CREDENTIALS: Invalid request credentials"
    )
    assert (error.code, error.status, error.retryable) == ("INVALID_CREDENTIALS", 401, False)
    wrapped = ResilientDirectory(directory, breaker_failures=1)
    with pytest.raises(DirectoryUnavailable, match="INVALID_CREDENTIALS"):
        await wrapped.lookup(ROMASHKA)
    logged = str([r.__dict__ for r in caplog.records if r.name.startswith("crm_bridge")])
    assert "hookkey" not in logged and "hookkey" not in str(error) and "hookkey" not in repr(client)


def test_bitrix_webhook_url_checks() -> None:
    client = Bitrix24Client("https://portal.bitrix24.ru/rest/1/k3y")
    assert client.portal_url == "https://portal.bitrix24.ru"
    with pytest.raises(ValueError, match="rest") as caught:
        Bitrix24Client("https://portal.bitrix24.ru/k3y/")
    assert "k3y" not in str(caught.value)
    assert Bitrix24Error("m", "QUERY_LIMIT_EXCEEDED", "Too many requests", 503).retryable


def make_call(
    outcome: Outcome,
    direction: Direction = Direction.INBOUND,
    answered_by: str | None = None,
    caller_extension: str | None = None,
    talk: int = 0,
) -> dict[str, Any]:
    start = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    legs = [CallLeg("100", start), CallLeg("101", start), CallLeg("102", start)]
    answered_at = start + timedelta(seconds=5) if talk else None
    call = Call(
        id="1714557600.42",
        pbx="pbx0",
        started_at=start,
        direction=direction,
        external_number=ROMASHKA,
        caller_extension=caller_extension,
        legs=legs if direction is Direction.INBOUND else [],
        answered_by=answered_by,
        answered_at=answered_at,
        ended_at=(answered_at or start) + timedelta(seconds=talk or 20),
        outcome=outcome,
        missed=outcome is not Outcome.ANSWERED,
    )
    return call.to_dict()


USERS = {"101": 5, "102": 6, "200": 9}


async def test_bitrix_register_and_finish_an_answered_inbound_call(portal) -> None:
    fake, client = portal
    reporter = Bitrix24CallReporter(client, USERS)
    call = make_call(Outcome.ANSWERED, answered_by="102", talk=95)
    call_id = await reporter.call_started(call)
    assert call_id is not None and call_id.startswith("externalCall.")
    assert await reporter.call_started(call) == call_id  # once per call in this process
    assert fake.bodies("telephony.externalcall.register") == [
        {
            "USER_ID": 6,
            "PHONE_NUMBER": ROMASHKA,
            "TYPE": 2,
            "CRM_CREATE": 0,
            "SHOW": 0,
            "EXTERNAL_CALL_ID": "1714557600.42",
            "CALL_START_DATE": "2024-05-01T10:00:00+00:00",
        }
    ]
    await reporter.call_finished(call, call_id)
    assert fake.bodies("telephony.externalcall.finish") == [
        {"CALL_ID": call_id, "USER_ID": 6, "DURATION": 95, "STATUS_CODE": "200"}
    ]


@pytest.mark.parametrize(
    ("outcome", "direction", "user", "call_type", "status"),
    [
        (Outcome.NO_ANSWER, Direction.INBOUND, 5, 2, "304"),  # missed: the first mapped leg
        (Outcome.ABANDONED, Direction.INBOUND, 5, 2, "304"),
        (Outcome.BUSY, Direction.OUTBOUND, 9, 1, "486"),
        (Outcome.FAILED, Direction.OUTBOUND, 9, 1, "603"),
    ],
)
async def test_bitrix_status_codes(
    portal, outcome: Outcome, direction: Direction, user: int, call_type: int, status: str
) -> None:
    fake, client = portal
    reporter = Bitrix24CallReporter(client, USERS)
    caller = "200" if direction is Direction.OUTBOUND else None
    call = make_call(outcome, direction, caller_extension=caller)
    call_id = await reporter.call_started(call)
    assert call_id is not None
    await reporter.call_finished(call, call_id)
    [register] = fake.bodies("telephony.externalcall.register")
    assert (register["USER_ID"], register["TYPE"]) == (user, call_type)
    [finish] = fake.bodies("telephony.externalcall.finish")
    assert finish == {"CALL_ID": call_id, "USER_ID": user, "DURATION": 0, "STATUS_CODE": status}


async def test_bitrix_calls_without_a_user_or_not_external_are_skipped(portal) -> None:
    fake, client = portal
    reporter = Bitrix24CallReporter(client, {"999": 1})
    assert await reporter.call_started(make_call(Outcome.ANSWERED, answered_by="102")) is None
    assert reporter.last_skip_reason is not None and "bitrix24_users" in reporter.last_skip_reason
    internal = make_call(Outcome.ANSWERED, Direction.INTERNAL, caller_extension="999")
    assert await reporter.call_started(internal) is None
    assert "inbound or outbound" in (reporter.last_skip_reason or "")
    assert fake.requests == []


async def test_bitrix_write_back_errors_raise(portal) -> None:
    fake, client = portal
    reporter = Bitrix24CallReporter(client, USERS)
    call = make_call(Outcome.ANSWERED, answered_by="101", talk=3)
    # What the documentation says a webhook may get: these methods need an application.
    fake.errors["telephony.externalcall.register"] = (
        403,
        "WRONG_AUTH_TYPE",
        "Current authorization type is denied for this method",
    )
    with pytest.raises(Bitrix24Error, match=r"telephony\.externalcall\.register: WRONG_AUTH_TYPE"):
        await reporter.call_started(call)
    with pytest.raises(Bitrix24Error, match="Call is not found") as caught:
        await reporter.call_finished(call, "externalCall.unknown")
    assert caught.value.method == "telephony.externalcall.finish" and not caught.value.retryable


# --- wiring ----------------------------------------------------------------------------------


async def test_build_directory_and_reporter_from_the_configuration() -> None:
    builtin = InMemoryDirectory()
    assert build_directory(CrmConfig(), builtin) is builtin
    assert build_call_reporter(CrmConfig(), builtin) is None

    http = CrmConfig(
        type="http",
        http_url="https://crm.example/api/{number}",
        http_headers={"Authorization": SecretStr("Bearer x")},
        timeout_ms=700,
        cache_seconds=60,
    )
    directory = build_directory(http, builtin)
    assert isinstance(directory, ResilientDirectory)
    assert isinstance(directory.inner, HttpJsonDirectory)
    assert directory.timeout_seconds == 0.7 and directory.cache.ttl == 60
    await directory.close()

    bitrix = CrmConfig(
        type="bitrix24",
        bitrix24_webhook=SecretStr("https://portal.bitrix24.ru/rest/1/k3y/"),
        bitrix24_users={"101": 5},
        bitrix24_register_calls=True,
    )
    directory = build_directory(bitrix, builtin)
    assert isinstance(directory, ResilientDirectory)
    assert isinstance(directory.inner, Bitrix24Directory)
    reporter = build_call_reporter(bitrix, directory)
    assert isinstance(reporter, Bitrix24CallReporter) and reporter.users == {"101": 5}
    quiet = bitrix.model_copy(update={"bitrix24_register_calls": False})
    assert build_call_reporter(quiet, builtin) is None
    await directory.close()
    await reporter.close()
