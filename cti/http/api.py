"""Declaring API operations once: the route, its role check, its body model and its
OpenAPI description all come from the same ``@api.operation(...)`` line."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from cti import __version__
from cti.auth import Principal
from cti.domain import Role
from cti.http.errors import STATUS_CODES, ApiError
from cti.text import json_problem, text_problem, utf8

PRINCIPAL_KEY: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
MAX_JSON_BODY = 1 << 20
MAX_ID = 2**31 - 1  # the database's integer keys (PostgreSQL's integer)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class CookieAuth:
    """A credential a route takes instead of the bearer token: a cookie the route's own
    ``authenticate`` checks (the principal, or an ApiError). Only for GETs a browser
    makes itself, where no header can be set (an <audio src>)."""

    name: str
    description: str
    authenticate: Callable[[web.Request, str], Awaitable[Principal]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    roles: tuple[Role, ...]
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    tag: str
    errors: tuple[int, ...] = field(default=())
    public: bool = False  # needs no token (signing in)
    cookie: CookieAuth | None = None  # also taken instead of the token


def json_dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL_KEY]


async def read_body(request: web.Request, model: type[Model]) -> Model:
    """Parse and validate a JSON body; 400 for broken JSON, 422 naming each bad field
    (text that is not valid Unicode or holds NUL, numbers out of range, deep nesting
    included: ``cti.text.json_problem``)."""
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise ApiError(413, "request body too large")
    raw = await request.read()
    try:
        data = json.loads(raw.decode("utf-8") if raw else "null", parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, f"body is not valid UTF-8 JSON: {e}") from None
    except RecursionError:
        raise ApiError(400, "body is not valid JSON: nested too deeply") from None
    except ValueError as e:  # a number with thousands of digits, NaN or Infinity
        raise ApiError(400, f"body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object")
    problem = json_problem(data)
    if problem is not None:
        where, what = problem
        raise ApiError(422, f"{where}: {what}", details=[{"field": where, "problem": what}])
    return _validate(model, data)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def read_query(request: web.Request, model: type[Model]) -> Model:
    """Validate query parameters; 422 naming each bad one."""
    return _validate(model, dict(request.query))


def input_problem(request: web.Request) -> str | None:
    """Text in the request line or headers that the service refuses (``text_problem``):
    where it is and why, or None. The path's parameters and the query come decoded; a
    header with bytes that are not UTF-8 comes with lone surrogates in their place."""
    places = [
        *((f"path parameter {k}", v) for k, v in request.match_info.items()),
        *((f"query parameter {k}", k + v) for k, v in request.query.items()),  # both checked
        *((f"header {k}", v) for k, v in request.headers.items()),
    ]
    for where, text in places:
        problem = text_problem(text)
        if problem is not None:
            return f"{where} {problem}"
    return None


def path_id(request: web.Request, name: str, what: str) -> int:
    """A numeric id from the path; 404 for anything that cannot be one of ours."""
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10 and 1 <= int(raw) <= MAX_ID):
        raise ApiError(404, f"no {what} {raw!r}")
    return int(raw)


def _validate(model: type[Model], data: dict[str, Any]) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        details = [
            {"field": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]}
            for err in e.errors()
        ]
        first = details[0]
        raise ApiError(422, f"{first['field']}: {first['problem']}", details=details) from None


def json_response(data: Any, status: int = 200) -> web.Response:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    # utf8: a string stored before the edge refused bad text still answers (as U+FFFD).
    return web.Response(body=utf8(json_dumps(data)), status=status, content_type="application/json")


class Api:
    """The set of operations under /api, and the OpenAPI document describing them."""

    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def operation(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        roles: tuple[Role, ...] = (),
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
        public: bool = False,
        cookie: CookieAuth | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register a handler; ``roles`` empty means any authenticated user; ``public``
        means no token at all; ``cookie`` is a credential taken when no token is sent."""

        def register(handler: Handler) -> Handler:
            async def checked(request: web.Request) -> web.StreamResponse:
                if roles and not principal(request).has_role(*roles):
                    needed = " or ".join(r.value for r in roles)
                    raise ApiError(403, f"this needs the role {needed}")
                return await handler(request)

            self.operations.append(
                Operation(
                    method,
                    path,
                    checked,
                    summary,
                    roles,
                    body,
                    query,
                    response,
                    status,
                    tag,
                    errors,
                    public,
                    cookie,
                )
            )
            return handler

        return register

    def add_routes(self, app: web.Application) -> None:
        for op in self.operations:
            app.router.add_route(op.method, op.path, op.handler)

    def is_public(self, method: str, path: str) -> bool:
        return any(op.public and op.method == method and op.path == path for op in self.operations)

    def cookie_auth(self, method: str, route: str) -> CookieAuth | None:
        """The cookie the operation at ``route`` (its pattern) takes instead of a token."""
        for op in self.operations:
            if op.cookie is not None and op.method == method and op.path == route:
                return op.cookie
        return None

    def openapi(self) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA}
        security_schemes: dict[str, Any] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for op in self.operations:
            entry: dict[str, Any] = {
                "summary": op.summary,
                "tags": [op.tag],
                "security": [] if op.public else [{"bearer": []}],
                "responses": {},
            }
            if op.cookie is not None:
                entry["security"].append({op.cookie.name: []})
                security_schemes[op.cookie.name] = {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": op.cookie.name,
                    "description": op.cookie.description,
                }
            if op.roles:
                allowed = sorted({Role.ADMIN, *op.roles})
                entry["description"] = "Roles: " + ", ".join(allowed)
            params = [p[1:-1] for p in op.path.split("/") if p.startswith("{")]
            parameters = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
            if op.query is not None:
                query_schema = _schema(op.query, schemas)
                required = set(query_schema.get("required", []))
                for name, prop in query_schema.get("properties", {}).items():
                    parameter = {
                        "name": name,
                        "in": "query",
                        "required": name in required,
                        "schema": prop,
                    }
                    if "description" in prop:
                        parameter["description"] = prop["description"]
                    parameters.append(parameter)
            if parameters:
                entry["parameters"] = parameters
            if op.body is not None:
                schemas[op.body.__name__] = _schema(op.body, schemas)
                entry["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(op.body)}},
                }
            ok: dict[str, Any] = {"description": "OK"}
            if op.response is not None:
                schemas[op.response.__name__] = _schema(op.response, schemas)
                ok["content"] = {"application/json": {"schema": _ref(op.response)}}
            entry["responses"][str(op.status)] = ok
            codes = {*op.errors} if op.public else {401, *op.errors}
            if op.roles:
                codes.add(403)
            if op.body is not None:
                codes.update({400, 422})
            if op.query is not None:
                codes.add(422)
            for code in sorted(codes):
                entry["responses"][str(code)] = {
                    "description": STATUS_CODES.get(code, "error"),
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
            paths.setdefault(op.path, {})[op.method.lower()] = entry
        return {
            "openapi": "3.1.0",
            "info": {"title": "CTI middleware API", "version": __version__},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": security_schemes,
            },
        }


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    return schema


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "code", "message"],
            "properties": {
                "status": {"type": "integer"},
                "code": {"type": "string"},
                "message": {"type": "string"},
                "reason": {
                    "type": "string",
                    "description": "Where there is one: a stable name of the exact failure "
                    "(not_a_phone_number, pbx_down, ...), for pages to translate",
                },
                "details": {},
            },
        }
    },
}
