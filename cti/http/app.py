"""The aiohttp application: middlewares (errors, metrics, auth) and routes."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Counter, Histogram

import cti.web
from cti.http import (
    audit,
    calls,
    clients,
    faxes,
    lookup,
    recordings,
    reports,
    session,
    sms,
    system,
    users,
    webhooks,
)
from cti.http.api import PRINCIPAL_KEY, Api, input_problem
from cti.http.errors import ApiError, error_response
from cti.http.keys import API_KEY, SERVICE_KEY
from cti.http.proxy import proxy_middleware
from cti.http.ws import bearer_token, websocket
from cti.service import Service

log = logging.getLogger("cti.http")


def build_app(service: Service) -> web.Application:
    api = Api()
    app = web.Application(
        middlewares=[
            proxy_middleware(service.config.server.trusted_proxies),
            _metrics_middleware(service),
            _error_middleware,
            _input_middleware,
            _auth_middleware,
        ],
        client_max_size=1 << 20,
    )
    app[SERVICE_KEY] = service
    app[API_KEY] = api
    system.add_routes(app, api)
    users.add_routes(api)
    session.add_routes(api)
    calls.add_routes(api)
    app[lookup.DIRECTORY_KEY] = service.directory
    lookup.add_routes(api)
    clients.add_routes(api)
    sms.add_routes(api)
    recordings.add_routes(api)
    faxes.add_routes(api)
    reports.add_routes(api)
    audit.add_routes(api)
    api.add_routes(app)
    app.router.add_get("/ws", websocket)
    webhooks.add_routes(app)  # cloud PBXs' events: signed by the provider, not a token
    cti.web.add_routes(app)  # the operator desktop: /, /static/*

    async def close_live_connections(app: web.Application) -> None:
        # Before the server waits for handlers to finish: a /ws never does by itself.
        await service.sockets.close_all()

    app.on_shutdown.append(close_live_connections)
    return app


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as the same JSON error shape; internals are logged, not shown."""
    try:
        response = await handler(request)
    except ApiError as e:
        return error_response(e)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        headers = {k: v for k, v in e.headers.items() if k.lower() != "content-type"}
        message = e.reason if e.text is None or e.text.startswith(f"{e.status}:") else e.text
        return error_response(ApiError(e.status, message, headers=headers))
    except Exception:
        log.exception("unhandled error", extra={"fields": {"path": request.path}})
        return error_response(ApiError(500, "internal error; see the service log"))
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


@web.middleware
async def _input_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Text that is not valid Unicode, or holds NUL, is refused before anything reads it:
    stored, it would break every answer and live frame that carries it."""
    problem = input_problem(request)
    if problem is not None:
        raise ApiError(422, problem)
    return await handler(request)


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every /api route needs a valid bearer token (/ws authenticates in its handler),
    or, on the few routes that take one, their cookie instead (a recording's media grant)."""
    api = request.app[API_KEY]
    public = api.is_public(request.method, request.path)
    if (request.path.startswith("/api/") or request.path == "/api") and not public:
        token = bearer_token(request.headers.get("Authorization"))
        challenge = {"WWW-Authenticate": "Bearer"}
        if token is None:
            route = request.match_info.route.resource
            cookie = api.cookie_auth(request.method, route.canonical) if route else None
            value = request.cookies.get(cookie.name) if cookie else None
            if cookie is not None and value:
                request[PRINCIPAL_KEY] = await cookie.authenticate(request, value)
                return await handler(request)
            raise ApiError(
                401, "an API token is required: Authorization: Bearer <token>", headers=challenge
            )
        who = await request.app[SERVICE_KEY].authenticator.authenticate(token)
        if who is None:
            raise ApiError(
                401,
                "the API token is not valid (unknown, revoked or its user disabled)",
                headers=challenge,
            )
        request[PRINCIPAL_KEY] = who
    return await handler(request)


def _metrics_middleware(service: Service) -> web.middleware:
    requests = Counter(
        "cti_http_requests",
        "HTTP requests by route and status",
        ["method", "route", "status"],
        registry=service.metrics,
    )
    latency = Histogram(
        "cti_http_request_duration_seconds",
        "HTTP request handling time by route",
        ["method", "route"],
        registry=service.metrics,
    )

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            route = request.match_info.route.resource
            # The route's pattern, not the raw path, keeps label cardinality bounded.
            name = route.canonical if route is not None else "unmatched"
            requests.labels(request.method, name, str(status)).inc()
            latency.labels(request.method, name).observe(time.perf_counter() - started)

    return middleware
