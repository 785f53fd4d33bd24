"""The event outbox on the real backends: decisions stored while Redis is unreachable reach the
real Redis streams through the relay, on PostgreSQL and on SQLite."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from vigil.db import repository as repo
from vigil.db.engine import BatchDb
from vigil.decision.local_graph import LocalGraph
from vigil.decision.policy import DecisionPolicy
from vigil.events.bus import (
    PAYLOAD_FIELD,
    STREAM_ALERTS,
    STREAM_DECISIONS,
    STREAM_REVIEW,
    RedisStreamBus,
    decode_event,
)
from vigil.events.outbox import EventRelay
from vigil.service import VigilService

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _events(redis_url: str, stream: str, prefix: str) -> list[dict[str, Any]]:
    client = redis_asyncio.Redis.from_url(redis_url)
    try:
        entries: Any = await client.xrange(stream)
    finally:
        await client.aclose()
    events = [decode_event(fields[PAYLOAD_FIELD.encode()]) for _, fields in entries]
    return [e for e in events if str(e.get("idempotency_key", "")).startswith(prefix)]


async def test_decisions_stored_while_redis_is_down_reach_it_through_the_relay(
    database_url: str, redis_url: str, open_shop: Callable[[VigilService], Awaitable[Any]]
) -> None:
    prefix = f"outbox-{uuid.uuid4().hex[:8]}-"
    down = RedisStreamBus.from_url(f"redis://127.0.0.1:{_closed_port()}/0")
    service = VigilService(database_url)
    service.attach_screening(LocalGraph(database_url, supervised=None, anomaly=None), DecisionPolicy(), down)
    try:
        shop = await open_shop(service)
        answered = []
        for n, amount in enumerate(("1500.00", "12.00")):  # no models: >= 1000 goes to review
            tx = shop.tx(f"{prefix}{n}", amount)
            result = await service.screen(tx, received_at=datetime.now(UTC))
            answered.append(result.model_dump(mode="json"))
        assert [a["outcome"] for a in answered] == ["review", "approve"]
        async with service.sessions() as session:
            assert await session.run_sync(lambda s: repo.outbox_size(s)) == 2
    finally:
        await service.close()  # the process goes away owing the events
    assert await _events(redis_url, STREAM_DECISIONS, prefix) == []

    service = VigilService(database_url)
    db = BatchDb(database_url, service.engine)
    up = RedisStreamBus.from_url(redis_url)
    relay = EventRelay(db, up)
    try:
        due = datetime.now(UTC) + timedelta(seconds=relay.grace_s + 1)
        assert await relay.sweep(due) == 4
        assert await relay.sweep(due) == 0  # and the rows are gone
        async with service.sessions() as session:
            assert await session.run_sync(lambda s: repo.outbox_size(s)) == 0
    finally:
        await relay.close()
        await up.close()
        db.close()
        await service.engine.dispose()
    assert await _events(redis_url, STREAM_DECISIONS, prefix) == answered
    assert await _events(redis_url, STREAM_ALERTS, prefix) == answered[:1]
    assert await _events(redis_url, STREAM_REVIEW, prefix) == answered[:1]
