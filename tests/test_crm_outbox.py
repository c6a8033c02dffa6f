"""Calls written into Bitrix24 through the durable outbox: once each, retried while the
portal is unwell, kept across a restart, and a refusal kept with its reason."""

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from helpers import settle_outbox
from pydantic import SecretStr

from cti.calls import Call
from cti.config import Config, CrmConfig, DatabaseConfig, ServerConfig
from cti.domain import Direction, Outcome
from cti.service import Service


class FakePortal:
    """Bitrix24's REST as the docs describe it, for the two telephony methods (and a
    caller lookup that finds nobody)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.fail_next = 0  # answer this many telephony requests with 503
        self.error: str | None = None  # answer with this Bitrix24 error code

    def telephony(self) -> list[tuple[str, dict]]:
        return [(m, body) for m, body in self.requests if m.startswith("telephony.")]

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"].removesuffix(".json")
        body = await request.json()
        self.requests.append((method, body))
        if self.fail_next and method.startswith("telephony."):
            self.fail_next -= 1
            return web.Response(status=503, text="overloaded")
        if self.error:
            return web.json_response({"error": self.error, "error_description": "no"}, status=401)
        if method == "crm.duplicate.findbycomm":  # who calls: nobody the portal knows
            return web.json_response({"result": []})
        if method == "telephony.externalcall.register":
            return web.json_response({"result": {"CALL_ID": f"B24-{body['EXTERNAL_CALL_ID']}"}})
        return web.json_response({"result": {"CALL_ID": body["CALL_ID"]}})


@pytest.fixture
async def portal(aiohttp_server):
    fake = FakePortal()
    app = web.Application()
    app.router.add_post("/rest/1/k3y/{method}", fake.handle)
    server = await aiohttp_server(app)
    fake.webhook = f"http://127.0.0.1:{server.port}/rest/1/k3y/"
    return fake


def config(db_url, tmp_path, portal: FakePortal) -> Config:
    return Config(
        server=ServerConfig(data_dir=tmp_path),
        database=DatabaseConfig(url=db_url, auto_migrate=True),
        crm=CrmConfig(
            type="bitrix24",
            bitrix24_webhook=SecretStr(portal.webhook),
            bitrix24_users={"101": 5},
            bitrix24_register_calls=True,
        ),
    )


def answered_call(n: int = 1) -> Call:
    started = datetime(2026, 11, 23, 9, n, tzinfo=UTC)
    return Call(
        f"lab:{n}.1",
        "lab",
        started,
        direction=Direction.INBOUND,
        external_number="+78121234567",
        answered_by="101",
        answered_at=started + timedelta(seconds=4),
        ended_at=started + timedelta(seconds=64),
        outcome=Outcome.ANSWERED,
    )


async def test_a_finished_call_is_registered_and_finished_once(db_url, tmp_path, portal) -> None:
    service = await Service.start(config(db_url, tmp_path, portal))
    try:
        service.call_store.save([answered_call()])
        await service.call_store.flush()
        service.call_store.save([answered_call()])  # saved again: not written again
        await service.call_store.flush()
        [entry] = await settle_outbox(service, lambda e: e and e[0].done_at)
        assert (entry.outcome, entry.external_id) == ("written", "B24-lab:1.1")
        assert [m for m, _ in portal.telephony()] == [
            "telephony.externalcall.register",
            "telephony.externalcall.finish",
        ]
        register, finish = (body for _, body in portal.telephony())
        assert (register["USER_ID"], register["PHONE_NUMBER"], register["TYPE"]) == (
            5,
            "+78121234567",
            2,
        )
        assert (
            finish["CALL_ID"],
            finish["USER_ID"],
            finish["DURATION"],
            finish["STATUS_CODE"],
        ) == ("B24-lab:1.1", 5, 60, "200")
    finally:
        await service.close()


async def test_an_unwell_portal_is_retried_and_a_restart_loses_nothing(
    db_url, tmp_path, portal
) -> None:
    portal.fail_next = 1
    first = await Service.start(config(db_url, tmp_path, portal))
    await first.crm_outbox.stop()  # driven by hand below
    first.crm_outbox.retry_base = 0.01
    first.call_store.save([answered_call()])
    await first.call_store.flush()
    [entry] = await settle_outbox(first, lambda e: e and e[0].attempts >= 1)
    assert entry.done_at is None and entry.outcome.startswith("retrying")
    await first.close()  # the service stops with the call still to write
    second = await Service.start(config(db_url, tmp_path, portal))
    second.crm_outbox.retry_base = 0.01
    try:
        [entry] = await settle_outbox(second, lambda e: e and e[0].done_at)
        assert entry.outcome == "written"
        registered = [b for m, b in portal.requests if m.endswith("register")]
        assert len({b["EXTERNAL_CALL_ID"] for b in registered}) == 1
    finally:
        await second.close()


async def test_a_refusal_is_kept_with_its_reason(db_url, tmp_path, portal) -> None:
    portal.error = "INVALID_CREDENTIALS"
    service = await Service.start(config(db_url, tmp_path, portal))
    try:
        service.call_store.save([answered_call()])
        await service.call_store.flush()
        [entry] = await settle_outbox(service, lambda e: e and e[0].done_at)
        assert entry.outcome.startswith("refused") and "INVALID_CREDENTIALS" in entry.outcome
        assert portal.webhook not in entry.outcome and "k3y" not in entry.outcome
    finally:
        await service.close()


async def test_calls_without_a_portal_user_are_skipped_with_the_reason(
    db_url, tmp_path, portal
) -> None:
    service = await Service.start(config(db_url, tmp_path, portal))
    try:
        call = answered_call()
        call.answered_by = "199"
        service.call_store.save([call])
        await service.call_store.flush()
        [entry] = await settle_outbox(service, lambda e: e and e[0].done_at)
        assert entry.outcome.startswith("skipped") and "bitrix24_users" in entry.outcome
        assert portal.telephony() == []
    finally:
        await service.close()
