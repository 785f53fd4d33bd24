"""The event outbox: a decision committed while the bus is down (or before a crash) still reaches
the bus, through the relay, with the payload the client got. SQLite file + the in-process bus."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from vigil.db import repository as repo
from vigil.db.engine import BatchDb
from vigil.db.migrate import upgrade_async
from vigil.db.models import EventOutbox
from vigil.decision.local_graph import LocalGraph
from vigil.decision.policy import DecisionPolicy
from vigil.events.bus import STREAM_ALERTS, STREAM_DECISIONS, STREAM_REVIEW, InMemoryEventBus
from vigil.events.outbox import EventRelay
from vigil.service import VigilService


class FlakyBus(InMemoryEventBus):
    """The in-process bus with an off switch (a Redis outage, as the publisher sees it) and a
    hang switch (a Redis that accepts the connection and never answers)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.hung = False

    async def publish_many(self, entries: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
        if self.down:
            raise ConnectionError("bus unreachable")
        if self.hung:
            await asyncio.Event().wait()  # forever
        return await super().publish_many(entries)


async def stream(bus: InMemoryEventBus, name: str) -> list[dict[str, Any]]:
    """Every event on ``name`` (a fresh consumer group starts at the beginning)."""
    messages = await bus.read(name, f"check-{datetime.now(UTC).timestamp()}", "c", count=1000)
    return [m.event for m in messages]


@dataclass
class World:
    url: str
    service: VigilService
    bus: FlakyBus  # with make_world(url, None): a bus the service never sees
    shop: Any  # tests/conftest.py's Shop

    @property
    def relay(self) -> EventRelay:
        assert self.service.screener is not None and self.service.screener.relay is not None
        return self.service.screener.relay

    async def screen(self, key: str, amount: str) -> dict[str, Any]:
        tx = self.shop.tx(f"outbox-{key}", amount)
        return (await self.service.screen(tx, received_at=datetime.now(UTC))).model_dump(mode="json")

    async def outbox(self) -> list[EventOutbox]:
        async with self.service.sessions() as session:
            query = sa.select(EventOutbox).order_by(col(EventOutbox.id))
            return list((await session.execute(query)).scalars())


MakeWorld = Callable[[str, FlakyBus | None], Awaitable[World]]


@pytest.fixture
def make_world(open_shop: Callable[[VigilService], Awaitable[Any]]) -> MakeWorld:
    async def make(url: str, bus: FlakyBus | None) -> World:
        service = VigilService(url)
        # No models: amounts of 1000 and more go to review (FRAUD_SCORE_UNAVAILABLE).
        service.attach_screening(LocalGraph(url, supervised=None, anomaly=None), DecisionPolicy(), bus)
        return World(url, service, bus or FlakyBus(), await open_shop(service))

    return make


@pytest.fixture
async def world(sqlite_url: str, make_world: MakeWorld) -> AsyncIterator[World]:
    w = await make_world(sqlite_url, FlakyBus())
    yield w
    await w.service.close()


async def test_events_go_out_after_the_commit_and_the_outbox_row_is_forgotten(world: World) -> None:
    large = await world.screen("ob-1", "1500.00")
    small = await world.screen("ob-2", "12.00")
    assert (large["outcome"], small["outcome"]) == ("review", "approve")

    assert await stream(world.bus, STREAM_DECISIONS) == [large, small]
    assert await stream(world.bus, STREAM_ALERTS) == [large]
    assert await stream(world.bus, STREAM_REVIEW) == [large]
    assert len(await world.outbox()) == 2  # one per batch, until the relay's next sweep
    assert await world.relay.sweep() == 0  # nothing to republish: both were published
    assert await world.outbox() == []


async def test_events_of_a_decision_stored_while_the_bus_is_down_are_republished(world: World) -> None:
    world.bus.down = True
    answered = [await world.screen("down-1", "1500.00"), await world.screen("down-2", "12.00")]
    assert [a["outcome"] for a in answered] == ["review", "approve"]  # decided and stored anyway
    rows = await world.outbox()
    assert [r.transaction_ids for r in rows] == [[a["transaction_id"]] for a in answered]

    world.bus.down = False
    now = datetime.now(UTC)
    assert await world.relay.sweep(now) == 0  # not due yet: the writer may still publish them
    assert await stream(world.bus, STREAM_DECISIONS) == []

    later = now + timedelta(seconds=world.relay.grace_s + 1)
    assert await world.relay.sweep(later) == 4  # two decisions, one alert, one review event
    assert await stream(world.bus, STREAM_DECISIONS) == answered  # what the client was told
    assert await stream(world.bus, STREAM_ALERTS) == answered[:1]
    assert await stream(world.bus, STREAM_REVIEW) == answered[:1]
    assert await world.outbox() == []
    assert await world.relay.sweep(later + timedelta(hours=1)) == 0  # published once only


async def test_a_hung_bus_delays_the_answer_by_the_publish_timeout_only(world: World) -> None:
    world.relay.publish_timeout_s = 0.2
    world.bus.hung = True
    started = time.monotonic()
    answered = await asyncio.wait_for(world.screen("hung-1", "12.00"), 10)  # fails, not hangs
    assert 0.2 <= time.monotonic() - started < 2.0  # answered after the timeout
    assert [r.transaction_ids for r in await world.outbox()] == [[answered["transaction_id"]]]
    world.bus.hung = False
    assert await world.relay.sweep(datetime.now(UTC) + timedelta(seconds=world.relay.grace_s + 1)) == 1
    assert await stream(world.bus, STREAM_DECISIONS) == [answered]


async def test_a_failed_republish_backs_off_and_keeps_the_error(world: World) -> None:
    world.bus.down = True
    answered = await world.screen("retry-1", "12.00")
    due = datetime.now(UTC) + timedelta(seconds=world.relay.grace_s + 1)

    assert await world.relay.sweep(due) == 0
    (row,) = await world.outbox()
    assert row.attempts == 1 and row.last_error == "ConnectionError: bus unreachable"
    backoff = row.due_at - due
    assert timedelta(seconds=world.relay.grace_s) < backoff <= timedelta(seconds=world.relay.max_backoff_s)

    world.bus.down = False
    assert await world.relay.sweep(due + backoff / 2) == 0  # still backing off
    assert await world.relay.sweep(due + backoff) == 1
    assert await stream(world.bus, STREAM_DECISIONS) == [answered]
    assert await world.outbox() == []


async def test_a_process_that_died_after_the_commit_is_covered_by_another(
    world: World, make_world: MakeWorld
) -> None:
    """The commit happened, the publish never did (the process died): a relay elsewhere
    publishes the events once the row is due, rebuilt from the stored decision."""
    original = world.relay

    async def die(results: Sequence[Any], outbox_ids: Sequence[int]) -> bool:
        return False

    original.publish = die  # type: ignore[method-assign]
    answered = await world.screen("crash-1", "1500.00")
    assert await stream(world.bus, STREAM_DECISIONS) == []

    other_bus = FlakyBus()
    other = await make_world(world.url, other_bus)
    try:
        later = datetime.now(UTC) + timedelta(seconds=other.relay.grace_s + 1)
        assert await other.relay.sweep(later) == 3
        assert await stream(other_bus, STREAM_DECISIONS) == [answered]
        assert await stream(other_bus, STREAM_ALERTS) == [answered]
    finally:
        await other.service.close()


async def test_a_claimed_row_is_not_due_again_until_its_lease_ends(world: World) -> None:
    world.bus.down = True
    await world.screen("claim-1", "12.00")
    db_a = BatchDb(world.url, world.service.engine)
    db_b = BatchDb(world.url, world.service.engine)
    try:
        now = datetime.now(UTC) + timedelta(seconds=60)
        lease = now + timedelta(seconds=30)
        first = await db_a.write(repo.outbox_claim, now=now, lease_until=lease, limit=10)
        second = await db_b.write(repo.outbox_claim, now=now, lease_until=lease, limit=10)
        assert len(first) == 1 and second == []
        # the holder died: at the end of its lease the row is due again, for anyone
        again = await db_b.write(repo.outbox_claim, now=lease, lease_until=lease, limit=10)
        assert [(i, ids) for i, ids, _ in again] == [(i, ids) for i, ids, _ in first]
        assert again[0][2] == 1  # the first claim counted as an attempt
    finally:
        db_a.close()
        db_b.close()


async def test_no_bus_means_no_outbox(tmp_path: Path, make_world: MakeWorld) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}"
    await upgrade_async(url)
    plain = await make_world(url, None)
    try:
        assert plain.service.screener is not None and plain.service.screener.relay is None
        await plain.screen("plain-1", "1.00")
        assert await plain.outbox() == []
    finally:
        await plain.service.close()


def test_relay_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="grace_s"):
        EventRelay(None, InMemoryEventBus(), grace_s=0)  # type: ignore[arg-type]
