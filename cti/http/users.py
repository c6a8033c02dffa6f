"""Users and tokens over the API."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cti import audit, auth
from cti.db.models import User
from cti.domain import Role, known_time_zone
from cti.http.api import Api, json_response, principal, read_body
from cti.http.errors import ApiError
from cti.http.keys import SERVICE_KEY
from cti.http.ws import bearer_token
from cti.wakes import TOKENS


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    role: Role
    extension: str | None
    is_active: bool
    time_zone: str | None = Field(description="IANA; None: the office's ([server] time_zone)")
    email: str | None = Field(None, description="Where notices go (a fax sent or failed)")
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls.model_validate(user, from_attributes=True)


class UserList(BaseModel):
    users: list[UserOut]


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    role: Role
    extension: str | None = Field(None, pattern=r"^[0-9]{1,10}$")
    display_name: str = Field("", max_length=200)
    password: str | None = Field(None, min_length=8, max_length=200)
    email: str | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    share_extension: bool = Field(
        False, description="Allow an extension another active user has (a shared phone)"
    )


class UserUpdate(BaseModel):
    """Only the fields sent change; ``extension`` or ``time_zone`` null clears them."""

    display_name: str | None = Field(None, min_length=1, max_length=200)
    role: Role | None = None
    extension: str | None = Field(None, pattern=r"^[0-9]{1,10}$")
    share_extension: bool = Field(False, description="Allow an extension another user has")
    is_active: bool | None = Field(None, description="False: the user cannot sign in")
    time_zone: str | None = Field(None, max_length=64, description="IANA, e.g. Europe/Moscow")
    email: str | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class OwnSettings(BaseModel):
    display_name: str | None = Field(None, min_length=1, max_length=200)
    email: str | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    time_zone: str | None = Field(
        None, max_length=64, description="IANA, e.g. Asia/Tbilisi; null: the office's"
    )


class PasswordChange(BaseModel):
    password: str = Field(min_length=8, max_length=200)
    current_password: str | None = Field(
        None, max_length=200, description="Needed to change one's own password"
    )


class PasswordChanged(BaseModel):
    sessions_ended: int = Field(description="The user's browser sessions that were signed out")


class NewToken(BaseModel):
    username: str
    token: str = Field(description="Shown this once; only its hash is stored")


class UserCreated(BaseModel):
    user: UserOut
    token: str = Field(description="Shown this once; only its hash is stored")


class Revoked(BaseModel):
    revoked: int


def add_routes(api: Api) -> None:
    @api.operation(
        "GET", "/api/me", summary="The user behind this token", tag="users", response=UserOut
    )
    async def me(request: web.Request) -> web.Response:
        async with request.app[SERVICE_KEY].sessions() as session:
            user = await session.get(User, principal(request).user_id)
            return json_response(UserOut.of(user))

    @api.operation(
        "PATCH",
        "/api/me",
        summary="Your own name and time zone (the pages show times in it)",
        tag="users",
        body=OwnSettings,
        response=UserOut,
    )
    async def update_me(request: web.Request) -> web.Response:
        body = await read_body(request, OwnSettings)
        async with request.app[SERVICE_KEY].sessions() as session:
            user = await session.get_one(User, principal(request).user_id)
            _apply(user, body, ("display_name", "time_zone", "email"))
            await session.commit()
            return json_response(UserOut.of(user))

    @api.operation(
        "PATCH",
        "/api/users/{username}",
        summary="Change a user: name, role, extension, time zone, or disable them (a "
        "disabled user's tokens stop working and their live connections close)",
        tag="users",
        roles=(Role.ADMIN,),
        body=UserUpdate,
        response=UserOut,
        errors=(404, 409),
    )
    async def update_user(request: web.Request) -> web.Response:
        body = await read_body(request, UserUpdate)
        service = request.app[SERVICE_KEY]
        async with service.sessions() as session:
            user = await _named(request, session)
            before = {"role": user.role, "extension": user.extension, "is_active": user.is_active}
            changing = body.model_fields_set
            if "extension" in changing and body.extension != user.extension:
                owner = await auth.extension_owner(session, body.extension, other_than=user.id)
                if owner is not None and not body.share_extension:
                    raise ApiError(
                        409,
                        f"extension: {body.extension} is already {owner.username}'s phone",
                        reason="extension_taken",
                    )
            _apply(
                user,
                body,
                ("display_name", "role", "extension", "is_active", "time_zone", "email"),
            )
            try:
                auth.validate_user_fields(user.username, str(user.role), user.extension)
            except auth.UserError as e:
                raise ApiError(422, str(e)) from None
            if before["role"] == Role.ADMIN and not (user.is_active and user.role == Role.ADMIN):
                await _keep_an_admin(session, user)
            after = {"role": user.role, "extension": user.extension, "is_active": user.is_active}
            changed = {k: {"from": before[k], "to": v} for k, v in after.items() if v != before[k]}
            if changed:
                audit.record(
                    session,
                    principal(request),
                    "user.update",
                    f"user:{user.id}",
                    {"username": user.username, **changed},
                    request.remote,
                )
            await session.commit()
        service.wakes(TOKENS)  # a disabled user's live connections close
        return json_response(UserOut.of(user))

    @api.operation(
        "PUT",
        "/api/users/{username}/password",
        summary="Set a user's web password (admins for anyone; users their own, with the "
        "current one); the user's browser sessions end (this one stays)",
        tag="users",
        body=PasswordChange,
        response=PasswordChanged,
        errors=(403, 404),
    )
    async def set_password(request: web.Request) -> web.Response:
        body = await read_body(request, PasswordChange)
        who = principal(request)
        service = request.app[SERVICE_KEY]
        asked_with = bearer_token(request.headers.get("Authorization")) or ""
        async with service.sessions() as session:
            user = await _own_or_admin(request, session)
            if user.id == who.user_id and not (
                body.current_password
                and await auth.verify_password_async(user.password_hash, body.current_password)
            ):
                raise ApiError(403, "give your current password to change it")
            user.password_hash = await auth.hash_password_async(body.password)
            current = await auth.find_token(session, asked_with)
            ended = await auth.end_sessions(session, user, keep=current)
            audit.record(
                session,
                who,
                "user.password",
                f"user:{user.id}",
                {"username": user.username},
                request.remote,
            )
            await session.commit()
        service.wakes(TOKENS)
        return json_response(PasswordChanged(sessions_ended=ended))

    @api.operation(
        "GET",
        "/api/users",
        summary="All users",
        tag="users",
        roles=(Role.SUPERVISOR,),
        response=UserList,
    )
    async def list_users(request: web.Request) -> web.Response:
        async with request.app[SERVICE_KEY].sessions() as session:
            users = (await session.scalars(select(User).order_by(User.username))).all()
            return json_response(UserList(users=[UserOut.of(u) for u in users]))

    @api.operation(
        "POST",
        "/api/users",
        summary="Add a user; returns its first API token",
        tag="users",
        roles=(Role.ADMIN,),
        body=UserCreate,
        response=UserCreated,
        status=201,
        errors=(409,),
    )
    async def create_user(request: web.Request) -> web.Response:
        body = await read_body(request, UserCreate)
        async with request.app[SERVICE_KEY].sessions() as session:
            owner = await auth.extension_owner(session, body.extension)
            if owner is not None and not body.share_extension:
                raise ApiError(
                    409,
                    f"extension: {body.extension} is already {owner.username}'s phone",
                    reason="extension_taken",
                )
            try:
                user = await auth.create_user(
                    session,
                    body.username,
                    body.role.value,
                    extension=body.extension,
                    display_name=body.display_name,
                    password=body.password,
                )
            except auth.UserError as e:
                status = 409 if isinstance(e, auth.UsernameTaken) else 422
                raise ApiError(status, str(e)) from None
            user.email = body.email
            token = await auth.issue_token(session, user, label="created with the user")
            await session.commit()
            return json_response(UserCreated(user=UserOut.of(user), token=token), status=201)

    @api.operation(
        "POST",
        "/api/users/{username}/tokens",
        summary="Issue a new API token (admins for anyone, users for themselves). Asked "
        "for with a browser session's token, it expires with that session and ends when "
        "it signs out; a token that lasts until revoked comes from `cti user token` or "
        "from another such token",
        tag="users",
        response=NewToken,
        status=201,
        errors=(404,),
    )
    async def new_token(request: web.Request) -> web.Response:
        asked_with = bearer_token(request.headers.get("Authorization")) or ""
        async with request.app[SERVICE_KEY].sessions() as session:
            user = await _own_or_admin(request, session)
            token = await auth.issue_token(
                session,
                user,
                label="issued over the API",
                within=await auth.find_token(session, asked_with),
            )
            await session.commit()
            return json_response(NewToken(username=user.username, token=token), status=201)

    @api.operation(
        "DELETE",
        "/api/users/{username}/tokens",
        summary="Revoke every API token of a user (admins, or users themselves)",
        tag="users",
        response=Revoked,
        errors=(404,),
    )
    async def revoke(request: web.Request) -> web.Response:
        async with request.app[SERVICE_KEY].sessions() as session:
            user = await _own_or_admin(request, session)
            count = await auth.revoke_tokens(session, user)
            await session.commit()
        request.app[SERVICE_KEY].wakes(TOKENS)
        return json_response(Revoked(revoked=count))


def _apply(user: User, body: BaseModel, fields: tuple[str, ...]) -> None:
    """Copy the fields the body sent (and only those) onto the user."""
    for name in fields:
        if name in body.model_fields_set:
            value = getattr(body, name)
            if name == "time_zone" and value is not None and not known_time_zone(value):
                raise ApiError(422, f"time_zone: {value!r} is not an IANA time zone")
            if name == "role" and value is None:
                raise ApiError(422, "role: give one")
            setattr(user, name, value.value if isinstance(value, Role) else value)


async def _keep_an_admin(session: AsyncSession, leaving: User) -> None:
    """Refuse to leave the service without an active admin."""
    others = await session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role == Role.ADMIN.value, User.is_active.is_(True), User.id != leaving.id)
    )
    if not others:
        raise ApiError(409, "this is the last active admin: make another admin first")


async def _named(request: web.Request, session: AsyncSession) -> User:
    username = request.match_info["username"]
    user = await auth.find_user(session, username)
    if user is None:
        raise ApiError(404, f"no user {username!r}")
    return user


async def _own_or_admin(request: web.Request, session: AsyncSession) -> User:
    who = principal(request)
    if request.match_info["username"] != who.username and not who.has_role(Role.ADMIN):
        raise ApiError(403, "only an admin may manage another user")
    return await _named(request, session)
