"""The blacklist snapshot that ``blacklist`` rules match against, at the transaction's event time.

:func:`entity_key` normalises a listed value and a transaction field to the same string;
:class:`BlacklistItem` is one entry with its validity interval; :class:`Blacklist` is the
in-memory snapshot of ``blacklist_entries`` (kept current by :mod:`vigil.state.blacklists`).
:data:`BLACKLIST_FIELDS` says which transaction field each blacklist kind is matched against.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

#: Blacklist kind -> the transaction field it is matched against.
BLACKLIST_FIELDS: dict[str, str] = {
    "user": "user_id",
    "device": "device_id",
    "ip": "ip",
    "merchant": "merchant_id",
    "beneficiary": "merchant_id",
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(t: datetime | int, what: str) -> datetime:
    """An aware UTC datetime from an aware datetime or integer nanoseconds since the epoch."""
    if isinstance(t, int):
        return _EPOCH + timedelta(microseconds=t // 1000)
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {t!r}")
    return t.astimezone(UTC)


def entity_key(kind: str, value: object) -> str:
    """The string a blacklist value or a transaction field is matched by.

    Ids match as integers written in decimal (``42``, ``"42"`` and ``42.0`` are the same user);
    IP addresses in their canonical form; anything else stripped.
    """
    if kind == "ip":
        text = str(value).strip()
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            return text.lower()
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    try:
        return str(int(text))
    except ValueError:
        return text


def _field(obj: Any, name: str) -> Any:
    """``obj[name]`` for a mapping, ``obj.name`` otherwise; None when absent."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


class BlacklistItem:
    """One entry: active while ``added_at <= t < expires_at`` (either bound None = open).

    Times are aware datetimes or integer UTC nanoseconds (as in :mod:`vigil.features.events`);
    both are stored as aware UTC datetimes, a naive datetime is refused.
    """

    __slots__ = ("added_at", "expires_at", "kind", "reason", "value")

    def __init__(
        self,
        kind: str,
        value: object,
        reason: str = "",
        added_at: datetime | int | None = None,
        expires_at: datetime | int | None = None,
    ) -> None:
        self.kind = str(kind)
        self.value = str(value)
        self.reason = reason
        self.added_at: datetime | None = None if added_at is None else _utc(added_at, "added_at")
        self.expires_at: datetime | None = None if expires_at is None else _utc(expires_at, "expires_at")

    def __repr__(self) -> str:
        return (
            f"BlacklistItem(kind={self.kind!r}, value={self.value!r}, reason={self.reason!r}, "
            f"added_at={self.added_at!r}, expires_at={self.expires_at!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BlacklistItem):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[Any, ...]:
        return (self.kind, self.value, self.reason, self.added_at, self.expires_at)

    def active_at(self, at: datetime) -> bool:
        if self.added_at is not None and at < self.added_at:
            return False
        return self.expires_at is None or at < self.expires_at


class Blacklist:
    """An in-memory snapshot of ``blacklist_entries``, matched at event time.

    Build it from :class:`BlacklistItem` objects, or with :meth:`from_rows` from database rows,
    feature events or dicts; :meth:`add` applies one new entry between batches (evaluation is
    synchronous, so a replica's event loop never sees a half-applied change). Expired entries are
    kept: the event time decides, and a late or replayed transaction may predate the expiry.
    """

    __slots__ = ("_entries", "_size")

    def __init__(self, items: Iterable[BlacklistItem] = ()) -> None:
        self._entries: dict[tuple[str, str], tuple[BlacklistItem, ...]] = {}
        self._size = 0
        for item in items:
            self.add(item)

    def add(self, item: BlacklistItem) -> None:
        """Add one entry (an identical one already present is not added twice)."""
        if item.kind not in BLACKLIST_FIELDS:
            raise ValueError(
                f"unknown blacklist kind {item.kind!r}: expected one of {sorted(BLACKLIST_FIELDS)}"
            )
        key = (item.kind, entity_key(item.kind, item.value))
        present = self._entries.get(key, ())
        if item in present:
            return
        self._entries[key] = (*present, item)
        self._size += 1

    @classmethod
    def from_rows(cls, rows: Iterable[Any]) -> Blacklist:
        """A snapshot from objects or mappings with ``kind``, ``value`` (+ optional fields)."""
        items = []
        for row in rows:
            added = _field(row, "added_at")
            expires = _field(row, "expires_at")
            items.append(
                BlacklistItem(
                    kind=str(_field(row, "kind")),
                    value=_field(row, "value"),
                    reason=str(_field(row, "reason") or ""),
                    added_at=added,
                    expires_at=expires,
                )
            )
        return cls(items)

    def __len__(self) -> int:
        return self._size

    def match(self, kind: str, value: object, at: datetime) -> BlacklistItem | None:
        """The entry of ``kind`` naming ``value`` that is active at ``at`` (aware), if any."""
        if value is None:
            return None
        for item in self._entries.get((kind, entity_key(kind, value)), ()):
            if item.active_at(at):
                return item
        return None
