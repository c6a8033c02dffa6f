"""The standard OData v3 interface of a 1C:Enterprise 8.3 base, as an asyncio client.

``{base}/odata/standard.odata/<EntitySet>?$format=json&$filter=...&$select=...``, HTTP
Basic as a 1C user (UTF-8: 1C user names are often Cyrillic); a list answers
``{"value": [...]}``, one object (``<EntitySet>(guid'...')``) answers the object, an
error ``{"odata.error": {"code": ..., "message": {"lang": ..., "value": "..."}}}``. 1C
does not page by itself: long lists are read with ``$orderby``, ``$top`` and ``$skip``.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from crm_bridge.http_client import LazySession, read_limited

log = logging.getLogger("crm_bridge.onec")

EMPTY_REF = "00000000-0000-0000-0000-000000000000"
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # a page of 1,000 rows is far below this
MAX_MESSAGE_CHARS = 300


def ref_of(value: Any) -> str | None:
    """A reference's GUID in canonical form; None for the empty reference or non-GUIDs."""
    try:
        text = str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        return None
    return None if text == EMPTY_REF else text


def guid_literal(ref: str) -> str:
    return f"guid'{uuid.UUID(ref)}'"  # raises ValueError for anything else: no injection


def string_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class OneCError(Exception):
    """1C refused a request, or could not be asked. Carries 1C's message, never the
    password (it travels in a header only)."""

    def __init__(self, what: str, status: int | None, message: str = "") -> None:
        self.what = what
        self.status = status
        self.message = message[:MAX_MESSAGE_CHARS]
        where = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"{what}: {where}" + (f": {self.message}" if self.message else ""))

    @property
    def retryable(self) -> bool:
        """Worth retrying later: no answer, the server's trouble (1C answers 500 for a
        locked record as for a broken one), a proxy's 502-504; not a refusal of the
        request, the user's rights or its password (4xx)."""
        return self.status is None or self.status >= 500 or self.status == 429


def _one_c_message(body: bytes) -> str:
    try:
        answer = json.loads(body)
        message = answer["odata.error"]["message"]
        return str(message.get("value") if isinstance(message, dict) else message)
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace").strip()
        return " ".join(text.split())  # e.g. a web server's HTML error page, on one line


class ODataClient:
    """One base's OData interface; one shared session; ``close()`` ends it."""

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        timeout_seconds: float = 10.0,
        page_size: int = 1000,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("onec_url must look like https://host/base/odata/standard.odata/")
        if "standard.odata" not in parts.path:
            raise ValueError("onec_url must end in /odata/standard.odata/")
        self.url = url.rstrip("/") + "/"
        self.page_size = page_size
        credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {credentials}"}  # UTF-8, as 1C reads it
        self._http = LazySession(timeout_seconds)

    def __repr__(self) -> str:
        return f"ODataClient(url={self.url!r})"

    async def close(self) -> None:
        await self._http.close()

    def _url(self, path: str, query: Mapping[str, str | int | None]) -> URL:
        pairs = [("$format", "json"), *((k, v) for k, v in query.items() if v is not None)]
        text = "&".join(f"{k}={quote(str(v), safe=chr(39) + '(),')}" for k, v in pairs)
        return URL(f"{self.url}{quote(path, safe=chr(39) + '()_')}?{text}", encoded=True)

    async def _request(
        self, method: str, path: str, query: Mapping[str, Any], body: Any = None
    ) -> tuple[int, bytes]:
        what = f"{method} {path.split('(')[0]}"
        try:
            async with self._http.session().request(
                method,
                self._url(path, query),
                headers=self._headers,
                json=body,
                allow_redirects=False,
            ) as response:
                status = response.status
                answer = await read_limited(response, MAX_ANSWER_BYTES)
        except aiohttp.ClientError as exc:
            raise OneCError(what, None, type(exc).__name__) from None
        if answer is None:
            raise OneCError(what, status, "answer too long")
        if not 200 <= status < 300:
            error = OneCError(what, status, _one_c_message(answer))
            if status != 404:
                log.info(
                    "1C refused a request", extra={"fields": {"request": what, "status": status}}
                )
            raise error
        return status, answer

    async def _json(
        self, method: str, path: str, query: Mapping[str, Any], body: Any = None
    ) -> Any:
        _, answer = await self._request(method, path, query, body)
        try:
            return json.loads(answer) if answer.strip() else None
        except ValueError:
            raise OneCError(f"{method} {path.split('(')[0]}", 200, "not JSON") from None

    async def metadata(self) -> bytes:
        try:
            async with self._http.session().get(
                URL(f"{self.url}$metadata", encoded=True),
                headers=self._headers,
                allow_redirects=False,
            ) as response:
                status = response.status
                answer = await read_limited(response, MAX_ANSWER_BYTES)
        except aiohttp.ClientError as exc:
            raise OneCError("GET $metadata", None, type(exc).__name__) from None
        if answer is None or not 200 <= status < 300:
            raise OneCError("GET $metadata", status, _one_c_message(answer or b""))
        return answer

    async def entity(
        self, entity_set: str, ref: str, select: Iterable[str] = (), expand: str | None = None
    ) -> dict[str, Any] | None:
        """One object by its reference; None when there is none."""
        query = {"$select": ",".join(select) or None, "$expand": expand}
        try:
            found = await self._json("GET", f"{entity_set}({guid_literal(ref)})", query)
        except OneCError as exc:
            if exc.status == 404:
                return None
            raise
        return found if isinstance(found, dict) else None

    async def rows(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        select: Iterable[str] = (),
        orderby: str | None = None,
        top: int | None = None,
        skip: int | None = None,
    ) -> list[dict[str, Any]]:
        query = {
            "$filter": filter,
            "$select": ",".join(select) or None,
            "$orderby": orderby,
            "$top": top,
            "$skip": skip or None,
        }
        answer = await self._json("GET", entity_set, query)
        value = answer.get("value") if isinstance(answer, dict) else None
        if not isinstance(value, list):
            raise OneCError(f"GET {entity_set}", 200, "no value list in the answer")
        return [row for row in value if isinstance(row, dict)]

    async def pages(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        select: Iterable[str] = (),
        orderby: str = "Ref_Key",
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every row, a page at a time (``$top``/``$skip`` in a stable order)."""
        skip = 0
        while True:
            page = await self.rows(
                entity_set,
                filter=filter,
                select=select,
                orderby=orderby,
                top=self.page_size,
                skip=skip,
            )
            if page:
                yield page
            if len(page) < self.page_size:
                return
            skip += len(page)

    async def create(self, entity_set: str, body: Mapping[str, Any]) -> dict[str, Any]:
        created = await self._json("POST", entity_set, {}, dict(body))
        return created if isinstance(created, dict) else {}
