"""Overlapping batches share the screening by stage: one batch's lookup runs beside another's
graph call, but two batches are never inside the graph at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from vigil.decision.local_graph import LocalGraph
from vigil.decision.policy import DecisionPolicy
from vigil.decision.screening import Scored
from vigil.features.events import TransactionEvent
from vigil.schemas import TransactionCreate
from vigil.service import VigilService


class SlowGraph:
    """LocalGraph behind a 30 ms await (a remote call in flight), counting who is inside."""

    def __init__(self, inner: LocalGraph) -> None:
        self.inner = inner
        self.inside = 0
        self.most_inside = 0

    async def score(
        self, keys: list[str], events: list[TransactionEvent], txs: list[TransactionCreate]
    ) -> list[Scored]:
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            await asyncio.sleep(0.03)
            return await self.inner.score(keys, events, txs)
        finally:
            self.inside -= 1

    async def set_kyc_risk(self, user_id: int, risk_level: str) -> None:
        await self.inner.set_kyc_risk(user_id, risk_level)

    def blacklist_changed(self, revision: int) -> None:
        self.inner.blacklist_changed(revision)


async def test_batches_overlap_outside_the_graph_and_take_turns_inside_it(
    sqlite_url: str, open_shop: Callable[[VigilService], Awaitable[Any]]
) -> None:
    service = VigilService(sqlite_url)
    graph = SlowGraph(LocalGraph(sqlite_url, supervised=None, anomaly=None))
    service.attach_screening(graph, DecisionPolicy(), None, max_batch=4, max_wait_s=0.001, max_concurrency=3)
    shop = await open_shop(service)
    assert service.screener is not None
    db = service.screener.db
    lookups_beside_the_graph = 0
    read = db.read

    async def counting_read(fn: Any, **kwargs: Any) -> Any:
        nonlocal lookups_beside_the_graph
        lookups_beside_the_graph += graph.inside > 0
        return await read(fn, **kwargs)

    db.read = counting_read  # type: ignore[method-assign]
    try:
        now = datetime.now(UTC)
        results = await asyncio.gather(
            *(service.screen(shop.tx(f"stage-key-{i:03d}", "12.00"), received_at=now) for i in range(24))
        )
    finally:
        await service.close()
        await graph.inner.close()
    assert sorted(r.idempotency_key for r in results) == sorted(f"stage-key-{i:03d}" for i in range(24))
    assert lookups_beside_the_graph > 0  # batches did overlap
    assert graph.most_inside == 1  # but never inside the graph
