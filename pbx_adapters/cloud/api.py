"""Calling a provider's HTTP API: a timeout on each try, a few tries with backoff on
what may pass (no answer, 5xx, 429), the provider's refusal worded for the user."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import aiohttp

from cti.pbx import PbxLinkDown, PbxRefused

log = logging.getLogger("cti.cloud")

RETRY_STATUSES = {429, 500, 502, 503, 504}


async def call_api(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    data: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    seconds: float = 10.0,
    attempts: int = 3,
    what: str = "the provider",
) -> str:
    """The answer's body; PbxRefused for a 4xx, PbxLinkDown when no try got through
    (each try given ``seconds``)."""
    problem = ""
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(0.5 * 2 ** (attempt - 1))
        try:
            async with session.request(
                method,
                url,
                data=data,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=seconds),
            ) as response:
                text = await response.text()
                if response.status < 400:
                    return text
                if response.status not in RETRY_STATUSES:
                    raise PbxRefused(
                        f"{what} refused the request ({response.status}): {text[:200]}"
                    )
                problem = f"{what} answered {response.status}"
        except (aiohttp.ClientError, TimeoutError) as e:
            problem = f"{what} did not answer: {e or type(e).__name__}"
        log.info("%s (try %d of %d)", problem, attempt + 1, attempts)
    raise PbxLinkDown(problem)
