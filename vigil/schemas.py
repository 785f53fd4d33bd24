"""Input and output models at the edge (HTTP, CLI, bulk files): validation lives here.

The ``*Create`` models are what a client may send; the table models in :mod:`vigil.db.models`
are what is stored. A value that passes these models satisfies every database constraint
except the references to other rows, which the repository checks.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from vigil.db.models import Decision

#: ISO 4217 codes Vigil accepts. A short, explicit list: an unknown code is far more often a
#: client bug than a currency we are asked to support.
CURRENCIES: frozenset[str] = frozenset(
    {
        "AED", "AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "HUF", "IDR",
        "ILS", "INR", "JPY", "KRW", "MXN", "MYR", "NOK", "NZD", "PHP", "PLN", "RON", "SAR", "SEK",
        "SGD", "THB", "TRY", "TWD", "USD", "ZAR",
    }
)  # fmt: skip

Channel = Literal["pos", "ecommerce", "transfer", "atm"]
KycStatus = Literal["none", "pending", "verified", "rejected", "review"]
RiskLevel = Literal["unknown", "low", "medium", "high"]
Outcome = Literal["approve", "review", "block"]
BlacklistKind = Literal["user", "device", "ip", "merchant", "beneficiary"]


def _currency(code: str) -> str:
    code = code.upper()
    if code not in CURRENCIES:
        raise ValueError(f"unknown currency {code!r}: expected an ISO 4217 code such as EUR or USD")
    return code


def _country(code: str) -> str:
    if len(code) != 2 or not code.isalpha():
        raise ValueError(f"country must be an ISO 3166-1 alpha-2 code, got {code!r}")
    return code.upper()


def _aware(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError("timestamp must carry a time zone (e.g. 2026-01-31T12:00:00Z)")
    return ts.astimezone(UTC)


Currency = Annotated[str, AfterValidator(_currency)]
Country = Annotated[str, AfterValidator(_country)]
AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
#: Money: strictly positive, at most 2 decimals, below 10^12 (the NUMERIC(18, 2) column).
Amount = Annotated[Decimal, Field(gt=0, lt=Decimal("1e12"), decimal_places=2)]
Id = Annotated[int, Field(ge=1, le=2**63 - 1)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class UserCreate(_In):
    full_name: str = Field(min_length=1, max_length=200)
    birth_date: date | None = None
    country: Country
    home_lat: Latitude
    home_lon: Longitude
    segment: str = Field(default="retail", min_length=1, max_length=32)
    created_at: AwareDatetime | None = None


class AccountCreate(_In):
    user_id: Id
    currency: Currency
    kind: Literal["checking", "savings", "card"] = "checking"
    opened_at: AwareDatetime | None = None


class MerchantCreate(_In):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["merchant", "beneficiary"] = "merchant"
    category: str = Field(min_length=1, max_length=32)
    country: Country
    lat: Latitude
    lon: Longitude
    created_at: AwareDatetime | None = None


class DeviceCreate(_In):
    fingerprint: str = Field(min_length=1, max_length=128)
    os: str = Field(min_length=1, max_length=32)
    first_seen_at: AwareDatetime | None = None


class TransactionCreate(_In):
    """A transaction as a client submits it for screening.

    ``idempotency_key`` is the client's: retrying with the same key returns the first answer and
    never counts the transaction twice. ``created_at`` is the event time; the server's receive
    time is used when it is omitted.
    """

    idempotency_key: str = Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    user_id: Id
    account_id: Id
    merchant_id: Id
    device_id: Id | None = None
    ip: str | None = Field(default=None, max_length=45)
    amount: Amount
    currency: Currency
    channel: Channel
    country: Country
    lat: Latitude | None = None
    lon: Longitude | None = None
    created_at: AwareDatetime | None = None

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        import ipaddress

        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"not an IPv4/IPv6 address: {value!r}") from None


class LabelCreate(_In):
    transaction_id: Id
    is_fraud: bool
    fraud_type: str | None = Field(default=None, max_length=32)
    source: Literal["chargeback", "analyst", "generator"] = "analyst"
    labeled_at: AwareDatetime | None = None


class BlacklistCreate(_In):
    kind: BlacklistKind
    value: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=500)
    expires_at: AwareDatetime | None = None


class ScreenResult(BaseModel):
    """The decision for a transaction, as the client receives it."""

    transaction_id: int
    idempotency_key: str
    outcome: str
    fraud_score: float | None
    anomaly_score: float | None
    reason_codes: list[str]
    rule_hits: list[dict[str, Any]]
    model_version: str | None
    rules_version: str | None
    latency_ms: float
    decided_at: datetime
    replayed: bool = False

    @classmethod
    def of(cls, idempotency_key: str, decision: Decision, *, replayed: bool) -> ScreenResult:
        return cls(
            transaction_id=decision.transaction_id,
            idempotency_key=idempotency_key,
            outcome=decision.outcome,
            fraud_score=decision.fraud_score,
            anomaly_score=decision.anomaly_score,
            reason_codes=list(decision.reason_codes),
            rule_hits=list(decision.rule_hits),
            model_version=decision.model_version,
            rules_version=decision.rules_version,
            latency_ms=decision.latency_ms,
            decided_at=decision.decided_at,
            replayed=replayed,
        )
