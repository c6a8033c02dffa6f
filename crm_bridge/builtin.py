"""The built-in client directory: SQL through the service's own storage.

Lookups are one indexed query: by E.164 number, or, for a number the PBX delivered
without its area code, by its last N digits when exactly one client has a number ending
so (``phones.reversed_digits`` turns "ends with" into an index range scan).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased, selectinload

from crm_bridge.directory import Match, ResponsibleManager
from crm_bridge.models import Client, Contact, Phone
from cti.db.models import User
from cti.domain import utcnow
from cti.phone import NotAPhoneNumber, parse_number


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


async def lookup_in(session: AsyncSession, number: str, suffix_digits: int) -> Match | None:
    """E.164 numbers match exactly; bare digits (no area code) match by a unique suffix."""
    if number.startswith("+"):
        row = (await session.execute(_match_query().where(Phone.number == number).limit(1))).first()
        return None if row is None else _to_match(row)
    digits = "".join(ch for ch in number if ch.isdigit())
    if not suffix_digits or len(digits) < suffix_digits:
        return None  # an internal extension, or too short to tell anybody apart
    tail = digits[-suffix_digits:][::-1]
    upper = tail[:-1] + chr(ord(tail[-1]) + 1)
    rows = (
        await session.execute(
            _match_query()
            .where(Phone.reversed_digits >= tail, Phone.reversed_digits < upper)
            .limit(20)
        )
    ).all()
    clients = {row[0] for row in rows}
    return _to_match(rows[0]) if len(clients) == 1 else None  # ambiguous: no guess


@dataclass
class SqlDirectory:
    """``Directory`` over the built-in tables."""

    sessions: async_sessionmaker
    suffix_digits: int = 7

    async def lookup(self, number: str) -> Match | None:
        async with self.sessions() as session:
            return await lookup_in(session, number, self.suffix_digits)

    async def search(self, text: str, limit: int = 20) -> list[Match]:
        async with self.sessions() as session:
            clients = await search_clients(session, text, limit=limit)
            return [client_match(client) for client in clients]


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


def _search_text(client: Client) -> str:
    parts = [client.name, *(c.name for c in client.contacts), *(p.number for p in client.phones)]
    return " ".join(parts).casefold()[:4000]


async def save_client(
    session: AsyncSession, data: ClientIn, region: str, client: Client | None = None
) -> Client:
    """Create a client, or replace an existing one's fields, contacts and phones (not
    committed). DirectoryError names the first thing wrong."""
    name = " ".join(data.name.split())
    if not name:
        raise DirectoryError("name: a client needs a name")
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
    session: AsyncSession, text: str, *, limit: int = 50, after_id: int | None = None
) -> list[Client]:
    """Clients whose name, contacts or numbers contain ``text`` (any script, any case),
    ordered by id; ``after_id`` pages."""
    query = select(Client).options(selectinload(Client.contacts), selectinload(Client.phones))
    needle = " ".join(text.split()).casefold()
    if needle:
        digits = "".join(ch for ch in needle if ch.isdigit())
        conditions = [Client.search_text.contains(needle, autoescape=True)]
        if digits and len(digits) >= 3 and digits != needle:
            conditions.append(Client.search_text.contains(digits))
        query = query.where(or_(*conditions))
    if after_id is not None:
        query = query.where(Client.id > after_id)
    return list((await session.scalars(query.order_by(Client.id).limit(limit))).all())


async def count_clients(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Client)) or 0


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
