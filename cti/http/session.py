"""Browser sign-in: a user name and password for a session token that expires.

Guessing is throttled the way well-known services do it: every attempt counts before its
password is checked (so parallel guesses cannot slip past the limit), and sign-in is
refused for a while (429) after too many failures

- for one user from one address (MAX_FAILURES in FAILURE_WINDOW): the guesser waits,
  while the user, signing in from anywhere else, does not;
- for one user from anywhere (USER_MAX_FAILURES in USER_WINDOW): a slow guess spread over
  many addresses stops too, at a limit far beyond what a person mistypes;
- from one address for anyone (ADDRESS_MAX_FAILURES in FAILURE_WINDOW): one machine
  trying a password on every user.

Argon2 runs off the event loop, and at most SIGN_IN_SLOTS sign-ins are checked at once
with SIGN_IN_QUEUE more waiting; beyond that the answer is 503 at once, so a burst of
sign-ins never piles up on the database or the CPU.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field

from cti import auth
from cti.domain import utcnow
from cti.http.api import Api, json_response, read_body
from cti.http.errors import ApiError
from cti.http.keys import SERVICE_KEY
from cti.http.ws import bearer_token
from cti.wakes import TOKENS

MAX_FAILURES = 5  # one user from one address
FAILURE_WINDOW = 300.0  # seconds
USER_MAX_FAILURES = 50  # one user from any address
USER_WINDOW = 3600.0
ADDRESS_MAX_FAILURES = 30  # one address, any user
MAX_KEYS = 100_000  # attempts remembered for this many keys at most; the oldest go first
SIGN_IN_SLOTS = 4  # passwords checked at once
SIGN_IN_QUEUE = 32  # sign-ins waiting for a slot; more get 503
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
    """Recent attempts by key, each key with its limit and window."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._attempts: dict[str, deque[float]] = {}

    @staticmethod
    def keys(username: str, address: str | None) -> dict[str, tuple[int, float]]:
        """The keys a sign-in counts against, with (limit, window)."""
        user = username.casefold()
        return {
            f"user+addr:{user}|{address}": (MAX_FAILURES, FAILURE_WINDOW),
            f"user:{user}": (USER_MAX_FAILURES, USER_WINDOW),
            f"addr:{address}": (ADDRESS_MAX_FAILURES, FAILURE_WINDOW),
        }

    def begin(self, keys: dict[str, tuple[int, float]]) -> int:
        """Count an attempt against every key, unless one is over its limit: then nothing
        is counted and the answer is the seconds to wait (0: go ahead). No await inside:
        two attempts can never both see the last free place."""
        now, wait = self.clock(), 0.0
        for key, (limit, window) in keys.items():
            attempts = self._attempts.get(key)
            if attempts is None:
                continue
            while attempts and attempts[0] <= now - window:
                attempts.popleft()
            if len(attempts) >= limit:
                wait = max(wait, attempts[0] + window - now)
        if wait:
            return int(wait) + 1
        for key in keys:
            attempts = self._attempts.pop(key, None) or deque()
            attempts.append(now)
            self._attempts[key] = attempts  # last: the most recently used keys stay
        while len(self._attempts) > MAX_KEYS:
            del self._attempts[next(iter(self._attempts))]
        return 0

    def succeeded(self, keys: dict[str, tuple[int, float]]) -> None:
        """The password was right: this user's own failures from here are forgiven, and
        the attempt no longer counts against the user or the address."""
        first, *others = keys
        self._attempts.pop(first, None)
        for key in others:
            attempts = self._attempts.get(key)
            if attempts:
                attempts.pop()


def add_routes(api: Api) -> None:
    throttle = LoginThrottle()
    slots = asyncio.Semaphore(SIGN_IN_SLOTS)
    waiting = 0

    @api.operation(
        "POST",
        "/api/session",
        summary="Sign in with a user name and password; returns a session token",
        tag="users",
        body=Login,
        response=SessionOut,
        status=201,
        errors=(401, 429, 503),
        public=True,
    )
    async def login(request: web.Request) -> web.Response:
        nonlocal waiting
        body = await read_body(request, Login)
        keys = throttle.keys(body.username, request.remote)
        if waiting >= SIGN_IN_SLOTS + SIGN_IN_QUEUE:
            raise ApiError(
                503, "too many sign-ins at once; try again", headers={"Retry-After": "1"}
            )
        wait = throttle.begin(keys)
        if wait:
            raise ApiError(
                429, "too many failed sign-ins; try again later", headers={"Retry-After": str(wait)}
            )
        waiting += 1
        try:
            async with slots:
                return await _sign_in(request, body, keys)
        finally:
            waiting -= 1

    async def _sign_in(
        request: web.Request, body: Login, keys: dict[str, tuple[int, float]]
    ) -> web.Response:
        service = request.app[SERVICE_KEY]
        async with service.sessions() as session:  # not held while the password is checked
            user = await auth.find_user(session, body.username)
        known = user.password_hash if user is not None else None
        valid = await auth.verify_password_async(known or _DUMMY_HASH, body.password)
        if user is None or known is None or not user.is_active or not valid:
            raise ApiError(401, "wrong user name or password")
        throttle.succeeded(keys)
        expires = utcnow() + timedelta(hours=service.config.server.session_hours)
        async with service.sessions() as session:
            token = await auth.issue_token(
                session, user, "web session", expires_at=expires, is_session=True
            )
            await session.commit()
        who = auth.principal_of(user)
        return json_response(
            SessionOut(token=token, expires_at=expires, user=who.to_dict()), status=201
        )

    @api.operation(
        "DELETE",
        "/api/session",
        summary="Sign out: this token, and any token asked for with it, stop working; "
        "live connections that use them close",
        tag="users",
        response=LoggedOut,
    )
    async def logout(request: web.Request) -> web.Response:
        token = bearer_token(request.headers.get("Authorization")) or ""
        service = request.app[SERVICE_KEY]
        async with service.sessions() as session:
            row = await auth.find_token(session, token)
            ended = row is not None and await auth.end_session(session, row)
            await session.commit()
        service.wakes(TOKENS)
        return json_response(LoggedOut(ended=ended))
