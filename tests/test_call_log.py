"""The supervisor's call log: calls with their client, the client filter, the CSV export
(filters, visibility, time zone, BOM, Cyrillic, keyset pages) and the missed-call
worklist's fields. SQLite and PostgreSQL."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from helpers import bearer, finished_call

import cti.http.calls
from cti import auth
from cti.calls import Call, CallTransfer
from cti.callstore import upsert_calls
from cti.clients.builtin import ClientIn, ContactIn, PhoneIn, save_client
from cti.clients.models import CallbackTask
from cti.db.models import Recording
from cti.domain import Direction, TransferKind, utcnow

T0 = datetime(2026, 11, 2, 20, 30, tzinfo=UTC)  # 23:30 in Moscow
ROMASHKA = "ООО «Ромашка»"
IRINA = "Ирина Кузнецова"
BOM = "\ufeff"


def stored_call(
    call_id: str,
    at: datetime,
    number: str | None,
    *,
    rang: tuple[str, ...] = ("101",),
    answered_by: str | None = None,
    name: str | None = None,
    direction: Direction = Direction.INBOUND,
    transfers: list[CallTransfer] | None = None,
) -> dict:
    return finished_call(
        call_id,
        at,
        number,
        rang=rang,
        answered_by=answered_by,
        name=name,
        direction=direction,
        transfers=transfers,
    ).to_dict()


async def office(service) -> dict[str, int]:
    """Anna (101) manages Romashka (an office number and a contact's mobile) and Irina;
    two clients share one number (nobody can say which of them called)."""
    region = service.config.phone.default_region
    async with service.sessions() as session:
        await auth.create_user(
            session, "anna", "operator", extension="101", display_name="Анна Петрова"
        )
        romashka = await save_client(
            session,
            ClientIn(
                ROMASHKA,
                manager_extension="101",
                phones=[PhoneIn("+7 812 555-01-01")],
                contacts=[ContactIn("Сергей", phones=[PhoneIn("+7 921 000-00-11")])],
            ),
            region,
        )
        irina = await save_client(
            session, ClientIn(IRINA, kind="person", phones=[PhoneIn("+7 916 123-45-67")]), region
        )
        for name in ("Twin A", "Twin B"):
            await save_client(session, ClientIn(name, phones=[PhoneIn("+7 495 000-00-77")]), region)
        await session.commit()
        return {"romashka": romashka.id, "irina": irina.id}


async def store(service, calls: list[dict]) -> None:
    async with service.sessions() as session:
        await upsert_calls(session, calls)
        await session.commit()


async def get_calls(client, token: str, **params) -> list[dict]:
    response = await client.get("/api/calls", params=params, headers=bearer(token))
    assert response.status == 200, await response.text()
    return (await response.json())["calls"]


async def test_calls_carry_their_client_and_are_found_by_it(client, service, make_user) -> None:
    ids = await office(service)
    await store(
        service,
        [
            stored_call("c1", T0, "+78125550101", answered_by="101", name="Мария"),
            stored_call("c2", T0 + timedelta(minutes=1), "+79210000011"),  # Romashka's contact
            stored_call("c3", T0 + timedelta(minutes=2), "+79161234567", answered_by="101"),
            stored_call("c4", T0 + timedelta(minutes=3), "+74950000077"),  # shared
            stored_call("c5", T0 + timedelta(minutes=4), "+74990001122"),  # unknown
            stored_call("c6", T0 + timedelta(minutes=5), None, direction=Direction.INTERNAL),
        ],
    )
    async with service.sessions() as session:
        session.add_all(
            [
                Recording(call_id="c1", path="a.wav", content_type="audio/wav", source="pbx"),
                Recording(call_id="c1", path="b.wav", content_type="audio/wav", source="pbx"),
                Recording(
                    call_id="c3",
                    path="c.wav",
                    content_type="audio/wav",
                    source="pbx",
                    deleted_at=utcnow(),
                ),
            ]
        )
        await session.commit()
    boss = await make_user("supervisor")
    calls = {c["id"]: c for c in await get_calls(client, boss)}
    romashka = {
        "id": ids["romashka"],
        "name": ROMASHKA,
        "manager": {"name": "Анна Петрова", "extension": "101"},
    }
    assert calls["c1"]["client"] == romashka
    assert calls["c2"]["client"] == romashka
    assert calls["c3"]["client"] == {"id": ids["irina"], "name": IRINA, "manager": None}
    assert calls["c4"]["client"] is None and calls["c5"]["client"] is None
    assert calls["c6"]["client"] is None
    assert [calls[c]["recording_count"] for c in ("c1", "c3", "c5")] == [2, 0, 0]

    found = await get_calls(client, boss, client_id=ids["romashka"])
    assert [c["id"] for c in found] == ["c2", "c1"]
    assert [c["id"] for c in await get_calls(client, boss, client_id=ids["irina"])] == ["c3"]
    assert await get_calls(client, boss, client_id=999999) == []
    both = await get_calls(client, boss, client_id=ids["romashka"], number="8 812 555-01-01")
    assert [c["id"] for c in both] == ["c1"]
    assert await get_calls(client, boss, client_id=ids["romashka"], missed="false") == [calls["c1"]]

    # Pages of one, by the cursor, keep the filter.
    first = await client.get(
        "/api/calls", params={"client_id": ids["romashka"], "limit": 1}, headers=bearer(boss)
    )
    page = await first.json()
    assert [c["id"] for c in page["calls"]] == ["c2"] and page["next_cursor"]
    rest = await get_calls(
        client, boss, client_id=ids["romashka"], limit=1, cursor=page["next_cursor"]
    )
    assert [c["id"] for c in rest] == ["c1"]

    # An operator sees the client on their own calls only.
    other = await make_user("operator", "102")
    assert await get_calls(client, other, client_id=ids["romashka"]) == []
    bad = await client.get("/api/calls", params={"client_id": "x"}, headers=bearer(boss))
    assert bad.status == 422


def read_csv(text: str) -> list[dict[str, str]]:
    assert text.startswith(BOM)
    return list(csv.DictReader(io.StringIO(text[1:])))


async def export(client, token: str, **params) -> tuple[str, object]:
    response = await client.get("/api/calls/export", params=params, headers=bearer(token))
    assert response.status == 200, await response.text()
    return (await response.read()).decode("utf-8"), response


@pytest.mark.parametrize("page", [1000, 2])
async def test_the_csv_export(client, service, make_user, monkeypatch, page: int) -> None:
    monkeypatch.setattr(cti.http.calls, "EXPORT_PAGE", page)  # 2: a walk over many pages
    ids = await office(service)
    blind = TransferKind.BLIND
    await store(
        service,
        [
            stored_call(
                "a1",
                T0,
                "+78125550101",
                rang=("101", "102"),
                answered_by="102",
                name="Мария Сидорова",
                transfers=[CallTransfer(blind, "101", "102", T0 + timedelta(seconds=30))],
            ),
            stored_call("m1", T0 + timedelta(minutes=1), "+79161234567"),  # missed by 101
            stored_call(
                "m2",
                T0 + timedelta(minutes=2),
                "+74990001122",
                rang=("102",),
                name="=HYPERLINK(1)",
            ),
            # Same second as m2: the walk orders by id too, and loses neither.
            stored_call("m3", T0 + timedelta(minutes=2), "+74990001123", rang=("102",)),
            stored_call("o1", T0 + timedelta(minutes=3), "+74990001124", answered_by="103"),
            stored_call("old", T0 - timedelta(days=40), "+78125550101", answered_by="101"),
        ],
    )
    async with service.sessions() as session:
        session.add(Recording(call_id="a1", path="a.wav", content_type="audio/wav", source="pbx"))
        await session.commit()
    boss = await make_user("supervisor")

    text, response = await export(client, boss, tz="Europe/Moscow")
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers.get("Transfer-Encoding") == "chunked"  # streamed
    assert text.splitlines()[0] == BOM + ",".join(cti.http.calls.EXPORT_COLUMNS)
    rows = read_csv(text)
    assert [r["call_id"] for r in rows] == ["o1", "m3", "m2", "m1", "a1", "old"]
    a1 = rows[4]
    assert a1 == {
        "started_at": "2026-11-02T23:30:00+03:00",
        "direction": "inbound",
        "number": "+78125550101",
        "caller_name": "Мария Сидорова",
        "client": ROMASHKA,
        "rang": "101, 102",
        "answered_by": "102",
        "wait_seconds": "5",
        "talk_seconds": "60",
        "outcome": "answered",
        "missed": "false",
        "transfers": "101→102",
        "recordings": "1",
        "call_id": "a1",
    }
    assert rows[3]["client"] == IRINA and rows[3]["missed"] == "true"
    assert rows[3]["started_at"] == "2026-11-02T23:31:00+03:00"
    assert rows[3]["outcome"] == "no_answer" and rows[3]["talk_seconds"] == ""
    assert rows[2]["caller_name"] == "'=HYPERLINK(1)"  # never a formula in a spreadsheet
    # In UTC by default; the raw bytes are UTF-8 (Cyrillic intact, BOM first).
    raw_text, _ = await export(client, boss)
    assert raw_text.encode("utf-8")[:3] == b"\xef\xbb\xbf"
    assert read_csv(raw_text)[4]["started_at"] == "2026-11-02T20:30:00+00:00"
    assert "ООО «Ромашка»" in raw_text

    # The filters of GET /api/calls.
    def exported(text: str) -> list[str]:
        return [r["call_id"] for r in read_csv(text)]

    assert exported((await export(client, boss, missed="true"))[0]) == ["m3", "m2", "m1"]
    assert exported((await export(client, boss, extension="102"))[0]) == ["m3", "m2", "a1"]
    assert exported((await export(client, boss, missed="true", extension="102"))[0]) == [
        "m3",
        "m2",
    ]
    period = {"since": "2026-11-01T00:00:00+03:00", "until": "2026-11-02T23:31:00+03:00"}
    assert exported((await export(client, boss, **period))[0]) == ["a1"]
    romashka = (await export(client, boss, client_id=str(ids["romashka"])))[0]
    assert exported(romashka) == ["a1", "old"]
    assert exported((await export(client, boss, number="+79161234567"))[0]) == ["m1"]
    assert exported((await export(client, boss, outcome="answered"))[0]) == ["o1", "a1", "old"]

    # Visibility: as GET /api/calls.
    anna = await auth_token(service, "anna")
    assert exported((await export(client, anna))[0]) == ["o1", "m1", "a1", "old"]
    assert [c["id"] for c in await get_calls(client, anna)] == ["o1", "m1", "a1", "old"]
    nobody = await make_user("sales")  # no extension: no calls
    assert exported((await export(client, nobody))[0]) == []
    reception = await make_user("receptionist")
    assert len(exported((await export(client, reception))[0])) == 6

    for params in ({"tz": "Mars/Olympus"}, {"number": "not a number"}, {"limit": "5"}):
        response = await client.get("/api/calls/export", params=params, headers=bearer(boss))
        if "limit" in params:  # not a filter of the export: ignored
            assert response.status == 200
        else:
            assert response.status == 422, params
    assert (await client.get("/api/calls/export")).status == 401


async def auth_token(service, username: str) -> str:
    async with service.sessions() as session:
        user = await auth.find_user(session, username)
        token = await auth.issue_token(session, user)
        await session.commit()
    return token


async def tasks(client, token: str, expect: int = 200, **params) -> list[dict]:
    response = await client.get("/api/tasks", params=params, headers=bearer(token))
    assert response.status == expect, await response.text()
    return (await response.json())["tasks"] if expect == 200 else []


async def test_the_missed_call_worklist(client, service, make_user) -> None:
    ids = await office(service)
    # Missed calls, followed up by the directory as the PBX's calls are: the tasks open.
    service.call_store.save(
        [
            Call.from_dict(stored_call("m1", T0, "+78125550101")),
            Call.from_dict(stored_call("m2", T0 + timedelta(minutes=5), "+78125550101")),
            Call.from_dict(stored_call("m3", T0 + timedelta(minutes=6), "+79161234567")),
            Call.from_dict(stored_call("m4", T0 - timedelta(days=3), "+74990001122")),
        ]
    )
    await service.call_store.flush()
    boss = await make_user("supervisor", username="boss")
    async with service.sessions() as session:
        boss_user = await auth.find_user(session, "boss")
        boss_user.display_name = "Борис Главный"
        await session.commit()

    opened = {t["number"]: t for t in await tasks(client, boss)}
    assert set(opened) == {"+78125550101", "+79161234567", "+74990001122"}
    romashka = opened["+78125550101"]
    assert romashka["client"] == {"id": ids["romashka"], "name": ROMASHKA}
    assert romashka["manager"]["name"] == "Анна Петрова"
    assert romashka["manager"]["extension"] == "101"
    assert romashka["assignee_extension"] == "101" and romashka["missed_calls"] == 2
    assert romashka["open"] is True and romashka["closed_by"] is None
    assert opened["+79161234567"]["client"] == {"id": ids["irina"], "name": IRINA}
    assert opened["+79161234567"]["manager"] is None  # Irina has no manager
    assert opened["+74990001122"]["client"] is None

    # Anna sees hers; another operator none of them.
    anna = await auth_token(service, "anna")
    assert [t["number"] for t in await tasks(client, anna)] == ["+78125550101"]
    assert await tasks(client, await make_user("operator", "102")) == []
    await tasks(client, anna, expect=403, assignee="102")

    response = await client.post(
        f"/api/tasks/{romashka['id']}/close",
        json={"comment": "Перезвонила с мобильного, договорились на завтра"},
        headers=bearer(boss),
    )
    assert response.status == 200, await response.text()
    closed = await response.json()
    assert closed["open"] is False and closed["closed_reason"] == "by_hand"
    assert closed["closed_by"]["username"] == "boss"
    assert closed["closed_by"]["name"] == "Борис Главный"
    assert closed["comment"] == "Перезвонила с мобильного, договорились на завтра"
    assert closed["client"]["name"] == ROMASHKA

    assert {t["number"] for t in await tasks(client, boss, status="open")} == {
        "+79161234567",
        "+74990001122",
    }
    [done] = await tasks(client, boss, status="closed")
    assert done == closed
    assert len(await tasks(client, boss, status="all")) == 3
    assert [t["number"] for t in await tasks(client, boss, open="false")] == ["+78125550101"]
    # The period: when the task opened.
    since = (T0 - timedelta(days=1)).isoformat()
    assert {t["number"] for t in await tasks(client, boss, status="all", since=since)} == {
        "+78125550101",
        "+79161234567",
    }
    until = (T0 - timedelta(days=1)).isoformat()
    assert [t["number"] for t in await tasks(client, boss, status="all", until=until)] == [
        "+74990001122"
    ]
    [mine] = await tasks(client, anna, status="closed")
    assert mine["closed_by"]["name"] == "Борис Главный"
    response = await client.get("/api/tasks", params={"status": "later"}, headers=bearer(boss))
    assert response.status == 422

    # The client's card lists its open tasks the same way.
    card = await client.get(f"/api/clients/{ids['irina']}", headers=bearer(boss))
    [task] = (await card.json())["open_tasks"]
    assert task["client"] == {"id": ids["irina"], "name": IRINA} and task["open"] is True

    # A conversation closes a task by itself; who closed it is then nobody.
    service.call_store.save(
        [
            Call.from_dict(
                stored_call("a1", T0 + timedelta(hours=1), "+79161234567", answered_by="101")
            )
        ]
    )
    await service.call_store.flush()
    closed_by_call = [
        t for t in await tasks(client, boss, status="closed") if t["number"] == "+79161234567"
    ]
    assert closed_by_call[0]["closed_reason"] == "called_again"
    assert closed_by_call[0]["closed_by"] is None
    async with service.sessions() as session:
        assert await session.get(CallbackTask, romashka["id"]) is not None
