"""The built-in client directory's tables: clients, their contacts and phones, and what
the service writes back after calls (activities and callback tasks)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cti.db.models import Base, UTCDateTime
from cti.domain import utcnow


class Client(Base):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(10), default="company")  # company or person
    manager_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    notes: Mapped[str] = mapped_column(String(2000), default="")
    is_lead: Mapped[bool] = mapped_column(default=False)  # created from an unknown caller
    # Name, contacts and numbers casefolded in Python: SQLite's lower() folds ASCII only,
    # and "Ромашка" must be found by "ромашка".
    search_text: Mapped[str] = mapped_column(String(4000), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    contacts: Mapped[list[Contact]] = relationship(
        back_populates="client", cascade="all, delete-orphan", passive_deletes=True
    )
    phones: Mapped[list[Phone]] = relationship(
        back_populates="client", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (Index("ix_clients_name", "name"),)


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(200), default="")

    client: Mapped[Client] = relationship(back_populates="contacts")
    phones: Mapped[list[Phone]] = relationship(back_populates="contact", passive_deletes=True)


class Phone(Base):
    """A client's or a contact's number. ``reversed_digits`` makes "ends with these digits"
    an index range scan (for numbers the PBX delivers without their area code)."""

    __tablename__ = "phones"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(20))  # E.164
    extension: Mapped[str | None] = mapped_column(String(10))  # "доб. 12"
    label: Mapped[str] = mapped_column(String(40), default="")
    reversed_digits: Mapped[str] = mapped_column(String(20))

    client: Mapped[Client] = relationship(back_populates="phones")
    contact: Mapped[Contact | None] = relationship(back_populates="phones")

    __table_args__ = (
        Index("ix_phones_number", "number"),
        Index("ix_phones_reversed_digits", "reversed_digits"),
        Index("ix_phones_client_id", "client_id"),
        Index("ix_phones_contact_id", "contact_id"),
    )


class Activity(Base):
    """Something that happened with a client (a call, an SMS), for its history."""

    __tablename__ = "activities"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(10))  # call, sms
    ref: Mapped[str] = mapped_column(String(100))  # the call's or the SMS's id
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    summary: Mapped[dict] = mapped_column(JSON)

    __table_args__ = (
        UniqueConstraint("kind", "ref", "client_id", name="uq_activities_kind_ref_client"),
        Index("ix_activities_client_at", "client_id", "at"),
    )


class CallFollowUp(Base):
    """A finished call whose activity and callback task were written (once per call)."""

    __tablename__ = "call_followups"

    call_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    done_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CallbackTask(Base):
    """Call this number back: opened by a missed call, closed by a conversation."""

    __tablename__ = "callback_tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"))
    assignee_extension: Mapped[str | None] = mapped_column(String(10))
    missed_call_id: Mapped[str] = mapped_column(String(100), unique=True)
    missed_calls: Mapped[int] = mapped_column(default=1)  # more missed calls before a callback
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by_call_id: Mapped[str | None] = mapped_column(String(100))
    closed_reason: Mapped[str | None] = mapped_column(
        String(20)
    )  # called_back, called_again, by_hand
    closed_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    comment: Mapped[str] = mapped_column(String(2000), default="")

    __table_args__ = (
        Index("ix_callback_tasks_open_number", "number", "closed_at"),
        Index("ix_callback_tasks_assignee", "assignee_extension", "closed_at"),
    )


class CrmOutbox(Base):
    """A finished call to write into the external CRM; kept until it is written or the
    CRM refuses it for good, so neither a CRM outage nor a restart loses it."""

    __tablename__ = "crm_outbox"

    call_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    call: Mapped[dict] = mapped_column(JSON)
    external_id: Mapped[str | None] = mapped_column(String(100))  # the CRM's id once registered
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(300))  # written, skipped: ..., refused: ...

    __table_args__ = (Index("ix_crm_outbox_due", "done_at", "next_attempt_at"),)
