"""What crosses a process boundary in the Ray graph: events, observations and results as tuples
of plain values (``wire()``), rebuilt on the other side to the same values."""

from __future__ import annotations

import math
import pickle
from datetime import UTC, datetime, timedelta

from vigil.decision.rules import RuleHit
from vigil.decision.screening import Scored
from vigil.features.events import TransactionEvent, from_ns
from vigil.state.velocity import Observation, VelocityShard

NOW = datetime(2026, 11, 30, 21, 7, 5, 123456, tzinfo=UTC)
PLAIN = (int, float, str, bool, type(None))


def _plain(value: object) -> bool:
    """Only builtins all the way down: pickling never calls back into Python for them."""
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return type(value) in PLAIN


def _same(a: list[dict[str, float]], b: list[dict[str, float]]) -> bool:
    """Feature rows equal value for value, NaN equal to NaN (no feature may be missing)."""
    return len(a) == len(b) and all(
        ra.keys() == rb.keys()
        and all(ra[k] == rb[k] or (math.isnan(ra[k]) and math.isnan(rb[k])) for k in ra)
        for ra, rb in zip(a, b, strict=True)
    )


def _events() -> list[TransactionEvent]:
    return [
        TransactionEvent(
            transaction_id=0,
            user_id=7,
            created_at=NOW,
            amount=12.34,
            merchant_id=3,
            device_id=9,
            ip="10.0.0.1",
            channel="ecommerce",
            country="GB",
            lat=51.5,
            lon=-0.1,
        ),
        TransactionEvent(transaction_id=5, user_id=8, created_at=NOW + timedelta(minutes=3), amount=0.01),
        TransactionEvent(transaction_id=6, user_id=7, created_at=1_700_000_000_123_456_789, amount=99.0),
    ]


def test_an_event_crosses_as_plain_values_and_comes_back_the_same() -> None:
    for event in _events():
        wire = event.wire()
        assert _plain(wire)
        back = TransactionEvent.from_wire(pickle.loads(pickle.dumps(wire)))
        assert back.t_ns == event.t_ns
        assert back.wire() == wire
        for name in ("transaction_id", "user_id", "amount", "merchant_id", "device_id", "ip", "channel"):
            assert getattr(back, name) == getattr(event, name)
        assert (back.country, back.lat, back.lon) == (event.country, event.lat, event.lon)
    # the rules' clock: the same aware instant as the client's created_at
    assert from_ns(_events()[0].t_ns) == NOW and from_ns(_events()[0].t_ns).tzinfo is not None


def test_from_ns_keeps_whole_microseconds_and_drops_finer_parts() -> None:
    assert from_ns(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert from_ns(1_700_000_000_123_456_789) == datetime.fromtimestamp(1_700_000_000, UTC) + timedelta(
        microseconds=123_456
    )


def test_a_result_crosses_as_plain_values_and_comes_back_equal() -> None:
    scored = [
        Scored(
            rule_hits=[RuleHit("velocity@1.2.0", "review", "6 in 1h", "HIGH_VELOCITY", 6.0, shadow=True)],
            fraud_score=0.83,
            contributions=[("amount_ratio", 0.4), ("tx_count_1h", 0.2)],
            anomaly_score=0.5,
            model_version="fraud-supervised:3",
            rules_version="rules@4",
            fraud_thresholds=(0.6, 0.9),
        ),
        Scored(),  # both scorers unavailable, no rule fired
    ]
    for s in scored:
        wire = s.wire()
        assert _plain(wire)
        assert Scored.from_wire(pickle.loads(pickle.dumps(wire))) == s


async def test_a_shard_fed_wire_tuples_reads_and_learns_exactly_what_it_does_from_objects(
    sqlite_url: str,
) -> None:
    events = _events()[:2] * 3  # the same users again: velocity counts move
    batch = [Observation(f"wire-key-{i:02d}", e, user=True, entity=True) for i, e in enumerate(events)]
    by_object, by_wire = VelocityShard(0, 1, sqlite_url), VelocityShard(0, 1, sqlite_url)
    try:
        for obs in batch:  # one at a time, then the whole batch replayed: retries count once
            assert _plain(obs.wire())
            assert _same(await by_wire.observe_wire([obs.wire()]), await by_object.observe([obs]))
        assert _same(await by_wire.observe_wire([o.wire() for o in batch]), await by_object.observe(batch))
        later = NOW + timedelta(minutes=30)
        counts = await by_wire.user_counts(7, later)
        assert counts["txn_count_1h_by_user"] == 3  # three of user 7's events, each counted once
        assert _same([counts], [await by_object.user_counts(7, later)])
    finally:
        await by_object.close()
        await by_wire.close()
