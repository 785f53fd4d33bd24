"""The in-process event bus: same semantics as Redis Streams consumer groups."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from vigil.decision.rules import RuleHit
from vigil.events.bus import (
    STREAM_DECISIONS,
    STREAMS,
    EventBus,
    InMemoryEventBus,
    RedisStreamBus,
    create_event_bus,
    decode_event,
    encode_event,
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def bus(clock: FakeClock) -> InMemoryEventBus:
    return InMemoryEventBus(clock=clock)


def test_stream_names() -> None:
    assert STREAMS == ("vigil:decisions", "vigil:alerts", "vigil:review")


async def test_publish_read_ack(bus: InMemoryEventBus) -> None:
    ids = [await bus.publish(STREAM_DECISIONS, {"transaction_id": i}) for i in range(3)]
    assert len(set(ids)) == 3
    got = await bus.read(STREAM_DECISIONS, "sinks", "c1", count=2)
    assert [m.event for m in got] == [{"transaction_id": 0}, {"transaction_id": 1}]
    assert [m.id for m in got] == ids[:2] and got[0].stream == STREAM_DECISIONS
    assert bus.pending_count(STREAM_DECISIONS, "sinks") == 2
    assert await bus.ack(STREAM_DECISIONS, "sinks", *[m.id for m in got]) == 2
    assert await bus.ack(STREAM_DECISIONS, "sinks", got[0].id, "nonsense") == 0
    assert bus.pending_count(STREAM_DECISIONS, "sinks") == 0
    rest = await bus.read(STREAM_DECISIONS, "sinks", "c1")
    assert [m.event["transaction_id"] for m in rest] == [2]
    assert await bus.read(STREAM_DECISIONS, "sinks", "c1") == []


async def test_each_group_sees_everything_once_per_group(bus: InMemoryEventBus) -> None:
    for i in range(4):
        await bus.publish("s", {"i": i})
    a = await bus.read("s", "g", "c1", count=2)
    b = await bus.read("s", "g", "c2", count=10)
    assert [m.event["i"] for m in a + b] == [0, 1, 2, 3]  # one delivery per group
    other = await bus.read("s", "audit", "x", count=10)
    assert len(other) == 4  # a new group starts at the beginning of the stream


async def test_blocking_read_wakes_on_publish(bus: InMemoryEventBus) -> None:
    reader = asyncio.create_task(bus.read("s", "g", "c", block_ms=5000))
    await asyncio.sleep(0)
    await bus.publish("s", {"hello": "world"})
    got = await asyncio.wait_for(reader, 2)
    assert [m.event for m in got] == [{"hello": "world"}]


async def test_blocking_read_times_out_empty(bus: InMemoryEventBus) -> None:
    assert await bus.read("s", "g", "c", block_ms=20) == []
    assert await bus.read("s", "g", "c", block_ms=None) == []


async def test_reclaim_takes_over_a_crashed_consumers_messages(
    bus: InMemoryEventBus, clock: FakeClock
) -> None:
    await bus.publish("s", {"n": 1})
    await bus.publish("s", {"n": 2})
    crashed = await bus.read("s", "g", "dead", count=2)
    await bus.ack("s", "g", crashed[1].id)
    clock.t += 1.0
    assert await bus.reclaim("s", "g", "alive", min_idle_ms=5000) == []  # not idle long enough
    clock.t += 5.0
    taken = await bus.reclaim("s", "g", "alive", min_idle_ms=5000)
    assert [m.event for m in taken] == [{"n": 1}]
    assert await bus.reclaim("s", "g", "other", min_idle_ms=5000) == []  # the claim reset its idle time
    assert await bus.ack("s", "g", taken[0].id) == 1
    assert await bus.reclaim("s", "unknown-group", "c", min_idle_ms=0) == []


async def test_trimming_keeps_the_newest_and_drops_trimmed_pending(clock: FakeClock) -> None:
    bus = InMemoryEventBus(maxlen=2, clock=clock)
    await bus.publish("s", {"n": 1})
    await bus.read("s", "g", "dead")
    for n in (2, 3):
        await bus.publish("s", {"n": n})
    clock.t += 60
    assert await bus.reclaim("s", "g", "alive", min_idle_ms=0) == []  # entry 1 was trimmed away
    assert bus.pending_count("s", "g") == 0
    assert [m.event["n"] for m in await bus.read("s", "g", "alive")] == [2, 3]


async def test_events_are_json_round_tripped(bus: InMemoryEventBus) -> None:
    @dataclass
    class Point:
        x: int

    event = {
        "at": datetime(2026, 1, 15, 12, tzinfo=UTC),
        "amount": Decimal("12.50"),
        "id": uuid.UUID(int=1),
        "codes": ("A", "B"),
        "hit": RuleHit("r@1.0.0", "block", "why", "CODE", 2.0),
        "point": Point(3),
    }
    await bus.publish("s", event)
    [message] = await bus.read("s", "g", "c")
    assert message.event == {
        "at": "2026-01-15T12:00:00+00:00",
        "amount": "12.50",
        "id": "00000000-0000-0000-0000-000000000001",
        "codes": ["A", "B"],
        "hit": RuleHit("r@1.0.0", "block", "why", "CODE", 2.0).as_dict(),
        "point": {"x": 3},
    }


@pytest.mark.parametrize(
    ("event", "error"),
    [({"x": object()}, TypeError), ({"x": float("nan")}, ValueError), (["not", "a", "dict"], TypeError)],
)
async def test_unserialisable_events_fail_at_publish(bus: InMemoryEventBus, event: Any, error: type) -> None:
    with pytest.raises(error):
        await bus.publish("s", event)
    assert await bus.read("s", "g", "c") == []


def test_undecodable_payloads_do_not_wedge_a_consumer() -> None:
    assert decode_event(b"{not json") == {"_undecodable": "{not json"}
    assert decode_event("[1, 2]") == {"_undecodable": "[1, 2]"}
    assert decode_event(encode_event({"a": 1}).encode()) == {"a": 1}


async def test_bad_arguments(bus: InMemoryEventBus) -> None:
    with pytest.raises(ValueError):
        await bus.read("s", "g", "c", count=0)
    with pytest.raises(ValueError):
        InMemoryEventBus(maxlen=0)


async def test_factory_picks_the_backend_without_connecting() -> None:
    embedded = create_event_bus(None)
    assert isinstance(embedded, InMemoryEventBus) and isinstance(embedded, EventBus)
    redis_bus = create_event_bus("redis://127.0.0.1:1/0")  # nothing listens there: no I/O yet
    assert isinstance(redis_bus, RedisStreamBus) and isinstance(redis_bus, EventBus)
    await redis_bus.close()
    await embedded.close()
