"""Tables. Every time is stored in UTC; every text column is Unicode."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from cti.domain import utcnow

# Stable constraint names, so migrations behave the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite keeps no time zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(20))
    extension: Mapped[str | None] = mapped_column(String(10), index=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(default=True)
    # IANA name ("Europe/Moscow") the pages show times in; None: the office's.
    time_zone: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(254))  # for notices (a fax sent)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", passive_deletes=True)


class ApiToken(Base):
    """An API token; only its SHA-256 is stored, the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters, to tell tokens apart in listings without revealing them.
    prefix: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: until revoked
    # A browser sign-in's token; and for a token asked for with one, that session: it
    # expires with it and is revoked when it signs out.
    is_session: Mapped[bool] = mapped_column(default=False)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"))

    user: Mapped[User] = relationship(back_populates="tokens")

    __table_args__ = (
        Index("ix_api_tokens_user_id", "user_id"),
        Index("ix_api_tokens_session_id", "session_id"),
    )


class AuditEntry(Base):
    """A change that decides who sees what or gets which work (a client's responsible
    manager), with who made it, from where, and what it was before."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    username: Mapped[str] = mapped_column(String(64))  # kept if the user is deleted
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(100))  # e.g. "client:17"
    details: Mapped[dict] = mapped_column(JSON)
    remote: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_log_target", "target", "at"),
        Index("ix_audit_log_at", "at"),
    )


class HealthProbe(Base):
    """One row /healthz rewrites now and then: the database is up only if it can write."""

    __tablename__ = "health_probe"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ServiceKey(Base):
    """A key the service signs with (hex), the same for every node (``cti.db.keys``)."""

    __tablename__ = "service_keys"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


class CallRecord(Base):
    """A call as the log shows it; ``details`` holds the full normalized record."""

    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    pbx: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str | None] = mapped_column(String(10))
    external_number: Mapped[str | None] = mapped_column(String(40))
    external_name: Mapped[str | None] = mapped_column(String(200))
    did: Mapped[str | None] = mapped_column(String(40))
    queue: Mapped[str | None] = mapped_column(String(80))
    caller_extension: Mapped[str | None] = mapped_column(String(10))
    answered_by: Mapped[str | None] = mapped_column(String(10))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(12))
    missed: Mapped[bool] = mapped_column(default=False)
    in_progress: Mapped[bool] = mapped_column(default=True)
    wait_seconds: Mapped[float | None] = mapped_column(Float)
    talk_seconds: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_calls_started_at", "started_at", "id"),
        Index("ix_calls_external_number", "external_number", "started_at", "id"),
        Index("ix_calls_missed_started_at", "missed", "started_at"),
        Index("ix_calls_pbx_in_progress", "pbx", "in_progress"),
    )


class CallLegRecord(Base):
    """Each extension a call rang, for "calls of extension X" and per-person reports."""

    __tablename__ = "call_legs"

    call_id: Mapped[str] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    extension: Mapped[str] = mapped_column(String(10))
    ring_started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[str | None] = mapped_column(String(12))

    __table_args__ = (Index("ix_call_legs_extension", "extension", "call_id"),)


class CallExtensionRecord(Base):
    """Every extension a call involves (``Call.extensions()``: rang, placed, answered or
    transferred it) with the call's start, so "the calls of extension X, newest first" is
    one index range however few calls X has among millions."""

    __tablename__ = "call_extensions"

    call_id: Mapped[str] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )
    extension: Mapped[str] = mapped_column(String(10), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_call_extensions_extension", "extension", "started_at", "call_id"),)


class SmsMessage(Base):
    """One SMS, sent or received. An outgoing one is stored before the API acknowledges
    it and moves queued -> sending -> sent -> delivered (or failed, with the reason)."""

    __tablename__ = "sms_messages"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    direction: Mapped[str] = mapped_column(String(3))  # "out" or "in"
    requested_modem: Mapped[str | None] = mapped_column(String(64))  # None: any modem
    modem: Mapped[str | None] = mapped_column(String(64))  # the one sending or that sent it
    number: Mapped[str] = mapped_column(String(40))  # E.164, or an alphanumeric sender
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12))
    reason: Mapped[str | None] = mapped_column(String(300))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"))
    # A received message: the extension it was routed to (the client's manager then, or
    # whoever last texted the number), who may read it besides supervisors.
    routed_extension: Mapped[str | None] = mapped_column(String(10))
    # Sending: the parts (a long text is several SMS), the concatenation reference, the
    # modem's message reference of each part sent so far, and the part handed to the modem
    # but not yet confirmed (the restart rule in cti/sms.py depends on it).
    parts: Mapped[int] = mapped_column(default=1)
    concat_ref: Mapped[int] = mapped_column(default=0)
    part_refs: Mapped[list[int]] = mapped_column(JSON, default=list)
    submitting_part: Mapped[int | None] = mapped_column()
    delivered_refs: Mapped[list[int]] = mapped_column(JSON, default=list)
    status_report: Mapped[bool] = mapped_column(default=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_sms_messages_queue", "status", "next_attempt_at"),
        Index("ix_sms_messages_created_at", "created_at", "id"),
        Index("ix_sms_messages_number", "number"),
    )


class SmsInboundPart(Base):
    """A received part (cti.modem.ReceivedPart) kept until its message is complete: stored
    before the SIM copy is deleted, so neither a restart nor a lost part in flight loses
    what arrived."""

    __tablename__ = "sms_inbound_parts"

    id: Mapped[int] = mapped_column(primary_key=True)
    modem: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The part as text; all None while only ``raw`` is known.
    sender: Mapped[str | None] = mapped_column(String(40))
    text: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the service centre's
    concat_ref: Mapped[int | None] = mapped_column()  # None: a whole message
    concat_seq: Mapped[int | None] = mapped_column()
    concat_total: Mapped[int | None] = mapped_column()
    # What the modem gave and could not read as a part (and every part stored before
    # migration 0011, a PDU): read again when the modem comes up (SmsInbox.reread).
    raw: Mapped[str | None] = mapped_column("pdu", Text)


class Recording(Base):
    """A call's recording: a file under [recordings] dir (the path is relative to it)."""

    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(100))
    # Bytes of audio; None: not settled yet (being written), 0: never arrived (missing.py).
    size: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(10))  # "pbx" or "watched"
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # by retention

    __table_args__ = (
        Index("ix_recordings_call_id", "call_id"),
        Index("ix_recordings_path", "path", unique=True),  # a file is one recording
        Index("ix_recordings_created_at", "created_at"),
    )


class RecordingListen(Base):
    """Who fetched a recording, when and which part: the audit."""

    __tablename__ = "recording_listens"

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    username: Mapped[str] = mapped_column(String(64))  # kept if the user is deleted
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    remote: Mapped[str | None] = mapped_column(String(64))
    range_header: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (Index("ix_recording_listens_recording_id", "recording_id", "at"),)


class FaxDocument(Base):
    """A fax, received or sent: its TIFF (and the PDF and thumbnail made of it) under
    [fax] dir, paths relative to it; who sent it, whose client, who should read it."""

    __tablename__ = "faxes"

    id: Mapped[int] = mapped_column(primary_key=True)
    direction: Mapped[str] = mapped_column(String(3))  # "in" or "out"
    call_id: Mapped[str | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"))
    number: Mapped[str | None] = mapped_column(String(40))  # the other side, E.164 if valid
    remote_station: Mapped[str | None] = mapped_column(String(40))  # its CSID / TSI
    pages: Mapped[int | None] = mapped_column(Integer)
    resolution: Mapped[str | None] = mapped_column(String(20))  # "204x196" dpi
    status: Mapped[str] = mapped_column(String(12))  # fax.FaxStatus
    error: Mapped[str | None] = mapped_column(String(300))  # the PBX's words, when it failed
    client_id: Mapped[int | None] = mapped_column(Integer)  # a built-in client's id
    client_name: Mapped[str | None] = mapped_column(String(200))
    # What the faxes page's search matches: number, station, client, casefolded here (SQLite
    # cannot fold Cyrillic or Georgian).
    search: Mapped[str] = mapped_column(String(400), default="")
    assignee_extension: Mapped[str | None] = mapped_column(String(10))  # manager or group
    tiff: Mapped[str | None] = mapped_column(String(500))
    pdf: Mapped[str | None] = mapped_column(String(500))
    thumbnail: Mapped[str | None] = mapped_column(String(500))
    size: Mapped[int | None] = mapped_column(BigInteger)  # the TIFF's bytes
    # Sending: the job (fax/outbox.py); who asked, how often it was dialled and tried.
    created_by: Mapped[str | None] = mapped_column(String(64))
    dials: Mapped[int] = mapped_column(Integer, default=0)
    tries: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # due (queued, requeued)
    kill_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # given up after this
    at: Mapped[datetime] = mapped_column(UTCDateTime)  # received, or asked to send
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # by retention

    __table_args__ = (
        Index("ix_faxes_call_id", "call_id", unique=True),  # a call carries one fax
        Index("ix_faxes_at", "at"),
        Index("ix_faxes_assignee", "assignee_extension", "at"),
        Index("ix_faxes_due", "status", "next_at"),
    )


class FaxView(Base):
    """Who opened a fax, when and as what (pdf, tiff, thumbnail): the audit."""

    __tablename__ = "fax_views"

    id: Mapped[int] = mapped_column(primary_key=True)
    fax_id: Mapped[int] = mapped_column(ForeignKey("faxes.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    username: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    what: Mapped[str] = mapped_column(String(10))
    remote: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_fax_views_fax_id", "fax_id", "at"),)
