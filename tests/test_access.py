"""Who may see and change what: SMS follow who sent them and whom they reached, not a
field an editor can change; a client's responsible manager is set by supervisors, with an
audit entry; a user without a phone owns no callback task."""

from datetime import UTC, datetime

from helpers import bearer

from cti import auth
from cti.clients.models import CallbackTask
from gsm_modem.pdu import encode_deliver
from gsm_modem.sms import read

CLIENT_NUMBER = "+79161234567"
NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)


async def new_client(client, token: str, **fields) -> dict:
    body = {"name": "ООО Ромашка", "phones": [{"number": CLIENT_NUMBER}], **fields}
    reply = await client.post("/api/clients", json=body, headers=bearer(token))
    assert reply.status == 201, await reply.text()
    return await reply.json()


async def inbox(client, token: str) -> list[str]:
    reply = await client.get("/api/sms?direction=in", headers=bearer(token))
    return [m["text"] for m in (await reply.json())["messages"]]


async def test_making_yourself_the_manager_shows_you_nobody_elses_sms(
    client, service, staff
) -> None:
    romashka = await new_client(client, staff["boss"], manager_extension="101")
    [pdu] = encode_deliver(CLIENT_NUMBER, "Счёт получили, спасибо", reference=1, timestamp=NOW)
    await service.sms_inbox.store_part("sim1", read(pdu))
    assert await inbox(client, staff["anna"]) == ["Счёт получили, спасибо"]
    assert await inbox(client, staff["giorgi"]) == []

    url = f"/api/clients/{romashka['id']}"
    takeover = {
        "name": "ООО Ромашка",
        "manager_extension": "102",
        "phones": [{"number": CLIENT_NUMBER}],
    }
    reply = await client.put(url, json=takeover, headers=bearer(staff["giorgi"]))
    assert reply.status == 403
    assert "supervisor" in (await reply.json())["error"]["message"]
    assert await inbox(client, staff["giorgi"]) == []

    # A supervisor hands the client over: what reached Anna stays hers alone.
    assert (await client.put(url, json=takeover, headers=bearer(staff["boss"]))).status == 200
    assert await inbox(client, staff["giorgi"]) == []
    assert await inbox(client, staff["anna"]) == ["Счёт получили, спасибо"]
    [later] = encode_deliver(CLIENT_NUMBER, "И ещё вопрос", reference=2, timestamp=NOW)
    await service.sms_inbox.store_part("sim1", read(later))
    assert await inbox(client, staff["giorgi"]) == ["И ещё вопрос"]


async def test_an_answer_reaches_whoever_texted_first(client, service, staff) -> None:
    async with service.sessions() as session:
        from cti.sms import new_sms

        giorgi = await auth.find_user(session, "giorgi")
        message = new_sms(
            CLIENT_NUMBER, "Добрый день", user_id=giorgi.id, client_id=None,
            requested_modem=None, parts=1, now=NOW,
        )  # fmt: skip
        session.add(message)
        await session.commit()
    [pdu] = encode_deliver(CLIENT_NUMBER, "Здравствуйте", reference=3, timestamp=NOW)
    await service.sms_inbox.store_part("sim1", read(pdu))
    assert await inbox(client, staff["giorgi"]) == ["Здравствуйте"]
    assert await inbox(client, staff["anna"]) == []


async def test_only_supervisors_set_the_manager_and_every_change_is_audited(client, staff) -> None:
    refused = await client.post(
        "/api/clients",
        json={"name": "ИП Петров", "manager_extension": "101"},
        headers=bearer(staff["anna"]),
    )
    assert refused.status == 403
    romashka = await new_client(client, staff["anna"])  # no manager: anyone may
    url = f"/api/clients/{romashka['id']}"
    reply = await client.put(
        url, json={"name": "ООО Ромашка", "manager_extension": "101"}, headers=bearer(staff["boss"])
    )
    assert (await reply.json())["manager"]["extension"] == "101"
    # Editing anything else (the manager left out, or sent unchanged) needs no supervisor.
    for body in ({"name": "АО Ромашка"}, {"name": "АО Ромашка", "manager_extension": "101"}):
        edited = await client.put(url, json=body, headers=bearer(staff["anna"]))
        assert edited.status == 200 and (await edited.json())["manager"]["extension"] == "101"
    await client.put(
        url, json={"name": "АО Ромашка", "manager_extension": None}, headers=bearer(staff["boss"])
    )
    audit = await client.get(
        "/api/audit", params={"target": f"client:{romashka['id']}"}, headers=bearer(staff["boss"])
    )
    entries = (await audit.json())["entries"]
    assert [(e["username"], e["action"]) for e in entries] == [
        ("boss", "client.manager"),
        ("boss", "client.manager"),
    ]
    assert entries[0]["details"]["from"]["extension"] == "101"
    assert entries[0]["details"]["to"] is None
    assert entries[1]["details"]["from"] is None
    assert entries[1]["details"]["to"]["extension"] == "101"
    assert (await client.get("/api/audit", headers=bearer(staff["anna"]))).status == 403


async def test_a_user_without_a_phone_closes_no_unassigned_task(client, service, make_user) -> None:
    async with service.sessions() as session:
        task = CallbackTask(number=CLIENT_NUMBER, missed_call_id="m1", created_at=NOW)
        session.add(task)
        await session.commit()
    sales = await make_user("sales")  # no extension
    reply = await client.post(f"/api/tasks/{task.id}/close", json={}, headers=bearer(sales))
    assert reply.status == 404
    boss = await make_user("supervisor")
    assert (
        await client.post(f"/api/tasks/{task.id}/close", json={}, headers=bearer(boss))
    ).status == 200


async def test_editing_a_client_whose_manager_left_keeps_the_manager(
    client, service, staff, make_user
) -> None:
    romashka = await new_client(client, staff["boss"], manager_extension="101")
    async with service.sessions() as session:
        (await auth.find_user(session, "anna")).is_active = False
        await session.commit()
    receptionist = await make_user("receptionist")
    reply = await client.put(
        f"/api/clients/{romashka['id']}",
        json={"name": "ООО Ромашка", "notes": "перезвонить в понедельник"},
        headers=bearer(receptionist),
    )
    assert reply.status == 200, await reply.text()
    assert (await reply.json())["manager"]["extension"] == "101"
