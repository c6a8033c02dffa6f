"""A CRM that answers ``GET <url with the number>`` with JSON: the generic connector.

``[crm] http_url`` names the request (``{number}`` is replaced by the URL-encoded E.164
number), ``http_headers`` its headers (e.g. ``Authorization``; never logged) and
``http_fields`` where each ``Match`` field is in the answer, as dotted paths that may
index lists (``owner.name``, ``contacts.0.name``). A 404, an empty body, ``null``, ``[]``
or an answer without a client name means "unknown"; a list answer is read from its first
element. Anything else (another status, bad JSON, a timeout) raises, and the resilience
layer counts it as a failure. Generic CRMs are looked up by number only: ``search``
answers a phone number and nothing else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import aiohttp

from crm_bridge.http_client import LazySession, read_limited
from cti.directory import Match, ResponsibleManager, search_by_number
from cti.phone import to_e164

if TYPE_CHECKING:
    from cti.config import CrmConfig

log = logging.getLogger("crm_bridge.http_json")

MAX_ANSWER_BYTES = 1024 * 1024

# Where each field is when http_fields does not say: an answer shaped like Match.to_dict().
DEFAULT_FIELDS: dict[str, str] = {
    "client_id": "client_id",
    "client_name": "client_name",
    "kind": "kind",
    "contact_name": "contact_name",
    "manager_name": "manager.name",
    "manager_extension": "manager.extension",
    "manager_phone": "manager.phone",
    "tags": "tags",
    "crm_url": "crm_url",
}


class HttpJsonError(Exception):
    """The CRM answered with an error or nonsense, or could not be reached."""


def resolve_path(document: Any, path: str) -> Any:
    """The value at a dotted path (``owner.name``, ``contacts.0.name``), or None."""
    value = document
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.lstrip("-").isdigit():
            index = int(part)
            value = value[index] if -len(value) <= index < len(value) else None
        else:
            return None
        if value is None:
            return None
    return value


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text or None
    return None


def _tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        return ()
    return tuple(t for t in (_text(v) for v in value) if t)


def _http_url(value: Any) -> str | None:
    text = _text(value)
    # Only web links: the screen pop renders crm_url as a link.
    if text and urlsplit(text).scheme in ("http", "https"):
        return text
    return None


class HttpJsonDirectory:
    """``Directory`` over a JSON-over-HTTP CRM; one shared session, ``close()`` ends it."""

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
        region: str = "RU",
        timeout_seconds: float = 10.0,
    ) -> None:
        if "{number}" not in url:
            raise ValueError("the URL must contain {number}")
        unknown = set(fields or {}) - set(DEFAULT_FIELDS)
        if unknown:
            raise ValueError(f"unknown http_fields: {', '.join(sorted(unknown))}")
        self._url = url
        self._headers = dict(headers or {})
        self.fields = {**DEFAULT_FIELDS, **(fields or {})}
        self.region = region
        self.timeout_seconds = timeout_seconds
        self._http = LazySession(timeout_seconds)

    @classmethod
    def from_config(cls, config: CrmConfig, region: str = "RU") -> HttpJsonDirectory:
        return cls(
            config.http_url,
            headers={k: v.get_secret_value() for k, v in config.http_headers.items()},
            fields=config.http_fields,
            region=region,
            # The resilience layer enforces timeout_ms; this is only a backstop.
            timeout_seconds=max(config.timeout_ms / 1000 * 2, 1.0),
        )

    def __repr__(self) -> str:  # the headers and the URL's query may hold secrets
        return f"HttpJsonDirectory(host={urlsplit(self._url).hostname!r})"

    async def close(self) -> None:
        await self._http.close()

    async def lookup(self, number: str) -> Match | None:
        document = await self._get(number)
        if isinstance(document, list):
            document = document[0] if document else None
        if document is None:
            return None
        if not isinstance(document, dict):
            raise HttpJsonError(f"the CRM answered a JSON {type(document).__name__}, not an object")
        return self._match(document, number)

    async def search(self, text: str, limit: int = 20) -> list[Match]:
        return await search_by_number(self, text, self.region, limit)

    async def _get(self, number: str) -> Any:
        url = self._url.replace("{number}", quote(number, safe=""))
        host = urlsplit(url).hostname
        try:
            async with self._http.session().get(
                url, headers=self._headers, allow_redirects=False
            ) as response:
                status = response.status
                body = await read_limited(response, MAX_ANSWER_BYTES)
                charset = response.charset or "utf-8"
        except aiohttp.ClientError as exc:
            # Never the URL: its query may carry a key.
            raise HttpJsonError(f"GET {host} failed: {type(exc).__name__}") from None
        log.debug("CRM answered", extra={"fields": {"host": host, "status": status}})
        if status == 404:
            return None
        if not 200 <= status < 300:
            raise HttpJsonError(f"GET {host} answered HTTP {status}")
        if body is None:
            raise HttpJsonError(f"GET {host} answered more than {MAX_ANSWER_BYTES} bytes")
        try:
            text = body.decode(charset)
        except (LookupError, UnicodeDecodeError):
            raise HttpJsonError(f"GET {host} answered text that is not {charset}") from None
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise HttpJsonError(f"GET {host} answered something that is not JSON") from None

    def _value(self, document: dict[str, Any], field: str) -> Any:
        return resolve_path(document, self.fields[field])

    def _match(self, document: dict[str, Any], number: str) -> Match | None:
        client_name = _text(self._value(document, "client_name"))
        if client_name is None:
            return None
        kind = _text(self._value(document, "kind"))
        manager = None
        manager_name = _text(self._value(document, "manager_name"))
        manager_extension = _text(self._value(document, "manager_extension"))
        if manager_name or manager_extension:  # an extension alone is enough to route to
            phone = _text(self._value(document, "manager_phone"))
            manager = ResponsibleManager(
                name=manager_name or "",
                extension=manager_extension,
                phone=to_e164(phone, self.region) if phone else None,
            )
        return Match(
            client_id=_text(self._value(document, "client_id")) or number,
            client_name=client_name,
            kind="person" if kind == "person" else "company",
            contact_name=_text(self._value(document, "contact_name")),
            manager=manager,
            tags=_tags(self._value(document, "tags")),
            crm_url=_http_url(self._value(document, "crm_url")),
        )
