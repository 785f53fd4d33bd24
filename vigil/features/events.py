"""What the online feature state is fed: transactions, late labels, blacklist entries, profiles.

Times are timezone-aware datetimes (UTC) or integer nanoseconds since the epoch; a naive
datetime is refused because guessing its zone is how fraud timelines go wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

TimeLike = datetime | int
#: A :class:`TransactionEvent` as plain values, in field order, event time as ``t_ns``.
EventWire = tuple[
    int,
    int,
    int,
    float,
    int | None,
    int | None,
    str | None,
    str | None,
    str | None,
    float | None,
    float | None,
]


def to_ns(t: TimeLike) -> int:
    """UTC nanoseconds since the epoch of an aware datetime (or pass an int through)."""
    if isinstance(t, int):
        return t
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("naive datetime refused: pass a timezone-aware (UTC) datetime")
    # pandas.Timestamp is a datetime with a nanosecond field; plain datetimes stop at microseconds.
    return (t - _EPOCH) // _US * 1000 + int(getattr(t, "nanosecond", 0))


def from_ns(t_ns: int) -> datetime:
    """The aware UTC datetime of ``t_ns`` (exact for whole microseconds; finer parts dropped)."""
    return _EPOCH + timedelta(microseconds=t_ns // 1000)


@dataclass(frozen=True, slots=True)
class TransactionEvent:
    """One transaction as the features see it (columns of ``transactions``; optional ones may be None)."""

    transaction_id: int
    user_id: int
    created_at: TimeLike
    amount: float
    merchant_id: int | None = None
    device_id: int | None = None
    ip: str | None = None
    channel: str | None = None
    country: str | None = None
    lat: float | None = None
    lon: float | None = None
    t_ns: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "t_ns", to_ns(self.created_at))

    def wire(self) -> EventWire:
        """The event as a tuple of plain values, for a call to another process: pickling one
        costs a fraction of pickling the dataclass (Ray's cloudpickle calls back into Python for
        every object that is not a builtin)."""
        return (
            self.transaction_id,
            self.user_id,
            self.t_ns,
            self.amount,
            self.merchant_id,
            self.device_id,
            self.ip,
            self.channel,
            self.country,
            self.lat,
            self.lon,
        )

    @classmethod
    def from_wire(cls, wire: EventWire) -> TransactionEvent:
        """The event of :meth:`wire` (``created_at`` is then its ``t_ns``: the same instant)."""
        return cls(*wire)

    @property
    def has_location(self) -> bool:
        return self.lat is not None and self.lon is not None and self.lat == self.lat and self.lon == self.lon


@dataclass(frozen=True, slots=True)
class LabelEvent:
    """A fraud label, carrying the labelled transaction's keys so it can be routed without a lookup.

    The feeder (the label consumer) joins ``fraud_labels`` with the transaction it names.
    """

    transaction_id: int
    is_fraud: bool
    labeled_at: TimeLike
    transaction_created_at: TimeLike
    merchant_id: int | None = None
    device_id: int | None = None
    ip: str | None = None
    user_id: int | None = None


@dataclass(frozen=True, slots=True)
class BlacklistEntry:
    """A row of ``blacklist_entries``: active while ``added_at <= t < expires_at`` (None: forever)."""

    kind: str
    value: str
    added_at: TimeLike
    expires_at: TimeLike | None = None


@dataclass(frozen=True, slots=True)
class UserProfile:
    """The slow-changing user attributes the features read (a snapshot of ``users``)."""

    created_at: TimeLike | None = None
    home_lat: float | None = None
    home_lon: float | None = None
    kyc_risk_level: str | None = None


@dataclass(frozen=True, slots=True)
class MerchantProfile:
    created_at: TimeLike | None = None
