"""Links that open a 1C object in the 1C client: ``e1cib/data/<Object>?ref=<ref>`` after
the thin client's ``e1c://`` address or the web client's URL."""

from __future__ import annotations

import uuid
from typing import Literal

OpenIn = Literal["thin", "web", "none"]


def navigation_ref(ref: str) -> str:
    """A reference as navigation links write it: the GUID's 32 hex digits with its groups
    in 1C's storage order (4th, 5th, 3rd, 2nd, 1st)."""
    hex32 = uuid.UUID(ref).hex
    return hex32[16:20] + hex32[20:32] + hex32[12:16] + hex32[8:12] + hex32[0:8]


def object_link(
    object_name: str, ref: str, *, open_in: OpenIn, thin_client: str, web_client: str
) -> str | None:
    """``e1c://server/cluster/base#e1cib/data/Справочник.Партнеры?ref=...`` (thin) or
    ``https://host/base/ru_RU/#e1cib/data/...`` (web); None when not configured."""
    target = f"e1cib/data/{object_name}?ref={navigation_ref(ref)}"
    if open_in == "thin" and thin_client:
        return f"{thin_client.split('#', 1)[0]}#{target}"
    if open_in == "web" and web_client:
        return f"{web_client.split('#', 1)[0].rstrip('/')}/#{target}"
    return None
