"""Input and output models at the edge (HTTP, CLI, bulk files): validation lives here.

The ``*Create`` models are what a client may send; the table models in :mod:`vigil.db.models`
are what is stored. A value that passes these models satisfies every database constraint
except the references to other rows, which the repository checks.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

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


#: The timestamps a client may send: the features count time in int64 nanoseconds since 1970,
#: and a year-1 or year-9999 event time made the scoring graph fail (a 503 for bad input).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _aware(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError("timestamp must carry a time zone (e.g. 2026-01-31T12:00:00Z)")
    # Compared before converting: 0001-01-01T00:00+01:00 is in year 0 in UTC (an OverflowError).
    if not EARLIEST <= ts < LATEST:
        raise ValueError(f"timestamp must be from {EARLIEST:%Y-%m-%d} to before {LATEST:%Y-%m-%d} (UTC)")
    return ts.astimezone(UTC)


def _storable(text: str) -> str:
    if "\x00" in text:
        raise ValueError("text must not contain NUL characters (U+0000): the database cannot store them")
    return text


#: Any case on input ("eur"), upper case once validated; the schema lists the codes accepted.
Currency = Annotated[
    str,
    WithJsonSchema({"type": "string", "enum": sorted(CURRENCIES), "description": "ISO 4217 code"}),
    AfterValidator(_currency),
]
Country = Annotated[str, Field(pattern=r"^[A-Za-z]{2}$"), AfterValidator(_country)]
#: Free text that is stored: PostgreSQL's text types refuse NUL, so it is a 422 here, not a 500 there.
Text = Annotated[str, AfterValidator(_storable)]
#: An IPv4 or IPv6 address (validated by the model that uses it, which also normalises it).
IpAddress = Annotated[
    str,
    WithJsonSchema({"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]}),
]
AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
#: Money: strictly positive, at most 2 decimals, below 10^12 (the NUMERIC(18, 2) column).
#: The schema states the 2 decimals too (pydantic's own leaves them out, and any string in).
Amount = Annotated[
    Decimal,
    Field(gt=0, lt=Decimal("1e12"), decimal_places=2),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1e12, "multipleOf": 0.01},
                {"type": "string", "pattern": r"^0*([1-9]\d{0,11}(\.\d{1,2})?|0?\.(0[1-9]|[1-9]\d?))$"},
            ],
            "description": "above 0, below 10^12, at most 2 decimals; a string keeps it exact",
        }
    ),
]
#: The largest row id: ids are BIGINT columns (signed 64-bit, in SQLite too). A larger number
#: in a request is a 422 here, not an overflow in the database driver.
MAX_ID = 2**63 - 1
#: A row id wherever a client sends one: path, query, form field or JSON body.
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
#: A paging cursor: the last id a client has seen (0 = from the start).
Cursor = Annotated[int, Field(ge=0, le=MAX_ID)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class UserCreate(_In):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"full_name": "Ada Lovelace", "country": "GB", "home_lat": 51.5, "home_lon": -0.12}]
        }
    )

    full_name: Text = Field(min_length=1, max_length=200)
    birth_date: date | None = None
    country: Country
    home_lat: Latitude
    home_lon: Longitude
    segment: Text = Field(default="retail", min_length=1, max_length=32)
    created_at: AwareDatetime | None = None


class AccountCreate(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [{"user_id": 1, "currency": "EUR"}]})

    user_id: Id
    currency: Currency
    kind: Literal["checking", "savings", "card"] = "checking"
    opened_at: AwareDatetime | None = None


class MerchantCreate(_In):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "Corner Shop", "category": "grocery", "country": "GB", "lat": 51.5, "lon": 0.0}
            ]
        }
    )

    name: Text = Field(min_length=1, max_length=200)
    kind: Literal["merchant", "beneficiary"] = "merchant"
    category: Text = Field(min_length=1, max_length=32)
    country: Country
    lat: Latitude
    lon: Longitude
    created_at: AwareDatetime | None = None


class DeviceCreate(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [{"fingerprint": "a3f9c2e1", "os": "android"}]})

    fingerprint: Text = Field(min_length=1, max_length=128)
    os: Text = Field(min_length=1, max_length=32)
    first_seen_at: AwareDatetime | None = None


class TransactionCreate(_In):
    """A transaction as a client submits it for screening.

    ``idempotency_key`` is the client's: retrying with the same key returns the first answer and
    never counts the transaction twice. ``created_at`` is the event time; the server's receive
    time is used when it is omitted.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "idempotency_key": "order-2026-0001",
                    "user_id": 1,
                    "account_id": 1,
                    "merchant_id": 1,
                    "amount": "19.99",
                    "currency": "EUR",
                    "channel": "ecommerce",
                    "country": "GB",
                }
            ]
        }
    )

    idempotency_key: str = Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    user_id: Id
    account_id: Id
    merchant_id: Id
    device_id: Id | None = None
    ip: IpAddress | None = Field(default=None, max_length=45)
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
    fraud_type: Text | None = Field(default=None, max_length=32)
    source: Literal["chargeback", "analyst", "generator"] = "analyst"
    labeled_at: AwareDatetime | None = None


class BlacklistCreate(_In):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"kind": "ip", "value": "203.0.113.7", "reason": "card testing"}]}
    )

    kind: BlacklistKind
    value: Text = Field(min_length=1, max_length=128)
    reason: Text = Field(min_length=1, max_length=500)
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


class AlertmanagerAlert(BaseModel):
    """One alert of an Alertmanager webhook notification (fields Vigil does not read are ignored)."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[Text, Text] = Field(description="must include alertname")
    annotations: dict[Text, Text] = Field(default_factory=dict)
    startsAt: AwareDatetime  # Alertmanager's field names
    #: ``0001-01-01T00:00:00Z`` while an alert fires without a known end: not range-checked.
    endsAt: datetime | None = None
    fingerprint: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z]+$")
    generatorURL: Text | None = Field(default=None, max_length=2000)

    @field_validator("labels")
    @classmethod
    def _has_alertname(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels.get("alertname"):
            raise ValueError("labels must include a non-empty alertname")
        return labels


class AlertmanagerWebhook(BaseModel):
    """Alertmanager's webhook payload, version 4 (``webhook_configs`` with ``send_resolved``)."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: Text = Field(default="", max_length=200)
    groupKey: Text = Field(default="", max_length=2000)
    alerts: list[AlertmanagerAlert] = Field(min_length=1, max_length=1000)


class OperatorAlertsResult(BaseModel):
    """What one notification changed: alert ids created (firing, and resolution notices) and
    the firing ones it resolved; repeats of what is stored already count as ``unchanged``."""

    created: list[int]
    resolved: list[int]
    unchanged: int
