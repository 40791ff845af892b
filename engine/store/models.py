"""SQLAlchemy models of the customer store and of the engine's own tables.

The customer store (accounts, contacts, events, csms, health_history) is what playbooks read.
The engine-owned tables (enrollments, ledger, tasks, audit_log) are what a tick writes. Indexes
are chosen for the evaluator's queries: event windows look events up by
(account_id, name, occurred_at), (contact_id, name, occurred_at) and (name, occurred_at).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# JSONB on PostgreSQL (indexable, compact), JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for event volumes.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base; naming convention keeps constraint names stable across dialects."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONType}


Base.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# --- customer store -------------------------------------------------------------------------


class Csm(Base):
    """A customer success manager: owner of accounts and assignee of tasks."""

    __tablename__ = "csms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    team: Mapped[str] = mapped_column(String(100), default="default")
    # The customer's own id (docs/data.md): what `touchflow import` matches rows on.
    external_id: Mapped[str | None] = mapped_column(String(200), index=True, unique=True)


class Account(Base):
    """A customer company."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(20))  # high_touch | low_touch | tech_touch
    plan: Mapped[str] = mapped_column(String(40))
    arr: Mapped[float] = mapped_column(Float)
    seats_purchased: Mapped[int] = mapped_column(Integer)
    lifecycle_stage: Mapped[str] = mapped_column(String(40))
    contract_start: Mapped[date] = mapped_column(Date)
    renewal_date: Mapped[date] = mapped_column(Date, index=True)
    csm_id: Mapped[int | None] = mapped_column(ForeignKey("csms.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | churned
    timezone: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(10))
    traits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    external_id: Mapped[str | None] = mapped_column(String(200), index=True, unique=True)
    churned_on: Mapped[date | None] = mapped_column(Date)  # set with status 'churned'


class Contact(Base):
    """A person at an account who can receive email."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # admin | champion | user | exec_sponsor | billing
    timezone: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(10))
    traits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    external_id: Mapped[str | None] = mapped_column(String(200), index=True, unique=True)


class Event(Base):
    """Something an account or one of its contacts did, at a time."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_account_name_at", "account_id", "name", "occurred_at"),
        Index("ix_events_contact_name_at", "contact_id", "name", "occurred_at"),
        Index("ix_events_name_at", "name", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(Integer)
    contact_id: Mapped[int | None] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(DateTime)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The sender's id of the event: importing or posting it again never doubles it.
    event_id: Mapped[str | None] = mapped_column(String(200), index=True, unique=True)
    # The ingestion API's write key that posted it (None: imported from a file, or generated).
    write_key_id: Mapped[int | None] = mapped_column(Integer)


class HealthHistory(Base):
    """An account's health score on a day."""

    __tablename__ = "health_history"

    account_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    computed_on: Mapped[date] = mapped_column(Date, primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(20))
    # Each component's value and points, so a score can always be explained.
    components: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


# --- engine-owned -----------------------------------------------------------------------------


class Enrollment(Base):
    """A subject's passage through one playbook, keyed by the trigger occurrence that started it.

    The unique key (playbook_id, subject_type, subject_id, trigger_key) is what makes enrollment
    idempotent: evaluating the same tick twice inserts nothing the second time.
    """

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("playbook_id", "subject_type", "subject_id", "trigger_key"),
        Index("ix_enrollments_due", "playbook_id", "status", "next_run_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    playbook_id: Mapped[str] = mapped_column(String(100))
    playbook_version: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(10))  # account | contact
    subject_id: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int] = mapped_column(Integer)
    trigger_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))  # active | completed | converted | exited
    step_index: Mapped[int] = mapped_column(Integer, default=0)
    step_id: Mapped[str | None] = mapped_column(String(100))  # id of the step at step_index
    outcome: Mapped[str | None] = mapped_column(String(200))  # why it ended
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime)
    enrolled_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    run_id: Mapped[str] = mapped_column(String(64))  # "<flow run id>/<evaluation token>"


class PlaybookVersion(Base):
    """Every version of a playbook that has run: enrollments in flight may continue on it."""

    __tablename__ = "playbook_versions"

    playbook_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column()
    first_seen_at: Mapped[datetime] = mapped_column(DateTime)


class MessageEvent(Base):
    """What happened to a sent message at the provider: delivered, open, click, bounce, …"""

    __tablename__ = "message_events"
    __table_args__ = (Index("ix_message_events_key", "send_key", "event"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    send_key: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(30))  # delivered | open | click | bounce | dropped | …
    occurred_at: Mapped[datetime] = mapped_column(DateTime)
    provider_event_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Suppression(Base):
    """An address that must not be emailed: unsubscribed, bounced, spam report, do-not-contact."""

    __tablename__ = "suppressions"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    """Lower-cased address."""
    reason: Mapped[str] = mapped_column(
        String(30)
    )  # unsubscribe | group_unsubscribe | bounce | dropped | spamreport | manual
    source: Mapped[str] = mapped_column(String(30))  # sendgrid_webhook | manual | import
    created_at: Mapped[datetime] = mapped_column(DateTime)
    detail: Mapped[str] = mapped_column(Text, default="")


class ConditionState(Base):
    """An edge-triggered playbook's memory of a subject's condition.

    `became_true` triggers enter a subject only when it is armed: armed until it enters, armed
    again once the condition has been seen false. `is_true` and `changed_at` say what the last
    evaluation saw.
    """

    __tablename__ = "condition_state"

    playbook_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    subject_type: Mapped[str] = mapped_column(String(10), primary_key=True)
    subject_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    is_true: Mapped[bool] = mapped_column(Boolean)
    armed: Mapped[bool] = mapped_column(Boolean)
    changed_at: Mapped[datetime] = mapped_column(DateTime)


class LedgerEntry(Base):
    """A message or task to be delivered, written (and committed) before anything leaves.

    `send_key` is deterministic — playbook, step, enrollment occurrence and recipient — and
    unique, so planning the same step twice cannot create a second delivery.
    """

    __tablename__ = "ledger"
    __table_args__ = (
        Index("ix_ledger_status", "status", "id"),
        # The policy's history: emails cleared for a contact / an account in the last 30 days.
        Index("ix_ledger_contact_approved", "contact_id", "approved_at"),
        Index("ix_ledger_account_approved", "account_id", "approved_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    send_key: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(10))  # email | task
    channel: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))  # planned | claimed | sending | sent | failed | skipped | unknown
    playbook_id: Mapped[str] = mapped_column(String(100))
    playbook_version: Mapped[str] = mapped_column(String(64))
    step_id: Mapped[str] = mapped_column(String(100))
    enrollment_id: Mapped[int] = mapped_column(BigId)
    account_id: Mapped[int] = mapped_column(Integer)
    contact_id: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    provider_message_id: Mapped[str | None] = mapped_column(String(200), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    not_before: Mapped[datetime | None] = mapped_column(DateTime)  # retry after a 429/5xx, or a deferral
    approved_at: Mapped[datetime | None] = mapped_column(DateTime)  # cleared by the policy: counts toward caps
    variant: Mapped[str | None] = mapped_column(String(40))  # experiment arm
    claim_token: Mapped[str | None] = mapped_column(String(32))  # which claim holds the row
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)  # by the real clock: claims expire by it
    # The recipient's address as the message was addressed, written before it leaves: its
    # unsubscribe link unsubscribes this address, not whatever the contact's address is now.
    sent_to: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class Task(Base):
    """A CSM task opened by a playbook step."""

    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_open_reason", "account_id", "dedupe_key", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    send_key: Mapped[str] = mapped_column(String(64), unique=True)
    playbook_id: Mapped[str] = mapped_column(String(100), index=True)
    step_id: Mapped[str] = mapped_column(String(100))
    account_id: Mapped[int] = mapped_column(Integer, index=True)
    csm_id: Mapped[int | None] = mapped_column(Integer, index=True)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[str] = mapped_column(String(10))  # low | normal | high | urgent
    status: Mapped[str] = mapped_column(String(10), default="open")  # open | done
    due_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    dedupe_key: Mapped[str | None] = mapped_column(String(200))  # one open task per account and reason
    queue: Mapped[str | None] = mapped_column(String(100))  # the team queue, when no CSM could take it
    updated_at: Mapped[datetime | None] = mapped_column(DateTime)
    occurrences: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)
    outcome: Mapped[str | None] = mapped_column(String(40))  # why it was closed
    closed_by: Mapped[str | None] = mapped_column(String(200))


class Lock(Base):
    """Named rows that serialise short critical sections across dispatchers on any database:
    `UPDATE locks SET held_at = … WHERE name = 'policy'` holds the row until commit."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    held_at: Mapped[datetime | None] = mapped_column(DateTime)


class RateLimit(Base):
    """The send-time schedule shared by every dispatcher (the database-backed global send rate)."""

    __tablename__ = "rate_limits"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    next_free_at: Mapped[float] = mapped_column(Float)  # unix seconds of the next unreserved send time


class AuditEntry(Base):
    """One decision of the engine, with a stable reason code. Append-only: never updated."""

    __tablename__ = "audit_log"
    __table_args__ = (
        # Keyset pages (engine/audit_report.py): each filter column leads an index ending in (at, id).
        Index("ix_audit_log_at_id", "at", "id"),
        Index("ix_audit_log_playbook_at_id", "playbook_id", "at", "id"),
        Index("ix_audit_log_account_at_id", "account_id", "at", "id"),
        Index("ix_audit_log_contact_at_id", "contact_id", "at", "id"),
        Index("ix_audit_log_reason_at_id", "reason", "at", "id"),
        Index("ix_audit_log_decision_at_id", "decision", "at", "id"),
        Index("ix_audit_log_send_key", "send_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    run_id: Mapped[str] = mapped_column(String(64))
    playbook_id: Mapped[str] = mapped_column(String(100))
    playbook_version: Mapped[str] = mapped_column(String(64))
    step_id: Mapped[str | None] = mapped_column(String(100))
    enrollment_id: Mapped[int | None] = mapped_column(BigId)
    account_id: Mapped[int | None] = mapped_column(Integer)
    contact_id: Mapped[int | None] = mapped_column(Integer)
    channel: Mapped[str | None] = mapped_column(String(20))
    decision: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text, default="")
    variant: Mapped[str | None] = mapped_column(String(40))
    send_key: Mapped[str | None] = mapped_column(String(64))
    content_hash: Mapped[str | None] = mapped_column(String(64))


class Approval(Base):
    """Content approved by a person: a hash of exactly what one step's arm sends in one locale.
    Append-only; an approval applies while the content still hashes the same (engine/approvals/)."""

    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_content", "playbook_id", "step_id", "arm", "locale", "content_hash"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    playbook_id: Mapped[str] = mapped_column(String(100))
    step_id: Mapped[str] = mapped_column(String(100))
    arm: Mapped[str] = mapped_column(String(40))  # '' for a step without an experiment
    locale: Mapped[str] = mapped_column(String(20))  # '' for the default template file
    content_hash: Mapped[str] = mapped_column(String(64))
    approved_by: Mapped[str] = mapped_column(String(320))
    approved_at: Mapped[datetime] = mapped_column(DateTime)
    comment: Mapped[str] = mapped_column(Text)


class ArchivedMessage(Base):
    """A message exactly as it went out (its headers, subject, text and HTML as handed to the
    channel: JSON, zlib-compressed), by send key, for the archive's retention (engine/archive.py)."""

    __tablename__ = "message_archive"
    __table_args__ = (Index("ix_message_archive_archived_at", "archived_at"),)

    send_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    archived_at: Mapped[datetime] = mapped_column(DateTime)
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)  # bytes before compression
    content: Mapped[bytes] = mapped_column(LargeBinary)


class WriteKey(Base):
    """A key the ingestion API accepts (as the HTTP Basic user name); only its hash is kept."""

    __tablename__ = "write_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(12))  # shown in listings, to tell keys apart
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class DataSource(Base):
    """When a source of customer data (a table, or one event name as `event:NAME`) last
    received data: what the freshness guardrail and `touchflow status` read."""

    __tablename__ = "data_sources"

    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_data_at: Mapped[datetime | None] = mapped_column(DateTime)  # the data's own time
    last_arrived_at: Mapped[datetime | None] = mapped_column(DateTime)  # when it was written
    arrivals: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class PlaybookHold(Base):
    """A playbook stopped by its circuit breaker, until `touchflow resume` lets it run again."""

    __tablename__ = "playbook_holds"

    playbook_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    tripped_at: Mapped[datetime] = mapped_column(DateTime)
    detail: Mapped[dict[str, Any]] = mapped_column()
    resumed_at: Mapped[datetime | None] = mapped_column(DateTime)
    resumed_by: Mapped[str | None] = mapped_column(String(200))


class ConsoleUser(Base):
    """Someone who may sign in to the console, with a role (viewer, marketer, manager, admin)."""

    __tablename__ = "console_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id, never the password
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime)


class ConsoleSession(Base):
    """A signed-in console session: the hash of the cookie's token, its CSRF token and expiry."""

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id"))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class LoginFailure(Base):
    """A failed console sign-in, keyed `email:ADDRESS` or `client:HOST`: what slows the next down."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(300))
    at: Mapped[datetime] = mapped_column(DateTime)


# Core Table handles for set-based statements (the ORM classes above define them).
accounts = cast(Table, Account.__table__)
contacts = cast(Table, Contact.__table__)
events = cast(Table, Event.__table__)
csms = cast(Table, Csm.__table__)
health_history = cast(Table, HealthHistory.__table__)
enrollments = cast(Table, Enrollment.__table__)
condition_state = cast(Table, ConditionState.__table__)
playbook_versions = cast(Table, PlaybookVersion.__table__)
message_events = cast(Table, MessageEvent.__table__)
suppressions = cast(Table, Suppression.__table__)
ledger = cast(Table, LedgerEntry.__table__)
tasks = cast(Table, Task.__table__)
locks = cast(Table, Lock.__table__)
rate_limits = cast(Table, RateLimit.__table__)
audit_log = cast(Table, AuditEntry.__table__)
write_keys = cast(Table, WriteKey.__table__)
data_sources = cast(Table, DataSource.__table__)
playbook_holds = cast(Table, PlaybookHold.__table__)
console_users = cast(Table, ConsoleUser.__table__)
console_sessions = cast(Table, ConsoleSession.__table__)
login_failures = cast(Table, LoginFailure.__table__)
approvals = cast(Table, Approval.__table__)
message_archive = cast(Table, ArchivedMessage.__table__)
