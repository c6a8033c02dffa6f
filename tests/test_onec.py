"""The 1C connector against the OData stand-in (crm_bridge/onec/standin.py): the phone
index (full load, changes, deletions, a snapshot), lookups confirmed live with a real
base's quirks, the metadata check, the e1c:// links, and the call documents and
reminders it writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crm_bridge.onec.directory import OneCDirectory
from crm_bridge.onec.links import navigation_ref, object_link
from crm_bridge.onec.metadata import Published, problems
from crm_bridge.onec.names import OneCNames
from crm_bridge.onec.odata import EMPTY_REF, ODataClient, OneCError
from crm_bridge.onec.phone_index import Owner, PhoneIndex, numbers_in
from crm_bridge.onec.reporter import OneCCallReporter, document_ref
from crm_bridge.onec.standin import OneCStandIn
from crm_bridge.resilience import ResilientDirectory
from cti.directory import DirectoryUnavailable, SharedNumber

PARTNERS = "Catalog_Партнеры"
DOCUMENT = "Document_ТелефонныйЗвонок"


class Base:
    """The stand-in filled like a small УТ 11 base, with the quirks of real ones."""

    def __init__(self, standin: OneCStandIn) -> None:
        s = self.standin = standin
        self.giorgi = s.add_user("Георгий Беридзе")
        self.anna = s.add_user("Анна Петрова")
        # НомерТелефона empty, two numbers and an extension in the presentation.
        self.romashka = s.add_partner(
            "Ромашка",
            [("", "+7 (812) 555-01-04, доб. 12; 8 921 000-00-01 (моб.)")],
            full_name="ООО «Ромашка»",
            manager=self.giorgi,
        )
        self.volkov = s.add_contact(self.romashka, "Сергей Волков", [("78125550105", "")])
        self.post = s.add_partner(
            "საქართველოს ფოსტა", [("995322000000", "+995 32 200 00 00")], manager=self.anna
        )
        self.irina = s.add_partner("Ирина Кузнецова", [("+79161234567", "")], person=True)
        self.gone = s.add_partner("Старый клиент", [("", "+7 495 000-00-09")], deleted=True)
        self.vasilek = s.add_counterparty("ООО «Василёк»", self.irina, [("", "+7 495 000-00-02")])
        self.alone = s.add_counterparty("ИП Сидоров", None, [("", "+7 495 000-00-03")])
        s.add_partner("Лютик", [("", "8 (495) 000-00-10")], manager=self.giorgi)
        s.add_partner("Одуванчик", [("", "8 (495) 000-00-10")])  # the same switchboard


@pytest.fixture
async def base() -> AsyncIterator[Base]:
    standin = OneCStandIn()
    await standin.start()
    yield Base(standin)
    await standin.stop()


def connect(base: Base, **options) -> OneCDirectory:
    options.setdefault("users", {base.giorgi: "102"})
    client = ODataClient(
        base.standin.url(), "Администратор", "пароль 1С", page_size=options.pop("page_size", 1000)
    )
    return OneCDirectory(client, thin_client="e1c://srv1c/ut11", **options)


@pytest.fixture
async def directory(base: Base) -> AsyncIterator[OneCDirectory]:
    found = connect(base, write_calls=True)
    await found.refresh_now()
    yield found
    await found.close()


def section_requests(standin: OneCStandIn) -> list[dict[str, str]]:
    return [q for _, resource, q in standin.requests if resource.endswith("КонтактнаяИнформация")]


# -- numbers, links, the index -----------------------------------------------------------


def test_numbers_are_read_from_both_fields_and_never_guessed() -> None:
    assert numbers_in("", "+7 (812) 555-01-04, доб. 12; 8 921 000-00-01", "RU") == {
        "+78125550104",
        "+79210000001",
    }
    assert numbers_in("78125550105", "", "RU") == {"+78125550105"}
    assert numbers_in("995322000000", None, "RU") == {"+995322000000"}  # with its country code
    assert numbers_in("5550101", "555-01-01", "RU") == set()  # no area code: not a number
    assert numbers_in(None, "звонить секретарю", "RU") == set()


def test_navigation_links_put_the_guid_in_1c_order() -> None:
    # The pair as a 1C client shows it (ref=... in a navigation link).
    assert navigation_ref("4b9f6867-7668-11eb-b762-b13668d09050") == (
        "b762b13668d0905011eb76684b9f6867"
    )
    ref = "4b9f6867-7668-11eb-b762-b13668d09050"
    thin = object_link(
        "Справочник.Партнеры", ref, open_in="thin", thin_client="e1c://srv/ut11", web_client=""
    )
    assert (
        thin == "e1c://srv/ut11#e1cib/data/Справочник.Партнеры?ref=b762b13668d0905011eb76684b9f6867"
    )
    web = object_link(
        "Справочник.Партнеры", ref, open_in="web", thin_client="", web_client="https://h/ut/ru_RU"
    )
    assert (
        web
        == "https://h/ut/ru_RU/#e1cib/data/Справочник.Партнеры?ref=b762b13668d0905011eb76684b9f6867"
    )
    assert object_link("X", ref, open_in="none", thin_client="e1c://a", web_client="") is None


def test_the_index_follows_changes_and_survives_a_snapshot(tmp_path: Path) -> None:
    index = PhoneIndex()
    a, b = Owner("partner", "a"), Owner("contact", "b")
    index.put(a, "v1", ["+78125550104", "+79210000001"])
    index.put(b, "v1", ["+78125550104"])
    assert index.find("+78125550104") == [b, a]
    index.put(a, "v2", ["+79210000001"])
    assert index.find("+78125550104") == [b]
    assert index.changes("partner", {"a": "v2", "c": "v1"}) == (["c"], [])
    assert index.changes("contact", {}) == ([], ["b"])
    index.save(tmp_path / "index.json")
    again = PhoneIndex.load(tmp_path / "index.json")
    assert again.find("+79210000001") == [a] and again.known("contact") == {"b": "v1"}
    index.remove(b)
    assert index.find("+78125550104") == [] and len(index) == 1
    (tmp_path / "broken.json").write_text("{not json")
    assert PhoneIndex.load(tmp_path / "broken.json").owners == 0


# -- the metadata check -----------------------------------------------------------------


async def test_unpublished_objects_and_fields_are_named_at_start_up(base: Base, caplog) -> None:
    base.standin.hide("Catalog_Партнеры", "ОсновнойМенеджер_Key")
    base.standin.hide("InformationRegister_НапоминанияПользователя")
    directory = connect(base, write_calls=True)
    try:
        await directory.refresh_now()
        assert directory.problems == [
            "Catalog_Партнеры: ОсновнойМенеджер_Key not published (check the name, or add it)",
            "InformationRegister_НапоминанияПользователя is not published "
            "(add it to the OData composition)",
        ]
        assert "ОсновнойМенеджер_Key not published" in caplog.text
        assert directory.stats()["metadata_problems"] == directory.problems
        # The rest works: the partner is found, without a manager.
        match = await directory.lookup("+78125550104")
        assert match.client_name == "ООО «Ромашка»" and match.manager is None
    finally:
        await directory.close()


def test_a_call_document_with_a_one_type_contact_is_checked_for_its_key() -> None:
    standin = OneCStandIn()
    standin.schema[DOCUMENT] = [
        f if f != "АбонентКонтакт" else "АбонентКонтакт_Key"
        for f in standin.schema[DOCUMENT]
        if f != "АбонентКонтакт_Type"
    ]
    edmx = _metadata_of(standin)
    published = Published.parse(edmx)
    assert not published.composite(DOCUMENT, "АбонентКонтакт")
    assert problems(published, OneCNames(), write_calls=True) == []


def _metadata_of(standin: OneCStandIn) -> bytes:
    import asyncio

    response = asyncio.run(standin.metadata(None))  # type: ignore[arg-type]
    return response.body


# -- lookups -----------------------------------------------------------------------------


async def test_a_partners_number_pops_the_partner_and_their_manager(
    directory: OneCDirectory, base: Base
) -> None:
    match = await directory.lookup("+78125550104")
    assert match.client_id == f"partner:{base.romashka}"
    assert (match.client_name, match.kind, match.contact_name) == ("ООО «Ромашка»", "company", None)
    assert (match.manager.name, match.manager.extension) == ("Георгий Беридзе", "102")
    assert match.crm_url == (
        f"e1c://srv1c/ut11#e1cib/data/Справочник.Партнеры?ref={navigation_ref(base.romashka)}"
    )
    # The second number of the same presentation, and the contact person's number.
    assert (await directory.lookup("+79210000001")).client_name == "ООО «Ромашка»"
    contact = await directory.lookup("+78125550105")
    assert (contact.client_name, contact.contact_name) == ("ООО «Ромашка»", "Сергей Волков")


async def test_the_quirks_of_a_real_base(directory: OneCDirectory, base: Base) -> None:
    post = await directory.lookup("+995322000000")
    assert post.client_name == "საქართველოს ფოსტა"
    assert (post.manager.name, post.manager.extension) == ("Анна Петрова", None)  # not mapped
    irina = await directory.lookup("+79161234567")
    assert (irina.kind, irina.manager) == ("person", None)  # a partner without a manager
    assert await directory.lookup("+74950000009") is None  # marked for deletion
    vasilek = await directory.lookup("+74950000002")  # a counterparty: its partner
    assert (vasilek.client_name, vasilek.client_id) == ("Ирина Кузнецова", f"partner:{base.irina}")
    alone = await directory.lookup("+74950000003")  # a counterparty with no partner
    assert (alone.client_name, alone.client_id) == ("ИП Сидоров", f"counterparty:{base.alone}")
    shared = await directory.lookup("+74950000010")
    assert isinstance(shared, SharedNumber)
    assert sorted(name for _, name in shared.clients) == ["Лютик", "Одуванчик"]


async def test_an_unknown_number_costs_1c_nothing(directory: OneCDirectory, base: Base) -> None:
    before = len(base.standin.requests)
    assert await directory.lookup("+79990000000") is None
    assert len(base.standin.requests) == before


async def test_a_stale_hit_is_confirmed_away_and_the_index_corrected(
    directory: OneCDirectory, base: Base
) -> None:
    rows = base.standin.phone_rows([("", "+7 812 555-01-99")])
    base.standin.edit(PARTNERS, base.romashka, КонтактнаяИнформация=rows)
    assert await directory.lookup("+78125550104") is None  # 1C says: no longer theirs
    assert directory.index.find("+78125550104") == []
    assert (await directory.lookup("+78125550199")).client_name == "ООО «Ромашка»"


async def test_a_refresh_reads_only_what_changed(directory: OneCDirectory, base: Base) -> None:
    s = base.standin
    s.requests.clear()
    await directory.refresh_now()
    assert section_requests(s) == []  # nothing changed: the lists of versions only
    s.edit(PARTNERS, base.irina, КонтактнаяИнформация=s.phone_rows([("", "+7 916 765-43-21")]))
    s.edit(PARTNERS, base.post, DeletionMark=True)
    new = s.add_partner("Новый клиент", [("", "+7 812 555-02-02")])
    await directory.refresh_now()
    [request] = section_requests(s)
    assert base.irina in request["$filter"] and new in request["$filter"]
    assert base.romashka not in request["$filter"]
    assert directory.index.find("+79161234567") == []
    assert directory.index.find("+79167654321") == [Owner("partner", base.irina)]
    assert directory.index.find("+995322000000") == []
    assert directory.index.find("+78125550202") == [Owner("partner", new)]


async def test_the_full_load_pages_through_the_base(base: Base) -> None:
    directory = connect(base, page_size=2)
    try:
        await directory.refresh_now()
        assert directory.index.owners == 8  # 5 live partners, 1 contact, 2 counterparties
        pages = [q for _, r, q in base.standin.requests if r == PARTNERS]
        assert [q.get("$skip") for q in pages] == [None, "2", "4", "6"]
    finally:
        await directory.close()


async def test_a_restart_starts_from_the_snapshot(base: Base, tmp_path: Path) -> None:
    first = connect(base, snapshot=tmp_path / "onec.json")
    await first.refresh_now()
    await first.close()
    base.standin.requests.clear()
    second = connect(base, snapshot=tmp_path / "onec.json")
    try:
        # Found before any refresh: from the snapshot, confirmed live.
        assert (await second.lookup("+78125550104")).client_name == "ООО «Ромашка»"
        await second.refresh_now()
        assert section_requests(base.standin) == []
    finally:
        await second.close()


async def test_a_wrong_password_and_an_outage(base: Base) -> None:
    client = ODataClient(base.standin.url(), "Администратор", "не тот")
    with pytest.raises(OneCError) as refused:
        await client.rows(PARTNERS)
    assert refused.value.status == 401 and not refused.value.retryable
    assert "не тот" not in str(refused.value)
    await client.close()
    directory = ResilientDirectory(connect(base), breaker_failures=2, timeout_seconds=1)
    try:
        await directory.inner.refresh_now()
        base.standin.down = True
        for _ in range(2):
            with pytest.raises(DirectoryUnavailable, match="HTTP 503"):
                await directory.lookup("+78125550104")
        with pytest.raises(DirectoryUnavailable, match="circuit open"):
            await directory.lookup("+78125550104")
        assert directory.stats()["connector"]["index_numbers"] > 0
    finally:
        await directory.close()


async def test_before_the_first_load_a_lookup_is_unavailable_not_unknown(base: Base) -> None:
    base.standin.down = True
    directory = connect(base)
    try:
        with pytest.raises(OneCError, match="not loaded yet"):
            await directory.lookup("+78125550104")
    finally:
        await directory.close()


# -- calls written into 1C ---------------------------------------------------------------


def call(n: int = 1, **fields) -> dict:
    return {
        "id": f"lab:{n}.1",
        "direction": "inbound",
        "external_number": "+78125550105",
        "did": "+78124440000",
        "started_at": "2026-11-23T09:01:00+00:00",
        "ended_at": "2026-11-23T09:02:04+00:00",
        "answered_by": "102",
        "caller_extension": None,
        "outcome": "answered",
        "missed": False,
        "wait_seconds": 4,
        "talk_seconds": 60,
        "legs": [{"extension": "102"}],
        "recordings": ["r.wav"],
        **fields,
    }


async def write(reporter: OneCCallReporter, finished: dict) -> str | None:
    ref = await reporter.call_started(finished)
    if ref is not None:
        await reporter.call_finished(finished, ref)
    return ref


async def test_an_answered_call_becomes_one_phone_call_document(
    directory: OneCDirectory, base: Base
) -> None:
    reporter = OneCCallReporter(directory, service_url="https://cti.example.ru")
    ref = await write(reporter, call())
    assert ref == document_ref("lab:1.1")
    await write(reporter, call())  # again (a retry): still one document
    [document] = base.standin.calls()
    assert document["Ref_Key"] == ref
    assert document["Date"] == "2026-11-23T12:01:00"  # Moscow time, as the base keeps it
    assert document["Входящий"] is True
    assert document["АбонентКакСвязаться"] == "+7 812 555-01-05"
    assert document["АбонентКонтакт"] == base.volkov
    assert document["АбонентКонтакт_Type"] == "StandardODATA.Catalog_КонтактныеЛицаПартнеров"
    assert document["АбонентПредставление"] == "Сергей Волков (ООО «Ромашка»)"
    assert document["Ответственный_Key"] == base.giorgi  # who answered: 102
    assert document["Тема"] == "Входящий звонок: Сергей Волков (ООО «Ромашка»)"
    assert document["Описание"].splitlines() == [
        "Итог: отвечен (102)",
        "Ожидание: 4 с, разговор: 1 мин 00 с",
        "Номер, на который звонили: +7 812 444-00-00",
        "Запись разговора: https://cti.example.ru/ (звонок lab:1.1)",
        "Звонок CTI: lab:1.1",
    ]
    assert "Важность" not in document and base.standin.reminders == []


async def test_a_missed_call_gets_a_reminder_for_the_manager_once(
    directory: OneCDirectory, base: Base
) -> None:
    reporter = OneCCallReporter(directory, reminder_minutes=15)
    missed = call(
        2,
        external_number="+78125550104",
        answered_by=None,
        outcome="no_answer",
        missed=True,
        talk_seconds=0,
        wait_seconds=20,
        recordings=[],
        legs=[{"extension": "101"}],
    )
    await write(reporter, missed)
    await write(reporter, missed)
    [document] = base.standin.calls()
    assert document["Тема"] == "Пропущенный звонок: Ромашка"
    assert document["Важность"] == "Высокая"
    assert document["АбонентКонтакт_Type"] == "StandardODATA.Catalog_Партнеры"
    assert document["Ответственный_Key"] == base.giorgi  # the client's manager
    [reminder] = base.standin.reminders
    assert reminder["Пользователь_Key"] == base.giorgi
    assert reminder["Источник"] == document["Ref_Key"]
    assert (reminder["ВремяСобытия"], reminder["СрокНапоминания"]) == (
        "2026-11-23T12:02:04",
        "2026-11-23T12:17:04",
    )
    assert reminder["Описание"] == "Перезвонить: +7 812 555-01-04, ООО «Ромашка»"


async def test_unknown_callers_outbound_and_internal_calls(
    directory: OneCDirectory, base: Base
) -> None:
    reporter = OneCCallReporter(directory)
    await write(
        reporter,
        call(3, direction="outbound", external_number="+79990000000", caller_extension="101",
             answered_by=None, legs=[]),
    )  # fmt: skip
    [document] = base.standin.calls()
    assert document["Входящий"] is False and "АбонентКонтакт" not in document
    assert document["АбонентПредставление"] == "+7 999 000-00-00"
    assert document["Ответственный_Key"] == EMPTY_REF  # 101 is no 1C user
    assert document["Тема"] == "Исходящий звонок: +7 999 000-00-00"
    assert await write(reporter, call(4, direction="internal")) is None
    assert reporter.last_skip_reason == "not an inbound or outbound call"
    assert await write(reporter, call(5, external_number="103")) is None
    assert len(base.standin.calls()) == 1


async def test_refusals_keep_1cs_message_and_lost_answers_write_nothing_twice(
    directory: OneCDirectory, base: Base
) -> None:
    reporter = OneCCallReporter(directory)
    finished = call(6)
    ref = await reporter.call_started(finished)
    base.standin.fail_posts = 1
    with pytest.raises(OneCError) as locked:
        await reporter.call_finished(finished, ref)
    assert locked.value.retryable and "конфликт блокировок" in str(locked.value)
    base.standin.lose_answers = 1  # 1C writes it, the answer is lost on the way
    with pytest.raises(OneCError) as lost:
        await reporter.call_finished(finished, ref)
    assert lost.value.retryable
    await reporter.call_finished(finished, ref)  # the retry finds it written
    assert len(base.standin.calls()) == 1
    base.standin.hide(DOCUMENT, "Тема")
    with pytest.raises(OneCError) as refused:
        await reporter.call_finished(call(7), document_ref("lab:7.1"))
    assert not refused.value.retryable and "Неизвестное свойство: Тема" in str(refused.value)


def test_unknown_names_are_refused() -> None:
    assert OneCNames.with_overrides({"users": "Catalog_Сотрудники"}).users == "Catalog_Сотрудники"
    with pytest.raises(ValueError, match="unknown names: partnerz"):
        OneCNames.with_overrides({"partnerz": "x"})


def test_the_configuration_is_checked_and_its_password_kept_secret() -> None:
    from pydantic import SecretStr, ValidationError

    from cti.config import Config, CrmConfig

    with pytest.raises(ValidationError, match=r"standard\.odata"):
        CrmConfig(type="onec", onec_url="https://1c.example.ru/ut11/")
    with pytest.raises(ValidationError, match="not a 1C user reference"):
        CrmConfig(onec_users={"Иванов": "101"})
    with pytest.raises(ValidationError, match="not an IANA time zone"):
        CrmConfig(onec_time_zone="Москва")
    crm = CrmConfig(
        type="onec",
        onec_url="https://1c.example.ru/ut11/odata/standard.odata/",
        onec_password=SecretStr("пароль 1С"),
    )
    assert "пароль 1С" in Config(crm=crm).secrets()
    assert "пароль 1С" not in repr(crm)
