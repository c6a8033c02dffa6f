"""The HTTP server's own refusals in the API's JSON error shape.

aiohttp answers a request it cannot even parse (a raw non-ASCII character in the URL, a
header line too long) itself, in plain text, before any middleware runs. ``AppRunner``
here makes those answers the usual ``{"error": {...}}`` too. It reaches into aiohttp's
server at one documented-by-code point (``Server.__call__`` builds each connection's
``RequestHandler``); tests/test_http.py sends such a request to keep it honest.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from cti.http.errors import ApiError, error_response


class _JsonErrors(RequestHandler):
    __slots__ = ()  # as aiohttp's: no dict for each connection

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        self.logger.debug("refused a request from %s: %s", request.remote, message)
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "bad request"
        text = f"{reason}: {message}" if message else reason
        if "url" in text.lower():  # a raw UTF-8 character in a query, as curl sends it
            text += " (percent-encode it: curl -G --data-urlencode 'q=...')"
        response = error_response(ApiError(status, text))
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrors(self, loop=self._loop, **self._kwargs)


class AppRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the same server, making JSON-speaking handlers
        return server
