"""The audit log over the API, for supervisors."""

from __future__ import annotations

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import select

from cti.db.models import AuditEntry
from cti.domain import Role
from cti.http.api import Api, json_response, read_query
from cti.http.keys import SERVICE_KEY


class AuditQuery(BaseModel):
    target: str | None = Field(None, max_length=100, description='e.g. "client:17"')
    before: AwareDatetime | None = Field(None, description="Older than this (paging)")
    limit: int = Field(100, ge=1, le=500)


def add_routes(api: Api) -> None:
    @api.operation(
        "GET",
        "/api/audit",
        summary="Changes that decide who sees what (a client's responsible manager), newest first",
        tag="users",
        query=AuditQuery,
        roles=(Role.SUPERVISOR,),
    )
    async def audit_log(request: web.Request) -> web.Response:
        query = read_query(request, AuditQuery)
        statement = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        if query.target is not None:
            statement = statement.where(AuditEntry.target == query.target)
        if query.before is not None:
            statement = statement.where(AuditEntry.at < query.before)
        async with request.app[SERVICE_KEY].sessions() as session:
            entries = await session.scalars(statement.limit(query.limit))
            return json_response(
                {
                    "entries": [
                        {
                            "at": e.at.isoformat(),
                            "user_id": e.user_id,
                            "username": e.username,
                            "action": e.action,
                            "target": e.target,
                            "details": e.details,
                            "remote": e.remote,
                        }
                        for e in entries
                    ]
                }
            )
