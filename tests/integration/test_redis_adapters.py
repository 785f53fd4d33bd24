"""RedisStreamBus and RedisRateLimiter against a real Redis (db 15 by default)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio

from vigil.events.bus import RedisStreamBus, create_event_bus
from vigil.gateway.ratelimit import InMemoryRateLimiter, RateLimit, RedisRateLimiter

pytestmark = [pytest.mark.integration, pytest.mark.redis]


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis_asyncio.Redis]:
    client = redis_asyncio.Redis.from_url(redis_url)
    prefix = f"vigil-test:{uuid.uuid4().hex[:8]}:"
    client.test_prefix = prefix  # type: ignore[attr-defined]
    yield client
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def stream(client: redis_asyncio.Redis) -> str:
    return client.test_prefix + "decisions"  # type: ignore[attr-defined]


async def test_publish_read_ack(client: redis_asyncio.Redis, stream: str) -> None:
    bus = RedisStreamBus(client)
    ids = [await bus.publish(stream, {"transaction_id": i, "codes": ["A"]}) for i in range(3)]
    got = await bus.read(stream, "sinks", "c1", count=2)
    assert [m.id for m in got] == ids[:2]
    assert [m.event for m in got] == [
        {"transaction_id": 0, "codes": ["A"]},
        {"transaction_id": 1, "codes": ["A"]},
    ]
    assert await bus.ack(stream, "sinks", *[m.id for m in got]) == 2
    assert (await client.xpending(stream, "sinks"))["pending"] == 0
    assert [m.event["transaction_id"] for m in await bus.read(stream, "sinks", "c1")] == [2]
    assert await bus.read(stream, "sinks", "c1", block_ms=50) == []


async def test_publish_many_keeps_order_and_sends_nothing_when_a_payload_is_bad(
    client: redis_asyncio.Redis, stream: str
) -> None:
    bus = RedisStreamBus(client)
    other = stream + "-alerts"
    entries = [(stream, {"n": 0}), (other, {"n": 1}), (stream, {"n": 2})]
    ids = await bus.publish_many(entries)
    assert [m.event["n"] for m in await bus.read(stream, "g", "c")] == [0, 2]
    assert [(m.id, m.event["n"]) for m in await bus.read(other, "g", "c")] == [(ids[1], 1)]
    with pytest.raises(TypeError):
        await bus.publish_many([(stream, {"n": 3}), (stream, {"bad": object()})])
    assert await client.xlen(stream) == 2  # the good entry before the bad one was not sent either
    assert await bus.publish_many([]) == []


async def test_consumer_group_delivers_each_event_once(client: redis_asyncio.Redis, stream: str) -> None:
    bus = RedisStreamBus(client)
    for i in range(10):
        await bus.publish(stream, {"i": i})
    a, b = RedisStreamBus(client), RedisStreamBus(client)  # two replicas, one group
    first, second = await asyncio.gather(
        a.read(stream, "g", "c1", count=6), b.read(stream, "g", "c2", count=6)
    )
    seen = [m.event["i"] for m in first + second]
    assert sorted(seen) == list(range(10))
    audit = await bus.read(stream, "audit", "x", count=100)  # another group sees all of them
    assert len(audit) == 10


async def test_blocking_read_wakes_on_publish(
    client: redis_asyncio.Redis, redis_url: str, stream: str
) -> None:
    reader_bus = RedisStreamBus.from_url(redis_url)  # a blocking read holds its own connection
    writer = RedisStreamBus(client)
    await reader_bus.ensure_group(stream, "g")
    try:
        task = asyncio.create_task(reader_bus.read(stream, "g", "c", block_ms=3000))
        await asyncio.sleep(0.1)
        await writer.publish(stream, {"late": True})
        got = await asyncio.wait_for(task, 5)
        assert [m.event for m in got] == [{"late": True}]
    finally:
        await reader_bus.close()


async def test_reclaim_of_a_crashed_consumers_pending_message(
    client: redis_asyncio.Redis, stream: str
) -> None:
    bus = RedisStreamBus(client)
    await bus.publish(stream, {"n": 1})
    crashed = await bus.read(stream, "g", "dead")  # read, never acked: the consumer died
    assert len(crashed) == 1
    assert await bus.reclaim(stream, "g", "alive", min_idle_ms=60_000) == []  # not idle long enough
    await asyncio.sleep(0.06)
    taken = await bus.reclaim(stream, "g", "alive", min_idle_ms=50)
    assert [(m.id, m.event) for m in taken] == [(crashed[0].id, {"n": 1})]
    detail = await client.xpending_range(stream, "g", min="-", max="+", count=10)
    assert [(d["consumer"], d["times_delivered"]) for d in detail] == [(b"alive", 2)]
    assert await bus.ack(stream, "g", taken[0].id) == 1


async def test_maxlen_trims_approximately(client: redis_asyncio.Redis, stream: str) -> None:
    bus = RedisStreamBus(client, maxlen=10)
    for i in range(500):
        await bus.publish(stream, {"i": i})
    length = await client.xlen(stream)
    assert 10 <= length < 500  # "~" trims whole radix-tree nodes (100 entries by default)


async def test_group_is_recreated_when_the_stream_is_deleted(
    client: redis_asyncio.Redis, stream: str
) -> None:
    bus = RedisStreamBus(client)
    await bus.publish(stream, {"n": 1})
    assert len(await bus.read(stream, "g", "c")) == 1
    await client.delete(stream)
    assert await bus.read(stream, "g", "c") == []
    await bus.publish(stream, {"n": 2})
    assert [m.event for m in await bus.read(stream, "g", "c")] == [{"n": 2}]


async def test_foreign_entries_are_delivered_as_undecodable(client: redis_asyncio.Redis, stream: str) -> None:
    bus = RedisStreamBus(client)
    await client.xadd(stream, {"data": "{oops"})
    await client.xadd(stream, {"other": "field"})
    got = await bus.read(stream, "g", "c")
    assert [set(m.event) for m in got] == [{"_undecodable"}, {"_undecodable"}]


async def test_factory_builds_a_working_redis_bus(
    redis_url: str, client: redis_asyncio.Redis, stream: str
) -> None:
    bus = create_event_bus(redis_url)
    try:
        assert isinstance(bus, RedisStreamBus)
        message_id = await bus.publish(stream, {"ok": True})
        assert [m.id for m in await bus.read(stream, "g", "c")] == [message_id]
    finally:
        await bus.close()


# --- rate limiter ----------------------------------------------------------------------------


async def test_redis_rate_limiter_matches_the_in_memory_one(client: redis_asyncio.Redis) -> None:
    limit = RateLimit(capacity=3, rate=2.0)
    remote = RedisRateLimiter(client, limit, prefix=client.test_prefix + "rl:")  # type: ignore[attr-defined]
    local = InMemoryRateLimiter(limit)
    schedule = [(0.0, 1), (0.0, 1), (0.0, 1), (0.0, 1), (0.25, 1), (0.5, 2), (2.0, 3), (2.0, 1), (100.0, 3)]
    for now, cost in schedule:
        r_allowed, r_retry = await remote.allow("shop", cost=cost, now=1_000_000 + now)
        l_allowed, l_retry = local.allow_sync("shop", cost=cost, now=1_000_000 + now)
        assert r_allowed == l_allowed, (now, cost)
        assert r_retry == pytest.approx(l_retry, abs=1e-9)


async def test_redis_rate_limiter_is_atomic_under_concurrency(client: redis_asyncio.Redis) -> None:
    limit = RateLimit(capacity=20, rate=0.001)
    limiter = RedisRateLimiter(client, limit, prefix=client.test_prefix + "rl:")  # type: ignore[attr-defined]
    results = await asyncio.gather(*(limiter.allow("burst", now=5000.0) for _ in range(60)))
    assert sum(allowed for allowed, _ in results) == 20


async def test_redis_rate_limiter_uses_server_time_and_expires_idle_buckets(
    client: redis_asyncio.Redis,
) -> None:
    prefix = client.test_prefix + "rl:"  # type: ignore[attr-defined]
    limiter = RedisRateLimiter(client, RateLimit(capacity=1, rate=10.0), prefix=prefix)
    assert (await limiter.allow("k"))[0]
    allowed, retry = await limiter.allow("k")
    assert not allowed and 0 < retry <= 0.1
    ttl_ms = await client.pttl(prefix + "k")
    assert 0 < ttl_ms <= 1100  # full again after capacity / rate = 0.1 s, plus a second of slack
    await asyncio.sleep(0.15)
    assert (await limiter.allow("k"))[0]
