"""Calls written into 1C as ``Document_ТелефонныйЗвонок`` (БСП interactions), and for a
missed call a reminder for the responsible user (БСП "Напоминания пользователя").

Exactly once: the document's reference is derived from our call id (UUID 5), so the
outbox stores it before anything is sent, and sending again (a retry, a restart after
a crash between 1C's answer and our commit) first asks 1C whether that document exists.
The reminder is found again the same way, by its user and its source document.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers

from crm_bridge.onec.directory import OneCDirectory, Resolved
from crm_bridge.onec.odata import EMPTY_REF, OneCError, guid_literal

log = logging.getLogger("crm_bridge.onec")

# Our call ids → 1C references; fixed for ever, or a retry would write a second document.
CALL_NAMESPACE = uuid.UUID("5b0e4c8e-3c1a-4f57-9b2a-1c0000000001")

OUTCOMES = {
    "answered": "отвечен",
    "no_answer": "не отвечен",
    "abandoned": "абонент положил трубку, не дождавшись ответа",
    "busy": "занято",
    "failed": "не состоялся",
    "unknown": "неизвестен",
}


def document_ref(call_id: str) -> str:
    return str(uuid.uuid5(CALL_NAMESPACE, f"call:{call_id}"))


def _seconds(value: Any) -> str:
    total = round(float(value or 0))
    minutes, seconds = divmod(total, 60)
    return f"{minutes} мин {seconds:02d} с" if minutes else f"{seconds} с"


def _international(number: str) -> str:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


class OneCCallReporter:
    """The outbox's ``CallReporter`` for 1C. Errors raise ``OneCError`` (``retryable``)."""

    def __init__(
        self,
        directory: OneCDirectory,
        *,
        time_zone: str = "Europe/Moscow",
        reminders: bool = True,
        reminder_minutes: float = 0.0,
        service_url: str = "",
    ) -> None:
        self.directory = directory
        self.zone = ZoneInfo(time_zone)
        self.reminders = reminders
        self.reminder_delay = timedelta(minutes=reminder_minutes)
        self.service_url = service_url.rstrip("/")
        self.last_skip_reason: str | None = None

    async def close(self) -> None:
        """Nothing of its own: the directory owns the 1C client and closes it."""

    def _local(self, value: Any) -> str | None:
        """1C dates carry no zone: the base's local time, to the second."""
        if not value:
            return None
        moment = datetime.fromisoformat(str(value))
        return moment.astimezone(self.zone).replace(tzinfo=None).isoformat(timespec="seconds")

    async def call_started(self, call: Mapping[str, Any]) -> str | None:
        """The reference the call's document will have, or None when it is not written."""
        self.last_skip_reason = None
        if call.get("direction") not in ("inbound", "outbound"):
            self.last_skip_reason = "not an inbound or outbound call"
        elif not str(call.get("external_number") or "").startswith("+"):
            self.last_skip_reason = "no external number in E.164"
        if self.last_skip_reason:
            log.info(
                "call not written to 1C",
                extra={"fields": {"call": call.get("id"), "reason": self.last_skip_reason}},
            )
            return None
        return document_ref(str(call["id"]))

    async def call_finished(self, call: Mapping[str, Any], ref: str) -> None:
        directory, names = self.directory, self.directory.names
        published = await directory.ensure_metadata()
        if not published.has(names.call_document):
            raise OneCError(f"POST {names.call_document}", 404, "not published by the base")
        resolved: Resolved | list[Resolved] | None = None
        exists = await directory.client.entity(names.call_document, ref, ["Ref_Key"])
        needs_reminder = bool(call.get("missed")) and self.reminders and bool(names.reminders)
        if exists is None or needs_reminder:
            resolved = await directory.resolve(str(call["external_number"]))
            if isinstance(resolved, list):
                resolved = None  # a shared number: nobody is picked
        responsible = self._responsible(call, resolved)
        if exists is None:
            body = await self.document(call, ref, resolved, responsible)
            await directory.client.create(names.call_document, body)
            log.info("call written to 1C", extra={"fields": {"call": call.get("id"), "ref": ref}})
        if needs_reminder and responsible and published.has(names.reminders):
            await self._remind(call, ref, resolved, responsible)

    def _responsible(self, call: Mapping[str, Any], resolved: Resolved | None) -> str | None:
        """The 1C user of the answering or placing extension; for a missed call (and
        whoever else is not mapped) the client's responsible manager."""
        directory = self.directory
        if not call.get("missed"):
            for extension in (call.get("answered_by"), call.get("caller_extension")):
                user = directory.user_of_extension(extension)
                if user:
                    return user
        manager = directory.manager_ref(resolved)
        if manager:
            return manager
        rung = [leg.get("extension") for leg in call.get("legs") or () if not leg.get("originate")]
        return next((u for u in map(directory.user_of_extension, rung) if u), None)

    async def document(
        self,
        call: Mapping[str, Any],
        ref: str,
        resolved: Resolved | None,
        responsible: str | None,
    ) -> dict[str, Any]:
        directory, names = self.directory, self.directory.names
        published = await directory.ensure_metadata()
        number = _international(str(call["external_number"]))
        incoming = call.get("direction") == "inbound"
        who = number
        body: dict[str, Any] = {
            "Ref_Key": ref,
            "Date": self._local(call.get("started_at")),
            names.call_incoming: incoming,
            names.call_address: number,
            f"{names.call_responsible}_Key": responsible or EMPTY_REF,
        }
        if resolved is not None:
            target = resolved.contact or resolved.partner
            catalog = names.contacts if resolved.contact else resolved.partner_catalog
            who = str(target.get("Description") or "").strip() or who
            if resolved.contact:
                who = f"{who} ({directory.client_name(resolved.partner)})"
            if published.composite(names.call_document, names.call_contact):
                body[names.call_contact] = str(target["Ref_Key"])
                body[f"{names.call_contact}_Type"] = f"StandardODATA.{catalog}"
            else:
                body[f"{names.call_contact}_Key"] = str(target["Ref_Key"])
        missed = bool(call.get("missed"))
        kind = (
            "Пропущенный звонок"
            if missed
            else ("Входящий звонок" if incoming else "Исходящий звонок")
        )
        body[names.call_contact_presentation] = who
        body[names.call_subject] = f"{kind}: {who}"[:150]
        body[names.call_description] = self._description(call)
        if missed:
            body[names.call_importance] = names.call_importance_high
        return body

    def _description(self, call: Mapping[str, Any]) -> str:
        outcome = OUTCOMES.get(str(call.get("outcome") or "unknown"), str(call.get("outcome")))
        if call.get("missed"):
            outcome = "пропущен"
        answered = f" ({call['answered_by']})" if call.get("answered_by") else ""
        lines = [
            f"Итог: {outcome}{answered}",
            f"Ожидание: {_seconds(call.get('wait_seconds'))}, "
            f"разговор: {_seconds(call.get('talk_seconds'))}",
        ]
        if call.get("did"):
            lines.append(f"Номер, на который звонили: {_international(str(call['did']))}")
        if call.get("recordings"):
            where = f"{self.service_url}/" if self.service_url else "журнал звонков CTI"
            lines.append(f"Запись разговора: {where} (звонок {call['id']})")
        lines.append(f"Звонок CTI: {call['id']}")
        return "\n".join(lines)

    async def _remind(
        self, call: Mapping[str, Any], ref: str, resolved: Resolved | None, user: str
    ) -> None:
        client, names = self.directory.client, self.directory.names
        document_type = f"StandardODATA.{names.call_document}"
        already = await client.rows(
            names.reminders,
            filter=f"{names.reminder_user}_Key eq {guid_literal(user)} and "
            f"{names.reminder_source} eq cast({guid_literal(ref)}, '{names.call_document}')",
            select=[f"{names.reminder_user}_Key"],
            top=1,
        )
        if already:
            return
        ended = datetime.fromisoformat(str(call.get("ended_at") or call["started_at"]))
        who = _international(str(call["external_number"]))
        if resolved is not None:
            who = f"{who}, {self.directory.client_name(resolved.partner)}"
        await client.create(
            names.reminders,
            {
                f"{names.reminder_user}_Key": user,
                names.reminder_time: self._local(ended),
                names.reminder_due: self._local(ended + self.reminder_delay),
                names.reminder_source: ref,
                f"{names.reminder_source}_Type": document_type,
                names.reminder_description: f"Перезвонить: {who}"[:150],
            },
        )
        log.info("1C reminder set for a missed call", extra={"fields": {"call": call.get("id")}})
