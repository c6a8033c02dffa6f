"""The built-in client directory and callback tasks over the API."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from cti import audit
from cti.auth import Principal
from cti.clients import builtin
from cti.clients.models import Activity, CallbackTask, Client, Contact
from cti.clients.writeback import task_event
from cti.db.models import User
from cti.domain import Role, utcnow
from cti.http.api import MAX_ID, Api, json_response, path_id, principal, read_body, read_query
from cti.http.errors import ApiError
from cti.http.keys import SERVICE_KEY

EDITORS = (Role.RECEPTIONIST, Role.OPERATOR, Role.SALES, Role.SUPERVISOR)
HISTORY = 20


class PhoneBody(BaseModel):
    number: str = Field(min_length=2, max_length=60)
    label: str = Field("", max_length=40)


class ContactBody(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    position: str = Field("", max_length=200)
    email: str = Field("", max_length=200)
    phones: list[PhoneBody] = Field(default_factory=list, max_length=20)


class ClientBody(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["company", "person"] = "company"
    manager_extension: str | None = Field(
        None,
        pattern=r"^[0-9]{1,10}$",
        description="The responsible manager's extension; null for none, leave out to keep "
        "it. Setting or changing it needs the role supervisor, and is audited",
    )
    tags: list[str] = Field(default_factory=list, max_length=50)
    notes: str = Field("", max_length=2000)
    phones: list[PhoneBody] = Field(default_factory=list, max_length=20)
    contacts: list[ContactBody] | None = Field(
        None, max_length=100, description="Replaces the contacts; leave out to keep them"
    )

    def to_input(self) -> builtin.ClientIn:
        return builtin.ClientIn(
            name=self.name,
            kind=self.kind,
            manager_extension=self.manager_extension,
            tags=[t.strip() for t in self.tags if t.strip()],
            notes=self.notes,
            phones=[builtin.PhoneIn(p.number, p.label) for p in self.phones],
            contacts=None if self.contacts is None else [_contact_input(c) for c in self.contacts],
        )


def _contact_input(body: ContactBody) -> builtin.ContactIn:
    return builtin.ContactIn(
        body.name,
        body.position,
        body.email,
        [builtin.PhoneIn(p.number, p.label) for p in body.phones],
    )


class ClientQuery(BaseModel):
    q: str = Field("", max_length=200, description="Part of a name, contact or number")
    limit: int = Field(50, ge=1, le=200)
    after: int | None = Field(None, ge=0, le=MAX_ID, description="next_after of the previous page")


class TaskQuery(BaseModel):
    open: bool = True
    status: Literal["open", "closed", "all"] | None = Field(
        None, description="Overrides open: open, closed or all tasks"
    )
    assignee: str | None = Field(None, pattern=r"^[0-9]{1,10}$")
    since: AwareDatetime | None = Field(None, description="Opened at or after (ISO 8601)")
    until: AwareDatetime | None = Field(None, description="Opened before (ISO 8601)")
    limit: int = Field(100, ge=1, le=500)


class CloseTask(BaseModel):
    comment: str = Field("", max_length=2000)


async def _client_out(session: AsyncSession, client: Client, full: bool = False) -> dict[str, Any]:
    manager = await session.get(User, client.manager_id) if client.manager_id else None
    out = builtin.client_to_dict(client, manager)
    if full:
        # A number another client has too: the lookup picks neither; the editor should know.
        out["shared_numbers"] = await builtin.shared_numbers(session, client_id=client.id)
        activities = await session.scalars(
            select(Activity)
            .where(Activity.client_id == client.id)
            .order_by(Activity.at.desc())
            .limit(HISTORY)
        )
        out["history"] = [
            {"kind": a.kind, "ref": a.ref, "at": a.at.isoformat(), **a.summary} for a in activities
        ]
        out["open_tasks"] = await _tasks(
            session, CallbackTask.client_id == client.id, CallbackTask.closed_at.is_(None)
        )
    return out


async def _tasks(session: AsyncSession, *conditions: Any, limit: int | None = None) -> list[dict]:
    """Callback tasks, newest first, each with its client, the client's responsible
    manager and who closed it by hand: one query."""
    manager, closer = aliased(User), aliased(User)
    query = (
        select(CallbackTask, Client.name, manager, closer)
        .outerjoin(Client, Client.id == CallbackTask.client_id)
        .outerjoin(manager, manager.id == Client.manager_id)
        .outerjoin(closer, closer.id == CallbackTask.closed_by_user_id)
        .where(*conditions)
        .order_by(CallbackTask.created_at.desc(), CallbackTask.id.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    return [_task_out(*row) for row in await session.execute(query)]


def _person(user: User | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {
        "user_id": user.id,
        "username": user.username,
        "name": user.display_name or user.username,
        "extension": user.extension,
    }


def _task_out(
    task: CallbackTask,
    client_name: str | None = None,
    manager: User | None = None,
    closer: User | None = None,
) -> dict[str, Any]:
    return {
        "id": task.id,
        "number": task.number,
        "client_id": task.client_id,
        "client": None
        if task.client_id is None or client_name is None
        else {"id": task.client_id, "name": client_name},
        "manager": _person(manager),  # the client's responsible manager now
        "assignee_extension": task.assignee_extension,
        "missed_call_id": task.missed_call_id,
        "missed_calls": task.missed_calls,
        "created_at": task.created_at.isoformat(),
        "open": task.closed_at is None,
        "closed_at": task.closed_at.isoformat() if task.closed_at else None,
        "closed_reason": task.closed_reason,
        "closed_by_call_id": task.closed_by_call_id,
        "closed_by": _person(closer),
        "comment": task.comment,
    }


async def _existing(session: AsyncSession, request: web.Request) -> Client:
    client_id = path_id(request, "client_id", "client")
    client = await builtin.get_client(session, client_id)
    if client is None:
        raise ApiError(404, f"no client {client_id}")
    return client


async def _save_client(
    request: web.Request, session: AsyncSession, body: ClientBody, client: Client | None = None
) -> Client:
    """Create or replace a client. Its responsible manager decides whose callbacks and
    screens it reaches: setting or changing it needs a supervisor (403 otherwise), and
    every change goes into the audit log with the client."""
    who = principal(request)
    before = client.manager_id if client is not None else None
    keep = client is not None and "manager_extension" not in body.model_fields_set
    with _as_422():
        after = before if keep else await builtin.manager_id_for(session, body.manager_extension)
    if after != before and not who.has_role(Role.SUPERVISOR):
        raise ApiError(
            403,
            "setting a client's responsible manager needs the role supervisor",
            reason="manager_needs_supervisor",
        )
    region = request.app[SERVICE_KEY].config.phone.default_region
    with _as_422():
        client = await builtin.save_client(
            session, body.to_input(), region, client, keep_manager=keep
        )
    if after != before:
        old = await session.get(User, before) if before is not None else None
        audit.record(
            session,
            who,
            "client.manager",
            f"client:{client.id}",
            {
                "from": None if old is None else {"user_id": old.id, "extension": old.extension},
                "to": None
                if after is None
                else {"user_id": after, "extension": body.manager_extension},
            },
            request.remote,
        )
    return client


@contextlib.contextmanager
def _as_422() -> Iterator[None]:
    """A client record the directory cannot store is the sender's mistake: 422."""
    try:
        yield
    except builtin.DirectoryError as e:
        raise ApiError(422, str(e)) from None


def add_routes(api: Api) -> None:
    @api.operation(
        "GET",
        "/api/clients",
        summary="Find clients by name, contact or number",
        tag="directory",
        query=ClientQuery,
    )
    async def list_clients(request: web.Request) -> web.Response:
        query = read_query(request, ClientQuery)
        service = request.app[SERVICE_KEY]
        async with service.sessions() as session:
            clients = await builtin.search_clients(
                session,
                query.q,
                limit=query.limit,
                after_id=query.after,
                region=service.config.phone.default_region,
            )
            out = [await _client_out(session, c) for c in clients]
        more = len(clients) == query.limit
        return json_response({"clients": out, "next_after": clients[-1].id if more else None})

    @api.operation(
        "POST",
        "/api/clients",
        summary="Add a client with its contacts and phones",
        tag="directory",
        roles=EDITORS,
        body=ClientBody,
        status=201,
        errors=(403,),
    )
    async def create_client(request: web.Request) -> web.Response:
        body = await read_body(request, ClientBody)
        async with request.app[SERVICE_KEY].sessions() as session:
            client = await _save_client(request, session, body)
            await session.commit()
            return json_response(await _client_out(session, client, full=True), status=201)

    @api.operation(
        "GET",
        "/api/clients/{client_id}",
        summary="A client with contacts, phones, history and open callback tasks",
        tag="directory",
        errors=(404,),
    )
    async def get_client(request: web.Request) -> web.Response:
        async with request.app[SERVICE_KEY].sessions() as session:
            client = await _existing(session, request)
            return json_response(await _client_out(session, client, full=True))

    @api.operation(
        "PUT",
        "/api/clients/{client_id}",
        summary="Replace a client's details, contacts and phones",
        tag="directory",
        roles=EDITORS,
        body=ClientBody,
        errors=(403, 404),
    )
    async def update_client(request: web.Request) -> web.Response:
        body = await read_body(request, ClientBody)
        async with request.app[SERVICE_KEY].sessions() as session:
            client = await _save_client(request, session, body, await _existing(session, request))
            await session.commit()
            return json_response(await _client_out(session, client, full=True))

    @api.operation(
        "DELETE",
        "/api/clients/{client_id}",
        summary="Delete a client",
        tag="directory",
        roles=(Role.SUPERVISOR,),
        status=204,
        errors=(404,),
    )
    async def delete_client(request: web.Request) -> web.Response:
        async with request.app[SERVICE_KEY].sessions() as session:
            client = await _existing(session, request)
            await builtin.delete_client(session, client.id)
            await session.commit()
        return web.Response(status=204)

    @api.operation(
        "POST",
        "/api/clients/{client_id}/contacts",
        summary="Add a contact person",
        tag="directory",
        roles=EDITORS,
        body=ContactBody,
        status=201,
        errors=(404,),
    )
    async def add_contact(request: web.Request) -> web.Response:
        body = await read_body(request, ContactBody)
        service = request.app[SERVICE_KEY]
        async with service.sessions() as session:
            client = await _existing(session, request)
            with _as_422():
                await builtin.save_contact(
                    session, client, _contact_input(body), service.config.phone.default_region
                )
            await session.commit()
            return json_response(await _client_out(session, client, full=True), status=201)

    @api.operation(
        "PUT",
        "/api/contacts/{contact_id}",
        summary="Replace a contact person",
        tag="directory",
        roles=EDITORS,
        body=ContactBody,
        errors=(404,),
    )
    async def update_contact(request: web.Request) -> web.Response:
        body = await read_body(request, ContactBody)
        return await _change_contact(request, body)

    @api.operation(
        "DELETE",
        "/api/contacts/{contact_id}",
        summary="Delete a contact person",
        tag="directory",
        roles=EDITORS,
        errors=(404,),
    )
    async def delete_contact(request: web.Request) -> web.Response:
        return await _change_contact(request, None)

    @api.operation(
        "GET",
        "/api/tasks",
        summary="Callback tasks (missed calls to return): your own, or all for "
        "receptionists and supervisors",
        tag="tasks",
        query=TaskQuery,
    )
    async def list_tasks(request: web.Request) -> web.Response:
        query = read_query(request, TaskQuery)
        who = principal(request)
        assignee = query.assignee
        if not who.sees_everything:
            if assignee not in (None, who.extension) or who.extension is None:
                raise ApiError(403, "you see your own callback tasks only")
            assignee = who.extension
        status = query.status or ("open" if query.open else "closed")
        conditions: list[Any] = []
        if status == "open":
            conditions.append(CallbackTask.closed_at.is_(None))
        elif status == "closed":
            conditions.append(CallbackTask.closed_at.is_not(None))
        if assignee:
            conditions.append(CallbackTask.assignee_extension == assignee)
        if query.since is not None:
            conditions.append(CallbackTask.created_at >= query.since)
        if query.until is not None:
            conditions.append(CallbackTask.created_at < query.until)
        async with request.app[SERVICE_KEY].sessions() as session:
            tasks = await _tasks(session, *conditions, limit=query.limit)
            return json_response({"tasks": tasks})

    @api.operation(
        "POST",
        "/api/tasks/{task_id}/close",
        summary="Close a callback task by hand, with a comment",
        tag="tasks",
        body=CloseTask,
        errors=(404, 409),
    )
    async def close_task(request: web.Request) -> web.Response:
        body = await read_body(request, CloseTask)
        who = principal(request)
        service = request.app[SERVICE_KEY]
        async with service.sessions() as session:
            task = await session.get(CallbackTask, path_id(request, "task_id", "task"))
            if task is None or not _owns(who, task):
                raise ApiError(404, "no such task")
            if task.closed_at is not None:
                raise ApiError(409, "the task is closed already")
            task.closed_at, task.closed_reason = utcnow(), "by_hand"
            task.closed_by_user_id, task.comment = who.user_id, body.comment
            await session.commit()
            service.bus.publish_nowait(task_event(task))
            [out] = await _tasks(session, CallbackTask.id == task.id)
            return json_response(out)


def _owns(who: Principal, task: CallbackTask) -> bool:
    """Whether ``who`` may act on the task: theirs, or they see everyone's. A user without
    an extension owns none, not the unassigned ones."""
    return who.sees((task.assignee_extension,))


async def _change_contact(request: web.Request, body: ContactBody | None) -> web.Response:
    """Replace (body) or delete (None) one contact."""
    service = request.app[SERVICE_KEY]
    contact_id = path_id(request, "contact_id", "contact")
    async with service.sessions() as session:
        client_id = await session.scalar(select(Contact.client_id).where(Contact.id == contact_id))
        client = await builtin.get_client(session, client_id) if client_id else None
        contact = next((c for c in client.contacts if c.id == contact_id), None) if client else None
        if client is None or contact is None:
            raise ApiError(404, f"no contact {contact_id}")
        with _as_422():
            if body is None:
                await builtin.remove_contact(session, client, contact)
            else:
                await builtin.save_contact(
                    session,
                    client,
                    _contact_input(body),
                    service.config.phone.default_region,
                    contact,
                )
        await session.commit()
        return json_response(await _client_out(session, client, full=True))
