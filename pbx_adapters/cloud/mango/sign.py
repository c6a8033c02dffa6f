"""Mango's request signature (sans-I/O): every request both ways is a form of
``vpbx_api_key``, ``sign`` and ``json``, where ``sign`` is the lowercase hex SHA-256 of
api_key + json + api_salt."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qs


class BadSignature(ValueError):
    pass


def sign(api_key: str, body: str, api_salt: str) -> str:
    return hashlib.sha256((api_key + body + api_salt).encode()).hexdigest()


def signed_form(api_key: str, api_salt: str, payload: dict[str, Any]) -> dict[str, str]:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return {"vpbx_api_key": api_key, "sign": sign(api_key, body, api_salt), "json": body}


def verified_payload(form_body: bytes, api_key: str, api_salt: str) -> dict[str, Any]:
    """The ``json`` of a signed form; BadSignature (saying why) for anything else."""
    try:
        fields = parse_qs(form_body.decode(), strict_parsing=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise BadSignature("not a form") from None
    key, given, body = (fields.get(k, [""])[0] for k in ("vpbx_api_key", "sign", "json"))
    if not hmac.compare_digest(key, api_key):
        raise BadSignature("another VPBX's key")
    if not hmac.compare_digest(given, sign(api_key, body, api_salt)):
        raise BadSignature("bad signature")
    try:
        payload = json.loads(body)
    except ValueError:
        raise BadSignature("json is not JSON") from None
    if not isinstance(payload, dict):
        raise BadSignature("json is not an object")
    return payload
