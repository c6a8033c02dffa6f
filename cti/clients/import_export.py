"""Bulk import (CSV, vCard) and export (CSV) of the built-in client directory.

An import is one transaction of Core bulk inserts, with ids allocated here, because the
ORM path (``save_client``) costs about a millisecond a client and offices bring files of
a million rows. Each input row is checked on its own: a bad one is reported with its line
number and skipped, the others are imported; an error of the import itself (a database
error, an undecodable file) leaves nothing behind. Nothing here commits: the caller does.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from cti.clients.builtin import search_text, shared_numbers
from cti.clients.models import Client, Contact, Phone
from cti.db.models import User
from cti.domain import utcnow
from cti.phone import NotAPhoneNumber, parse_number

Progress = Callable[[int, int | None], None]  # (bytes read, file size or None)
Source = str | Path | BinaryIO

BATCH_ROWS = 5000  # input rows per bulk insert
EXPORT_BATCH = 2000  # clients per export query

# Header aliases, compared after _norm (casefolded, punctuation and trailing digits gone).
ALIASES: dict[str, tuple[str, ...]] = {
    name: tuple(aliases.split("|"))
    for name, aliases in {
        "key": "client id|client key|key|id|id клиента|код|код клиента|ключ",
        "name": "компания|организация|клиент|название|наименование|контрагент|company|client"
        "|organization|organisation|company name|client name|account",
        "kind": "kind|type|client type|тип|тип клиента|вид",
        "manager": "менеджер|ответственный|ответственный менеджер|manager|responsible|owner"
        "|manager extension",
        "tags": "теги|метки|tags",
        "notes": "примечание|примечания|комментарий|заметки|notes|note|comment",
        "phone": "телефон|телефоны|тел|мобильный|мобильный телефон|сотовый|рабочий телефон"
        "|номер телефона|phone|phones|telephone|tel|mobile|mobile phone|work phone|phone number",
        "contact": "контакт|контактное лицо|фио|contact|contact name|contact person|full name",
        "position": "должность|position|title|job title",
        "email": "email|e mail|почта|эл почта|электронная почта|mail",
        "contact_phone": "телефон контакта|телефон контактного лица|contact phone",
        "extension": "доб|добавочный|extension|ext",
        "label": "label|phone label|метка телефона|тип телефона",
    }.items()
}
FIELDS = tuple(ALIASES)
_MULTI = {"phone", "contact_phone"}  # fields that may take several columns

_KIND_OF = {
    alias: kind
    for kind, aliases in {
        "company": "company|organization|organisation|org|компания|организация|юл|юр лицо"
        "|юридическое лицо",
        "person": "person|individual|private|физ лицо|физлицо|фл|физическое лицо|частное лицо"
        "|человек",
    }.items()
    for alias in aliases.split("|")
}

EXPORT_HEADER = (
    "Client ID|Client|Kind|Manager|Tags|Notes|Contact|Position|Email|Phone|Extension|Label"
).split("|")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOTES_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # notes may have line breaks
_EXTENSION_PIECE = re.compile(r"\s*(?:доб|ext|x|#)", re.IGNORECASE)
# Excel runs a cell that starts so as a formula: exported text gets a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")
_LIMITS = {"name": 200, "contact": 200, "position": 200, "email": 200, "notes": 2000}


class TransferError(Exception):
    """An import that cannot run as asked (worded for the person who started it)."""


class MappingError(TransferError):
    """A column mapping that names an unknown field or a column the file does not have."""


@dataclass
class ImportReport:
    rows: int = 0
    clients: int = 0
    contacts: int = 0
    phones: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    # Numbers an imported client shares with another client (the lookup picks neither).
    shared: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    dry_run: bool = False


@dataclass(slots=True)
class _Row:
    """One input record in the importer's words (a CSV row or a vCard)."""

    line: int
    key: str = ""
    name: str = ""
    kind: str = ""
    manager: str = ""
    tags: str = ""
    notes: str = ""
    contact: str = ""
    position: str = ""
    email: str = ""
    extension: str = ""
    phones: list[tuple[str, str]] = field(default_factory=list)  # (cell, label): the client's
    contact_phones: list[tuple[str, str]] = field(default_factory=list)


class _Rejected(Exception):
    pass


@functools.lru_cache(maxsize=1 << 16)
def _parse_phone(raw: str, region: str) -> tuple[str, str | None] | str:
    """(E.164, extension), or why ``raw`` is not a full number (cached: files repeat numbers)."""
    try:
        parsed = parse_number(raw, region)
    except NotAPhoneNumber as e:
        return str(e)
    if parsed.e164 is None:
        return "not a complete phone number (is the area code missing?)"
    return parsed.e164, parsed.extension


def split_numbers(cell: str) -> list[str]:
    """The numbers in one cell, separated by ',' or ';' ("…, доб. 12" stays with its number)."""
    if "," not in cell and ";" not in cell:
        return [cell.strip()] if cell.strip() else []
    numbers: list[str] = []
    for piece in re.split(r"[,;]", cell):
        if numbers and _EXTENSION_PIECE.match(piece):
            numbers[-1] += ", " + piece.strip()
        elif piece.strip():
            numbers.append(piece.strip())
    return numbers


@dataclass(slots=True)
class _Pending:
    """A client of the rows since the last flush, or the one the last row went on with."""

    id: int
    name: str
    row: dict[str, Any] | None  # the clients row to insert; None once it is in the table
    dirty: bool = False  # in the table, but its search text changed since
    contacts: dict[str, int] = field(default_factory=dict)  # casefolded name -> contact id
    contact_names: list[str] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)
    contact_numbers: list[str] = field(default_factory=list)
    seen: set[tuple[str, str | None]] = field(default_factory=set)

    def search_text(self) -> str:
        return search_text(self.name, self.contact_names, [*self.numbers, *self.contact_numbers])


class _Importer:
    def __init__(self, session: AsyncSession, region: str, dry_run: bool) -> None:
        self.session, self.region, self.dry_run = session, region, dry_run
        self.report = ImportReport(dry_run=dry_run)
        self.now = utcnow()
        self.managers: dict[str, int] = {}
        self.keys: dict[str, int] = {}  # client key -> client id
        self.pending: dict[int, _Pending] = {}
        self.current: _Pending | None = None  # the last row's client: the next may go on
        self.contacts: list[dict[str, Any]] = []
        self.phones: list[dict[str, Any]] = []
        self.unflushed = 0
        self.last_ids = {"clients": 0, "contacts": 0, "phones": 0}  # before the import
        self.next_client = self.next_contact = self.next_phone = 1
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.sqlite_cache: int | None = None

    async def start(self, size: int | None) -> None:
        session = self.session
        if not self.dry_run and self.postgres:  # readers go on, other writers wait
            await session.execute(
                text("LOCK TABLE clients, contacts, phones IN SHARE ROW EXCLUSIVE MODE")
            )
        elif not self.dry_run:
            # Take SQLite's write lock before reading the highest ids, and a page cache
            # that holds the indexes a big import changes (2 MB by default).
            await session.execute(text("DELETE FROM phones WHERE 0 = 1"))
            self.sqlite_cache = await session.scalar(text("PRAGMA cache_size"))
            kib = min(max((size or 0) * 3 // 1024, 2000), 512_000)
            await session.execute(text(f"PRAGMA cache_size = -{kib}"))
        for table in (Client, Contact, Phone):
            highest = await session.scalar(select(func.max(table.id)))
            self.last_ids[table.__tablename__] = highest or 0
        self.next_client, self.next_contact, self.next_phone = (
            self.last_ids[t] + 1 for t in ("clients", "contacts", "phones")
        )
        users = await session.execute(
            select(User.extension, User.id).where(
                User.is_active.is_(True), User.extension.is_not(None)
            )
        )
        self.managers = {extension: user_id for extension, user_id in users}

    async def add(self, row: _Row) -> None:
        self.report.rows += 1
        if row.key:
            client_id = self.keys.get(" ".join(row.key.split()))
            if client_id is not None and client_id not in self.pending:
                await self._reopen(client_id)
        try:
            self._add(row)
        except _Rejected as e:
            self.report.rejected.append((row.line, str(e)))
        self.unflushed += 1
        if self.unflushed >= BATCH_ROWS:
            await self.flush()

    def _add(self, row: _Row) -> None:
        name = _text("name", row.name) if row.name else ""
        key = _text("key", row.key) if row.key else ""
        contact = _text("contact", row.contact) if row.contact else ""
        position = _text("position", row.position) if row.position else ""
        email = _text("email", row.email) if row.email else ""
        if email and "@" not in email:
            raise _Rejected(f"email: {email!r} is not an e-mail address")
        if row.notes:
            if _NOTES_CONTROL.search(row.notes):
                raise _Rejected("notes: contains a control character")
            if len(row.notes) > _LIMITS["notes"]:
                raise _Rejected(f"notes: longer than {_LIMITS['notes']} characters")
        phones = self._phones(row) if row.phones or row.contact_phones else []

        client_id = self.keys.get(key) if key else None
        if client_id is None:
            client = self._new_client(row, name)
            if key:
                self.keys[key] = client.id
        else:
            client = self.pending[client_id]
            client.dirty = client.row is None
        self.current = client

        contact_id = None
        if contact or position or email or row.contact_phones:
            contact_name = contact or client.name
            folded = contact_name.casefold()
            contact_id = client.contacts.get(folded)
            if contact_id is None:
                contact_id = client.contacts[folded] = self.next_contact
                self.next_contact += 1
                client.contact_names.append(contact_name)
                self.contacts.append(
                    {
                        "id": contact_id,
                        "client_id": client.id,
                        "name": contact_name,
                        "position": position,
                        "email": email,
                    }
                )
                self.report.contacts += 1
        for e164, extension, label, to_contact in phones:
            if (e164, extension) in client.seen:
                continue  # the same number twice for one client
            client.seen.add((e164, extension))
            (client.contact_numbers if to_contact else client.numbers).append(e164)
            self.phones.append(
                {
                    "id": self.next_phone,
                    "client_id": client.id,
                    "contact_id": contact_id if to_contact else None,
                    "number": e164,
                    "extension": extension,
                    "label": label[:40],
                    "reversed_digits": e164[:0:-1],  # builtin.reversed_digits of an E.164
                }
            )
            self.next_phone += 1
            self.report.phones += 1

    def _phones(self, row: _Row) -> list[tuple[str, str | None, str, bool]]:
        """The row's numbers as (E.164, extension, label, the contact's?)."""
        numbers = [(n, label, False) for cell, label in row.phones for n in split_numbers(cell)]
        numbers += [
            (n, label, True) for cell, label in row.contact_phones for n in split_numbers(cell)
        ]
        if row.extension:
            extension = _text("extension", row.extension)
            if len(numbers) != 1:
                raise _Rejected("extension: a row with an extension needs exactly one number")
            number, label, to_contact = numbers[0]
            numbers = [(f"{number} доб. {extension}", label, to_contact)]
        parsed = []
        for number, label, to_contact in numbers:
            result = _parse_phone(number, self.region)
            if result.__class__ is str:
                raise _Rejected(f"phone {number!r}: {result}")
            parsed.append((result[0], result[1], label, to_contact))
        return parsed

    def _new_client(self, row: _Row, name: str) -> _Pending:
        if not name:
            raise _Rejected("name: a client needs a name")
        kind = _kind(row.kind) if row.kind else "company"
        tags = _tags(row.tags) if row.tags else []
        manager = _text("manager", row.manager) if row.manager else ""
        if manager and manager not in self.managers:
            raise _Rejected(f"manager: no active user has extension {manager}")
        client_id = self.next_client
        self.next_client += 1
        values = {
            "id": client_id,
            "name": name,
            "kind": kind,
            "manager_id": self.managers.get(manager),
            "tags": tags,
            "notes": row.notes,
            "is_lead": False,
            "search_text": "",
            "created_at": self.now,
            "updated_at": self.now,
        }
        client = self.pending[client_id] = _Pending(client_id, name, values)
        self.report.clients += 1
        return client

    async def _reopen(self, client_id: int) -> None:
        """A key seen again after its client was written: go on from the tables."""
        if self.dry_run:
            self.pending[client_id] = _Pending(client_id, "", None)
            return
        session = self.session
        name = await session.scalar(select(Client.name).where(Client.id == client_id))
        client = self.pending[client_id] = _Pending(client_id, name or "", None)
        contacts = select(Contact.id, Contact.name).where(Contact.client_id == client_id)
        for contact_id, contact_name in await session.execute(contacts.order_by(Contact.id)):
            client.contacts[contact_name.casefold()] = contact_id
            client.contact_names.append(contact_name)
        for number, extension, contact_id in await session.execute(
            select(Phone.number, Phone.extension, Phone.contact_id)
            .where(Phone.client_id == client_id)
            .order_by(Phone.id)
        ):
            client.seen.add((number, extension))
            (client.numbers if contact_id is None else client.contact_numbers).append(number)

    async def flush(self) -> None:
        """Write what the rows since the last flush made."""
        self.unflushed = 0
        new, changed = [], []
        for client in self.pending.values():
            if client.row is not None:
                client.row["search_text"] = client.search_text()
                new.append(client.row)
                client.row = None
            elif client.dirty:
                changed.append({"client_id": client.id, "text": client.search_text()})
                client.dirty = False
        current = self.current
        self.pending = {current.id: current} if current else {}
        contacts, phones = self.contacts, self.phones
        self.contacts, self.phones = [], []
        if self.dry_run:
            return
        session = self.session
        if new:
            await session.execute(insert(Client.__table__), new)
        if changed:
            table = Client.__table__
            await session.execute(
                update(table)
                .where(table.c.id == bindparam("client_id"))
                .values(search_text=bindparam("text")),
                changed,
            )
        if contacts:
            await session.execute(insert(Contact.__table__), contacts)
        if phones:
            await session.execute(insert(Phone.__table__), phones)

    async def finish(self) -> None:
        self.current = None
        await self.flush()
        if self.sqlite_cache is not None:
            await self.session.execute(text(f"PRAGMA cache_size = {int(self.sqlite_cache)}"))
        if self.postgres and not self.dry_run:
            for table, last in (
                ("clients", self.next_client - 1),
                ("contacts", self.next_contact - 1),
                ("phones", self.next_phone - 1),
            ):
                if last > self.last_ids[table]:  # ids were given here: move the sequence on
                    await self.session.execute(
                        text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {last})")
                    )
        if not self.dry_run:
            self.report.shared = await shared_numbers(
                self.session, new_after=self.last_ids["clients"]
            )


def _text(what: str, value: str) -> str:
    if _CONTROL.search(value):
        raise _Rejected(f"{what}: contains a line break or another control character")
    value = " ".join(value.split())
    if len(value) > _LIMITS.get(what, 200):
        raise _Rejected(f"{what}: longer than {_LIMITS.get(what, 200)} characters")
    return value


def _kind(value: str) -> str:
    value = _text("kind", value)
    if not value:
        return "company"
    kind = _KIND_OF.get(_norm(value))
    if kind is None:
        raise _Rejected(f"kind: {value!r} is neither a company nor a person")
    return kind


def _tags(value: str) -> list[str]:
    tags = []
    for tag in re.split(r"[,;]", _text("tags", value)):
        tag = tag.strip()
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def _norm(header: str) -> str:
    header = re.sub(r"[\W_]+", " ", header.casefold().replace("ё", "е"))
    return " ".join(re.sub(r"[\d ]+$", "", header.strip()).split())


def _unquote(cell: str) -> str:
    """Undo the apostrophe the export puts before a cell Excel would take for a formula."""
    if cell[:1] == "'" and cell[1:2] and cell[1] in _FORMULA_START:
        return cell[1:]
    return cell


# -- reading files ------------------------------------------------------------------------


class _Input:
    """A file or stream as text in its detected encoding, with how far it has been read."""

    def __init__(self, source: Source, encoding: str | None) -> None:
        try:
            named = None if encoding is None else codecs.lookup(encoding).name
        except LookupError:
            raise TransferError(f"unknown encoding {encoding!r}") from None
        self.owned = not hasattr(source, "read")
        raw: BinaryIO = open(source, "rb") if self.owned else source  # type: ignore[arg-type]
        if not raw.seekable():  # stdin: detecting the encoding reads it twice
            raw = io.BytesIO(raw.read())
        self.raw = raw
        start = raw.tell()
        self.size: int | None = raw.seek(0, io.SEEK_END) - start
        raw.seek(start)
        self.start = start
        self.encoding = named or _detect(raw)
        raw.seek(start)
        python_name = "utf-8-sig" if self.encoding == "utf-8" else self.encoding
        sample = raw.read(1 << 16).decode(python_name, errors="replace")
        self.first_line = sample.splitlines()[0] if sample.strip() else ""
        raw.seek(start)
        self.text = io.TextIOWrapper(raw, encoding=python_name, newline="")

    def read_bytes(self) -> int:
        return self.raw.tell() - self.start

    def close(self) -> None:
        self.text.detach()
        if self.owned:
            self.raw.close()


def _detect(raw: BinaryIO) -> str:
    """UTF-8 when the whole file decodes as such, else cp1251 (Windows Cyrillic)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        while chunk := raw.read(1 << 20):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "cp1251"
    return "utf-8"


def _columns(header: list[str], mapping: dict[str, str] | None) -> dict[str, list[int]]:
    columns: dict[str, list[int]] = {}
    for index, title in enumerate(header):
        found = next((f for f, aliases in ALIASES.items() if _norm(title) in aliases), None)
        if found and (found in _MULTI or found not in columns):
            columns.setdefault(found, []).append(index)
    for name, wanted in (mapping or {}).items():
        if name not in ALIASES:
            raise MappingError(f"unknown field {name!r}; fields: {', '.join(FIELDS)}")
        stripped = [h.strip() for h in header]
        titles = [wanted] if wanted.strip() in stripped else wanted.split(",")
        indexes = []
        for title in titles:
            if title.strip() not in stripped:
                raise MappingError(
                    f"{name}: the file has no column {title.strip()!r}; "
                    f"its columns: {', '.join(stripped)}"
                )
            indexes.append(stripped.index(title.strip()))
        if len(indexes) > 1 and name not in _MULTI:
            raise MappingError(f"{name}: one column only")
        for others in columns.values():  # a column mapped by hand serves that field only
            others[:] = [i for i in others if i not in indexes]
        columns[name] = indexes
    columns = {name: indexes for name, indexes in columns.items() if indexes}
    if "name" not in columns:
        raise TransferError(
            "no column for the client's name (such as Company or Компания); "
            "name it with --map name=COLUMN"
        )
    return columns


_ROW_FIELDS = ("key", "name", "kind", "manager", "tags", "notes", "contact", "position", "email")
_ROW_FIELDS += ("extension",)  # _Row's text fields, in its order


def _csv_rows(reader: Any, header: list[str], columns: dict[str, list[int]]) -> Iterator[_Row]:
    order = [columns.get(f, [None])[0] for f in _ROW_FIELDS]
    label_column = columns.get("label", [None])[0]
    phone_columns = columns.get("phone", [])
    contact_phone_columns = columns.get("contact_phone", [])
    # With a column of its own for contact phones, "phone" is the client's; else a phone
    # on a row that names a contact is that contact's.
    phones_follow_contact = not contact_phone_columns
    # Several phone columns and no label column: the headers ("Мобильный") are the labels.
    several = len(phone_columns) + len(contact_phone_columns) > 1
    titles = [title.strip()[:40] if several else "" for title in header]
    line = reader.line_num
    for cells in reader:
        start, line = line + 1, reader.line_num
        if not any(cells):
            continue  # a blank line
        width = len(cells)
        if width < len(header):
            cells += [""] * (len(header) - width)
        row = _Row(start, *[_unquote(cells[i]) if i is not None else "" for i in order])
        labels = titles if label_column is None else [cells[label_column]] * len(cells)
        phones = [(cells[i], labels[i]) for i in phone_columns if cells[i]]
        contact_phones = [(cells[i], labels[i]) for i in contact_phone_columns if cells[i]]
        if phones_follow_contact and row.contact:
            row.contact_phones = phones
        else:
            row.phones, row.contact_phones = phones, contact_phones
        yield row


async def import_csv(
    session: AsyncSession,
    path_or_stream: Source,
    *,
    region: str,
    mapping: dict[str, str] | None = None,
    encoding: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Import clients from a CSV file (UTF-8 with or without BOM, or cp1251; delimiter ',',
    ';' or tab). ``mapping`` names a field's column (field -> header; several phone columns
    separated by ','). Not committed; raises TransferError when it cannot run."""
    started = time.perf_counter()
    source = _Input(path_or_stream, encoding)
    try:
        # The delimiter that splits the header into the most columns.
        delimiter = max(
            ",;\t", key=lambda d: len(next(csv.reader([source.first_line], delimiter=d)))
        )
        reader = csv.reader(source.text, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise TransferError("the file is empty")
        columns = _columns(header, mapping)
        importer = _Importer(session, region, dry_run)
        await importer.start(source.size)
        for row in _csv_rows(reader, header, columns):
            await importer.add(row)
            if progress and importer.report.rows % 1000 == 0:
                progress(source.read_bytes(), source.size)
        await importer.finish()
    except UnicodeDecodeError as e:
        raise TransferError(f"the file is not in {source.encoding}: {e.reason}") from None
    except csv.Error as e:
        raise TransferError(f"not a CSV file: {e}") from None
    finally:
        source.close()
    if progress:
        progress(source.size or 0, source.size)
    importer.report.elapsed = time.perf_counter() - started
    return importer.report


# -- vCard --------------------------------------------------------------------------------


def _vcard_rows(content: str) -> Iterator[_Row | tuple[int, str]]:
    """Each card as a row, or (line, why) for a card vobject cannot read."""
    import vobject  # only imports of vCards need it

    lines = content.splitlines()
    start = None
    for number, line in enumerate(lines, 1):
        word = line.strip().upper()
        if word == "BEGIN:VCARD":
            start = number
        elif word == "END:VCARD" and start is not None:
            try:
                card = vobject.readOne("\r\n".join(lines[start - 1 : number]) + "\r\n")
                row: _Row | tuple[int, str] = _card_row(card, start)
            except Exception as e:  # vobject raises all kinds for a malformed card
                row = (start, f"not a vCard: {e}")
            yield row
            start = None


def _card_row(card: Any, line: int) -> _Row:
    def values(name: str) -> list[Any]:
        return [entry.value for entry in card.contents.get(name, [])]

    org = next((v for v in values("org") if v and v[0].strip()), None)
    full_name = next((v for v in values("fn") if v.strip()), "")
    if not full_name and values("n"):
        n = values("n")[0]
        parts = (n.prefix, n.given, n.additional, n.family)  # each a string or a list
        full_name = " ".join(p if isinstance(p, str) else " ".join(p) for p in parts if p)
    phones = []
    for tel in card.contents.get("tel", []):
        number = tel.value.removeprefix("tel:")
        types = [t for v in tel.params.get("TYPE", []) for t in v.split(",")]
        types += tel.singletonparams  # vCard 2.1: TEL;CELL;PREF
        labels = [t.lower() for t in types if t.lower() not in ("voice", "pref")]
        phones.append((number, ",".join(labels)))
    row = _Row(
        line,
        position=next(iter(values("title")), ""),
        email=next(iter(values("email")), ""),
        notes=next(iter(values("note")), ""),
        tags=",".join(tag for tags in values("categories") for tag in tags),
    )
    if org is None:  # a person: the phones are theirs
        row.name, row.kind, row.phones = full_name, "person", phones
        if row.email or row.position:
            row.contact = full_name
    else:  # cards of one company become one client with a contact each
        row.name, row.kind = org[0], "company"
        row.key = "org:" + " ".join(org[0].split()).casefold()
        if full_name and full_name != org[0]:
            row.contact, row.contact_phones = full_name, phones
        else:
            row.phones = phones
    return row


async def import_vcard(
    session: AsyncSession,
    path_or_stream: Source,
    *,
    region: str,
    encoding: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Import vCards (2.1, 3.0, 4.0; several a file): ORG makes a company client with the
    card's person as its contact, a card without ORG a person client. Not committed."""
    started = time.perf_counter()
    source = _Input(path_or_stream, encoding)
    try:
        content = source.text.read()
    except UnicodeDecodeError as e:
        raise TransferError(f"the file is not in {source.encoding}: {e.reason}") from None
    finally:
        source.close()
    importer = _Importer(session, region, dry_run)
    await importer.start(source.size)
    for row in _vcard_rows(content):
        if isinstance(row, _Row):
            await importer.add(row)
        else:
            importer.report.rows += 1
            importer.report.rejected.append(row)
    await importer.finish()
    if progress:
        progress(source.size or 0, source.size)
    importer.report.elapsed = time.perf_counter() - started
    return importer.report


# -- export -------------------------------------------------------------------------------


def _cell(value: str | None) -> str:
    value = value or ""
    return "'" + value if value.startswith(_FORMULA_START) else value


_CLIENT_COLUMNS = (
    Client.id,
    Client.name,
    Client.kind,
    Client.manager_id,
    Client.tags,
    Client.notes,
)
_CONTACT_COLUMNS = (Contact.id, Contact.client_id, Contact.name, Contact.position, Contact.email)
_PHONE_COLUMNS = (Phone.client_id, Phone.contact_id, Phone.number, Phone.extension, Phone.label)


async def export_csv(session: AsyncSession, stream: BinaryIO, *, delimiter: str = ";") -> int:
    """Write the directory to a binary stream as CSV, one row per phone (a client or a
    contact without one gets a row too), UTF-8 with a BOM and ';' as Excel expects in
    Russia; returns the rows written. Reads EXPORT_BATCH clients at a time."""
    managers = dict((await session.execute(select(User.id, User.extension))).all())
    out = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(EXPORT_HEADER)
    written, after = 0, 0
    try:
        while clients := (
            await session.execute(
                select(*_CLIENT_COLUMNS)
                .where(Client.id > after)
                .order_by(Client.id)
                .limit(EXPORT_BATCH)
            )
        ).all():
            first, after = clients[0].id, clients[-1].id
            contacts: dict[int, list[Any]] = {}
            for contact in await session.execute(
                select(*_CONTACT_COLUMNS)
                .where(Contact.client_id.between(first, after))
                .order_by(Contact.id)
            ):
                contacts.setdefault(contact.client_id, []).append(contact)
            phones: dict[tuple[int, int | None], list[Any]] = {}
            for phone in await session.execute(
                select(*_PHONE_COLUMNS)
                .where(Phone.client_id.between(first, after))
                .order_by(Phone.id)
            ):
                phones.setdefault((phone.client_id, phone.contact_id), []).append(phone)
            for client in clients:
                head = [
                    str(client.id),
                    _cell(client.name),
                    client.kind,
                    managers.get(client.manager_id) or "",
                    _cell(", ".join(client.tags or ())),
                    _cell(client.notes),
                ]
                for row in _client_rows(client.id, contacts, phones):
                    writer.writerow(head + row)
                    written += 1
    finally:
        out.flush()
        out.detach()
    return written


def _client_rows(
    client_id: int,
    contacts: dict[int, list[Any]],
    phones: dict[tuple[int, int | None], list[Any]],
) -> Iterator[list[str]]:
    """A client's contact and phone columns: its own phones first, then each contact's."""
    groups = [(None, phones.get((client_id, None), []))]
    groups += [(c, phones.get((client_id, c.id), [])) for c in contacts.get(client_id, [])]
    for contact, numbers in groups:
        if contact is None and not numbers and len(groups) > 1:
            continue  # the contacts' rows carry the client
        person = ["", "", ""]
        if contact is not None:
            person = [_cell(contact.name), _cell(contact.position), _cell(contact.email)]
        if not numbers:
            yield [*person, "", "", ""]
        for phone in numbers:
            yield [*person, phone.number, phone.extension or "", _cell(phone.label)]
