"""Users and tokens over the API."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cti import auth
from cti.db.models import User
from cti.domain import Role
from cti.http.api import Api, json_response, principal, read_body
from cti.http.errors import ApiError
from cti.http.keys import SERVICE_KEY
from cti.http.ws import bearer_token


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    role: Role
    extension: str | None
    is_active: bool
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
    share_extension: bool = Field(
        False, description="Allow an extension another active user has (a shared phone)"
    )


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
                    code="extension_taken",
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
        request.app[SERVICE_KEY].sockets.recheck_soon()
        return json_response(Revoked(revoked=count))


async def _own_or_admin(request: web.Request, session: AsyncSession) -> User:
    who = principal(request)
    username = request.match_info["username"]
    if username != who.username and not who.has_role(Role.ADMIN):
        raise ApiError(403, "only an admin may manage another user's tokens")
    user = await auth.find_user(session, username)
    if user is None:
        raise ApiError(404, f"no user {username!r}")
    return user
