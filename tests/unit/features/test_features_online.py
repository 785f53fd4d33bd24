"""Online feature state: read-then-learn, window edges, label delay, blacklist, checkpoints."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from vigil.features import (
    FEATURE_NAMES,
    BlacklistEntry,
    InMemoryEntityStore,
    LabelEvent,
    OnlineFeatureEngine,
    TransactionEvent,
    UserProfile,
    UserState,
    stable_shard,
)

T0 = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def tx(i: int, at: datetime, *, user: int = 1, amount: float = 10.0, **kw: object) -> TransactionEvent:
    return TransactionEvent(transaction_id=i, user_id=user, created_at=at, amount=amount, **kw)  # type: ignore[arg-type]


def test_features_never_include_the_event_itself() -> None:
    engine = OnlineFeatureEngine()
    first = engine.process(tx(1, T0, amount=50.0, device_id=7))
    assert first["txn_count_1h_by_user"] == 0
    assert first["amount_sum_24h_by_user"] == 0
    assert math.isnan(first["amount_mean_all_by_user"])
    assert first["device_new_90d_by_user"] == 1
    assert first["users_distinct_24h_by_device"] == 0
    second = engine.process(tx(2, T0, amount=30.0, device_id=7))  # same timestamp, later id
    assert second["txn_count_1h_by_user"] == 1
    assert second["amount_sum_1h_by_user"] == 50.0
    assert second["seconds_since_prev_by_user"] == 0.0
    assert second["device_new_90d_by_user"] == 0
    assert second["users_distinct_24h_by_device"] == 1


def test_window_is_half_open() -> None:
    state = UserState(1)
    state.update(tx(1, T0, amount=5.0))
    at_edge = tx(2, T0 + timedelta(hours=1))
    assert state.features(at_edge)["txn_count_1h_by_user"] == 0  # exactly 1h old: gone
    just_inside = tx(3, T0 + timedelta(hours=1) - timedelta(microseconds=1))
    assert state.features(just_inside)["txn_count_1h_by_user"] == 1
    assert state.features(at_edge)["txn_count_24h_by_user"] == 1


def test_time_is_a_parameter() -> None:
    state = UserState(1)
    state.update(tx(1, T0))
    event = tx(2, T0 + timedelta(minutes=5))
    assert state.features(event)["txn_count_1h_by_user"] == 1
    assert state.features(event, now=T0 + timedelta(hours=2))["txn_count_1h_by_user"] == 0


def test_amount_moments_and_zscore() -> None:
    state = UserState(1)
    for i, amount in enumerate((10.0, 10.0)):
        state.update(tx(i, T0 + timedelta(minutes=i), amount=amount))
    row = state.features(tx(9, T0 + timedelta(hours=1), amount=40.0))
    assert row["amount_mean_all_by_user"] == 10.0
    assert row["amount_ratio_mean_all_by_user"] == 4.0
    assert math.isnan(row["amount_zscore_all_by_user"])  # equal history: no spread
    state.update(tx(3, T0 + timedelta(minutes=3), amount=20.0))
    row = state.features(tx(9, T0 + timedelta(hours=1), amount=40.0))
    mean = 40.0 / 3
    std = math.sqrt(sum((a - mean) ** 2 for a in (10.0, 10.0, 20.0)) / 3)
    assert row["amount_zscore_all_by_user"] == pytest.approx((40.0 - mean) / std, rel=1e-12)


def test_travel_distance_and_speed() -> None:
    state = UserState(1)
    state.update(tx(1, T0, lat=51.5074, lon=-0.1278))  # London
    state.update(tx(2, T0 + timedelta(minutes=10)))  # no coordinates: skipped for distance
    row = state.features(tx(3, T0 + timedelta(hours=1), lat=48.8566, lon=2.3522))  # Paris
    assert row["distance_km_prev_by_user"] == pytest.approx(343.5, abs=1.0)
    assert row["speed_kmh_prev_by_user"] == pytest.approx(row["distance_km_prev_by_user"], rel=1e-12)


def test_labels_count_only_once_known() -> None:
    engine = OnlineFeatureEngine()
    engine.process(tx(1, T0, merchant_id=5, device_id=8))
    # The label arrives (is fed) now, but is stamped one day later: invisible until then.
    engine.add_label(LabelEvent(1, True, T0 + timedelta(days=1), T0, merchant_id=5, device_id=8))
    before = engine.process(tx(2, T0 + timedelta(hours=23), user=2, merchant_id=5))
    assert before["fraud_count_all_by_merchant"] == 0
    assert math.isnan(before["fraud_rate_all_by_merchant"])
    at = engine.process(tx(3, T0 + timedelta(days=1), user=2, merchant_id=5, device_id=8))
    assert at["fraud_count_all_by_merchant"] == 1
    assert at["fraud_rate_all_by_device"] == 1.0


def test_a_label_stamped_at_its_own_transaction_never_leaks_into_it() -> None:
    engine = OnlineFeatureEngine()
    engine.add_label(LabelEvent(1, True, T0, T0, merchant_id=5))
    row = engine.process(tx(1, T0, merchant_id=5))
    assert row["fraud_count_all_by_merchant"] == 0
    tie = engine.process(tx(2, T0, merchant_id=5))  # same instant: the label is not yet known
    assert tie["fraud_count_all_by_merchant"] == 0
    later = engine.process(tx(3, T0 + timedelta(microseconds=1), merchant_id=5))
    assert later["fraud_count_all_by_merchant"] == 1


def test_blacklist_entry_active_between_added_and_expires() -> None:
    engine = OnlineFeatureEngine()
    engine.add_blacklist(BlacklistEntry("ip", "10.1.1.1", T0, T0 + timedelta(days=1)))
    engine.add_blacklist(BlacklistEntry("beneficiary", " 0042", T0))
    early = engine.process(tx(1, T0 - timedelta(seconds=1), ip="10.1.1.1", merchant_id=42))
    assert early["blacklist_hit_by_ip"] == 0 and early["blacklist_hit_by_merchant"] == 0
    hit = engine.process(tx(2, T0, ip="10.1.1.1", merchant_id=42))
    assert hit["blacklist_hit_by_ip"] == 1 and hit["blacklist_hit_by_merchant"] == 1
    expired = engine.process(tx(3, T0 + timedelta(days=1), ip="10.1.1.1"))
    assert expired["blacklist_hit_by_ip"] == 0
    assert math.isnan(expired["blacklist_hit_by_device"])  # no device on the event


def test_profile_features() -> None:
    state = UserState(1, UserProfile(created_at=T0 - timedelta(days=10), kyc_risk_level="medium"))
    row = state.features(tx(1, T0))
    assert row["age_days_by_user"] == 10.0
    assert row["kyc_risk_level_by_user"] == 2.0
    assert math.isnan(row["distance_km_home_by_user"])


def test_entity_shards_split_keys_and_answer_only_for_their_own() -> None:
    shards = [InMemoryEntityStore(i, 4) for i in range(4)]
    event = tx(1, T0, device_id=77, ip="10.9.9.9", merchant_id=3)
    parts = [s.process(event) for s in shards]
    owners = [i for i, p in enumerate(parts) if "users_distinct_24h_by_device" in p]
    assert owners == [stable_shard("device", 77, 4)]
    merged = {k: v for p in parts for k, v in p.items()}
    assert {"users_distinct_7d_by_ip", "fraud_rate_all_by_merchant", "labeled_count_all_by_device"} <= set(
        merged
    )


def test_checkpoint_round_trip_preserves_every_feature() -> None:
    engine = OnlineFeatureEngine(entity_shards=2)
    engine.set_user_profile(1, UserProfile(T0 - timedelta(days=1), 51.0, 0.0, "low"))
    engine.add_label(LabelEvent(1, True, T0 + timedelta(hours=2), T0, merchant_id=5, device_id=9))
    engine.add_blacklist(BlacklistEntry("user", "1", T0))
    for i in range(5):
        engine.process(
            tx(
                i,
                T0 + timedelta(minutes=i),
                amount=10.0 * 10**i,
                device_id=9,
                ip="1.2.3.4",
                merchant_id=5,
                country="GB",
                lat=51.0,
                lon=0.1 * i,
            )
        )
    restored = OnlineFeatureEngine.from_bytes(engine.to_bytes())
    probe = tx(
        99, T0 + timedelta(hours=3), user=1, device_id=9, ip="1.2.3.4", merchant_id=5, lat=50.0, lon=0.0
    )
    a, b = engine.process(probe), restored.process(probe)
    assert list(a) == list(FEATURE_NAMES)
    assert all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in FEATURE_NAMES)
    assert a["fraud_count_all_by_merchant"] == 1


def test_state_memory_is_bounded_by_time() -> None:
    state = UserState(1)
    for i in range(1000):
        state.update(tx(i, T0 + timedelta(hours=i), device_id=i, ip=f"10.0.{i // 256}.{i % 256}"))
    assert len(state.windows["7d"].items) == 7 * 24
    assert len(state.devices) <= 90 * 24 and len(state.ips) <= 90 * 24


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        tx(1, datetime(2024, 1, 1))
