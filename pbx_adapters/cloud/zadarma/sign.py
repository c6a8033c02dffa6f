"""Zadarma's signatures (sans-I/O).

- A webhook's ``Signature`` header is base64 of the hex HMAC-SHA1, with the API
  secret, of fields of the event that depend on its kind.
- An API request's ``Authorization`` is ``<key>:<signature>``, the signature base64 of
  the hex HMAC-SHA1 of method path + sorted query string + MD5 of that query string.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import urlencode

# The fields each event signs, in order.
SIGNED_FIELDS = {
    "NOTIFY_START": ("caller_id", "called_did", "call_start"),
    "NOTIFY_INTERNAL": ("caller_id", "called_did", "call_start"),
    "NOTIFY_END": ("caller_id", "called_did", "call_start"),
    "NOTIFY_ANSWER": ("caller_id", "destination", "call_start"),
    "NOTIFY_OUT_START": ("internal", "destination", "call_start"),
    "NOTIFY_OUT_END": ("internal", "destination", "call_start"),
    "NOTIFY_RECORD": ("pbx_call_id", "call_id_with_rec"),
}


def _hmac_b64(secret: str, text: str) -> str:
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha1).hexdigest()
    return base64.b64encode(digest.encode()).decode()


def webhook_signature(secret: str, fields: Mapping[str, str]) -> str:
    """The Signature of an event; KeyError for an event kind that is not signed."""
    names = SIGNED_FIELDS[fields.get("event", "")]
    return _hmac_b64(secret, "".join(fields.get(name, "") for name in names))


def signature_holds(secret: str, fields: Mapping[str, str], given: str) -> bool:
    try:
        expected = webhook_signature(secret, fields)
    except KeyError:
        return False
    return hmac.compare_digest(expected, given.strip())


def api_query(params: Mapping[str, str]) -> str:
    return urlencode(sorted(params.items()))


def api_authorization(key: str, secret: str, method: str, params: Mapping[str, str]) -> str:
    query = api_query(params)
    text = method + query + hashlib.md5(query.encode()).hexdigest()  # noqa: S324 (the API's)
    return f"{key}:{_hmac_b64(secret, text)}"
