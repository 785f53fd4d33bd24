"""Windowed risk features, hand-computed: every value below is one a person can check.

Each case runs the same stream through :class:`OnlineFeatureEngine` and :func:`compute_features`
and checks both against the expected numbers (the property test covers random streams).
"""

from __future__ import annotations

import math
import sys
from array import array
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from vigil.features import (
    FEATURE_NAMES,
    BlacklistIndex,
    InMemoryEntityStore,
    LabelEvent,
    OnlineFeatureEngine,
    TransactionEvent,
    UserState,
    compute_features,
)
from vigil.features.spec import RING_DAYS

NAN = float("nan")


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A time in May 2024 (UTC); 2024-05-01 is a Wednesday, day 0 of April is 2024-04-30."""
    return datetime(2024, 5, 1, tzinfo=UTC) + timedelta(days=day - 1, hours=hour, minutes=minute)


def tx(i: int, when: datetime, amount: float = 10.0, *, user: int = 1, **kw: Any) -> TransactionEvent:
    return TransactionEvent(transaction_id=i, user_id=user, created_at=when, amount=amount, **kw)


def both_ways(
    events: list[TransactionEvent],
    labels: list[tuple[LabelEvent, int]] = (),  # type: ignore[assignment]
) -> tuple[dict[int, dict[str, float]], pd.DataFrame]:
    """Online rows (each label fed just before the event at the given index) and offline rows."""
    engine = OnlineFeatureEngine(entity_shards=2)
    online = {}
    for i, event in enumerate(events):
        for label, feed_at in labels:
            if feed_at == i:
                engine.add_label(label)
        online[event.transaction_id] = engine.process(event)
    frame = pd.DataFrame(
        {
            "transaction_id": [e.transaction_id for e in events],
            "user_id": [e.user_id for e in events],
            "created_at": pd.to_datetime([e.created_at for e in events], utc=True),
            "amount": [e.amount for e in events],
            "merchant_id": pd.array([e.merchant_id for e in events], dtype="Int64"),
            "device_id": pd.array([e.device_id for e in events], dtype="Int64"),
            "ip": [e.ip for e in events],
        }
    )
    lab = pd.DataFrame(
        {
            "transaction_id": [lab.transaction_id for lab, _ in labels],
            "is_fraud": [lab.is_fraud for lab, _ in labels],
            "labeled_at": pd.to_datetime([lab.labeled_at for lab, _ in labels], utc=True),
        }
    )
    return online, compute_features(frame, labels=lab)


def check(online: dict[int, dict[str, float]], offline: pd.DataFrame, txid: int, **expected: float) -> None:
    for name, want in expected.items():
        for side, got in (("online", online[txid][name]), ("offline", float(offline.loc[txid, name]))):
            ok = math.isnan(got) if math.isnan(want) else got == pytest.approx(want, rel=1e-12)
            assert ok, f"{side} {name} of {txid}: {got} != {want}"


def test_user_30d_window_starts_at_midnight_30_days_before() -> None:
    events = [
        tx(1, at(1, 23, 59) - timedelta(days=30), 100.0),  # 2024-04-01 23:59: left the window
        tx(2, at(2) - timedelta(days=30), 50.0),  # 2024-04-02 00:00: first instant inside
        tx(3, at(2, 8), 25.0),
        tx(4, at(2, 10), 150.0),
    ]
    online, offline = both_ways(events)
    check(
        online,
        offline,
        4,
        txn_count_30d_by_user=2,
        amount_sum_30d_by_user=75.0,
        amount_mean_30d_by_user=37.5,
        amount_ratio_mean_30d_by_user=4.0,  # 150 / 37.5
        amount_mean_24h_by_user=25.0,
        amount_mean_7d_by_user=25.0,
        txn_count_all_by_user=3,
    )
    check(online, offline, 1, amount_mean_30d_by_user=NAN, amount_ratio_mean_30d_by_user=NAN)
    check(online, offline, 1, amount_mean_24h_by_user=NAN, txn_count_30d_by_user=0)


def _compromised_merchant() -> tuple[list[TransactionEvent], list[tuple[LabelEvent, int]]]:
    """Merchant 100 (device 7, IP 10.0.0.1, user 1): transaction 1 on May 1 is fraud, labelled
    on May 3 at 12:00; the label is fed after transaction 1 is already counted in its bucket."""
    keys: dict[str, Any] = {"merchant_id": 100, "device_id": 7, "ip": "10.0.0.1"}
    events = [
        tx(1, at(1, 10), **keys),
        tx(2, at(1, 11), **keys),
        tx(3, at(2, 9), **keys),
        tx(4, at(3, 11), **keys),  # label not known yet
        tx(5, at(3, 13), **keys),  # label known since 12:00
        tx(6, at(31, 23), **keys),  # May 31: the 30d window starts at May 1 00:00
        tx(7, at(32), **keys),  # June 1: it starts at May 2 00:00, transaction 1 has left
    ]
    label = LabelEvent(1, True, at(3, 12), at(1, 10), 100, 7, "10.0.0.1", 1)
    return events, [(label, 2)]


@pytest.mark.parametrize("key", ["merchant", "device", "ip"])
def test_entity_windows_count_fraud_once_its_label_is_known(key: str) -> None:
    online, offline = both_ways(*_compromised_merchant())
    check(online, offline, 1, **{f"txn_count_7d_by_{key}": 0, f"fraud_rate_7d_by_{key}": NAN})
    # Before the label: 1d = since May 2 00:00 = {3}; 7d = {1, 2, 3}; no fraud known.
    check(
        online,
        offline,
        4,
        **{f"txn_count_1d_by_{key}": 1, f"txn_count_7d_by_{key}": 3, f"fraud_rate_7d_by_{key}": 0.0},
    )
    # After: 7d = {1, 2, 3, 4} with 1 known fraud; 1d = {3, 4} does not hold transaction 1.
    check(
        online,
        offline,
        5,
        **{
            f"txn_count_1d_by_{key}": 2,
            f"fraud_rate_1d_by_{key}": 0.0,
            f"txn_count_7d_by_{key}": 4,
            f"fraud_rate_7d_by_{key}": 0.25,
            f"fraud_rate_30d_by_{key}": 0.25,
        },
    )
    check(online, offline, 6, **{f"txn_count_30d_by_{key}": 5, f"fraud_rate_30d_by_{key}": 0.2})
    check(
        online, offline, 7, **{f"txn_count_30d_by_{key}": 4, f"fraud_rate_30d_by_{key}": 0.0}
    )  # {3, 4, 5, 6}


@pytest.mark.parametrize("key", ["user", "merchant", "device"])
def test_seconds_since_the_latest_known_fraud(key: str) -> None:
    online, offline = both_ways(*_compromised_merchant())
    name = f"seconds_since_fraud_by_{key}"
    check(online, offline, 4, **{name: NAN})  # the label is not known yet
    check(online, offline, 5, **{name: 2 * 86400 + 3 * 3600})  # May 3 13:00 - May 1 10:00
    check(online, offline, 7, **{name: 30 * 86400 + 14 * 3600})  # recency outlives the windows


def test_a_non_fraud_label_is_not_a_fraud() -> None:
    events, [(label, _)] = _compromised_merchant()
    legit = LabelEvent(1, False, label.labeled_at, label.transaction_created_at, 100, 7, "10.0.0.1", 1)
    online, offline = both_ways(events, [(legit, 0)])
    check(online, offline, 5, fraud_rate_7d_by_merchant=0.0, seconds_since_fraud_by_user=NAN)


def test_night_and_weekend_flags_use_utc() -> None:
    events = [
        tx(1, at(4, 3)),  # Saturday 03:00
        tx(2, at(6, 5, 59)),  # Monday 05:59
        tx(3, at(6, 6)),  # Monday 06:00
        tx(4, at(5, 23, 59)),  # Sunday 23:59
    ]
    online, offline = both_ways(sorted(events, key=lambda e: e.t_ns))
    check(online, offline, 1, is_night_utc=1, is_weekend_utc=1)
    check(online, offline, 2, is_night_utc=1, is_weekend_utc=0)
    check(online, offline, 3, is_night_utc=0, is_weekend_utc=0)
    check(online, offline, 4, is_night_utc=0, is_weekend_utc=1)


def test_windows_empty_out_after_a_month_of_silence() -> None:
    engine = OnlineFeatureEngine()
    engine.process(tx(1, at(1), 40.0, merchant_id=5))
    row = engine.process(tx(2, at(1) + timedelta(days=RING_DAYS + 5), merchant_id=5))
    assert row["txn_count_30d_by_user"] == 0 and math.isnan(row["amount_mean_30d_by_user"])
    assert row["txn_count_30d_by_merchant"] == 0 and math.isnan(row["fraud_rate_30d_by_merchant"])
    assert row["txn_count_all_by_user"] == 1


def test_rows_have_every_feature_and_survive_a_checkpoint() -> None:
    events, labels = _compromised_merchant()
    engine = OnlineFeatureEngine(entity_shards=2)
    engine.add_label(labels[0][0])
    for event in events[:4]:
        engine.process(event)
    restored = OnlineFeatureEngine.from_bytes(engine.to_bytes())
    a, b = engine.process(events[4]), restored.process(events[4])
    assert list(a) == list(FEATURE_NAMES)
    assert a["fraud_rate_7d_by_ip"] == b["fraud_rate_7d_by_ip"] == 0.25
    assert a["seconds_since_fraud_by_user"] == b["seconds_since_fraud_by_user"] == 183600.0


def deep_size(obj: object, seen: set[int] | None = None) -> int:
    """Bytes of ``obj`` and everything it holds (sys.getsizeof, followed through containers)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, deque)):
        size += sum(deep_size(x, seen) for x in obj)
    elif not isinstance(obj, (str, bytes, int, float, array)) and obj is not None:
        if hasattr(obj, "__dict__"):
            size += deep_size(vars(obj), seen)
        for cls in type(obj).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                if hasattr(obj, slot):
                    size += deep_size(getattr(obj, slot), seen)
    return size


def _user_after(days: int, per_day: int) -> UserState:
    state = UserState(1)
    for i in range(days * per_day):
        state.update(tx(i, at(1) + timedelta(seconds=i * 86400 // per_day), 12.34 + i % 7, device_id=7))
    return state


def test_day_buckets_keep_state_size_fixed_per_user_and_entity() -> None:
    quiet, busy = _user_after(60, 1), _user_after(60, 100)
    assert deep_size(quiet.days) == deep_size(busy.days) == deep_size(_user_after(1, 1).days)
    assert quiet.days.read(int(quiet.last_ns or 0) // 86_400_000_000_000, 30)[0] == 31
    assert busy.days.read(int(busy.last_ns or 0) // 86_400_000_000_000, 30)[0] == 3100
    store = InMemoryEntityStore()
    sizes = []
    for n in (10, 1000):
        for i in range(n):
            store.update(tx(i, at(1) + timedelta(minutes=i), merchant_id=5))
        sizes.append(deep_size(store.risk["merchant"][5]))
    assert sizes[0] == sizes[1]


def test_sharded_routing_gives_the_engine_rows() -> None:
    """The velocity shards' routing (user part and the user's latest known fraud on the user's
    shard, entity parts on their owners) merges into the rows the in-process engine computes."""
    from vigil.state.velocity import merge_rows, route

    events, [(label, _)] = _compromised_merchant()
    events = [*events, *(tx(10 + u, at(3, 14), user=u, merchant_id=100, ip="10.0.0.2") for u in (1, 2, 3))]
    events.sort(key=lambda e: (e.t_ns, e.transaction_id))
    count = 3
    users = [dict[int, UserState]() for _ in range(count)]
    entities = [InMemoryEntityStore(i, count) for i in range(count)]
    engine = OnlineFeatureEngine(entity_shards=count)
    engine.add_label(label)
    for store in entities:
        store.add_label(label)
    partial = []
    for shard, items in route([str(e.transaction_id) for e in events], events, count).items():
        rows = []
        for _, obs in items:
            row: dict[str, float] = {}
            if obs.user:
                state = users[shard].setdefault(obs.event.user_id, UserState(obs.event.user_id))
                row.update(state.features(obs.event))
                row.update(BlacklistIndex().features(obs.event))
                state.update(obs.event)
            if obs.entity:
                row.update(entities[shard].process(obs.event))
            rows.append(row)
        partial.append(([i for i, _ in items], rows))
    # Shards see their events in batch order, which is time order: the merged rows match.
    merged = merge_rows(events, partial)
    expected = [engine.process(e) for e in events]
    for want, got in zip(expected, merged, strict=True):
        bad = [
            k
            for k in FEATURE_NAMES
            if not (want[k] == got[k] or (math.isnan(want[k]) and math.isnan(got[k])))
        ]
        assert not bad, {k: (want[k], got[k]) for k in bad}
    by_id = {e.transaction_id: row for e, row in zip(events, merged, strict=True)}
    assert by_id[11]["seconds_since_fraud_by_user"] == 2 * 86400 + 4 * 3600  # user 1, May 3 14:00
    assert math.isnan(by_id[12]["seconds_since_fraud_by_user"])  # user 2 has no fraud
    assert by_id[12]["fraud_rate_7d_by_merchant"] == 1 / 6
