"""Bulk import (CSV, vCard) and export (CSV) of the client directory, on every backend."""

from __future__ import annotations

import io
import quopri
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cti
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from cti import auth
from cti.cli import _ProgressBar
from cti.clients import import_export
from cti.clients.builtin import (
    ClientIn,
    ContactIn,
    PhoneIn,
    get_client,
    reversed_digits,
    save_client,
    search_clients,
)
from cti.clients.models import Client, Contact, Phone
from cti.db import migrate
from cti.db.engine import create_engine, session_factory
from cti.db.models import AuditEntry, User
from cti.phone import parse_number
from cti.service import Service

REGION = "RU"


async def import_csv(service: Service, content: str | bytes, **options: Any):
    data = content.encode("utf-8") if isinstance(content, str) else content
    async with service.sessions() as session:
        report = await import_export.import_csv(session, io.BytesIO(data), region=REGION, **options)
        await session.commit()
    return report


async def import_vcard(service: Service, content: bytes):
    async with service.sessions() as session:
        report = await import_export.import_vcard(session, io.BytesIO(content), region=REGION)
        await session.commit()
    return report


async def counts(service: Service) -> list[int]:
    """Clients, contacts, phones."""
    async with service.sessions() as session:
        return [
            await session.scalar(select(func.count()).select_from(table))
            for table in (Client, Contact, Phone)
        ]


def _phones_of(client: Client, contact_id: int | None) -> list[tuple]:
    return sorted(
        (p.number, p.extension, p.label) for p in client.phones if p.contact_id == contact_id
    )


async def snapshot(service: Service) -> list[tuple]:
    """The directory without ids and times, for comparing two of them."""
    async with service.sessions() as session:
        extensions = dict((await session.execute(select(User.id, User.extension))).all())
        return sorted(
            (c.name, c.kind, extensions.get(c.manager_id), c.tags, c.notes, c.search_text,
             _phones_of(c, None),
             sorted((k.name, k.position, k.email, _phones_of(c, k.id)) for k in c.contacts))
            for c in await search_clients(session, "", limit=1000)
        )  # fmt: skip


# -- CSV ----------------------------------------------------------------------------------


async def test_encodings_and_delimiters_are_detected(service: Service) -> None:
    rows = [
        ("Компания", "Телефон"),
        ("ООО «Ромашка»", "+7 812 123-45-67"),
        ("Ёлка", "8 (495) 111-22-33"),
    ]

    def csv_text(delimiter: str) -> str:
        return "\r\n".join(delimiter.join(r) for r in rows) + "\r\n"

    await import_csv(service, csv_text(",").encode("utf-8"))
    await import_csv(service, b"\xef\xbb\xbf" + csv_text(";").replace("Ромашка", "Берёза").encode())
    report = await import_csv(service, csv_text("\t").replace("Ромашка", "Сосна").encode("cp1251"))
    assert (report.rows, report.clients, report.phones, report.rejected) == (2, 2, 2, [])
    async with service.sessions() as session:
        names = [c.name for c in await search_clients(session, "", limit=10)]
    assert names == [
        "ООО «Ромашка»", "Ёлка", "ООО «Берёза»", "Ёлка", "ООО «Сосна»", "Ёлка",
    ]  # fmt: skip


async def test_headers_by_alias_and_by_mapping(service: Service, make_user) -> None:
    await make_user("sales", "101")
    by_alias = (
        "Организация;Мобильный;Рабочий телефон;Ответственный;Метки;Контактное лицо;Должность;"
        "E-mail;Тип;Примечание\n"
        "Альфа;+79161234567;8 812 1234567, 8 812 7654321;101;vip, опт;Иван Петров;директор;"
        "ivan@alfa.ru;юр. лицо;звонить утром\n"
        "Петров Пётр;;+7 383 222-33-44;;;;;;физ. лицо;\n"
    )
    report = await import_csv(service, by_alias)
    assert (report.clients, report.contacts, report.phones, report.rejected) == (2, 1, 4, [])
    directory = service.directory  # closed with the service
    alfa = await directory.lookup("+78127654321")
    assert alfa is not None and alfa.client_name == "Альфа" and alfa.contact_name == "Иван Петров"
    assert alfa.manager is not None and alfa.manager.extension == "101"
    assert alfa.tags == ("vip", "опт")
    person = await directory.lookup("+73832223344")
    assert person is not None and person.kind == "person" and person.contact_name is None
    async with service.sessions() as session:
        client = await get_client(session, int(alfa.client_id))
        assert client is not None and client.notes == "звонить утром"
        labels = sorted((p.number, p.label, p.contact_id is not None) for p in client.phones)
        assert labels == [  # several phone columns: the headers are the labels
            ("+78121234567", "Рабочий телефон", True),
            ("+78127654321", "Рабочий телефон", True),
            ("+79161234567", "Мобильный", True),
        ]
        assert [(c.name, c.position, c.email) for c in client.contacts] == [
            ("Иван Петров", "директор", "ivan@alfa.ru")
        ]

    by_mapping = (
        "Наим.\tТел1\tТел2\tКомментарий к телефону\nБета\t+7 495 000-00-01\t+7 495 000-00-02\tx\n"
    )
    mapping = {"name": "Наим.", "phone": "Тел1,Тел2", "notes": "Комментарий к телефону"}
    report = await import_csv(service, by_mapping, mapping=mapping)
    assert (report.clients, report.phones, report.rejected) == (1, 2, [])
    beta = await directory.lookup("+74950000002")
    assert beta is not None and beta.client_name == "Бета"

    with pytest.raises(import_export.MappingError, match="no column 'Нет'"):
        await import_csv(service, by_mapping, mapping={"name": "Нет"})
    with pytest.raises(import_export.MappingError, match="unknown field 'foo'"):
        await import_csv(service, by_mapping, mapping={"foo": "Наим."})
    with pytest.raises(import_export.TransferError, match="no column for the client's name"):
        await import_csv(service, "Тел1;Тел2\n+74950000003;\n")


async def test_rows_with_one_key_make_one_client(service: Service, monkeypatch) -> None:
    monkeypatch.setattr(import_export, "BATCH_ROWS", 2)  # the key's rows span several batches
    content = (
        "Client ID,Company,Contact,Position,Phone\n"
        'c1,Гамма,,,"+7 812 111-11-11; +7 812 111-11-12, доб. 5"\n'
        "c1,,Анна,бухгалтер,+79110000001\n"
        "c2,Дельта,,,+74991111111\n"
        'c1,,Анна,,"+79110000002, +79110000001"\n'
        "c1,,Олег,,\n"
        "c1,Другое имя,,,+78121111113\n"
    )
    report = await import_csv(service, content)
    assert (report.rows, report.clients, report.contacts, report.phones) == (6, 2, 2, 6)
    async with service.sessions() as session:
        gamma = (await search_clients(session, "гамма"))[0]
        assert gamma.name == "Гамма"  # the first row names the client
        assert [c.name for c in gamma.contacts] == ["Анна", "Олег"]
        anna = gamma.contacts[0].id
        assert sorted((p.number, p.extension, p.contact_id == anna) for p in gamma.phones) == [
            ("+78121111111", None, False),
            ("+78121111112", "5", False),
            ("+78121111113", None, False),
            ("+79110000001", None, True),
            ("+79110000002", None, True),
        ]
        # The search text is the one save_client writes, though rows came after a flush.
        assert gamma.search_text == (
            "гамма анна олег +78121111111 +78121111112 +78121111113 +79110000001 +79110000002"
        )
        assert all(p.reversed_digits == reversed_digits(p.number) for p in gamma.phones)


async def test_bad_rows_are_reported_with_their_line_and_reason(
    service: Service, make_user
) -> None:
    await make_user("sales", "101")
    await make_user("sales", "102")
    async with service.sessions() as session:
        await session.execute(update(User).where(User.extension == "102").values(is_active=False))
        await session.commit()
    content = (
        "Компания;Телефон;Менеджер;Примечание\n"
        'Хорошая;+7 812 123-45-67;101;"две\nстроки"\n'  # lines 2-3
        "Короткий номер;+7 812 12;;\n"
        "Буквы;+7 812 CALL-NOW;;\n"
        ";+7 812 765-43-21;;\n"
        "Чужой менеджер;+7 812 765-43-22;999;\n"
        "Уволенный;+7 812 765-43-23;102;\n"
        '"Инъекция";"+78121234568\r\nAction: Originate";;\n'  # lines 9-10
        '"Имя\r\nAction: Logoff";+78121234569;;\n'  # lines 11-12
        "Вторая хорошая;+995 32 212 34 56;;\n"
    )
    report = await import_csv(service, content)
    assert report.rejected == [
        (4, "phone '+7 812 12': not a complete phone number (is the area code missing?)"),
        (5, "phone '+7 812 CALL-NOW': not a phone number"),
        (6, "name: a client needs a name"),
        (7, "manager: no active user has extension 999"),
        (8, "manager: no active user has extension 102"),
        (9, "phone '+78121234568\\r\\nAction: Originate': not a phone number: it contains "
            "control characters"),
        (11, "name: contains a line break or another control character"),
    ]  # fmt: skip
    assert (report.rows, report.clients, report.phones) == (9, 2, 2)
    directory = service.directory  # closed with the service
    assert (await directory.lookup("+995322123456")).client_name == "Вторая хорошая"
    assert await directory.lookup("+78121234568") is None


async def test_a_failure_midway_leaves_nothing(service: Service, make_user, monkeypatch) -> None:
    await make_user("sales", "101")
    monkeypatch.setattr(import_export, "BATCH_ROWS", 3)
    rows = [f"Клиент {i};+7 812 000-00-{i:02d};{'101' if i >= 12 else ''}" for i in range(20)]
    content = "Компания;Телефон;Менеджер\n" + "\n".join(rows) + "\n"
    flush, start, written = import_export._Importer.flush, import_export._Importer.start, []

    async def counted_flush(self):
        if len(written) == 6:
            raise RuntimeError("disk on fire")
        await flush(self)
        written.append(self.next_phone - 1)

    monkeypatch.setattr(import_export._Importer, "flush", counted_flush)

    # A database error after four batches were written: rows 12 on name a manager whose
    # user is gone, and the foreign key fails.
    async def gone_manager(self, size):
        await start(self, size)
        self.managers = {"101": 10**6}

    monkeypatch.setattr(import_export._Importer, "start", gone_manager)
    with pytest.raises(IntegrityError):
        await import_csv(service, content)
    assert written == [3, 6, 9, 12]
    assert await counts(service) == [0, 0, 0]

    # Any other exception after some batches: the caller does not commit, nothing stays.
    monkeypatch.setattr(import_export._Importer, "start", start)
    written.clear()
    with pytest.raises(RuntimeError):
        await import_csv(service, content)
    assert written == [3, 6, 9, 12, 15, 18]
    assert await counts(service) == [0, 0, 0]


async def test_dry_run_writes_nothing(service: Service) -> None:
    content = "Компания,Контакт,Телефон\nА,Иван,+74951234567\nБ,,нет\n"
    dry = await import_csv(service, content, dry_run=True)
    assert (dry.dry_run, dry.rows, dry.clients, dry.contacts, dry.phones) == (True, 2, 1, 1, 1)
    assert dry.rejected == [(3, "phone 'нет': not a phone number")]
    assert await counts(service) == [0, 0, 0]
    real = await import_csv(service, content)
    assert (real.clients, real.contacts, real.phones, real.rejected) == (1, 1, 1, dry.rejected)


async def test_imported_numbers_are_found_in_every_written_form(service: Service) -> None:
    content = (
        "Компания;Телефон\n"
        "Ромашка;8 (812) 123-45-67\n"
        "Тбилиси;+995 32 212 34 56\n"
        "Лондон;0044 20 7946 0958\n"
        "Офис;+7 495 111-22-33 доб. 12\n"
    )
    await import_csv(service, content)
    directory = service.directory  # suffix_digits 7, closed with the service
    forms = {
        "Ромашка": ["+7 812 123-45-67", "8 (812) 123-45-67", "88121234567", "+78121234567",
                    "0078121234567", "81078121234567", "123-45-67", "1234567"],
        "Тбилиси": ["+995322123456", "00995322123456", "810995322123456", "2123456"],
        "Лондон": ["+44 20 7946 0958", "0044 20 7946 0958", "79460958"],
        "Офис": ["+7 495 111-22-33", "8 495 111 22 33 доб. 12", "84951112233 ext. 12",
                 "+74951112233 x12", "1112233"],
    }  # fmt: skip
    for name, written in forms.items():
        for raw in written:
            parsed = parse_number(raw, REGION)
            match = await directory.lookup(parsed.e164 or parsed.digits)
            assert match is not None and match.client_name == name, raw
    async with service.sessions() as session:
        assert [c.name for c in await search_clients(session, "РОМАШ")] == ["Ромашка"]
        assert [c.name for c in await search_clients(session, "995 32 212")] == ["Тбилиси"]
        # A whole number as people write it here: its E.164 form is searched too.
        written = {
            "8 (812) 123-45-67": "Ромашка",
            "88121234567": "Ромашка",
            "0044 20 7946 0958": "Лондон",
        }
        for raw, name in written.items():
            found = await search_clients(session, raw, region=REGION)
            assert [c.name for c in found] == [name], raw
        assert await search_clients(session, "8 (812) 123-45-67") == []  # no region: digits


async def test_import_matches_save_client_and_continues_the_ids(service: Service) -> None:
    await import_csv(service, "Компания;Контакт;Телефон\nЭпсилон;Зоя;+7 812 555-55-55\n")
    async with service.sessions() as session:
        imported = (await search_clients(session, "эпсилон"))[0]
        # Ids given by the import: the next ORM insert (a PostgreSQL sequence) must not
        # collide with them.
        saved = await save_client(
            session,
            ClientIn(name="Эпсилон", contacts=[ContactIn("Зоя", phones=[PhoneIn("+78125555555")])]),
            REGION,
        )
        await session.commit()
        assert saved.id > imported.id
        assert saved.search_text == imported.search_text
        assert [p.reversed_digits for p in saved.phones] == [
            p.reversed_digits for p in imported.phones
        ]
    await import_csv(service, "Компания;Телефон\nДзета;+7 812 555-55-56\n")
    async with service.sessions() as session:
        assert (await search_clients(session, "дзета"))[0].id > saved.id


def test_split_numbers_keeps_extensions_with_their_number() -> None:
    assert import_export.split_numbers(" +7 812 1234567 ") == ["+7 812 1234567"]
    assert import_export.split_numbers("+7 812 1234567, доб. 12; 8 495 1112233,x7,") == [
        "+7 812 1234567, доб. 12",
        "8 495 1112233, x7",
    ]
    assert import_export.split_numbers(" ; ") == []


# -- vCard --------------------------------------------------------------------------------


def qp(text: str) -> str:
    return quopri.encodestring(text.encode("cp1251")).decode("ascii")


async def test_vcards_in_any_script_and_version(service: Service) -> None:
    cards = (
        "BEGIN:VCARD\r\nVERSION:2.1\r\n"
        f"N;CHARSET=windows-1251;ENCODING=QUOTED-PRINTABLE:{qp('Петров')};{qp('Иван')};;;\r\n"
        f"FN;CHARSET=windows-1251;ENCODING=QUOTED-PRINTABLE:{qp('Иван Петров')}\r\n"
        f"ORG;CHARSET=windows-1251;ENCODING=QUOTED-PRINTABLE:{qp('ООО Ромашка')}\r\n"
        f"TITLE;CHARSET=windows-1251;ENCODING=QUOTED-PRINTABLE:{qp('Директор')}\r\n"
        "TEL;CELL;PREF:+79161234567\r\nTEL;WORK:8 (812) 123-45-67 доб. 12\r\n"
        "EMAIL;INTERNET:ivan@romashka.ru\r\nEND:VCARD\r\n"
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:ნინო ბერიძე\r\nN:ბერიძე;ნინო;;;\r\n"
        "ORG:ООО Ромашка\r\nTEL;TYPE=WORK,VOICE:+7 812 765-43-21\r\nEND:VCARD\r\n"
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:გიორგი მაისურაძე\r\nTITLE:მენეჯერი\r\n"
        "TEL;TYPE=CELL:+995 555 12 34 56\r\nCATEGORIES:vip,partner\r\nEND:VCARD\r\n"
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:John Smith\r\n"
        'TEL;VALUE=uri;TYPE="voice,home":tel:+44-20-7946-0958\r\nEND:VCARD\r\n'
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Без телефона\r\nTEL:abc\r\nEND:VCARD\r\n"
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN Сломанная\r\nEND:VCARD\r\n"
    )
    report = await import_vcard(service, cards.encode("utf-8"))
    assert report.rejected[0] == (30, "phone 'abc': not a phone number")
    assert report.rejected[1][0] == 35 and report.rejected[1][1].startswith("not a vCard: ")
    assert (report.rows, report.clients, report.contacts, report.phones) == (6, 3, 3, 5)
    directory = service.directory  # closed with the service
    ivan = await directory.lookup("+79161234567")
    assert ivan is not None and (ivan.client_name, ivan.kind) == ("ООО Ромашка", "company")
    assert ivan.contact_name == "Иван Петров"
    nino = await directory.lookup("+78127654321")
    assert (
        nino is not None and nino.client_id == ivan.client_id and nino.contact_name == "ნინო ბერიძე"
    )
    giorgi = await directory.lookup("+995555123456")
    assert giorgi is not None and (giorgi.client_name, giorgi.kind) == (
        "გიორგი მაისურაძე",
        "person",
    )
    assert giorgi.tags == ("vip", "partner")
    smith = await directory.lookup("+442079460958")
    assert smith is not None and smith.client_name == "John Smith"
    async with service.sessions() as session:
        romashka = await get_client(session, int(ivan.client_id))
        assert romashka is not None
        assert [(c.name, c.position, c.email) for c in romashka.contacts] == [
            ("Иван Петров", "Директор", "ivan@romashka.ru"),
            ("ნინო ბერიძე", "", ""),
        ]
        assert sorted((p.number, p.extension, p.label) for p in romashka.phones) == [
            ("+78121234567", "12", "work"),
            ("+78127654321", None, "work"),
            ("+79161234567", None, "cell"),
        ]


async def test_a_cp1251_vcard_file_is_detected(service: Service) -> None:
    cards = (
        "BEGIN:VCARD\r\nVERSION:2.1\r\nFN:Сидоров Пётр\r\nTEL:+7 383 222-33-44\r\nEND:VCARD\r\n"
        "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Ёлкина;Анна;;;\r\nTEL:+7 383 222-33-45\r\nEND:VCARD\r\n"
    )
    report = await import_vcard(service, cards.encode("cp1251"))
    assert (report.clients, report.phones, report.rejected) == (2, 2, [])
    directory = service.directory  # closed with the service
    assert (await directory.lookup("+73832223344")).client_name == "Сидоров Пётр"
    assert (await directory.lookup("+73832223345")).client_name == "Анна Ёлкина"  # from N


# -- export -------------------------------------------------------------------------------


async def test_export_then_import_gives_the_same_directory(
    service: Service, make_user, monkeypatch
) -> None:
    await make_user("sales", "101")
    monkeypatch.setattr(import_export, "EXPORT_BATCH", 2)
    clients = [
        ClientIn(
            "ООО Ромашка",
            manager_extension="101",
            tags=["vip", "опт"],
            notes='строка 1\nстрока 2; «кавычки», "двойные"',
            phones=[PhoneIn("+7 812 123-45-67", "офис"), PhoneIn("8 (812) 123-45-68 доб. 12")],
            contacts=[
                ContactIn(
                    "Иван Петров", "директор", "ivan@example.ru", [PhoneIn("+79161234567", "моб")]
                ),
                ContactIn("Мария", "бухгалтер"),
            ],
        ),
        ClientIn('=HYPERLINK("http://evil")', kind="person", phones=[PhoneIn("+995 32 212 34 56")]),
        ClientIn("Пустой клиент", notes="-минус"),
        ClientIn(
            "ერთი", contacts=[ContactIn("ნინო", "@all", phones=[PhoneIn("+44 20 7946 0958")])]
        ),
    ]
    async with service.sessions() as session:
        for data in clients:
            await save_client(session, data, REGION)
        await session.commit()
    before = await snapshot(service)

    exported = io.BytesIO()
    async with service.sessions() as session:
        rows = await import_export.export_csv(session, exported)
    assert rows == 7
    data = exported.getvalue()
    assert data.startswith(b"\xef\xbb\xbf" + b"Client ID;Client;Kind;Manager")
    text = data.decode("utf-8-sig")
    assert "'=HYPERLINK" in text and "'-минус" in text and "'@all" in text  # no formulas

    async with service.sessions() as session:
        await session.execute(Client.__table__.delete())
        await session.commit()
    report = await import_csv(service, data)
    assert (report.rows, report.rejected) == (7, [])
    assert await snapshot(service) == before


# -- command line -------------------------------------------------------------------------


async def test_cli_import_and_export(tmp_path: Path, db_url: str) -> None:
    engine = create_engine(db_url)
    await migrate.upgrade(engine)
    async with session_factory(engine)() as session:
        await auth.create_user(session, "anna", "sales", extension="101")
        await session.commit()
    await engine.dispose()
    env = {"CTI_DATABASE_URL": db_url}
    big = tmp_path / "big.csv"
    filler = "примечание " * 7
    lines = ["Компания;Телефон;Менеджер;Примечание"]
    lines += [f"Клиент {i};+7 812 {i:07d};101;{filler}" for i in range(1_000_000, 1_006_000)]
    lines += [f"Плохой {i};+7 812 00;101;" for i in range(60)]
    big.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert big.stat().st_size > _ProgressBar.MIN_BYTES

    result = run_cti("import", "contacts", str(big), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("importing: ")]
    assert len(progress) >= 5 and progress[-1].startswith("importing: 100% of 1.")
    out = result.stdout.splitlines()
    assert out[0].startswith("6000 clients, 0 contacts and 6000 phones from 6060 rows in ")
    assert out[1] == "rejected 60 rows:"
    assert out[2] == (
        "  line 6002: phone '+7 812 00': not a complete phone number (is the area code missing?)"
    )
    assert len(out) == 2 + 50 + 1 and out[-1] == "  ... and 10 more"

    result = run_cti("export", "contacts", "-", cwd=tmp_path, env=env)
    assert result.returncode == 0 and "exported 6000 rows to -" in result.stderr
    assert result.stdout.startswith("\ufeffClient ID;Client;Kind;Manager;")
    assert f"\n1;Клиент 1000000;company;101;;{filler};;;;+78121000000;;\n" in result.stdout
    engine = create_engine(db_url)
    async with session_factory(engine)() as session:  # who brought them in, and when
        [entry] = (await session.scalars(select(AuditEntry))).all()
    await engine.dispose()
    assert (entry.username, entry.action, entry.target) == ("cti", "clients.import", "file:big.csv")
    assert entry.details == {"rows": 6060, "clients": 6000}


def test_cli_exit_codes(tmp_path: Path) -> None:
    env = {"CTI_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cti.db'}"}

    def cti(*args: str):
        return run_cti(*args, cwd=tmp_path, env=env)

    good = tmp_path / "a.csv"
    good.write_text("Компания;Телефон\nА;+7 812 123-45-67\n", encoding="utf-8")
    result = cti("import", "contacts", str(good))
    assert result.returncode == 1 and "run `cti db upgrade`" in result.stderr
    assert cti("db", "upgrade").returncode == 0
    for args, message in [
        (["missing.csv"], "missing.csv: no such file"),
        ([str(good), "--map", "colour=Компания"], "--map colour=Компания: give FIELD=COLUMN"),
        ([str(good), "--map", "phone=Мобильный"], "phone: the file has no column 'Мобильный'"),
    ]:
        result = cti("import", "contacts", *args)
        assert (result.returncode, result.stdout) == (2, ""), result.stderr
        assert message in result.stderr

    # UTF-8 asked for, a cp1251 row after two batches: the import fails, nothing stays.
    mixed = tmp_path / "mixed.csv"
    rows = [f"Клиент {i};+7 812 {i:07d}".encode() for i in range(1_000_000, 1_010_500)]
    mixed.write_bytes(b"\n".join([b"Company;Phone", *rows, "Ёж;+74950000000".encode("cp1251")]))
    result = cti("import", "contacts", str(mixed), "--encoding", "utf-8")
    assert result.returncode == 1
    assert "the import failed, nothing was imported: the file is not in utf-8" in result.stderr

    vcard = tmp_path / "cards.vcf"  # vCard by the file's name
    vcard.write_text("BEGIN:VCARD\nVERSION:3.0\nFN:Анна\nTEL:+79161234567\nEND:VCARD\n")
    result = cti("import", "contacts", str(vcard), "--dry-run")
    assert result.returncode == 0
    assert result.stdout.startswith("dry run, nothing written: would import 1 clients, 0 contacts")
    result = cti("export", "contacts", str(tmp_path / "out.csv"))
    assert result.returncode == 0 and "exported 0 rows" in result.stderr


def test_progress_redraws_one_line_on_a_terminal(monkeypatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = _ProgressBar()
    for done in (0, 500_000, 2_000_000):
        bar(done, 2_000_000)
    bar.done()
    assert terminal.getvalue().count("\r") == 3 and terminal.getvalue().endswith("100% of 2.0 MB\n")
    small = _ProgressBar()
    small(10, 1000)  # small files: no bar
    assert terminal.getvalue().count("\r") == 3


async def test_an_import_reports_numbers_two_clients_share(service) -> None:
    await import_csv(service, "Компания;Телефон\nПитер;+7 812 555-01-02\n")
    report = await import_csv(
        service, "Компания;Телефон\nМосква;8 812 555-01-02\nКазань;+7 843 555-01-03\n"
    )
    assert report.rejected == []
    assert report.shared == [
        {
            "number": "+78125550102",
            "clients": [{"id": 1, "name": "Питер"}, {"id": 2, "name": "Москва"}],
        }
    ]
