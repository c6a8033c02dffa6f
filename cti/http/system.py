"""Operational endpoints: /healthz and /metrics (no token: for probes and scrapers), and
the OpenAPI document (behind a token, like all of /api)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cti.http.api import Api, json_response
from cti.http.keys import API_KEY, SERVICE_KEY


async def healthz(request: web.Request) -> web.Response:
    """200 while the database reads and writes (``degraded`` if a link is down or a
    background task died), 503 when it does not."""
    service = request.app[SERVICE_KEY]
    database = await service.database_health.check()
    links = [link.to_dict() for link in service.links.all()]
    if not database["up"]:
        status = "down"
    elif all(link["up"] for link in links) and service.tasks.all_alive:
        status = "ok"
    else:
        status = "degraded"
    body: dict[str, object] = {
        "status": status,
        "database": database,
        "links": links,
        "tasks": service.tasks.status(),
    }
    if service.modems:  # no IMEI or IMSI here: /healthz needs no token
        body["modems"] = [
            {
                "name": name,
                "model": " ".join(
                    filter(None, (link.modem.identity.get(k) for k in ("maker", "model")))
                ),
                **link.modem.status,
            }
            for name, link in service.modems.items()
        ]
    stats = getattr(service.directory, "stats", None)
    if stats is not None:  # an external CRM behind its cache and circuit breaker
        body["directory"] = stats()
    return json_response(
        body,
        status=503 if status == "down" else 200,
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[SERVICE_KEY].metrics)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application, api: Api) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)

    @api.operation("GET", "/api/openapi.json", summary="This API, described", tag="system")
    async def openapi(request: web.Request) -> web.Response:
        return json_response(request.app[API_KEY].openapi())
