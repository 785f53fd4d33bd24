"""The data model: SQLModel tables shared by serving, training and the generator.

Conventions
- Every timestamp is timezone-aware UTC (``TIMESTAMP WITH TIME ZONE`` on PostgreSQL; SQLite
  stores the ISO text and :class:`UTCDateTime` gives it back as UTC).
- Surrogate keys are BIGINT. Bulk-loaded rows carry their own ids; rows created through the
  API take the next id (PostgreSQL sequences are moved past loaded ids by the bulk loader).
- Money is ``NUMERIC(18, 2)`` in the transaction's currency, always > 0.
- Categorical columns are short strings validated at the edge (see :mod:`vigil.schemas`),
  not database enums, so a new category is a code change and not a type migration.

The Parquet tables written by ``vigil generate`` use exactly these table and column names
(:data:`vigil.db.models.TABLE_ORDER` is the load order that respects foreign keys).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import JSON, Column, Field, SQLModel

#: A BIGINT surrogate key. SQLite only auto-assigns keys for "INTEGER PRIMARY KEY" (the rowid
#: alias), so the same column is INTEGER there; both are 64-bit.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always stored and returned as timezone-aware UTC.

    A naive datetime is refused: guessing a zone is how fraud timelines go wrong.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: pass a timezone-aware (UTC) datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite hands back what it stored, without the zone
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _ts(*, index: bool = False, nullable: bool = False) -> Any:
    return Field(sa_column=Column(UTCDateTime(), index=index, nullable=nullable))


def _money() -> Any:
    return Field(sa_column=Column(sa.Numeric(18, 2), nullable=False))


def _json() -> Any:
    return Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class User(SQLModel, table=True):
    """A customer. ``kyc_status`` and ``kyc_risk_level`` are written by the KYC pipeline."""

    __tablename__ = "users"

    user_id: int = Field(sa_column=Column(BigId, primary_key=True, autoincrement=True))
    created_at: datetime = _ts()
    full_name: str = Field(max_length=200)
    birth_date: date | None = None
    country: str = Field(max_length=2)
    home_lat: float
    home_lon: float
    segment: str = Field(default="retail", max_length=32)
    kyc_status: str = Field(default="none", max_length=16)  # none|pending|verified|rejected
    kyc_risk_level: str = Field(default="unknown", max_length=16)  # unknown|low|medium|high


class Account(SQLModel, table=True):
    __tablename__ = "accounts"

    account_id: int = Field(sa_column=Column(BigId, primary_key=True, autoincrement=True))
    user_id: int = Field(
        sa_column=Column(sa.BigInteger, sa.ForeignKey("users.user_id"), nullable=False, index=True)
    )
    opened_at: datetime = _ts()
    kind: str = Field(default="checking", max_length=16)  # checking|savings|card
    currency: str = Field(max_length=3)
    status: str = Field(default="active", max_length=16)  # active|frozen|closed


class Merchant(SQLModel, table=True):
    """A merchant or a transfer beneficiary (``kind``): whoever receives the money."""

    __tablename__ = "merchants"

    merchant_id: int = Field(sa_column=Column(BigId, primary_key=True, autoincrement=True))
    kind: str = Field(default="merchant", max_length=16)  # merchant|beneficiary
    name: str = Field(max_length=200)
    category: str = Field(max_length=32)
    country: str = Field(max_length=2)
    lat: float
    lon: float
    created_at: datetime = _ts()


class Device(SQLModel, table=True):
    __tablename__ = "devices"

    device_id: int = Field(sa_column=Column(BigId, primary_key=True, autoincrement=True))
    fingerprint: str = Field(max_length=128, unique=True)
    os: str = Field(max_length=32)
    first_seen_at: datetime = _ts()


class DeviceIpHistory(SQLModel, table=True):
    """Which user was seen on which device from which IP, and when (answers "this device's users")."""

    __tablename__ = "device_ip_history"
    __table_args__ = (
        sa.Index("ix_device_ip_history_device_seen", "device_id", "seen_at"),
        sa.Index("ix_device_ip_history_ip_seen", "ip", "seen_at"),
        sa.Index("ix_device_ip_history_user_seen", "user_id", "seen_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    device_id: int = Field(
        sa_column=Column(sa.BigInteger, sa.ForeignKey("devices.device_id"), nullable=False)
    )
    user_id: int = Field(sa_column=Column(sa.BigInteger, sa.ForeignKey("users.user_id"), nullable=False))
    ip: str = Field(max_length=45)
    country: str = Field(max_length=2)
    seen_at: datetime = _ts()


class Transaction(SQLModel, table=True):
    """A payment or transfer attempt, as received. ``created_at`` is the event time (UTC)."""

    __tablename__ = "transactions"
    __table_args__ = (
        sa.Index("ix_transactions_user_created", "user_id", "created_at"),
        sa.Index("ix_transactions_device_created", "device_id", "created_at"),
        sa.Index("ix_transactions_merchant_created", "merchant_id", "created_at"),
        sa.CheckConstraint("amount > 0", name="ck_transactions_amount_positive"),
    )

    transaction_id: int | None = Field(
        default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True)
    )
    idempotency_key: str = Field(sa_column=Column(sa.String(128), nullable=False, unique=True))
    user_id: int = Field(sa_column=Column(sa.BigInteger, sa.ForeignKey("users.user_id"), nullable=False))
    account_id: int = Field(
        sa_column=Column(sa.BigInteger, sa.ForeignKey("accounts.account_id"), nullable=False)
    )
    merchant_id: int = Field(
        sa_column=Column(sa.BigInteger, sa.ForeignKey("merchants.merchant_id"), nullable=False)
    )
    device_id: int | None = Field(
        default=None, sa_column=Column(sa.BigInteger, sa.ForeignKey("devices.device_id"), nullable=True)
    )
    ip: str | None = Field(default=None, max_length=45)
    amount: Decimal = _money()
    currency: str = Field(max_length=3)
    channel: str = Field(max_length=16)  # pos|ecommerce|transfer|atm
    country: str = Field(max_length=2)
    lat: float | None = None
    lon: float | None = None
    created_at: datetime = _ts()


class FraudLabel(SQLModel, table=True):
    """The truth about a transaction, known only from ``labeled_at`` on (label delay)."""

    __tablename__ = "fraud_labels"

    transaction_id: int = Field(
        sa_column=Column(sa.BigInteger, sa.ForeignKey("transactions.transaction_id"), primary_key=True)
    )
    is_fraud: bool
    fraud_type: str | None = Field(default=None, max_length=32)
    labeled_at: datetime = _ts(index=True)
    source: str = Field(default="chargeback", max_length=16)  # chargeback|analyst|generator


class Decision(SQLModel, table=True):
    """What Vigil answered for a transaction, with everything needed to explain it later."""

    __tablename__ = "decisions"

    transaction_id: int = Field(
        sa_column=Column(sa.BigInteger, sa.ForeignKey("transactions.transaction_id"), primary_key=True)
    )
    outcome: str = Field(max_length=8)  # approve|review|block
    fraud_score: float | None = None  # 0-1, higher = more likely fraud
    anomaly_score: float | None = None  # 0-1, higher = more anomalous
    rule_hits: list[dict[str, Any]] = _json()
    reason_codes: list[str] = _json()
    model_version: str | None = Field(default=None, max_length=64)
    rules_version: str | None = Field(default=None, max_length=64)
    latency_ms: float
    decided_at: datetime = _ts(index=True)


class BlacklistEntry(SQLModel, table=True):
    """One span in which ``kind`` ``value`` is blacklisted: ``added_at <= t < expires_at``.

    Removing an entry ends its span (``expires_at``, ``removed_by``) instead of deleting the row,
    so the blacklist at any past time stays on record: features recomputed offline for training
    see the hits the online decisions saw. A (kind, value) may have several spans, at most one of
    them not ended.
    """

    __tablename__ = "blacklist_entries"
    __table_args__ = (sa.Index("ix_blacklist_kind_value", "kind", "value"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    kind: str = Field(max_length=16)  # user|device|ip|merchant|beneficiary
    value: str = Field(max_length=128)
    reason: str = Field(max_length=500)
    added_by: str = Field(max_length=64)
    added_at: datetime = _ts()
    expires_at: datetime | None = _ts(nullable=True)
    removed_by: str | None = Field(default=None, max_length=64)  # who ended the span early


class ReviewCase(SQLModel, table=True):
    """A transaction waiting for (or resolved by) an analyst."""

    __tablename__ = "review_cases"
    __table_args__ = (sa.Index("ix_review_cases_status_created", "status", "created_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    transaction_id: int = Field(
        sa_column=Column(
            sa.BigInteger, sa.ForeignKey("transactions.transaction_id"), nullable=False, unique=True
        )
    )
    status: str = Field(default="open", max_length=16)  # open|claimed|resolved
    assignee: str | None = Field(default=None, max_length=64)
    resolution: str | None = Field(default=None, max_length=16)  # fraud|legit
    notes: str | None = Field(default=None, max_length=2000)
    created_at: datetime = _ts()
    claimed_at: datetime | None = _ts(nullable=True)
    resolved_at: datetime | None = _ts(nullable=True)


class Alert(SQLModel, table=True):
    __tablename__ = "alerts"
    __table_args__ = (sa.Index("ix_alerts_user_created", "user_id", "created_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    transaction_id: int | None = Field(
        default=None,
        sa_column=Column(sa.BigInteger, sa.ForeignKey("transactions.transaction_id"), nullable=True),
    )
    user_id: int = Field(sa_column=Column(sa.BigInteger, sa.ForeignKey("users.user_id"), nullable=False))
    kind: str = Field(max_length=32)  # block|review|kyc
    severity: str = Field(max_length=8)  # low|medium|high
    message: str = Field(max_length=500)
    created_at: datetime = _ts()


class KycSubmission(SQLModel, table=True):
    __tablename__ = "kyc_submissions"
    __table_args__ = (sa.Index("ix_kyc_submissions_user_created", "user_id", "created_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    user_id: int = Field(sa_column=Column(sa.BigInteger, sa.ForeignKey("users.user_id"), nullable=False))
    status: str = Field(default="pending", max_length=16)  # pending|verified|rejected|review
    risk_level: str = Field(default="unknown", max_length=16)
    document_type: str | None = Field(default=None, max_length=16)  # passport|id_card|driving_licence
    document_number: str | None = Field(default=None, max_length=64)
    face_match_score: float | None = None
    liveness_score: float | None = None
    reason_codes: list[str] = _json()
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts()
    decided_at: datetime | None = _ts(nullable=True)


class EventOutbox(SQLModel, table=True):
    """Events owed to the bus: one row per screened batch, written in the batch's own database
    transaction (see :mod:`vigil.events.outbox`). The row goes once the batch's events are published;
    a row still here at ``due_at`` is republished by a relay (at least once)."""

    __tablename__ = "event_outbox"
    __table_args__ = (sa.Index("ix_event_outbox_due_at", "due_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    transaction_ids: list[int] = _json()
    created_at: datetime = _ts()
    due_at: datetime = _ts()
    attempts: int = Field(default=0, sa_column=Column(sa.Integer, nullable=False, server_default="0"))
    last_error: str | None = Field(default=None, max_length=500)


class CustomerCredential(SQLModel, table=True):
    """How a customer signs in: an e-mail address (stored lower-cased) and an argon2id hash of
    the password (the PHC string, parameters included, so a parameter change rehashes on the
    next sign-in). One per user; staff and partner backends never have one."""

    __tablename__ = "customer_credentials"
    __table_args__ = (sa.UniqueConstraint("email", name="uq_customer_credentials_email"),)

    user_id: int = Field(
        sa_column=Column(sa.BigInteger, sa.ForeignKey("users.user_id"), primary_key=True, autoincrement=False)
    )
    email: str = Field(sa_column=Column(sa.String(254), nullable=False))
    password_hash: str = Field(max_length=255)
    created_at: datetime = _ts()
    password_changed_at: datetime = _ts()


class CustomerDevice(SQLModel, table=True):
    """A device a customer has signed in on (the device binding): the shared :class:`Device`
    row, plus the name the customer gave it and when it was first and last used."""

    __tablename__ = "customer_devices"
    __table_args__ = (sa.UniqueConstraint("user_id", "device_id", name="uq_customer_devices_user_device"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    user_id: int = Field(sa_column=Column(sa.BigInteger, sa.ForeignKey("users.user_id"), nullable=False))
    device_id: int = Field(
        sa_column=Column(sa.BigInteger, sa.ForeignKey("devices.device_id"), nullable=False)
    )
    name: str = Field(max_length=64)
    first_seen_at: datetime = _ts()
    last_seen_at: datetime = _ts()


class CustomerSession(SQLModel, table=True):
    """One signed-in device: the family of its refresh tokens. Access tokens name it (``sid``)
    and are refused once it is revoked (sign-out, a reused refresh token) or past ``expires_at``."""

    __tablename__ = "customer_sessions"
    __table_args__ = (sa.Index("ix_customer_sessions_user", "user_id"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    user_id: int = Field(sa_column=Column(sa.BigInteger, sa.ForeignKey("users.user_id"), nullable=False))
    device_id: int = Field(
        sa_column=Column(sa.BigInteger, sa.ForeignKey("devices.device_id"), nullable=False)
    )
    created_at: datetime = _ts()
    expires_at: datetime = _ts()
    revoked_at: datetime | None = _ts(nullable=True)
    revoked_reason: str | None = Field(default=None, max_length=32)  # signout|refresh_reuse|signout_all


class RefreshToken(SQLModel, table=True):
    """A refresh token, kept only as the SHA-256 of the opaque random token. Each use rotates it
    (``rotated_at`` set, a new one issued in the same session); presenting a rotated one again
    revokes the whole session."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        sa.Index("ix_refresh_tokens_session", "session_id"),
        sa.UniqueConstraint("token_hash", name="uq_refresh_tokens_token_hash"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    session_id: int = Field(
        sa_column=Column(sa.BigInteger, sa.ForeignKey("customer_sessions.id"), nullable=False)
    )
    token_hash: str = Field(sa_column=Column(sa.String(64), nullable=False))
    created_at: datetime = _ts()
    expires_at: datetime = _ts()
    rotated_at: datetime | None = _ts(nullable=True)


class SignInAttempt(SQLModel, table=True):
    """One sign-in (or sign-up) attempt, kept for the throttles: failures are counted per e-mail
    address and per IP address from these rows, so a restart forgets nothing. ``email`` is the
    normalised address as typed, whether or not an account has it."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (
        sa.Index("ix_sign_in_attempts_email_created", "email", "created_at"),
        sa.Index("ix_sign_in_attempts_ip_created", "ip", "created_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    email: str = Field(max_length=254)
    ip: str = Field(max_length=45)
    succeeded: bool
    created_at: datetime = _ts()


#: Tables in an order that satisfies every foreign key (load in this order, drop in reverse).
TABLE_ORDER: tuple[str, ...] = (
    "users",
    "accounts",
    "merchants",
    "devices",
    "device_ip_history",
    "transactions",
    "fraud_labels",
    "decisions",
    "blacklist_entries",
    "review_cases",
    "alerts",
    "kyc_submissions",
    "event_outbox",
    "customer_credentials",
    "customer_devices",
    "customer_sessions",
    "refresh_tokens",
    "sign_in_attempts",
)
