"""Operational endpoints: /healthz and /metrics (no token: for probes and scrapers), and
the OpenAPI document (behind a token, like all of /api)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cti.domain import Role
from cti.http.api import Api, json_response
from cti.http.errors import ApiError
from cti.http.keys import API_KEY, SERVICE_KEY


async def healthz(request: web.Request) -> web.Response:
    """200 while the database reads and writes (``degraded`` if a link is down or a
    background task died), 503 when it does not."""
    service = request.app[SERVICE_KEY]
    database = await service.database_health.check()
    cluster = service.cluster
    links = [
        link.to_dict()
        for link in service.links.all()
        # A node of several answers for the links it leads; the others are another's.
        if cluster is None or cluster.leads(f"{link.kind}:{link.name}")
    ]
    if not database["up"] or (cluster is not None and not cluster.messaging.connected):
        status = "down"  # with several nodes, one cut off from NATS serves no live feed
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
    adapters = {
        name: report() for name, adapter in service.pbx.items() if (report := _status(adapter))
    }
    if adapters:  # what some PBXs cannot do (SMDR: finished calls only), and their counts
        body["pbx"] = adapters
    if cluster is not None:  # which links this node leads, and its link to the others
        body["cluster"] = cluster.status()
    stats = getattr(service.directory, "stats", None)
    if stats is not None:  # an external CRM behind its cache and circuit breaker
        body["directory"] = stats()
    return json_response(
        body,
        status=503 if status == "down" else 200,
    )


def _status(adapter: object) -> Callable[[], dict[str, Any]] | None:
    """An adapter's own status for /healthz, when it has one."""
    return getattr(adapter, "status", None)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[SERVICE_KEY].metrics)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application, api: Api) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)

    @api.operation(
        "GET",
        "/api/pbx/{name}/rejected",
        summary="The latest lines of a PBX's call record stream (SMDR) that could not be "
        "read, newest first, each with why and when: kept for the supervisor",
        tag="system",
        roles=(Role.SUPERVISOR,),
        errors=(404,),
    )
    async def rejected_lines(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        adapter = request.app[SERVICE_KEY].pbx.get(name)
        rejected = getattr(adapter, "rejected", None)
        if rejected is None:
            raise ApiError(404, f"no PBX {name!r} that reads call records")
        return json_response({"pbx": name, "rejected": rejected()})

    @api.operation("GET", "/api/openapi.json", summary="This API, described", tag="system")
    async def openapi(request: web.Request) -> web.Response:
        return json_response(request.app[API_KEY].openapi())
