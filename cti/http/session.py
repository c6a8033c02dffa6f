"""Browser sign-in: a user name and password for a session token that expires.

Failed attempts are counted per user name and per address; after too many, sign-in is
refused for a while (429), so passwords cannot be guessed at speed.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from datetime import timedelta

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import update

from cti import auth
from cti.db.models import ApiToken
from cti.domain import utcnow
from cti.http.api import Api, json_response, principal, read_body
from cti.http.errors import ApiError
from cti.http.keys import SERVICE_KEY
from cti.http.ws import bearer_token

MAX_FAILURES = 5
FAILURE_WINDOW = 300.0  # seconds
# Checked when the user does not exist, so that a wrong name takes as long as a wrong password.
_DUMMY_HASH = auth.hash_password("not a real password")


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)


class SessionOut(BaseModel):
    token: str
    expires_at: AwareDatetime
    user: dict[str, object]


class LoggedOut(BaseModel):
    ended: bool


class LoginThrottle:
    """Recent failures by key; a key with MAX_FAILURES in the window must wait."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)

    def retry_after(self, *keys: str) -> int:
        """Seconds until the next attempt is allowed (0: now)."""
        now, wait = self.clock(), 0.0
        for key in keys:
            failures = self._failures.get(key)
            if failures is None:
                continue
            while failures and failures[0] <= now - FAILURE_WINDOW:
                failures.popleft()
            if not failures:
                del self._failures[key]
            elif len(failures) >= MAX_FAILURES:
                wait = max(wait, failures[0] + FAILURE_WINDOW - now)
        return int(wait) + 1 if wait else 0

    def failed(self, *keys: str) -> None:
        for key in keys:
            self._failures[key].append(self.clock())

    def succeeded(self, username: str) -> None:
        self._failures.pop(username, None)


def add_routes(api: Api) -> None:
    throttle = LoginThrottle()

    @api.operation(
        "POST",
        "/api/session",
        summary="Sign in with a user name and password; returns a session token",
        tag="users",
        body=Login,
        response=SessionOut,
        status=201,
        errors=(401, 429),
        public=True,
    )
    async def login(request: web.Request) -> web.Response:
        body = await read_body(request, Login)
        keys = (f"user:{body.username.casefold()}", f"addr:{request.remote}")
        wait = throttle.retry_after(*keys)
        if wait:
            raise ApiError(
                429, "too many failed sign-ins; try again later", headers={"Retry-After": str(wait)}
            )
        service = request.app[SERVICE_KEY]
        async with service.sessions() as session:
            user = await auth.find_user(session, body.username)
            valid = auth.verify_password(user.password_hash if user else _DUMMY_HASH, body.password)
            if user is None or not user.is_active or not valid:
                throttle.failed(*keys)
                raise ApiError(401, "wrong user name or password")
            throttle.succeeded(keys[0])
            expires = utcnow() + timedelta(hours=service.config.server.session_hours)
            token = await auth.issue_token(session, user, "web session", expires_at=expires)
            await session.commit()
            who = auth.principal_of(user)
        return json_response(
            SessionOut(token=token, expires_at=expires, user=who.to_dict()), status=201
        )

    @api.operation(
        "DELETE",
        "/api/session",
        summary="Sign out: this token stops working",
        tag="users",
        response=LoggedOut,
    )
    async def logout(request: web.Request) -> web.Response:
        token = bearer_token(request.headers.get("Authorization")) or ""
        async with request.app[SERVICE_KEY].sessions() as session:
            result = await session.execute(
                update(ApiToken)
                .where(
                    ApiToken.token_hash == auth.hash_token(token),
                    ApiToken.user_id == principal(request).user_id,
                    ApiToken.revoked_at.is_(None),
                )
                .values(revoked_at=utcnow())
            )
            await session.commit()
        return json_response(LoggedOut(ended=bool(result.rowcount)))
