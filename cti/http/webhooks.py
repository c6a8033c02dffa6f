"""``/pbx/<name>/<path>``: where cloud PBXs post their call events.

The provider sends no token of ours: the adapter named ``<name>`` checks the request's
signature before anything else and answers it; a PBX that takes no webhooks, or no
such PBX, is a 404. Bodies are bounded: a provider's event is a small form.
"""

from __future__ import annotations

from aiohttp import web

from cti.http.errors import ApiError
from cti.http.keys import SERVICE_KEY
from cti.pbx import WebhookRequest

MAX_BODY = 64 * 1024


async def pbx_webhook(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    adapter = request.app[SERVICE_KEY].pbx.get(name)
    receive = getattr(adapter, "webhook", None)
    if receive is None:
        raise ApiError(404, f"no PBX {name!r} takes webhooks")
    if (request.content_length or 0) > MAX_BODY:
        raise ApiError(413, f"a webhook body is at most {MAX_BODY} bytes")
    body = await request.read()  # bounded by the server's client_max_size too
    if len(body) > MAX_BODY:
        raise ApiError(413, f"a webhook body is at most {MAX_BODY} bytes")
    answer = await receive(
        WebhookRequest(
            method=request.method,
            path=request.match_info["path"],
            query=dict(request.query),
            headers=dict(request.headers),
            body=body,
            remote=request.remote or "",
        )
    )
    return web.Response(status=answer.status, text=answer.text, content_type=answer.content_type)


def add_routes(app: web.Application) -> None:
    app.router.add_route("GET", "/pbx/{name}/{path:.*}", pbx_webhook)
    app.router.add_route("POST", "/pbx/{name}/{path:.*}", pbx_webhook)
