"""The built-in client directory: SQL through the service's own storage.

Lookups are one indexed query: by E.164 number, or, for a number the PBX delivered
without its area code, by its last N digits when exactly one client has a number ending
so (``phones.reversed_digits`` turns "ends with" into an index range scan).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Select, bindparam, delete, func, insert, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased, selectinload

from cti.clients.models import Client, Contact, Phone
from cti.db.engine import sqlite_file, sqlite_uri
from cti.db.models import User
from cti.db.reads import LoopReader
from cti.directory import LATER, Found, Later, Match, ResponsibleManager, SharedNumber
from cti.domain import utcnow
from cti.phone import NotAPhoneNumber, parse_number, to_e164


class DirectoryError(ValueError):
    """A client record that cannot be stored as given, worded for the person who sent it."""


def reversed_digits(number: str) -> str:
    return "".join(ch for ch in reversed(number) if ch.isdigit())


def _match_query() -> Select:
    # The person at that number, or else the client's first contact: someone to ask for.
    other = aliased(Contact)
    first_contact = (
        select(other.name)
        .where(other.client_id == Client.id)
        .order_by(other.id)
        .limit(1)
        .correlate(Client)
        .scalar_subquery()
    )
    return (
        select(
            Client.id,
            Client.name,
            Client.kind,
            Client.tags,
            func.coalesce(Contact.name, first_contact),
            User.id,
            User.display_name,
            User.extension,
        )
        .select_from(Phone)
        .join(Client, Client.id == Phone.client_id)
        .outerjoin(Contact, Contact.id == Phone.contact_id)
        .outerjoin(User, User.id == Client.manager_id)
    )


def _to_match(row: Any) -> Match:
    client_id, name, kind, tags, contact, user_id, manager_name, extension = row
    manager = None
    if user_id is not None:
        manager = ResponsibleManager(manager_name, extension, None, user_id)
    return Match(str(client_id), name, kind, contact, manager, tuple(tags or ()))


_BY_NUMBER = _match_query().where(Phone.number == bindparam("number")).limit(20)
_BY_SUFFIX = (
    _match_query()
    .where(Phone.reversed_digits >= bindparam("low"), Phone.reversed_digits < bindparam("high"))
    .limit(20)
)


def _plan(number: str, suffix_digits: int) -> tuple[Select, dict[str, str]] | None:
    """The query for a number: E.164 exactly, bare digits (no area code) by their suffix;
    None for what cannot match (an extension, too few digits)."""
    if number.startswith("+"):
        return _BY_NUMBER, {"number": number}
    digits = "".join(ch for ch in number if ch.isdigit())
    if not suffix_digits or len(digits) < suffix_digits:
        return None
    tail = digits[-suffix_digits:][::-1]
    return _BY_SUFFIX, {"low": tail, "high": tail[:-1] + chr(ord(tail[-1]) + 1)}


def _pick(rows: Sequence[Any], exact: bool) -> Found:
    """The one client the rows name; None for none. Several: the clients sharing the
    number (``exact``); for a number's last digits, None (different numbers: no guess)."""
    clients = dict.fromkeys((str(row[0]), row[1]) for row in rows)
    if not clients:
        return None
    if len(clients) > 1:
        return SharedNumber(tuple(clients)) if exact else None
    return _to_match(rows[0])


def lookup_in(conn: Connection, number: str, suffix_digits: int) -> Match | None:
    """A lookup inside the caller's transaction: the one client, or None (unknown, or a
    number several clients share: its work goes to nobody's manager by a guess)."""
    plan = _plan(number, suffix_digits)
    if plan is None:
        return None
    found = _pick(conn.execute(*plan).all(), plan[0] is _BY_NUMBER)
    return found if isinstance(found, Match) else None


async def clients_by_number(
    session: AsyncSession, numbers: Iterable[str | None]
) -> dict[str, dict[str, Any]]:
    """The built-in client of each of these E.164 numbers, with its responsible manager,
    in one query: ``{number: {"id", "name", "manager": {"name", "extension"} | None}}``.
    Numbers nobody has, and numbers several clients share (no guessing, as in lookups),
    are left out. Numbers without a ``+`` (extensions, hidden) are not looked up."""
    wanted = sorted({n for n in numbers if n and n.startswith("+")})
    if not wanted:
        return {}
    rows = await session.execute(
        select(
            Phone.number, Client.id, Client.name, User.display_name, User.username, User.extension
        )
        .select_from(Phone)
        .join(Client, Client.id == Phone.client_id)
        .outerjoin(User, User.id == Client.manager_id)
        .where(Phone.number.in_(wanted))
    )
    found: dict[str, dict[str, Any]] = {}
    shared: set[str] = set()
    for number, client_id, name, manager_name, username, extension in rows:
        known = found.get(number)
        if known is not None and known["id"] != client_id:
            shared.add(number)
            continue
        manager = None
        if username is not None:
            manager = {"name": manager_name or username, "extension": extension}
        found[number] = {"id": client_id, "name": name, "manager": manager}
    for number in shared:
        del found[number]
    return found


class _SqliteReader:
    """Lookups on SQLite: a read-only sqlite3 connection used on the event loop's thread.

    An indexed read takes microseconds and, in WAL mode, never waits for the writer;
    going through aiosqlite's thread would cost a hundred times that (bench/lookup.py).
    """

    def __init__(self, path: str, dialect: Any) -> None:
        self.path = path
        self.compiled = {q: q.compile(dialect=dialect) for q in (_BY_NUMBER, _BY_SUFFIX)}
        self.db: sqlite3.Connection | None = None

    async def all(self, query: Select, params: dict[str, str]) -> list[Any]:
        return self.all_now(query, params)

    def all_now(self, query: Select, params: dict[str, str]) -> list[Any]:
        if self.db is None:
            self.db = sqlite3.connect(sqlite_uri(self.path, read_only=True), uri=True)
        compiled = self.compiled[query]
        values = compiled.construct_params(params)
        args = [values[name] for name in compiled.positiontup or ()]
        found = self.db.execute(str(compiled), args).fetchall()
        return [(*row[:3], json.loads(row[3] or "[]"), *row[4:]) for row in found]  # tags: JSON

    async def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


class SqlDirectory:
    """``Directory`` over the built-in tables."""

    def __init__(self, sessions: async_sessionmaker, suffix_digits: int = 7) -> None:
        self.sessions = sessions
        self.suffix_digits = suffix_digits
        engine: AsyncEngine = sessions.kw["bind"]
        path = sqlite_file(engine)
        # SQLite: its own reader (compiled once, the row read raw); elsewhere the
        # loop's reader (one connection kept, cti.db.reads).
        self._reader: _SqliteReader | LoopReader
        if path is not None:
            self._reader = _SqliteReader(path, engine.dialect)
        else:
            self._reader = LoopReader(engine)

    async def lookup(self, number: str) -> Found:
        plan = _plan(number, self.suffix_digits)
        if plan is None:
            return None
        return _pick(await self._reader.all(*plan), plan[0] is _BY_NUMBER)

    def lookup_now(self, number: str) -> Found | Later:
        """``lookup`` at once on SQLite (``cti.directory.lookup_now``); LATER elsewhere."""
        if not isinstance(self._reader, _SqliteReader):
            return LATER
        plan = _plan(number, self.suffix_digits)
        if plan is None:
            return None
        return _pick(self._reader.all_now(*plan), plan[0] is _BY_NUMBER)

    async def search(self, text: str, limit: int = 20) -> list[Match]:
        async with self.sessions() as session:
            clients = await search_clients(session, text, limit=limit)
            return [client_match(client) for client in clients]

    async def lookup_many(self, numbers: Iterable[str | None]) -> dict[str, Match]:
        """The exact-number answers for a page of calls, in one query."""
        async with self.sessions() as session:
            found = await clients_by_number(session, numbers)
        return {
            number: Match(
                str(client["id"]),
                client["name"],
                manager=None
                if client["manager"] is None
                else ResponsibleManager(client["manager"]["name"], client["manager"]["extension"]),
            )
            for number, client in found.items()
        }

    async def close(self) -> None:
        await self._reader.close()


# -- reading and writing clients -----------------------------------------------------


@dataclass
class PhoneIn:
    number: str
    label: str = ""


@dataclass
class ContactIn:
    name: str
    position: str = ""
    email: str = ""
    phones: list[PhoneIn] = field(default_factory=list)


@dataclass
class ClientIn:
    name: str
    kind: Literal["company", "person"] = "company"
    manager_extension: str | None = None
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    phones: list[PhoneIn] = field(default_factory=list)
    contacts: list[ContactIn] | None = field(default_factory=list)  # None: keep as they are
    is_lead: bool = False


def _phone(data: PhoneIn, region: str, contact: Contact | None = None) -> Phone:
    try:
        parsed = parse_number(data.number, region)
    except NotAPhoneNumber:
        raise DirectoryError(f"{data.number!r} is not a phone number") from None
    if parsed.e164 is None:
        raise DirectoryError(f"{data.number!r} is not a complete phone number")
    return Phone(
        number=parsed.e164,
        extension=parsed.extension,
        label=data.label[:40],
        contact=contact,
        reversed_digits=reversed_digits(parsed.e164),
    )


async def manager_id_for(session: AsyncSession, extension: str | None) -> int | None:
    if not extension:
        return None
    user_id = await session.scalar(
        select(User.id).where(User.extension == extension, User.is_active.is_(True)).limit(1)
    )
    if user_id is None:
        raise DirectoryError(f"no user has extension {extension}")
    return user_id


def search_text(name: str, contact_names: Iterable[str], numbers: Iterable[str]) -> str:
    """What ``search_clients`` matches: casefolded here, as SQLite cannot fold Cyrillic."""
    return " ".join([name, *contact_names, *numbers]).casefold()[:4000]


def _search_text(client: Client) -> str:
    return search_text(
        client.name, (c.name for c in client.contacts), (p.number for p in client.phones)
    )


async def save_client(
    session: AsyncSession,
    data: ClientIn,
    region: str,
    client: Client | None = None,
    *,
    keep_manager: bool = False,
) -> Client:
    """Create a client, or replace an existing one's fields, contacts and phones (not
    committed); ``keep_manager``: its responsible manager stays, whatever
    ``data.manager_extension`` says. DirectoryError names the first thing wrong."""
    name = " ".join(data.name.split())
    if not name:
        raise DirectoryError("name: a client needs a name")
    if keep_manager and client is not None:
        manager_id = client.manager_id
    else:
        manager_id = await manager_id_for(session, data.manager_extension)
    phones = [_phone(p, region) for p in data.phones]
    if data.contacts is None and client is not None:
        contacts = list(client.contacts)
        phones += [p for p in client.phones if p.contact_id is not None]
    else:
        contacts = []
        for contact_in in data.contacts or []:
            contact = _contact(contact_in, name)
            phones += [_phone(p, region, contact) for p in contact_in.phones]
            contacts.append(contact)
    if client is None:
        client = Client(created_at=utcnow())
        session.add(client)
    client.name, client.kind, client.manager_id = name[:200], data.kind, manager_id
    client.tags, client.notes, client.is_lead = list(data.tags), data.notes, data.is_lead
    client.contacts = contacts
    client.phones = phones
    return await _touched(session, client)


def add_lead(conn: Connection, name: str, number: str, region: str) -> int:
    """A new client from an unknown caller (a lead: a person with that one number), in
    the caller's transaction; its id. DirectoryError when the number is not one."""
    phone = _phone(PhoneIn(number), region)
    name = " ".join(name.split())[:200] or phone.number
    now = utcnow()
    client_id = conn.execute(
        insert(Client)
        .values(
            name=name,
            kind="person",
            is_lead=True,
            tags=[],
            notes="",
            search_text=search_text(name, (), (phone.number,)),
            created_at=now,
            updated_at=now,
        )
        .returning(Client.id)
    ).scalar_one()
    conn.execute(
        insert(Phone).values(
            client_id=client_id,
            number=phone.number,
            extension=phone.extension,
            label=phone.label,
            reversed_digits=phone.reversed_digits,
        )
    )
    return client_id


def _contact(data: ContactIn, fallback_name: str, contact: Contact | None = None) -> Contact:
    contact = contact or Contact()
    contact.name = (" ".join(data.name.split()) or fallback_name)[:200]
    contact.position, contact.email = data.position[:200], data.email[:200]
    return contact


async def _touched(session: AsyncSession, client: Client) -> Client:
    client.updated_at = utcnow()
    client.search_text = _search_text(client)
    await session.flush()
    return client


async def save_contact(
    session: AsyncSession,
    client: Client,
    data: ContactIn,
    region: str,
    contact: Contact | None = None,
) -> Contact:
    """Add a contact to ``client`` or replace one's details and phones (not committed)."""
    phones = [_phone(p, region) for p in data.phones]  # all checked before anything changes
    if contact is None:
        contact = _contact(data, client.name)
        client.contacts.append(contact)
    else:
        _contact(data, client.name, contact)
    for phone in phones:
        phone.contact = contact
    client.phones = [p for p in client.phones if p.contact is not contact] + phones
    await _touched(session, client)
    return contact


async def remove_contact(session: AsyncSession, client: Client, contact: Contact) -> None:
    client.phones = [p for p in client.phones if p.contact is not contact]
    client.contacts.remove(contact)
    await _touched(session, client)


async def shared_numbers(
    session: AsyncSession, *, client_id: int | None = None, new_after: int | None = None
) -> list[dict[str, Any]]:
    """Numbers more than one client has: ``[{"number", "clients": [{"id", "name"}]}]``,
    those of client ``client_id``, or of the clients with an id above ``new_after`` (an
    import's). A lookup of such a number names them all and picks none."""
    mine = select(Phone.number)
    if client_id is not None:
        mine = mine.where(Phone.client_id == client_id)
    if new_after is not None:
        mine = mine.where(Phone.client_id > new_after)
    shared = (
        select(Phone.number)
        .where(Phone.number.in_(mine))
        .group_by(Phone.number)
        .having(func.count(func.distinct(Phone.client_id)) > 1)
    )
    rows = await session.execute(
        select(Phone.number, Client.id, Client.name)
        .join(Client, Client.id == Phone.client_id)
        .where(Phone.number.in_(shared))
        .order_by(Phone.number, Client.id)
        .distinct()
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for number, cid, name in rows:
        found.setdefault(number, []).append({"id": cid, "name": name})
    return [{"number": number, "clients": clients} for number, clients in found.items()]


async def get_client(session: AsyncSession, client_id: int) -> Client | None:
    return await session.scalar(
        select(Client)
        .where(Client.id == client_id)
        .options(selectinload(Client.contacts), selectinload(Client.phones))
    )


async def delete_client(session: AsyncSession, client_id: int) -> bool:
    result = await session.execute(delete(Client).where(Client.id == client_id))
    return bool(result.rowcount)


async def search_clients(
    session: AsyncSession,
    text: str,
    *,
    limit: int = 50,
    after_id: int | None = None,
    region: str | None = None,
) -> list[Client]:
    """Clients whose name, contacts or numbers contain ``text`` (any script, any case),
    ordered by id; ``after_id`` pages. With ``region``, a whole number written the way
    people do there ("8 (812) 555-01-04") finds its E.164 form too."""
    query = select(Client).options(selectinload(Client.contacts), selectinload(Client.phones))
    needle = " ".join(text.split()).casefold()
    if needle:
        digits = "".join(ch for ch in needle if ch.isdigit())
        conditions = [Client.search_text.contains(needle, autoescape=True)]
        if digits and len(digits) >= 3 and digits != needle:
            conditions.append(Client.search_text.contains(digits))
        e164 = to_e164(needle, region) if region and digits else None
        if e164 and e164[1:] != digits:
            conditions.append(Client.search_text.contains(e164[1:]))
        query = query.where(or_(*conditions))
    if after_id is not None:
        query = query.where(Client.id > after_id)
    return list((await session.scalars(query.order_by(Client.id).limit(limit))).all())


def client_match(client: Client, manager: User | None = None) -> Match:
    contact = client.contacts[0].name if client.contacts else None
    resolved = None
    if manager is not None:
        resolved = ResponsibleManager(manager.display_name, manager.extension, None, manager.id)
    return Match(str(client.id), client.name, client.kind, contact, resolved, tuple(client.tags))


def client_to_dict(client: Client, manager: User | None = None) -> dict[str, Any]:
    def phones_of(contact_id: int | None) -> list[dict[str, Any]]:
        return [
            {"number": p.number, "extension": p.extension, "label": p.label}
            for p in client.phones
            if p.contact_id == contact_id
        ]

    return {
        "id": client.id,
        "name": client.name,
        "kind": client.kind,
        "manager": None
        if manager is None
        else {"user_id": manager.id, "name": manager.display_name, "extension": manager.extension},
        "tags": list(client.tags),
        "notes": client.notes,
        "is_lead": client.is_lead,
        "phones": phones_of(None),
        "contacts": [
            {
                "id": c.id,
                "name": c.name,
                "position": c.position,
                "email": c.email,
                "phones": phones_of(c.id),
            }
            for c in client.contacts
        ],
        "created_at": client.created_at.isoformat(),
        "updated_at": client.updated_at.isoformat(),
    }
