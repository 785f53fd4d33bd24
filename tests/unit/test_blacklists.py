"""The blacklist's copies follow the database: a committed add or removal applies from the next
batch on, in the rules and in the features, with nothing pushed to the copies' holders."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from vigil.decision.local_graph import LocalGraph
from vigil.decision.policy import DecisionPolicy
from vigil.errors import Conflict, InvalidRequest, NotFound
from vigil.features.events import TransactionEvent
from vigil.schemas import BlacklistCreate
from vigil.service import VigilService
from vigil.state.blacklists import LatestRevision, RevisionWatch, StoredCopy, behind, stored_revision
from vigil.state.velocity import Observation


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
        table = Table()
        copy = StoredCopy(table.load)
        assert await copy.at(0) == ["a"] and table.loads == 1
        assert await copy.at(0) == ["a"] and table.loads == 1
        table.rows.append("b")
        assert await copy.at(1) == ["a", "b"] and table.loads == 2
        assert await copy.at(0) == ["a", "b"] and table.loads == 2  # a late batch: newer is fine
        assert await copy.at(None) == ["a", "b"] and table.loads == 2

    asyncio.run(run())


def test_concurrent_batches_wait_for_one_reload_and_a_failed_one_keeps_the_copy() -> None:
    async def run() -> None:
        table = Table()
        copy = StoredCopy(table.load)
        first = await asyncio.gather(*(copy.at(0) for _ in range(5)))
        assert first == [["a"]] * 5 and table.loads == 1
        table.fail = ConnectionError("database down")
        with pytest.raises(ConnectionError):
            await copy.at(1)
        assert await copy.at(None) == ["a"]  # the previous copy is still there
        table.fail = None
        table.rows = ["c"]
        assert await copy.at(1) == ["c"]  # and the next batch retries the load

    asyncio.run(run())


def test_behind_and_the_latest_revision_seen() -> None:
    assert behind(None, 0) and behind(3, 4) and not behind(4, 4) and not behind(5, 4)
    latest = LatestRevision()
    assert latest.current is None
    for seen in (3, 5, 4):  # a change's own revision, then a watch's read from before it
        latest.saw(seen)
    assert latest.current == 5


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


async def test_every_committed_change_moves_the_stored_revision_on(sqlite_url: str) -> None:
    service = VigilService(sqlite_url)
    try:

        async def revision() -> int:
            async with service.sessions() as session:
                return await stored_revision(session)

        start = await revision()
        entry = await service.add_blacklist_entry(
            BlacklistCreate(kind="merchant", value="77", reason="x"), added_by="ana"
        )
        added = await revision()
        assert entry.id is not None and added > start
        await service.remove_blacklist_entry(entry.id, removed_by="ops")
        removed = await revision()
        assert removed > added
        await service.remove_blacklist_entry(entry.id, removed_by="ops")  # already ended: no change
        assert await revision() == removed
    finally:
        await service.close()


async def test_concurrent_adds_of_one_value_store_one_span(sqlite_url: str) -> None:
    """The check for an active span and the insert run under the blacklist's write lock
    (PostgreSQL: tests/integration/test_storage.py)."""
    service = VigilService(sqlite_url)
    try:
        listed = BlacklistCreate(kind="device", value="7", reason="emulator farm")
        results = await asyncio.gather(
            *(service.add_blacklist_entry(listed, added_by="ana") for _ in range(8)), return_exceptions=True
        )
        assert sum(isinstance(r, Conflict) for r in results) == 7, results
        assert len(await service.blacklist()) == 1
    finally:
        await service.close()


async def test_a_change_committed_by_another_writer_applies_after_the_next_poll(
    sqlite_url: str, open_shop: Callable[[VigilService], Awaitable[Any]]
) -> None:
    """Two Ingress replicas on one database: an entry added through one blocks on the other once
    the other's watch has read the revision; nothing is pushed between them."""
    here, there = VigilService(sqlite_url), VigilService(sqlite_url)
    graph = LocalGraph(sqlite_url, supervised=None, anomaly=None)
    here.attach_screening(graph, DecisionPolicy(), blacklist_poll_s=0.05)
    ip = "198.51.100.23"
    try:
        shop = await open_shop(here)

        async def screen(key: str) -> Any:
            return await here.screen(shop.tx(key, "9.00", ip=ip), received_at=datetime.now(UTC))

        assert "BLACKLIST_HIT" not in (await screen("elsewhere-1")).reason_codes
        entry = await there.add_blacklist_entry(
            BlacklistCreate(kind="ip", value=ip, reason="mule network"), added_by="ana"
        )
        await asyncio.sleep(0.3)  # six polls
        assert "BLACKLIST_HIT" in (await screen("elsewhere-2")).reason_codes
        assert entry.id is not None
        await there.remove_blacklist_entry(entry.id, removed_by="ops")
        await asyncio.sleep(0.3)
        assert "BLACKLIST_HIT" not in (await screen("elsewhere-3")).reason_codes
    finally:
        await graph.close()
        await here.close()
        await there.close()


def test_a_watch_keeps_polling_through_a_failed_read(caplog: pytest.LogCaptureFixture) -> None:
    class Flaky:
        """A session factory whose first two sessions fail, then one answering revision 9."""

        def __init__(self) -> None:
            self.calls = 0

        def __call__(self) -> Any:
            self.calls += 1
            if self.calls <= 2:
                raise ConnectionError("database restarting")
            return FixedSession()

    class FixedSession:
        async def __aenter__(self) -> Any:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

        async def execute(self, _query: Any) -> Any:
            class Row:
                def one(self) -> tuple[int, int]:
                    return 7, 2

            return Row()

    async def run() -> list[int]:
        seen: list[int] = []
        watch = RevisionWatch(Flaky(), seen.append, every_s=0.01)  # type: ignore[arg-type]
        watch.start()
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)
        await watch.close()
        return seen

    assert asyncio.run(run())[:1] == [9]
    assert [r.message for r in caplog.records].count(
        "cannot read the blacklist revision (retrying every 0.01 s): database restarting"
    ) == 1
    with pytest.raises(ValueError, match="every_s must be positive"):
        RevisionWatch(Flaky(), print, every_s=0)  # type: ignore[arg-type]
