"""The blacklist's copies follow the database: a committed add or removal applies from the next
batch on, in the rules and in the features, with nothing pushed to the copies' holders."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from vigil.blacklists import RevisionCounter, StoredCopy, behind
from vigil.errors import Conflict, InvalidRequest, NotFound
from vigil.features.events import TransactionEvent
from vigil.local_graph import LocalGraph
from vigil.policy import DecisionPolicy
from vigil.schemas import BlacklistCreate
from vigil.service import VigilService
from vigil.velocity import Observation


class Table:
    """A stand-in for the stored table: ``load`` returns its current contents."""

    def __init__(self) -> None:
        self.rows = ["a"]
        self.loads = 0
        self.fail: Exception | None = None

    async def load(self) -> list[str]:
        self.loads += 1
        await asyncio.sleep(0.01)  # a query: other batches come in meanwhile
        if self.fail is not None:
            raise self.fail
        return list(self.rows)


def test_a_copy_reloads_only_when_a_batch_is_ahead_of_it() -> None:
    async def run() -> None:
        table, writer = Table(), RevisionCounter()
        copy = StoredCopy(table.load)
        assert await copy.at(writer.current) == ["a"] and table.loads == 1
        assert await copy.at(writer.current) == ["a"] and table.loads == 1
        old = writer.current
        table.rows.append("b")
        writer.bump()
        assert await copy.at(writer.current) == ["a", "b"] and table.loads == 2
        assert await copy.at(old) == ["a", "b"] and table.loads == 2  # a late batch: newer is fine
        assert await copy.at(None) == ["a", "b"] and table.loads == 2
        restarted = RevisionCounter()  # a new writer counts from 0 again: reload anyway
        table.rows.remove("a")
        assert await copy.at(restarted.current) == ["b"] and table.loads == 3

    asyncio.run(run())


def test_concurrent_batches_wait_for_one_reload_and_a_failed_one_keeps_the_copy() -> None:
    async def run() -> None:
        table, writer = Table(), RevisionCounter()
        copy = StoredCopy(table.load)
        first = await asyncio.gather(*(copy.at(writer.current) for _ in range(5)))
        assert first == [["a"]] * 5 and table.loads == 1
        writer.bump()
        table.fail = ConnectionError("database down")
        with pytest.raises(ConnectionError):
            await copy.at(writer.current)
        assert await copy.at(None) == ["a"]  # the previous copy is still there
        table.fail = None
        table.rows = ["c"]
        assert await copy.at(writer.current) == ["c"]  # and the next batch retries the load

    asyncio.run(run())


def test_behind() -> None:
    assert behind(None, ("w1", 0))
    assert behind(("w1", 0), ("w1", 1)) and not behind(("w1", 1), ("w1", 0))
    assert behind(("w1", 5), ("w2", 0))


async def test_an_added_entry_blocks_from_the_next_batch_and_a_removed_one_stops(
    sqlite_url: str, open_shop: Callable[[VigilService], Awaitable[Any]]
) -> None:
    service = VigilService(sqlite_url)
    graph = LocalGraph(sqlite_url, supervised=None, anomaly=None)
    service.attach_screening(graph, DecisionPolicy())
    ip = "203.0.113.9"
    try:
        shop = await open_shop(service)

        now = datetime.now(UTC)

        async def screen(key: str) -> Any:
            tx = shop.tx(key, "12.00", ip=ip)
            return await service.screen(tx, received_at=datetime.now(UTC))

        async def ip_feature() -> float:
            now = datetime.now(UTC)
            event = TransactionEvent(
                transaction_id=0, user_id=shop.user_id, created_at=now, amount=1.0, ip=ip
            )
            (row,) = await graph.shard.observe([Observation(f"probe-{event.t_ns}", event, True, False)])
            return row["blacklist_hit_by_ip"]

        assert "BLACKLIST_HIT" not in (await screen("blacklist-0001")).reason_codes
        assert await ip_feature() == 0.0

        entry = await service.add_blacklist_entry(
            BlacklistCreate(kind="ip", value=ip, reason="card testing"), added_by="ana"
        )
        listed = await screen("blacklist-0002")
        assert listed.outcome == "block" and "BLACKLIST_HIT" in listed.reason_codes
        assert await ip_feature() == 1.0

        assert entry.id is not None
        ended = await service.remove_blacklist_entry(entry.id, removed_by="ops")
        assert "BLACKLIST_HIT" not in (await screen("blacklist-0003")).reason_codes
        assert await ip_feature() == 0.0

        # The span stays on record, and the blacklist is read at event time: a transaction dated
        # inside the span still matches (as the features recomputed offline for training will).
        assert ended.expires_at is not None and ended.removed_by == "ops"
        assert [(e.id, e.expires_at) for e in await service.blacklist()] == [(entry.id, ended.expires_at)]
        inside = entry.added_at + (ended.expires_at - entry.added_at) / 2
        late = await service.screen(
            shop.tx("blacklist-0004", "12.00", ip=ip, created_at=inside), received_at=now
        )
        assert "BLACKLIST_HIT" in late.reason_codes
    finally:
        await graph.close()
        await service.close()


async def test_an_ended_entry_can_be_added_again_and_an_active_one_not(sqlite_url: str) -> None:
    service = VigilService(sqlite_url)
    try:
        listed = BlacklistCreate(kind="device", value="42", reason="emulator farm")
        first = await service.add_blacklist_entry(listed, added_by="ana")
        with pytest.raises(Conflict, match="already blacklisted"):
            await service.add_blacklist_entry(listed, added_by="ana")
        assert first.id is not None
        await service.remove_blacklist_entry(first.id, removed_by="ops")
        again = await service.remove_blacklist_entry(first.id, removed_by="someone else")
        assert again.removed_by == "ops"  # ending an ended entry changes nothing
        second = await service.add_blacklist_entry(listed, added_by="ana")
        assert second.id != first.id and second.expires_at is None
        assert [e.id for e in await service.blacklist()] == [first.id, second.id]
        with pytest.raises(NotFound):
            await service.remove_blacklist_entry(10**9, removed_by="ops")
        past = BlacklistCreate(
            kind="ip", value="10.0.0.1", reason="x", expires_at=datetime(2020, 1, 1, tzinfo=UTC)
        )
        with pytest.raises(InvalidRequest, match="not in the future"):
            await service.add_blacklist_entry(past, added_by="ana")
    finally:
        await service.close()
