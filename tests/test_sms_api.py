"""SMS end to end: the API, the outbox and inbox, the real driver and the emulated modem
on a pty; calls to the SIM; a restart with a message queued."""

from collections.abc import AsyncIterator

import pytest
from helpers import bearer, eventually, new_token
from sqlalchemy import select

from cti import auth
from cti.clients.builtin import ClientIn, PhoneIn, save_client
from cti.clients.models import CallbackTask
from cti.config import ModemConfig
from cti.db.models import SmsMessage
from cti.http.app import build_app
from cti.service import Service
from gsm_modem.emulator import ModemEmulator
from gsm_modem.pdu import decode, encode_deliver

CLIENT_NUMBER = "+79161234567"
DRIVER = {"reconnect_min": 0.05, "reconnect_max": 0.2, "ring_gap": 0.3, "poll_interval": None}


@pytest.fixture
async def emulator() -> AsyncIterator[ModemEmulator]:
    async with ModemEmulator(send_delay=0.01, status_report_delay=0.05, ring_interval=0.05) as sim:
        yield sim


async def with_modem(service: Service, emulator: ModemEmulator, **options) -> None:
    config = ModemConfig(name="sim1", port=str(emulator.path), ring_extensions=["101"], **options)
    link = await service.start_modem(config, **DRIVER)
    await eventually(lambda: link.modem.ready)


@pytest.fixture
async def manager_token(service: Service) -> str:
    """Anna (101), the responsible manager of the client behind CLIENT_NUMBER."""
    async with service.sessions() as session:
        anna = await auth.create_user(session, "anna", "operator", extension="101")
        await save_client(
            session,
            ClientIn("ООО Ромашка", manager_extension="101", phones=[PhoneIn(CLIENT_NUMBER)]),
            "RU",
        )
        token = await auth.issue_token(session, anna)
        await session.commit()
    return token


async def sms(client, token: str, sms_id: str) -> dict:
    return await (await client.get(f"/api/sms/{sms_id}", headers=bearer(token))).json()


async def test_without_a_modem_sending_is_unavailable(client, make_user) -> None:
    token = await make_user("sales", "105")
    reply = await client.post(
        "/api/sms", json={"to": CLIENT_NUMBER, "text": "hi"}, headers=bearer(token)
    )
    assert reply.status == 503


async def test_an_sms_is_stored_sent_and_delivered(
    client, service, emulator, manager_token
) -> None:
    await with_modem(service, emulator)
    text = "Здравствуйте! Ваш заказ готов. " * 3  # UCS-2, two parts
    reply = await client.post(
        "/api/sms", json={"to": "8 916 123-45-67", "text": text}, headers=bearer(manager_token)
    )
    assert reply.status == 202
    queued = await reply.json()
    assert queued["to"] == CLIENT_NUMBER and queued["parts"] == 2
    assert queued["encoding"] == "ucs2"
    async with service.sessions() as session:  # written down before the answer
        assert await session.get(SmsMessage, queued["id"]) is not None

    await eventually(
        lambda: _has_status(client, manager_token, queued["id"], "delivered"), seconds=10
    )
    body = await sms(client, manager_token, queued["id"])
    assert body["client"]["name"] == "ООО Ромашка" and body["modem"] == "sim1"
    assert body["sent_at"] and body["delivered_at"]
    sent = [decode(pdu) for pdu in emulator.sent]
    assert {part.recipient for part in sent} == {CLIENT_NUMBER}
    assert "".join(part.text for part in sent) == text
    assert all(part.status_report for part in sent)


async def test_received_sms_is_stored_before_the_sim_copy_is_deleted_and_reaches_the_manager(
    client, service, emulator, manager_token
) -> None:
    events = service.bus.subscribe(prefixes=["sms."])
    text = "Добрый день! Когда доставка? " * 4
    pdus = encode_deliver(CLIENT_NUMBER, text, reference=42, timestamp=_now())
    emulator.deliver_sms(pdus[0])  # arrived while the service was not listening
    await with_modem(service, emulator)
    for pdu in pdus[1:]:
        emulator.deliver_sms(pdu)
    received = await events.get()
    assert received.type == "sms.received" and received.text == text
    assert received.manager_extension == "101"
    await eventually(lambda: not emulator.messages)  # deleted from the SIM, all parts
    listing = await client.get("/api/sms?direction=in", headers=bearer(manager_token))
    [message] = (await listing.json())["messages"]
    assert message["text"] == text and message["client"]["name"] == "ООО Ромашка"


async def test_a_call_to_the_sim_pops_up_and_becomes_a_missed_call(
    client, service, emulator, manager_token
) -> None:
    await with_modem(service, emulator)
    events = service.bus.subscribe(prefixes=["call."])
    emulator.ring(CLIENT_NUMBER)
    ringing = await events.get()
    assert (ringing.type, ringing.extension, ringing.external_number) == (
        "call.ringing",
        "101",
        CLIENT_NUMBER,
    )
    emulator.hang_up()
    while (ended := await events.get()).type != "call.ended":
        pass
    assert ended.missed and ended.call_id == ringing.call_id
    await service.call_store.flush()

    async def task_opened() -> bool:
        async with service.sessions() as session:
            return (
                await session.scalar(
                    select(CallbackTask).where(CallbackTask.number == CLIENT_NUMBER)
                )
                is not None
            )

    await eventually(task_opened)
    calls = await client.get("/api/calls?missed=true", headers=bearer(manager_token))
    [call] = (await calls.json())["calls"]
    assert call["pbx"] == "sim1" and call["external_number"] == CLIENT_NUMBER


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"to": "+7916\r\nATD112;", "text": "x"}, "to"),
        ({"to": "hello", "text": "x"}, "to"),
        ({"to": CLIENT_NUMBER, "text": "я" * 500}, "text"),
        ({"to": CLIENT_NUMBER, "text": ""}, "text"),
        ({"to": CLIENT_NUMBER, "text": "x", "modem": "nope"}, "modem"),
    ],
)
async def test_bad_requests_are_refused_and_nothing_is_stored(
    client, service, emulator, manager_token, body, problem
) -> None:
    await with_modem(service, emulator)
    reply = await client.post("/api/sms", json=body, headers=bearer(manager_token))
    assert reply.status == 422
    assert (await reply.json())["error"]["message"].startswith(problem)
    async with service.sessions() as session:
        assert (await session.scalars(select(SmsMessage))).all() == []
    assert not [c for c in emulator.commands if "ATD" in c]


async def test_per_user_rate_limit_and_who_sees_what(
    client, service, emulator, manager_token
) -> None:
    await with_modem(service, emulator)
    settings = service.config.sms.model_copy(update={"per_user_per_hour": 2})
    service.config = service.config.model_copy(update={"sms": settings})
    sent = []
    for _ in range(2):
        reply = await client.post(
            "/api/sms", json={"to": CLIENT_NUMBER, "text": "hi"}, headers=bearer(manager_token)
        )
        sent.append((await reply.json())["id"])
    third = await client.post(
        "/api/sms", json={"to": CLIENT_NUMBER, "text": "hi"}, headers=bearer(manager_token)
    )
    assert third.status == 429 and third.headers["Retry-After"]

    colleague = await new_token(service, "sales", "105")
    assert (await client.get(f"/api/sms/{sent[0]}", headers=bearer(colleague))).status == 404
    listing = await client.get("/api/sms", headers=bearer(colleague))
    assert (await listing.json())["messages"] == []
    boss = await new_token(service, "supervisor")
    assert (await client.get(f"/api/sms/{sent[0]}", headers=bearer(boss))).status == 200
    receptionist = await new_token(service, "receptionist", "100")
    refused = await client.post(
        "/api/sms", json={"to": CLIENT_NUMBER, "text": "hi"}, headers=bearer(receptionist)
    )
    assert refused.status == 403


async def test_a_restart_with_a_message_queued_sends_it_once(
    config, emulator, aiohttp_client
) -> None:
    emulator.unplug()
    first = await Service.start(config)
    try:
        await with_modem_unplugged(first, emulator)
        token = await new_token(first, "sales", "105")
        api = await aiohttp_client(build_app(first))
        reply = await api.post(
            "/api/sms", json={"to": CLIENT_NUMBER, "text": "раз"}, headers=bearer(token)
        )
        sms_id = (await reply.json())["id"]
    finally:
        await first.close()
    emulator.plug()
    second = await Service.start(config)
    try:
        await with_modem(second, emulator)
        await eventually(lambda: _status_in(second, sms_id, "sent"))
        assert len(emulator.sent) == 1
    finally:
        await second.close()


async def with_modem_unplugged(service: Service, emulator: ModemEmulator) -> None:
    config = ModemConfig(name="sim1", port=str(emulator.path))
    await service.start_modem(config, **DRIVER)


async def _has_status(client, token: str, sms_id: str, status: str) -> bool:
    return (await sms(client, token, sms_id))["status"] == status


async def _status_in(service: Service, sms_id: str, status: str) -> bool:
    async with service.sessions() as session:
        message = await session.get(SmsMessage, sms_id)
        return message is not None and message.status == status


def _now():
    from cti.domain import utcnow

    return utcnow()


async def test_modem_identity_and_status_for_supervisors_health_without_secrets(
    client, service, emulator, manager_token
) -> None:
    await with_modem(service, emulator)
    boss = await new_token(service, "supervisor")
    [modem] = (await (await client.get("/api/modems", headers=bearer(boss))).json())["modems"]
    assert modem["identity"]["imei"] == emulator.imei and modem["identity"]["imsi"]
    assert modem["status"]["ready"] is True and modem["status"]["operator"] == "MegaFon"
    assert (await client.get("/api/modems", headers=bearer(manager_token))).status == 403
    health = await (await client.get("/healthz")).json()
    [seen] = health["modems"]
    assert seen["name"] == "sim1" and seen["ready"] and seen["signal_bars"] > 0
    assert emulator.imei not in str(health) and emulator.imsi not in str(health)


async def test_unplugged_modem_goes_down_and_comes_back(client, service, emulator) -> None:
    await with_modem(service, emulator)
    link = service.modems["sim1"]
    emulator.unplug()
    await eventually(lambda: not link.modem.ready)
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "degraded"
    emulator.plug()
    await eventually(lambda: link.modem.ready)
