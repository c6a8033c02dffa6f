"""Text the service can store and send: valid Unicode, without NUL characters.

Python strings may hold lone surrogates (JSON's ``"\\ud800"``, a header's undecodable
bytes under ``surrogateescape``), which cannot be encoded as UTF-8, and NUL, which
PostgreSQL's text refuses. Text from the outside is checked at the edge (``text_problem``)
and refused there; what must always go out (a frame of the live feed, a JSON answer)
is encoded with ``utf8`` so that one bad string can never stop it.
"""

from __future__ import annotations

import math
import re
from typing import Any

MAX_JSON_DEPTH = 32  # objects and arrays inside each other; no request needs more
MAX_JSON_INT = 2**63 - 1  # beyond what any database column holds
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be taken in, or None when it can."""
    if "\x00" in text:
        return "contains a NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid Unicode (it holds a lone surrogate)"
    return None


def utf8(text: str) -> bytes:
    """``text`` as UTF-8; anything that is not valid Unicode becomes U+FFFD."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return clean(text).encode("utf-8")


def clean(text: str) -> str:
    """``text`` with anything that is not valid Unicode replaced by U+FFFD."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return _SURROGATE.sub("\ufffd", text)
    return text


def json_problem(data: Any) -> tuple[str, str] | None:
    """The first place in parsed JSON that the service refuses, as (field path, problem):
    bad text (in a value or a key), nesting deeper than MAX_JSON_DEPTH, an integer beyond
    MAX_JSON_INT or a number that is not finite."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            return _path(path), f"is nested deeper than {MAX_JSON_DEPTH} levels"
        problem = None
        if isinstance(value, str):
            problem = text_problem(value)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if abs(value) > MAX_JSON_INT:
                problem = "is out of range"
        elif isinstance(value, float):
            if not math.isfinite(value):
                problem = "is not a finite number"
        elif isinstance(value, dict):
            for key, item in value.items():
                key_problem = text_problem(key)
                if key_problem is not None:
                    return _path(path) or "body", f"has a key that {key_problem}"
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, str(i))) for i, item in enumerate(value))
        if problem is not None:
            return _path(path) or "body", problem
    return None


def _path(path: tuple[str, ...]) -> str:
    return ".".join(path)
