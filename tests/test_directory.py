"""The built-in client directory: the API, lookups in every written form, and what every
finished call writes back (history, callback tasks, leads)."""

from datetime import UTC, datetime, timedelta

import pytest
from helpers import bearer, eventually, new_token

from cti.calls import Call
from cti.config import Config, CrmConfig, DatabaseConfig, ServerConfig
from cti.domain import Direction, Outcome
from cti.events import CallRinging
from cti.http.app import build_app
from cti.service import Service

ROMASHKA = {
    "name": "ООО «Ромашка»",
    "manager_extension": "101",
    "tags": ["VIP", "опт"],
    "phones": [{"number": "8 (812) 123-45-67 доб. 12", "label": "офис"}],
    "contacts": [
        {
            "name": "Сергей Волков",
            "position": "директор",
            "phones": [{"number": "+7 921 000-00-01"}],
        }
    ],
}


async def create(client, token: str, body: dict) -> dict:
    response = await client.post("/api/clients", json=body, headers=bearer(token))
    assert response.status == 201, await response.text()
    return await response.json()


async def test_create_read_and_find_a_client(client, staff) -> None:
    created = await create(client, staff["boss"], ROMASHKA)  # sets the manager
    assert created["manager"]["extension"] == "101"
    assert created["phones"] == [{"number": "+78121234567", "extension": "12", "label": "офис"}]
    [contact] = created["contacts"]
    assert contact["phones"][0]["number"] == "+79210000001"
    again = await (
        await client.get(f"/api/clients/{created['id']}", headers=bearer(staff["giorgi"]))
    ).json()
    assert again["name"] == "ООО «Ромашка»" and again["history"] == []
    for query in ("ромашка", "РОМАШ", "волков", "921 000", "812123"):
        found = await (
            await client.get("/api/clients", params={"q": query}, headers=bearer(staff["boss"]))
        ).json()
        assert [c["id"] for c in found["clients"]] == [created["id"]], query


@pytest.mark.parametrize(
    "written",
    [
        "8 (812) 123-45-67",
        "+7 812 1234567",
        "0078121234567",
        "8 812 123 45 67 доб. 12",
        "+7 812 1234567 ext. 12",
        "+7 812 1234567 x12",
        "1234567",
    ],
)
async def test_lookup_in_every_written_form(client, staff, written: str) -> None:
    await create(client, staff["boss"], ROMASHKA)  # sets the manager
    response = await client.get(
        "/api/lookup", params={"number": written}, headers=bearer(staff["giorgi"])
    )
    body = await response.json()
    assert response.status == 200, body
    assert body["match"]["client_name"] == "ООО «Ромашка»"
    assert body["match"]["manager"]["extension"] == "101"
    # The office number is the client's own: its first contact is whom to ask for.
    assert body["match"]["contact_name"] == "Сергей Волков"


async def test_lookup_of_a_contact_foreign_and_unknown_numbers(client, staff) -> None:
    await create(client, staff["boss"], ROMASHKA)  # sets the manager
    await create(
        client, staff["anna"], {"name": "შპს „მზიური“", "phones": [{"number": "+995 32 212 34 56"}]}
    )

    async def ask(number: str) -> dict:
        response = await client.get(
            "/api/lookup", params={"number": number}, headers=bearer(staff["anna"])
        )
        assert response.status == 200, await response.text()
        return await response.json()

    contact = await ask("89210000001")
    assert (contact["match"]["client_name"], contact["match"]["contact_name"]) == (
        "ООО «Ромашка»",
        "Сергей Волков",
    )
    assert (await ask("810995322123456"))["match"]["client_name"] == "შპს „მზიური“"
    assert (await ask("+7 495 000-00-00"))["match"] is None


async def test_an_ambiguous_short_number_is_not_guessed(client, staff) -> None:
    await create(client, staff["anna"], {"name": "Питер", "phones": [{"number": "+78125550102"}]})
    await create(client, staff["anna"], {"name": "Москва", "phones": [{"number": "+74955550102"}]})
    body = await (
        await client.get("/api/lookup", params={"number": "5550102"}, headers=bearer(staff["anna"]))
    ).json()
    assert body["match"] is None


@pytest.mark.parametrize("number", ["101", "abc", "+7 812\r\nAction: Originate", "", "1;2"])
async def test_lookup_refuses_what_is_not_a_number(client, staff, number: str) -> None:
    response = await client.get(
        "/api/lookup", params={"number": number}, headers=bearer(staff["anna"])
    )
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"phones": [{"number": "call me"}]}, "is not a phone number"),
        ({"phones": [{"number": "555"}]}, "is not a complete phone number"),
        ({"manager_extension": "199"}, "no user has extension 199"),
        ({"name": "   "}, "needs a name"),
    ],
)
async def test_bad_client_data_is_422(client, staff, change: dict, problem: str) -> None:
    response = await client.post(
        "/api/clients", json={**ROMASHKA, **change}, headers=bearer(staff["boss"])
    )
    assert response.status == 422
    assert problem in (await response.json())["error"]["message"]


async def test_update_and_contacts_keep_their_identity(client, staff) -> None:
    created = await create(client, staff["boss"], ROMASHKA)  # sets the manager
    url = f"/api/clients/{created['id']}"
    contact_id = created["contacts"][0]["id"]
    renamed = {**ROMASHKA, "name": "АО «Ромашка»", "manager_extension": "102"}
    del renamed["contacts"]  # left out: kept as they are
    updated = await (await client.put(url, json=renamed, headers=bearer(staff["boss"]))).json()
    assert updated["name"] == "АО «Ромашка»" and updated["manager"]["extension"] == "102"
    assert [c["id"] for c in updated["contacts"]] == [contact_id]
    added = await (
        await client.post(
            f"{url}/contacts",
            json={"name": "ნინო", "phones": [{"number": "+995 599 11 22 33"}]},
            headers=bearer(staff["anna"]),
        )
    ).json()
    assert [c["name"] for c in added["contacts"]] == ["Сергей Волков", "ნინო"]
    changed = await (
        await client.put(
            f"/api/contacts/{contact_id}",
            json={"name": "Сергей Волков", "position": "владелец", "phones": []},
            headers=bearer(staff["anna"]),
        )
    ).json()
    sergei = next(c for c in changed["contacts"] if c["id"] == contact_id)
    assert sergei["position"] == "владелец" and sergei["phones"] == []
    lookup = await (
        await client.get(
            "/api/lookup", params={"number": "+79210000001"}, headers=bearer(staff["anna"])
        )
    ).json()
    assert lookup["match"] is None  # his number went with the edit
    gone = await (
        await client.delete(f"/api/contacts/{contact_id}", headers=bearer(staff["anna"]))
    ).json()
    assert [c["name"] for c in gone["contacts"]] == ["ნინო"]
    assert (await client.delete(url, headers=bearer(staff["anna"]))).status == 403
    assert (await client.delete(url, headers=bearer(staff["boss"]))).status == 204
    assert (await client.get(url, headers=bearer(staff["boss"]))).status == 404


# -- what finished calls write back ---------------------------------------------------

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def a_call(
    n: int,
    number: str,
    *,
    direction: Direction = Direction.INBOUND,
    outcome: Outcome = Outcome.NO_ANSWER,
    answered_by: str | None = None,
) -> Call:
    started = T0 + timedelta(minutes=n)
    call = Call(
        f"lab:{n}.1",
        "lab",
        started,
        direction=direction,
        external_number=number,
        ended_at=started + timedelta(seconds=30),
        outcome=outcome,
        answered_by=answered_by,
    )
    if outcome is Outcome.ANSWERED:
        call.answered_at = started + timedelta(seconds=5)
    call.missed = direction is Direction.INBOUND and outcome is not Outcome.ANSWERED
    return call


async def tasks(client, token: str, **params: str) -> list[dict]:
    response = await client.get("/api/tasks", params=params, headers=bearer(token))
    assert response.status == 200, await response.text()
    return (await response.json())["tasks"]


async def test_missed_call_opens_a_task_for_the_manager_and_a_callback_closes_it(
    client, service, staff
) -> None:
    created = await create(client, staff["boss"], ROMASHKA)  # sets the manager
    events = service.bus.subscribe(prefixes=["task."])
    service.call_store.save([a_call(1, "+78121234567")])
    service.call_store.save([a_call(2, "+78121234567")])  # again, before anyone called back
    await service.call_store.flush()
    [task] = await tasks(client, staff["anna"])
    assert (task["assignee_extension"], task["missed_calls"], task["client_id"]) == (
        "101",
        2,
        created["id"],
    )
    assert await tasks(client, staff["giorgi"]) == []  # not his client
    assert len(await tasks(client, staff["boss"])) == 1
    first = await events.get()
    assert first.open and first.extensions() == {"101"}
    # Anna calls back and they answer: the task closes by itself.
    service.call_store.save(
        [a_call(3, "+78121234567", direction=Direction.OUTBOUND, outcome=Outcome.ANSWERED)]
    )
    await service.call_store.flush()
    assert await tasks(client, staff["anna"]) == []
    [closed] = await tasks(client, staff["anna"], open="false")
    assert (closed["closed_reason"], closed["closed_by_call_id"]) == ("called_back", "lab:3.1")
    history = (
        await (
            await client.get(f"/api/clients/{created['id']}", headers=bearer(staff["anna"]))
        ).json()
    )["history"]
    assert [(h["ref"], h["outcome"]) for h in history] == [
        ("lab:3.1", "answered"),
        ("lab:2.1", "no_answer"),
        ("lab:1.1", "no_answer"),
    ]


async def test_the_client_calling_again_closes_the_task(client, service, staff) -> None:
    await create(client, staff["boss"], ROMASHKA)  # sets the manager
    service.call_store.save([a_call(1, "+78121234567")])
    service.call_store.save(
        [a_call(2, "+78121234567", outcome=Outcome.ANSWERED, answered_by="102")]
    )
    await service.call_store.flush()
    [closed] = await tasks(client, staff["boss"], open="false")
    assert closed["closed_reason"] == "called_again"


async def test_each_call_is_followed_up_once(client, service, staff) -> None:
    created = await create(client, staff["boss"], ROMASHKA)  # sets the manager
    call = a_call(1, "+78121234567")
    for _ in range(3):
        service.call_store.save([call])
        await service.call_store.flush()
    [task] = await tasks(client, staff["anna"])
    assert task["missed_calls"] == 1
    full = await (
        await client.get(f"/api/clients/{created['id']}", headers=bearer(staff["anna"]))
    ).json()
    assert len(full["history"]) == 1


@pytest.fixture
async def leads_desk(db_url, tmp_path, aiohttp_client):
    """A service that turns unknown callers into leads: (service, client, supervisor)."""
    config = Config(
        server=ServerConfig(data_dir=tmp_path),
        database=DatabaseConfig(url=db_url, auto_migrate=True),
        crm=CrmConfig(default_manager_extension="100", create_leads=True),
    )
    service = await Service.start(config)
    try:
        client = await aiohttp_client(build_app(service))
        yield service, client, await new_token(service, "supervisor")
    finally:
        await service.close()


async def clients_named(client, token: str, text: str) -> list[dict]:
    response = await client.get("/api/clients", params={"q": text}, headers=bearer(token))
    return (await response.json())["clients"]


async def test_unknown_callers_go_to_the_default_and_may_become_leads(leads_desk) -> None:
    service, client, token = leads_desk
    call = a_call(1, "+74957770133")
    call.external_name = "Иван Петров"
    service.call_store.save([call])
    await service.call_store.flush()
    [task] = await tasks(client, token)
    assert task["assignee_extension"] == "100"
    found = await clients_named(client, token, "иван")
    assert [(c["name"], c["is_lead"]) for c in found] == [("Иван Петров", True)]


async def test_an_unknown_caller_calling_twice_in_one_batch_becomes_one_lead(leads_desk) -> None:
    service, client, token = leads_desk
    first, again = a_call(1, "+74957770134"), a_call(2, "+74957770134")
    first.external_name = again.external_name = "Пётр Иванов"
    service.call_store.save([first, again])  # one write: the lead is not committed yet
    await service.call_store.flush()
    [task] = await tasks(client, token)
    assert task["missed_calls"] == 2
    [lead] = await clients_named(client, token, "пётр")
    assert (lead["name"], lead["is_lead"]) == ("Пётр Иванов", True)
    detail = await client.get(f"/api/clients/{lead['id']}", headers=bearer(token))
    assert [h["ref"] for h in (await detail.json())["history"]] == ["lab:2.1", "lab:1.1"]


async def test_follow_ups_a_crash_left_undone_are_caught_up_at_start(db_url, tmp_path) -> None:
    from cti.callstore import upsert_calls
    from cti.clients.models import CallbackTask

    config = Config(
        server=ServerConfig(data_dir=tmp_path),
        database=DatabaseConfig(url=db_url, auto_migrate=True),
        crm=CrmConfig(default_manager_extension="100"),
    )
    first = await Service.start(config)
    async with first.sessions() as session:  # stored, but the process died before follow-up
        await upsert_calls(session, [a_call(1, "+74957770133").to_dict()])
        await session.commit()
    await first.close()
    second = await Service.start(config)
    try:
        async with second.sessions() as session:
            from sqlalchemy import select

            [task] = (await session.scalars(select(CallbackTask))).all()
            assert task.missed_call_id == "lab:1.1"
    finally:
        await second.close()


async def test_closing_a_task_by_hand(client, service, staff) -> None:
    await create(client, staff["boss"], ROMASHKA)  # sets the manager
    service.call_store.save([a_call(1, "+78121234567")])
    await service.call_store.flush()
    [task] = await tasks(client, staff["anna"])
    url = f"/api/tasks/{task['id']}/close"
    assert (await client.post(url, json={}, headers=bearer(staff["giorgi"]))).status == 404
    done = await client.post(
        url, json={"comment": "перезвонила с мобильного"}, headers=bearer(staff["anna"])
    )
    body = await done.json()
    assert (body["closed_reason"], body["comment"]) == ("by_hand", "перезвонила с мобильного")
    assert (await client.post(url, json={}, headers=bearer(staff["anna"]))).status == 409


async def test_an_external_http_crm_answers_lookups_and_its_outage_is_503(
    db_url, tmp_path, aiohttp_client, aiohttp_server
) -> None:
    from aiohttp import web

    asked: list[str] = []

    async def find(request: web.Request) -> web.Response:
        asked.append(request.query["phone"])
        if crm_state["down"]:
            return web.Response(status=500)
        return web.json_response({"title": "შპს „ნიკორა“", "owner": {"ext": "102"}})

    crm_app = web.Application()
    crm_state = {"down": False}
    crm_app.router.add_get("/find", find)
    crm = await aiohttp_server(crm_app)
    config = Config(
        server=ServerConfig(data_dir=tmp_path),
        database=DatabaseConfig(url=db_url, auto_migrate=True),
        crm=CrmConfig(
            type="http",
            http_url=f"http://127.0.0.1:{crm.port}/find?phone={{number}}",
            http_fields={"client_name": "title", "manager_extension": "owner.ext"},
            breaker_failures=2,
            cache_seconds=0,
        ),
    )
    service = await Service.start(config)
    try:
        client = await aiohttp_client(build_app(service))
        token = await new_token(service, "receptionist", "100")
        found = await (
            await client.get(
                "/api/lookup", params={"number": "+995322123456"}, headers=bearer(token)
            )
        ).json()
        assert found["match"]["client_name"] == "შპს „ნიკორა“"
        assert found["match"]["manager"]["extension"] == "102"
        assert asked == ["+995322123456"]
        crm_state["down"] = True
        statuses = []
        for _ in range(4):
            response = await client.get(
                "/api/lookup", params={"number": "+995322123457"}, headers=bearer(token)
            )
            statuses.append(response.status)
        assert statuses == [503, 503, 503, 503]
        assert len(asked) == 3  # the breaker opened after two failures: no more requests
        health = await (await client.get("/healthz")).json()
        assert health["directory"]["breaker"] == "open"
    finally:
        await service.close()


# -- screen pops: who is calling, within the lookup budget -----------------------------


class SlowDirectory:
    """A CRM that takes its time (or cannot be asked at all)."""

    def __init__(self, delay: float, fail: bool = False) -> None:
        self.delay, self.fail, self.asked = delay, fail, 0

    async def lookup(self, number: str):
        import asyncio

        from crm_bridge.resilience import DirectoryUnavailable
        from cti.directory import Match

        self.asked += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise DirectoryUnavailable("the CRM is down")
        return Match("42", "ООО «Медленно»") if number == "+78121234567" else None

    async def search(self, text: str, limit: int = 20) -> list:
        return []


def ringing(call_id: str, extension: str, number: str | None = "+78121234567"):
    from cti.events import CallRinging

    return CallRinging(
        call_id=call_id, extension=extension, direction=Direction.INBOUND, external_number=number
    )


async def identified(service: Service, *events, count: int) -> list:
    import asyncio

    sub = service.bus.subscribe(prefixes=["call.identified"])
    for event in events:
        await service.bus.publish(event)
    return [await asyncio.wait_for(sub.get(), 5) for _ in range(count)]


async def test_pops_are_identified_from_the_directory(client, service, staff) -> None:
    await create(client, staff["boss"], ROMASHKA)  # sets the manager
    [known, unknown] = await identified(
        service, ringing("c1", "101"), ringing("c2", "102", "+74950000000"), count=2
    )
    by_call = {e.call_id: e for e in (known, unknown)}
    assert by_call["c1"].match["client_name"] == "ООО «Ромашка»" and not by_call["c1"].late
    assert by_call["c1"].match["manager"]["extension"] == "101"
    assert by_call["c2"].match is None and not by_call["c2"].unavailable
    assert by_call["c1"].extensions() == {"101"}


async def make_service(db_url, tmp_path, directory, budget_ms: int = 50) -> Service:
    return await Service.start(
        Config(
            server=ServerConfig(data_dir=tmp_path),
            database=DatabaseConfig(url=db_url, auto_migrate=True),
            crm=CrmConfig(lookup_budget_ms=budget_ms),
        ),
        directory=directory,
    )


async def test_a_slow_crm_never_holds_the_pop_back(db_url, tmp_path) -> None:
    import time

    slow = SlowDirectory(0.4)
    service = await make_service(db_url, tmp_path, slow)
    try:
        started = time.perf_counter()
        events = await identified(service, ringing("c1", "101"), ringing("c1", "102"), count=2)
        elapsed = time.perf_counter() - started
        assert [e.extension for e in events] == ["101", "102"]
        assert all(e.late and e.match["client_name"] == "ООО «Медленно»" for e in events)
        assert slow.asked == 1  # one lookup for the call, however many phones ring
        assert elapsed >= 0.35  # the answer was waited for in the background...
        later = await identified(service, ringing("c1", "103"), count=1)
        assert not later[0].late  # ...and remembered for the next extension
    finally:
        await service.close()


async def test_a_dead_crm_gives_pops_without_a_client(db_url, tmp_path) -> None:
    service = await make_service(db_url, tmp_path, SlowDirectory(0, fail=True))
    try:
        [event] = await identified(service, ringing("c1", "101"), count=1)
        assert event.match is None and event.unavailable
        assert [] == await identified(service, ringing("c2", "101", None), count=0)
    finally:
        await service.close()


async def test_a_missed_call_from_an_external_crms_client_goes_to_its_manager(
    db_url, tmp_path, aiohttp_client
) -> None:
    from cti.directory import InMemoryDirectory, Match, ResponsibleManager

    crm = InMemoryDirectory()
    crm.add(
        "+995322123456",
        Match("b24-77", "შპს „ნიკორა“", manager=ResponsibleManager("გიორგი", "102")),
    )
    service = await make_service(db_url, tmp_path, crm)
    try:
        service.call_store.save([a_call(1, "+995322123456"), a_call(2, "+74950000001")])
        await service.call_store.flush()
        from sqlalchemy import select

        from cti.clients.models import Activity, CallbackTask

        async with service.sessions() as session:
            tasks = {t.number: t for t in await session.scalars(select(CallbackTask))}
            activities = (await session.scalars(select(Activity))).all()
        assert tasks["+995322123456"].assignee_extension == "102"
        assert tasks["+995322123456"].client_id is None  # not a built-in client
        assert tasks["+74950000001"].assignee_extension is None  # unknown, no default set
        assert activities == []  # history lives in the CRM for its clients
    finally:
        await service.close()


async def test_a_number_two_clients_have_is_shown_as_shared_never_picked(
    client, service, staff
) -> None:
    first = await create(
        client, staff["boss"], {"name": "Питер", "phones": [{"number": "+78125550102"}]}
    )
    assert first["shared_numbers"] == []
    second = await create(
        client, staff["boss"], {"name": "Москва", "phones": [{"number": "8 812 555-01-02"}]}
    )
    [shared] = second["shared_numbers"]  # the client form warns
    assert shared["number"] == "+78125550102"
    assert [c["name"] for c in shared["clients"]] == ["Питер", "Москва"]
    lookup = await (
        await client.get(
            "/api/lookup", params={"number": "+78125550102"}, headers=bearer(staff["anna"])
        )
    ).json()
    assert lookup["match"] is None
    assert [c["name"] for c in lookup["shared_by"]] == ["Питер", "Москва"]
    await service.bus.publish(
        CallRinging(
            call_id="c1",
            extension="101",
            direction=Direction.INBOUND,
            external_number="+78125550102",
        )
    )
    await eventually(
        lambda: (
            service.live.board.cards.get("c1") and service.live.board.cards["c1"].lookup == "shared"
        )
    )
    card = service.live.board.cards["c1"].to_dict()
    assert card["client"] is None and [c["name"] for c in card["shared_by"]] == ["Питер", "Москва"]


async def test_the_configured_crm_decides_who_calls_back_and_our_tables_keep_history(
    db_url, tmp_path, aiohttp_client
) -> None:
    """With an external CRM configured, its answer assigns the missed call even when the
    built-in tables know the number too (they once said otherwise); the built-in client
    still gets the call in its history. The call log shows the CRM's client."""
    from sqlalchemy import select

    from cti.clients.builtin import ClientIn, PhoneIn, save_client
    from cti.clients.models import Activity, CallbackTask
    from cti.directory import InMemoryDirectory, Match, ResponsibleManager

    number = "+78125550104"
    crm = InMemoryDirectory()
    crm.add(number, Match("b24-9", "ООО «Ромашка» (CRM)", manager=ResponsibleManager("Б", "102")))
    service = await make_service(db_url, tmp_path, crm)
    try:
        async with service.sessions() as session:
            local = await save_client(
                session,
                ClientIn("ООО «Ромашка»", manager_extension="", phones=[PhoneIn(number)]),
                "RU",
            )
            await session.commit()
        service.call_store.save([a_call(1, number)])
        await service.call_store.flush()
        async with service.sessions() as session:
            [task] = await session.scalars(select(CallbackTask))
            [activity] = await session.scalars(select(Activity))
        assert (task.assignee_extension, activity.client_id) == ("102", local.id)
        token = await new_token(service, "supervisor")
        api = await aiohttp_client(build_app(service))
        response = await api.get("/api/calls", headers=bearer(token))
        [call] = (await response.json())["calls"]
        assert call["client"] == {
            "id": "b24-9",
            "name": "ООО «Ромашка» (CRM)",
            "manager": {"name": "Б", "extension": "102"},
        }
    finally:
        await service.close()
