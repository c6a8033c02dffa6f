"""Who is calling: ``GET /api/lookup?number=...`` answers from the client directory.

Asked by the ``cti-agi`` script on the Asterisk host, and by anything else that has a
number and wants the client behind it.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from crm_bridge.directory import Directory
from cti.domain import Role
from cti.http.api import Api, json_response, read_query
from cti.http.errors import ApiError
from cti.http.keys import SERVICE_KEY
from cti.phone import to_e164

DIRECTORY_KEY: web.AppKey[Directory] = web.AppKey("directory")

# The caller waits on this answer (AGI): a directory slower than this is unavailable.
LOOKUP_TIMEOUT = 5.0


class LookupQuery(BaseModel):
    number: str = Field(
        min_length=1,
        max_length=40,
        description="E.164 (+78125550101, sent as %2B78125550101) or as dialled locally "
        "(88125550101)",
    )


class ManagerOut(BaseModel):
    name: str
    extension: str | None
    phone: str | None = Field(description="E.164")
    user_id: int | None


class MatchOut(BaseModel):
    client_id: str
    client_name: str
    kind: Literal["company", "person"]
    contact_name: str | None
    manager: ManagerOut | None = Field(description="The client's responsible manager")
    tags: list[str]
    crm_url: str | None


class LookupResult(BaseModel):
    number: str = Field(description="The number asked about, in E.164")
    match: MatchOut | None = Field(description="The client, or null when the number is unknown")


def add_routes(api: Api) -> None:
    @api.operation(
        "GET",
        "/api/lookup",
        summary="The client behind a phone number (?number=...)",
        tag="directory",
        roles=(Role.RECEPTIONIST, Role.OPERATOR, Role.SALES, Role.SUPERVISOR),
        query=LookupQuery,
        response=LookupResult,
        errors=(422, 503),
    )
    async def lookup(request: web.Request) -> web.Response:
        query = read_query(request, LookupQuery)
        region = request.app[SERVICE_KEY].config.phone.default_region
        number = to_e164(query.number, region)
        if number is None:
            problem = "not a valid phone number (extensions are not looked up)"
            raise ApiError(
                422, f"number: {problem}", details=[{"field": "number", "problem": problem}]
            )
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT):
                match = await request.app[DIRECTORY_KEY].lookup(number)
        except TimeoutError:
            raise ApiError(503, "the client directory did not answer in time") from None
        found = None if match is None else MatchOut.model_validate(match.to_dict())
        return json_response(LookupResult(number=number, match=found))
