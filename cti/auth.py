"""Users, API tokens, passwords and role checks.

API tokens are 256-bit random strings; only their SHA-256 is stored (a fast hash is right
for high-entropy secrets, as a KDF is for passwords, which are hashed with Argon2id).
Argon2 takes a third of a second of CPU on purpose: it runs in a small thread pool of its
own (``hash_password_async``, ``verify_password_async``), never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.db.models import ApiToken, User
from cti.domain import EXTENSION_PATTERN, ROLES_SEEING_ALL, Role, utcnow
from cti.events import DomainEvent

TOKEN_PREFIX = "cti_"  # noqa: S105 (a marker, not a secret)
USERNAME_PATTERN = re.compile(r"^[^\s/\\:]{1,64}$")  # any script, no spaces or separators

_password_hasher = PasswordHasher()
# Two at a time: on a small server the rest of the service keeps a core to itself.
_password_workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


class UserError(ValueError):
    """A user or token request that cannot be carried out, worded for the person asking."""


class UsernameTaken(UserError):
    pass


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the user behind a valid token."""

    user_id: int
    username: str
    display_name: str
    role: Role
    extension: str | None
    time_zone: str | None = None  # the user's own; None: the office's

    def has_role(self, *roles: Role) -> bool:
        """Admins pass every role check; others must hold one of ``roles``."""
        return self.role is Role.ADMIN or self.role in roles

    # -- the one visibility rule: who may see (and act on) a call, a task, a pop ------

    @property
    def sees_everything(self) -> bool:
        """Receptionists, supervisors and admins see every call, message and task."""
        return self.role in ROLES_SEEING_ALL

    def sees(self, extensions: Iterable[str | None]) -> bool:
        """Whether this user may see something that involved ``extensions``: everything,
        or what involved their own phone (a user without one sees nobody's)."""
        if self.sees_everything:
            return True
        return self.extension is not None and self.extension in extensions

    @property
    def call_scope(self) -> str | bool | None:
        """The rule as a query filter: True (all), their extension, or None (nothing)."""
        return True if self.sees_everything else self.extension

    def sees_event(self, event: DomainEvent) -> bool:
        return self.sees(event.extensions())

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.user_id,
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role.value,
            "extension": self.extension,
            "time_zone": self.time_zone,
        }


def principal_of(user: User) -> Principal:
    return Principal(
        user.id, user.username, user.display_name, Role(user.role), user.extension, user.time_zone
    )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_password(password: str) -> str:
    return _password_hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _password_hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def hash_password_async(password: str) -> str:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_password_workers, hash_password, password)


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_password_workers, verify_password, password_hash, password)


def validate_user_fields(username: str, role: str, extension: str | None) -> Role:
    if not USERNAME_PATTERN.match(username):
        raise UserError("username: 1 to 64 characters, no spaces, slashes or colons")
    try:
        parsed_role = Role(role)
    except ValueError:
        raise UserError(f"role: one of {', '.join(r.value for r in Role)}") from None
    if extension is not None and not EXTENSION_PATTERN.match(extension):
        raise UserError("extension: 1 to 10 digits")
    if parsed_role is Role.OPERATOR and extension is None:
        raise UserError("extension: an operator needs one (their own phone)")
    return parsed_role


async def create_user(
    session: AsyncSession,
    username: str,
    role: str,
    *,
    extension: str | None = None,
    display_name: str = "",
    password: str | None = None,
) -> User:
    """Add a user (not committed). UserError if a field is wrong or the name is taken."""
    validate_user_fields(username, role, extension)
    if len(display_name) > 200:
        raise UserError("display_name: at most 200 characters")
    user = User(
        username=username,
        role=role,
        extension=extension,
        display_name=display_name or username,
        password_hash=await hash_password_async(password) if password else None,
        is_active=True,
        created_at=utcnow(),
    )
    if await find_user(session, username) is not None:
        raise UsernameTaken(f"username: {username!r} is taken")
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise UsernameTaken(f"username: {username!r} is taken") from None
    return user


async def issue_token(
    session: AsyncSession,
    user: User,
    label: str = "",
    expires_at: datetime | None = None,
    *,
    is_session: bool = False,
    within: ApiToken | None = None,
) -> str:
    """Create a token for ``user`` (not committed) and return it: the only time it is seen.
    ``is_session``: a browser sign-in's. ``within``: asked for with a sign-in's token, it
    expires with that session and ends when it signs out."""
    if within is not None and within.is_session:
        expires_at = within.expires_at if expires_at is None else min(expires_at, within.expires_at)
    token = new_token()
    session.add(
        ApiToken(
            user_id=user.id,
            token_hash=hash_token(token),
            prefix=token[: len(TOKEN_PREFIX) + 4],
            label=label[:100],
            created_at=utcnow(),
            expires_at=expires_at,
            is_session=is_session,
            session_id=within.id if within is not None and within.is_session else None,
        )
    )
    await session.flush()
    return token


async def find_token(session: AsyncSession, token: str) -> ApiToken | None:
    if not token.isascii():
        return None
    return await session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))


async def end_session(session: AsyncSession, token: ApiToken) -> bool:
    """Sign out: the token and every token asked for with it stop working (not committed).
    False when it was not valid any more."""
    was_valid = token.revoked_at is None
    await session.execute(
        update(ApiToken)
        .where(
            or_(ApiToken.id == token.id, ApiToken.session_id == token.id),
            ApiToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    return was_valid


async def end_sessions(session: AsyncSession, user: User, keep: ApiToken | None = None) -> int:
    """Sign the user out of every browser session (and the tokens asked for with them)
    but ``keep``; returns how many sessions ended (not committed)."""
    sessions = await session.scalars(
        select(ApiToken).where(
            ApiToken.user_id == user.id,
            ApiToken.is_session.is_(True),
            ApiToken.revoked_at.is_(None),
        )
    )
    ended = 0
    for token in sessions:
        if keep is None or token.id != keep.id:
            ended += await end_session(session, token)
    return ended


async def valid_token_ids(session: AsyncSession, ids: Iterable[int]) -> set[int]:
    """Which of these tokens still authenticate: not revoked, not expired, user active."""
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    rows = await session.scalars(
        select(ApiToken.id)
        .join(User, User.id == ApiToken.user_id)
        .where(
            ApiToken.id.in_(wanted),
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > utcnow()),
            User.is_active.is_(True),
        )
    )
    return set(rows)


async def extension_owner(
    session: AsyncSession, extension: str | None, *, other_than: int | None = None
) -> User | None:
    """The active user whose phone ``extension`` is (besides user ``other_than``)."""
    if extension is None:
        return None
    query = select(User).where(User.extension == extension, User.is_active.is_(True))
    if other_than is not None:
        query = query.where(User.id != other_than)
    return await session.scalar(query.limit(1))


async def find_user(session: AsyncSession, username: str) -> User | None:
    return await session.scalar(select(User).where(User.username == username))


async def revoke_tokens(session: AsyncSession, user: User) -> int:
    result = await session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return result.rowcount or 0


class TokenAuthenticator:
    """Resolves bearer tokens to principals. No cache: a revoked token stops at once."""

    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    async def authenticate(self, token: str) -> Principal | None:
        found = await self.session_of(token)
        return None if found is None else found[1]

    async def session_of(self, token: str) -> tuple[int, Principal] | None:
        """The id of a valid token and whom it authenticates, for credentials derived
        from it (a recording's media grant ends when its token does)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200 or not token.isascii():
            return None
        return await self._valid(ApiToken.token_hash == hash_token(token))

    async def by_token_id(self, token_id: int) -> Principal | None:
        """Whom the token with this id still authenticates: None once it is revoked or
        expired, or its user disabled."""
        found = await self._valid(ApiToken.id == token_id)
        return None if found is None else found[1]

    async def _valid(self, which: ColumnElement[bool]) -> tuple[int, Principal] | None:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(which)
                )
            ).first()
            if row is None:
                return None
            token_row, user = row
            now = utcnow()
            expired = token_row.expires_at is not None and token_row.expires_at <= now
            if token_row.revoked_at is not None or expired or not user.is_active:
                return None
            # Record use at most once a minute, so authenticating is not a write per request.
            if (
                token_row.last_used_at is None
                or (now - token_row.last_used_at).total_seconds() > 60
            ):
                token_row.last_used_at = now
                await session.commit()
            return token_row.id, principal_of(user)
