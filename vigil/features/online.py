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
(``to_bytes``/``from_bytes``) for actor checkpoints. Memory is bounded by time: exact windows are
deques pruned to 7 days, novelty maps to 90 days, distinct-user maps to 7 days; day-bucketed
windows are a fixed ring of :data:`~vigil.features.spec.RING_DAYS` buckets per user and per
merchant, device and IP; fraud labels wait in a heap only until they are known; totals are O(1).

Events for one key must arrive in ``(created_at, transaction_id)`` order, which is the order
the offline path assumes; a late, older event is still scored but against the newer state.
"""

from __future__ import annotations

import heapq
import json
import zlib
from array import array
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
    BUCKET_DAYS,
    CHANNEL_CODES,
    FEATURE_NAMES,
    FRAUD_RECENCY_KEYS,
    KYC_RISK_CODES,
    NOVELTY_WINDOW_NS,
    RING_DAYS,
    RISK_KEYS,
    WINDOWS_NS,
)

NAN = float("nan")
STATE_FORMAT = 2
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
        "is_night_utc": _f(d.is_night_utc(event.t_ns)),
        "is_weekend_utc": _f(d.is_weekend_utc(event.t_ns)),
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


class _DayRing:
    """Two integer sums per UTC day for the last :data:`RING_DAYS` days, in one flat int64 array.

    ``day`` is the newest day added; slot ``k % RING_DAYS`` holds day ``k`` while
    ``day - RING_DAYS < k <= day``. Memory is fixed, however many events a day brings.
    """

    __slots__ = ("cells", "day")

    def __init__(self) -> None:
        self.day: int | None = None
        self.cells = array("q", bytes(16 * RING_DAYS))

    def add(self, day: int, a: int, b: int) -> None:
        """Add ``(a, b)`` to ``day``, moving the ring forward to it (older days fall off)."""
        if self.day is None or day > self.day:
            start = day - RING_DAYS + 1 if self.day is None else max(self.day + 1, day - RING_DAYS + 1)
            for k in range(start, day + 1):
                i = 2 * (k % RING_DAYS)
                self.cells[i] = self.cells[i + 1] = 0
            self.day = day
        elif day <= self.day - RING_DAYS:
            return  # older than the ring: outside every window from now on
        i = 2 * (day % RING_DAYS)
        self.cells[i] += a
        self.cells[i + 1] += b

    def bump(self, day: int, b: int) -> None:
        """Add ``b`` to the second sum of ``day`` if the ring holds it (it never moves the ring)."""
        if self.day is not None and self.day - RING_DAYS < day <= self.day:
            self.cells[2 * (day % RING_DAYS) + 1] += b

    def read(self, today: int, days: int) -> tuple[int, int]:
        """Both sums over days ``today - days .. today``; does not mutate."""
        if self.day is None:
            return 0, 0
        a = b = 0
        for k in range(max(today - days, self.day - RING_DAYS + 1), min(today, self.day) + 1):
            i = 2 * (k % RING_DAYS)
            a += self.cells[i]
            b += self.cells[i + 1]
        return a, b

    def to_list(self) -> list[Any]:
        return [self.day, list(self.cells)]

    @classmethod
    def from_list(cls, data: list[Any]) -> _DayRing:
        ring = cls()
        ring.day = None if data[0] is None else int(data[0])
        ring.cells = array("q", (int(x) for x in data[1]))
        return ring


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
        self.days = _DayRing()  # per UTC day: (count, sum of cents)
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
        cents = int(d.to_cents(event.amount))
        for name, window in self.windows.items():
            count, total = window.read(t)
            row[f"txn_count_{name}_by_user"] = float(count)
            row[f"amount_sum_{name}_by_user"] = total / 100.0
            if name != "1h":
                row[f"amount_mean_{name}_by_user"] = _f(d.window_mean(cents, count, total)[0])
        count, total = self.days.read(int(d.utc_day(t)), BUCKET_DAYS["30d"])
        mean30, ratio30 = d.window_mean(cents, count, total)
        row["txn_count_30d_by_user"] = float(count)
        row["amount_sum_30d_by_user"] = total / 100.0
        row["amount_mean_30d_by_user"] = _f(mean30)
        row["amount_ratio_mean_30d_by_user"] = _f(ratio30)
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
        self.days.add(int(d.utc_day(t)), 1, cents)
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
            "days": self.days.to_list(),
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
        state.days = _DayRing.from_list(data["days"])
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


class _FraudRisk:
    """One entity's day-bucketed (transactions, known frauds) and its latest known fraud.

    A fraud label waits in ``pending`` until event time reaches the moment it becomes known;
    it then adds one fraud to its transaction's day bucket (so a label arriving weeks late still
    updates every window that holds the transaction) and moves ``last_fraud_ns`` forward.
    ``ring`` is None for users: their transactions are counted by :class:`UserState`.
    """

    __slots__ = ("last_fraud_ns", "pending", "ring")

    def __init__(self, with_ring: bool) -> None:
        self.ring = _DayRing() if with_ring else None
        self.pending: list[tuple[int, int]] = []  # heap of (known_at_ns, transaction created_at ns)
        self.last_fraud_ns: int | None = None

    def apply_known(self, now: int) -> None:
        # Idempotent in time order, so it is safe on read (as in _LabelCounter).
        while self.pending and self.pending[0][0] <= now:
            _, txn_ns = heapq.heappop(self.pending)
            if self.last_fraud_ns is None or txn_ns > self.last_fraud_ns:
                self.last_fraud_ns = txn_ns
            if self.ring is not None:
                self.ring.bump(int(d.utc_day(txn_ns)), 1)

    def to_list(self) -> list[Any]:
        ring = None if self.ring is None else self.ring.to_list()
        return [ring, [list(p) for p in self.pending], self.last_fraud_ns]

    @classmethod
    def from_list(cls, data: list[Any]) -> _FraudRisk:
        risk = cls(with_ring=False)
        risk.ring = None if data[0] is None else _DayRing.from_list(data[0])
        risk.pending = [(int(k), int(t)) for k, t in data[1]]
        heapq.heapify(risk.pending)
        risk.last_fraud_ns = None if data[2] is None else int(data[2])
        return risk


_RISK_KINDS = ("user", *RISK_KEYS)


def _risk_key(kind: str, key: Any) -> Any:
    return str(key) if kind == "ip" else int(key)


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
        # kind -> key -> windowed risk; "user" holds only the latest known fraud
        self.risk: dict[str, dict[Any, _FraudRisk]] = {kind: {} for kind in _RISK_KINDS}

    def _risk(self, kind: str, key: Any) -> _FraudRisk:
        table = self.risk[kind]
        risk = table.get(key)
        if risk is None:
            risk = table[key] = _FraudRisk(with_ring=kind != "user")
        return risk

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
        self._risk_features(row, event, t)
        return row

    def _risk_features(self, row: Row, event: TransactionEvent, t: int) -> None:
        today = int(d.utc_day(t))
        keys = {
            "user": event.user_id,
            "merchant": event.merchant_id,
            "device": event.device_id,
            "ip": event.ip,
        }
        for kind, key in keys.items():
            if not self.owns(kind, key):
                continue
            risk = self.risk[kind].get(key)
            if risk is not None:
                risk.apply_known(t)
            if kind in RISK_KEYS:
                for name, days in BUCKET_DAYS.items():
                    count, fraud = (
                        (0, 0) if risk is None or risk.ring is None else risk.ring.read(today, days)
                    )
                    row[f"txn_count_{name}_by_{kind}"] = float(count)
                    row[f"fraud_rate_{name}_by_{kind}"] = _f(d.fraud_rate(fraud, count))
            if kind in FRAUD_RECENCY_KEYS:
                last = None if risk is None else risk.last_fraud_ns
                row[f"seconds_since_fraud_by_{kind}"] = (
                    NAN if last is None else _f(d.seconds_between(t, last))
                )

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
        day = int(d.utc_day(t))
        for kind, key in (("merchant", event.merchant_id), ("device", event.device_id), ("ip", event.ip)):
            if key is not None and self.owns(kind, key):
                ring = self._risk(kind, key).ring
                assert ring is not None
                ring.add(day, 1, 0)

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
        if not label.is_fraud:
            return
        created = to_ns(label.transaction_created_at)
        risk_keys: tuple[tuple[str, int | str | None], ...] = (
            ("user", label.user_id),
            ("merchant", label.merchant_id),
            ("device", label.device_id),
            ("ip", label.ip),
        )
        for kind, risk_key in risk_keys:
            if self.owns(kind, risk_key):
                heapq.heappush(self._risk(kind, risk_key).pending, (known, created))

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
            "risk": {kind: [[k, r.to_list()] for k, r in table.items()] for kind, table in self.risk.items()},
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
        store.risk = {
            kind: {_risk_key(kind, k): _FraudRisk.from_list(r) for k, r in data["risk"][kind]}
            for kind in _RISK_KINDS
        }
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
