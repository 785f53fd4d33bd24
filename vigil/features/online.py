"""Online execution of the feature definitions: small state objects read, then updated, per event.

Per event, in this order (read then learn: a transaction's features never include itself)::

    row = engine.process(event)        # = features(event, now) on every state, then update(event)

State lives in three places, because the keys differ:

- :class:`UserState` — everything keyed by the user (velocity windows, amount moments, novelty,
  previous location, profile). VelocityStore actors are sharded by ``hash(user_id)`` and own these.
- :class:`InMemoryEntityStore` — everything keyed by a *shared* entity: distinct users and label
  risk per device, distinct users per IP, label risk and age per merchant. A device is used by
  users living on different user shards, so these cannot sit with the user. They are sharded by
  ``stable_shard(kind, key, n)`` (crc32, stable across processes, unlike ``hash(str)``): a
  store built with ``shard_index=i, shard_count=n`` owns only its keys, answers only for them
  and ignores the rest, so the caller scatters an event to every entity shard (or just to the
  owners of its device, IP and merchant) and merges the partial rows. Each shard does
  read-then-learn for an event in one call (:meth:`InMemoryEntityStore.process`) so another
  event cannot slip between its read and its update. Labels are routed the same way.
- :class:`BlacklistIndex` — small, read-mostly, replicated whole to every actor.

Everything serialises to a JSON-safe dict (``to_dict``/``from_dict``) and to bytes
(``to_bytes``/``from_bytes``) for actor checkpoints. Memory is bounded by time: windows are deques
pruned to 7 days, novelty maps to 90 days, distinct-user maps to 7 days; totals are O(1).

Events for one key must arrive in ``(created_at, transaction_id)`` order, which is the order
the offline path assumes; a late, older event is still scored but against the newer state.
"""

from __future__ import annotations

import heapq
import json
import zlib
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

from vigil.features import definitions as d
from vigil.features.events import (
    BlacklistEntry,
    LabelEvent,
    MerchantProfile,
    TransactionEvent,
    UserProfile,
    to_ns,
)
from vigil.features.spec import (
    BLACKLIST_KINDS,
    CHANNEL_CODES,
    FEATURE_NAMES,
    KYC_RISK_CODES,
    NOVELTY_WINDOW_NS,
    WINDOWS_NS,
)

NAN = float("nan")
STATE_FORMAT = 1
_MAX_WINDOW_NS = max(WINDOWS_NS.values())
_DISTINCT_WINDOWS_NS = {"24h": WINDOWS_NS["24h"], "7d": WINDOWS_NS["7d"]}

Row = dict[str, float]
TimeArg = Any  # datetime | int | None; loose so callers can pass pandas timestamps


def _f(x: Any) -> float:
    return float(x)


def _opt_ns(t: Any) -> int | None:
    return None if t is None else to_ns(t)


def stable_shard(kind: str, key: object, shard_count: int) -> int:
    """The shard that owns entity ``(kind, key)``; the same in every process and Python run."""
    return zlib.crc32(f"{kind}:{key}".encode()) % shard_count


def event_features(event: TransactionEvent) -> Row:
    """Features of the event alone: amount, calendar, channel."""
    cents = int(d.to_cents(event.amount))
    return {
        "amount": cents / 100.0,
        "hour_utc": _f(d.hour_utc(event.t_ns)),
        "weekday_utc": _f(d.weekday_utc(event.t_ns)),
        "channel_code": NAN if event.channel is None else CHANNEL_CODES.get(event.channel, NAN),
    }


class _Window:
    """Prior (time, cents) pairs in ``(t - width, t]``, with their exact integer sum."""

    __slots__ = ("items", "total", "width")

    def __init__(self, width: int) -> None:
        self.width = width
        self.items: deque[tuple[int, int]] = deque()
        self.total = 0

    def read(self, now: int) -> tuple[int, int]:
        """(count, sum) of items still inside the window at ``now``; does not mutate."""
        count, total, edge = len(self.items), self.total, now - self.width
        for t, c in self.items:
            if t > edge:
                break
            count -= 1
            total -= c
        return count, total

    def add(self, t: int, cents: int) -> None:
        edge = t - self.width
        while self.items and self.items[0][0] <= edge:
            self.total -= self.items.popleft()[1]
        self.items.append((t, cents))
        self.total += cents


def _prune(last_seen: dict[Any, int], edge: int) -> None:
    for k in [k for k, t in last_seen.items() if t <= edge]:
        del last_seen[k]


def _is_new(last_seen: dict[Any, int], key: object, now: int) -> float:
    if key is None:
        return NAN
    t = last_seen.get(key)
    return 1.0 if t is None or t <= now - NOVELTY_WINDOW_NS else 0.0


class UserState:
    """Everything keyed by one user. ``features(event, now)`` reads; ``update(event)`` learns."""

    def __init__(self, user_id: int, profile: UserProfile | None = None) -> None:
        self.user_id = user_id
        self.profile = profile or UserProfile()
        self.windows = {name: _Window(width) for name, width in WINDOWS_NS.items()}
        self.n = 0
        self.s1 = 0  # sum of cents (exact)
        self.s2 = 0  # sum of squared cents (exact, Python int)
        self.last_ns: int | None = None
        self.last_loc: tuple[int, float, float] | None = None
        self.devices: dict[int, int] = {}
        self.ips: dict[str, int] = {}
        self.countries: dict[str, int] = {}

    def features(self, event: TransactionEvent, now: TimeArg = None) -> Row:
        t = event.t_ns if now is None else to_ns(now)
        row: Row = {}
        for name, window in self.windows.items():
            count, total = window.read(t)
            row[f"txn_count_{name}_by_user"] = float(count)
            row[f"amount_sum_{name}_by_user"] = total / 100.0
        cents = int(d.to_cents(event.amount))
        mean, ratio, z = d.amount_moments(cents, float(self.n), float(self.s1), float(self.s2))
        row["txn_count_all_by_user"] = float(self.n)
        row["amount_mean_all_by_user"] = _f(mean)
        row["amount_ratio_mean_all_by_user"] = _f(ratio)
        row["amount_zscore_all_by_user"] = _f(z)
        last = self.last_ns
        row["seconds_since_prev_by_user"] = NAN if last is None else _f(d.seconds_between(t, last))
        row["device_new_90d_by_user"] = _is_new(self.devices, event.device_id, t)
        row["ip_new_90d_by_user"] = _is_new(self.ips, event.ip, t)
        row["country_new_90d_by_user"] = _is_new(self.countries, event.country, t)
        dist = speed = home = NAN
        if event.has_location:
            if self.last_loc is not None:
                t0, lat0, lon0 = self.last_loc
                dist = _f(d.haversine_km(lat0, lon0, event.lat, event.lon))
                speed = _f(d.speed_kmh(dist, t - t0))
            p = self.profile
            if p.home_lat is not None and p.home_lon is not None:
                home = _f(d.haversine_km(p.home_lat, p.home_lon, event.lat, event.lon))
        row["distance_km_prev_by_user"] = dist
        row["speed_kmh_prev_by_user"] = speed
        row["distance_km_home_by_user"] = home
        created = _opt_ns(self.profile.created_at)
        row["age_days_by_user"] = NAN if created is None else _f(d.age_days(t, created))
        kyc = self.profile.kyc_risk_level
        row["kyc_risk_level_by_user"] = NAN if kyc is None else KYC_RISK_CODES.get(kyc, NAN)
        return row

    def update(self, event: TransactionEvent) -> None:
        t = event.t_ns
        cents = int(d.to_cents(event.amount))
        for window in self.windows.values():
            window.add(t, cents)
        self.n += 1
        self.s1 += cents
        self.s2 += cents * cents
        self.last_ns = t
        if event.has_location:
            assert event.lat is not None and event.lon is not None
            self.last_loc = (t, float(event.lat), float(event.lon))
        edge = t - NOVELTY_WINDOW_NS
        _prune(self.devices, edge)
        _prune(self.ips, edge)
        _prune(self.countries, edge)
        if event.device_id is not None:
            self.devices[event.device_id] = t
        if event.ip is not None:
            self.ips[event.ip] = t
        if event.country is not None:
            self.countries[event.country] = t

    def to_dict(self) -> dict[str, Any]:
        p = self.profile
        return {
            "format": STATE_FORMAT,
            "user_id": self.user_id,
            "profile": [_opt_ns(p.created_at), p.home_lat, p.home_lon, p.kyc_risk_level],
            "windows": {k: [list(x) for x in w.items] for k, w in self.windows.items()},
            "moments": [self.n, str(self.s1), str(self.s2)],  # str: JSON readers may cap ints at 2**53
            "last_ns": self.last_ns,
            "last_loc": None if self.last_loc is None else list(self.last_loc),
            "devices": [[k, t] for k, t in self.devices.items()],
            "ips": [[k, t] for k, t in self.ips.items()],
            "countries": [[k, t] for k, t in self.countries.items()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UserState:
        _check_format(data)
        created, home_lat, home_lon, kyc = data["profile"]
        state = cls(int(data["user_id"]), UserProfile(created, home_lat, home_lon, kyc))
        for name, items in data["windows"].items():
            window = state.windows[name]
            window.items = deque((int(t), int(c)) for t, c in items)
            window.total = sum(c for _, c in window.items)
        n, s1, s2 = data["moments"]
        state.n, state.s1, state.s2 = int(n), int(s1), int(s2)
        state.last_ns = data["last_ns"]
        loc = data["last_loc"]
        state.last_loc = None if loc is None else (int(loc[0]), float(loc[1]), float(loc[2]))
        state.devices = {int(k): int(t) for k, t in data["devices"]}
        state.ips = {str(k): int(t) for k, t in data["ips"]}
        state.countries = {str(k): int(t) for k, t in data["countries"]}
        return state

    def to_bytes(self) -> bytes:
        return _dumps(self.to_dict())

    @classmethod
    def from_bytes(cls, raw: bytes) -> UserState:
        return cls.from_dict(_loads(raw))


class _LabelCounter:
    """Fraud labels of one entity's transactions, applied once known (label delay)."""

    __slots__ = ("fraud", "labeled", "pending")

    def __init__(self) -> None:
        self.pending: list[tuple[int, int]] = []  # heap of (known_at_ns, is_fraud)
        self.fraud = 0
        self.labeled = 0

    def add(self, known_ns: int, is_fraud: bool) -> None:
        heapq.heappush(self.pending, (known_ns, int(is_fraud)))

    def read(self, now: int) -> tuple[int, int]:
        # Applying known labels is idempotent in time order, so doing it on read is safe.
        while self.pending and self.pending[0][0] <= now:
            _, fraud = heapq.heappop(self.pending)
            self.fraud += fraud
            self.labeled += 1
        return self.fraud, self.labeled

    def to_list(self) -> list[Any]:
        return [self.fraud, self.labeled, [list(p) for p in self.pending]]

    @classmethod
    def from_list(cls, data: list[Any]) -> _LabelCounter:
        counter = cls()
        counter.fraud, counter.labeled = int(data[0]), int(data[1])
        counter.pending = [(int(t), int(f)) for t, f in data[2]]
        heapq.heapify(counter.pending)
        return counter


class EntityStore(Protocol):
    """What a velocity actor needs from the shared-entity state, wherever it lives.

    ``process`` reads the entity features of ``event`` (only for entities this store owns) and
    then learns the event, atomically. ``add_label`` may be called long before the label is
    known: it is applied when event time reaches ``max(labeled_at, created_at + 1ns)``.
    """

    def process(self, event: TransactionEvent, now: TimeArg = None) -> Row: ...

    def add_label(self, label: LabelEvent) -> None: ...

    def set_merchant_profile(self, merchant_id: int, profile: MerchantProfile) -> None: ...


class InMemoryEntityStore:
    """Device / IP / merchant state for the keys of one shard (all keys when ``shard_count == 1``)."""

    def __init__(self, shard_index: int = 0, shard_count: int = 1) -> None:
        if not 0 <= shard_index < shard_count:
            raise ValueError("need 0 <= shard_index < shard_count")
        self.shard_index = shard_index
        self.shard_count = shard_count
        self.device_users: dict[int, dict[int, int]] = {}
        self.ip_users: dict[str, dict[int, int]] = {}
        self.device_labels: dict[int, _LabelCounter] = {}
        self.merchant_labels: dict[int, _LabelCounter] = {}
        self.merchant_created: dict[int, int] = {}

    def owns(self, kind: str, key: object) -> bool:
        return key is not None and (
            self.shard_count == 1 or stable_shard(kind, key, self.shard_count) == self.shard_index
        )

    def features(self, event: TransactionEvent, now: TimeArg = None) -> Row:
        """Entity features of the owned entities of ``event``; keys it does not own are absent."""
        t = event.t_ns if now is None else to_ns(now)
        row: Row = {}
        if self.owns("device", event.device_id):
            self._distinct(row, "device", self.device_users.get(event.device_id or 0, {}), t)
        if self.owns("ip", event.ip):
            self._distinct(row, "ip", self.ip_users.get(event.ip or "", {}), t)
        for kind, key, counters in (
            ("device", event.device_id, self.device_labels),
            ("merchant", event.merchant_id, self.merchant_labels),
        ):
            if not self.owns(kind, key):
                continue
            assert key is not None
            counter = counters.get(key)
            fraud, labeled = (0, 0) if counter is None else counter.read(t)
            row[f"fraud_count_all_by_{kind}"] = float(fraud)
            row[f"labeled_count_all_by_{kind}"] = float(labeled)
            row[f"fraud_rate_all_by_{kind}"] = _f(d.fraud_rate(fraud, labeled))
        if self.owns("merchant", event.merchant_id):
            assert event.merchant_id is not None
            created = self.merchant_created.get(event.merchant_id)
            row["age_days_by_merchant"] = NAN if created is None else _f(d.age_days(t, created))
        return row

    def update(self, event: TransactionEvent) -> None:
        t = event.t_ns
        edge = t - _MAX_WINDOW_NS
        if event.device_id is not None and self.owns("device", event.device_id):
            seen = self.device_users.setdefault(event.device_id, {})
            _prune(seen, edge)
            seen[event.user_id] = t
        if event.ip is not None and self.owns("ip", event.ip):
            seen = self.ip_users.setdefault(event.ip, {})
            _prune(seen, edge)
            seen[event.user_id] = t

    @staticmethod
    def _distinct(row: Row, kind: str, seen: dict[int, int], t: int) -> None:
        for name, width in _DISTINCT_WINDOWS_NS.items():
            edge = t - width
            row[f"users_distinct_{name}_by_{kind}"] = float(sum(1 for s in seen.values() if s > edge))

    def process(self, event: TransactionEvent, now: TimeArg = None) -> Row:
        row = self.features(event, now)
        self.update(event)
        return row

    def add_label(self, label: LabelEvent) -> None:
        known = int(d.label_known_ns(to_ns(label.labeled_at), to_ns(label.transaction_created_at)))
        for kind, key, counters in (
            ("device", label.device_id, self.device_labels),
            ("merchant", label.merchant_id, self.merchant_labels),
        ):
            if self.owns(kind, key):
                assert key is not None
                counters.setdefault(key, _LabelCounter()).add(known, label.is_fraud)

    def set_merchant_profile(self, merchant_id: int, profile: MerchantProfile) -> None:
        if self.owns("merchant", merchant_id):
            created = _opt_ns(profile.created_at)
            if created is None:
                self.merchant_created.pop(merchant_id, None)
            else:
                self.merchant_created[merchant_id] = created

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "shard": [self.shard_index, self.shard_count],
            "device_users": [[k, list(v.items())] for k, v in self.device_users.items()],
            "ip_users": [[k, list(v.items())] for k, v in self.ip_users.items()],
            "device_labels": [[k, c.to_list()] for k, c in self.device_labels.items()],
            "merchant_labels": [[k, c.to_list()] for k, c in self.merchant_labels.items()],
            "merchant_created": list(self.merchant_created.items()),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InMemoryEntityStore:
        _check_format(data)
        store = cls(*data["shard"])
        store.device_users = {int(k): {int(u): int(t) for u, t in v} for k, v in data["device_users"]}
        store.ip_users = {str(k): {int(u): int(t) for u, t in v} for k, v in data["ip_users"]}
        store.device_labels = {int(k): _LabelCounter.from_list(c) for k, c in data["device_labels"]}
        store.merchant_labels = {int(k): _LabelCounter.from_list(c) for k, c in data["merchant_labels"]}
        store.merchant_created = {int(k): int(t) for k, t in data["merchant_created"]}
        return store

    def to_bytes(self) -> bytes:
        return _dumps(self.to_dict())

    @classmethod
    def from_bytes(cls, raw: bytes) -> InMemoryEntityStore:
        return cls.from_dict(_loads(raw))


class BlacklistIndex:
    """Blacklist entries by (matched column, normalised value); replicated to every actor."""

    def __init__(self, entries: Iterable[BlacklistEntry] = ()) -> None:
        self.entries: dict[tuple[str, object], list[tuple[int, int | None]]] = {}
        for entry in entries:
            self.add(entry)

    def add(self, entry: BlacklistEntry) -> None:
        column = BLACKLIST_KINDS.get(entry.kind)
        if column is None:
            return
        key = (column, d.normalise_entity_value(column, entry.value))
        self.entries.setdefault(key, []).append((to_ns(entry.added_at), _opt_ns(entry.expires_at)))

    def _hit(self, column: str, value: object, now: int) -> float:
        if value is None:
            return NAN
        spans = self.entries.get((column, d.normalise_entity_value(column, value)), ())
        return 1.0 if any(a <= now and (e is None or now < e) for a, e in spans) else 0.0

    def features(self, event: TransactionEvent, now: TimeArg = None) -> Row:
        t = event.t_ns if now is None else to_ns(now)
        return {
            "blacklist_hit_by_user": self._hit("user_id", event.user_id, t),
            "blacklist_hit_by_device": self._hit("device_id", event.device_id, t),
            "blacklist_hit_by_ip": self._hit("ip", event.ip, t),
            "blacklist_hit_by_merchant": self._hit("merchant_id", event.merchant_id, t),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "entries": [[c, v, [list(s) for s in spans]] for (c, v), spans in self.entries.items()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlacklistIndex:
        _check_format(data)
        index = cls()
        index.entries = {(c, v): [(int(a), e) for a, e in spans] for c, v, spans in data["entries"]}
        return index


class OnlineFeatureEngine:
    """In-process composition of user states, entity shards and the blacklist.

    The velocity actors do the same thing across processes; tests and single-node tools use
    this directly. ``process(event)`` returns one full row keyed by :data:`FEATURE_NAMES`.
    """

    def __init__(self, entity_shards: int = 1) -> None:
        self.users: dict[int, UserState] = {}
        self.entities = [InMemoryEntityStore(i, entity_shards) for i in range(entity_shards)]
        self.blacklist = BlacklistIndex()

    def user(self, user_id: int) -> UserState:
        state = self.users.get(user_id)
        if state is None:
            state = self.users[user_id] = UserState(user_id)
        return state

    def set_user_profile(self, user_id: int, profile: UserProfile) -> None:
        self.user(user_id).profile = profile

    def set_merchant_profile(self, merchant_id: int, profile: MerchantProfile) -> None:
        for shard in self.entities:
            shard.set_merchant_profile(merchant_id, profile)

    def add_label(self, label: LabelEvent) -> None:
        for shard in self.entities:
            shard.add_label(label)

    def add_blacklist(self, entry: BlacklistEntry) -> None:
        self.blacklist.add(entry)

    def process(self, event: TransactionEvent, now: TimeArg = None) -> Row:
        """Read every feature of ``event`` as of ``now`` (default: its created_at), then learn it."""
        user = self.user(event.user_id)
        row = event_features(event)
        row.update(user.features(event, now))
        row.update(self.blacklist.features(event, now))
        for shard in self.entities:
            row.update(shard.process(event, now))
        user.update(event)
        return {name: row.get(name, NAN) for name in FEATURE_NAMES}

    def to_bytes(self) -> bytes:
        return _dumps(
            {
                "format": STATE_FORMAT,
                "users": [u.to_dict() for u in self.users.values()],
                "entities": [s.to_dict() for s in self.entities],
                "blacklist": self.blacklist.to_dict(),
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> OnlineFeatureEngine:
        data = _loads(raw)
        _check_format(data)
        engine = cls()
        engine.users = {int(u["user_id"]): UserState.from_dict(u) for u in data["users"]}
        engine.entities = [InMemoryEntityStore.from_dict(s) for s in data["entities"]]
        engine.blacklist = BlacklistIndex.from_dict(data["blacklist"])
        return engine


def _check_format(data: dict[str, Any]) -> None:
    if data.get("format") != STATE_FORMAT:
        raise ValueError(f"feature state format {data.get('format')!r} != {STATE_FORMAT}")


def _dumps(data: dict[str, Any]) -> bytes:
    # NaN never occurs in state, so strict JSON is fine; zlib keeps checkpoints small.
    return zlib.compress(json.dumps(data, separators=(",", ":"), allow_nan=False).encode(), 1)


def _loads(raw: bytes) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(zlib.decompress(raw))
    return result


__all__ = [
    "BlacklistIndex",
    "EntityStore",
    "InMemoryEntityStore",
    "OnlineFeatureEngine",
    "UserState",
    "event_features",
    "stable_shard",
]
