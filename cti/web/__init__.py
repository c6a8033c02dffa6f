"""The operator desktop: a static page (no build step) served by the service itself.

``/`` is the page and ``/static/<file>`` its scripts and styles, straight from this
package's directory. They need no token: everything behind them (``/api``, ``/ws``) does.
Every answer carries a strict Content-Security-Policy (scripts and styles only from this
origin, nothing inline, no frames; recordings stream from ``/api/recordings/{id}``
with a media grant) and ``Cache-Control: no-cache``, so a browser always
revalidates and picks up a new version at once (ETag/Last-Modified make that a 304).
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

ASSETS = Path(__file__).resolve().parent

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        # Recordings stream from /api/recordings/{id} (with a media grant, a cookie).
        "media-src 'self'",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

# One plain file name: no directories, no dot files, nothing to climb out with.
_ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(?:js|css|svg)$")


def _asset(name: str) -> web.FileResponse:
    path = ASSETS / name
    if not path.is_file():
        raise web.HTTPNotFound(text=f"no such file: {name}")
    headers = {**HEADERS, "Content-Type": CONTENT_TYPES[path.suffix]}
    return web.FileResponse(path, headers=headers)


async def index(request: web.Request) -> web.FileResponse:
    return _asset("index.html")


async def static(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if not _ASSET_NAME.match(name):
        raise web.HTTPNotFound(text=f"no such file: {name}")
    return _asset(name)


def add_routes(app: web.Application) -> None:
    """Serve the page at ``/`` and its assets at ``/static/<file>`` (GET and HEAD)."""
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
