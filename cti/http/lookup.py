"""Who is calling: ``GET /api/lookup?number=...`` answers from the client directory.

Asked by the ``cti-agi`` script on the Asterisk host, and by anything else that has a
number and wants the client behind it.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from cti.directory import Directory, DirectoryUnavailable, SharedNumber
from cti.domain import Role
from cti.http.api import Api, json_response, read_query
from cti.http.errors import ApiError
from cti.http.keys import SERVICE_KEY
from cti.phone import NotAPhoneNumber, is_extension, parse_number

DIRECTORY_KEY: web.AppKey[Directory] = web.AppKey("directory")

# The caller waits on this answer (AGI): a directory slower than this is unavailable.
LOOKUP_TIMEOUT = 5.0


class LookupQuery(BaseModel):
    number: str = Field(
        min_length=1,
        max_length=40,
        description="As written: +78125550101 (sent as %2B78125550101), 8 (812) 555-01-01, "
        "810..., with 'доб. 12' or 'ext. 12', or without the area code (5550101)",
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
    number: str = Field(
        description="The number asked about in E.164, or its digits when it has no area code"
    )
    match: MatchOut | None = Field(description="The client, or null when the number is unknown")
    shared_by: list[dict[str, str]] | None = Field(
        None,
        description="Only for a number several clients have: each {id, name} (match is then "
        "null: nobody is picked)",
    )


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
        try:
            parsed = parse_number(query.number, region)
        except NotAPhoneNumber:
            parsed = None
        if parsed is not None and parsed.e164 is None and is_extension(parsed.digits):
            parsed = None  # an internal extension is nobody in the directory
        if parsed is None:
            problem = "not a phone number (internal extensions are not looked up)"
            raise ApiError(
                422, f"number: {problem}", details=[{"field": "number", "problem": problem}]
            )
        number = parsed.e164 or parsed.digits
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT):
                match = await request.app[DIRECTORY_KEY].lookup(number)
        except TimeoutError:
            raise ApiError(503, "the client directory did not answer in time") from None
        except DirectoryUnavailable as e:
            raise ApiError(503, f"the client directory is unavailable: {e}") from None
        if isinstance(match, SharedNumber):
            shared = match.to_dict()["shared_by"]
            return json_response(LookupResult(number=number, match=None, shared_by=shared))
        found = None if match is None else MatchOut.model_validate(match.to_dict())
        result = LookupResult(number=number, match=found)
        return json_response(result.model_dump(mode="json", exclude={"shared_by"}))
