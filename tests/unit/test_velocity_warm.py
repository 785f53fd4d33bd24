"""Warming the velocity shards: the most recently active users are loaded before traffic, each
to exactly the state a lazy load on first use would give."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from vigil.db.engine import create_engine
from vigil.decision.local_graph import LocalGraph
from vigil.decision.policy import DecisionPolicy
from vigil.features.events import TransactionEvent
from vigil.schemas import AccountCreate, MerchantCreate, TransactionCreate, UserCreate
from vigil.service import VigilService
from vigil.state.velocity import Observation, VelocityShard, shard_of_user

NOW = datetime.now(UTC).replace(microsecond=0)


async def _history(url: str) -> list[int]:
    """Five users, user i last active i hours ago (so newest first = the list's order)."""
    service = VigilService(url)
    graph = LocalGraph(url, supervised=None, anomaly=None)
    service.attach_screening(graph, DecisionPolicy())
    users = []
    try:
        merchant = await service.create_merchant(
            MerchantCreate(name="Shop", category="grocery", country="GB", lat=51.5, lon=0)
        )
        for i in range(5):
            user = await service.create_user(
                UserCreate(full_name=f"U{i}", country="GB", home_lat=51.5, home_lon=0)
            )
            account = await service.create_account(AccountCreate(user_id=user.user_id, currency="EUR"))
            for j in range(3):
                at = NOW - timedelta(hours=i, minutes=10 * j)
                tx = TransactionCreate(
                    idempotency_key=f"warm-{i}-{j}-key",
                    user_id=user.user_id,
                    account_id=account.account_id,
                    merchant_id=merchant.merchant_id,
                    amount=Decimal(f"{10 + 7 * i + j}.00"),
                    currency="EUR",
                    channel="ecommerce",
                    country="GB",
                    created_at=at,
                )
                await service.screen(tx, received_at=at)
            assert user.user_id is not None
            users.append(user.user_id)
    finally:
        await service.close()
        await graph.close()
    return users


def _event(user_id: int) -> TransactionEvent:
    return TransactionEvent(transaction_id=0, user_id=user_id, created_at=NOW, amount=5.0)


async def test_warm_loads_the_most_recent_users_to_the_state_a_lazy_load_gives(sqlite_url: str) -> None:
    users = await _history(sqlite_url)
    warm, cold = VelocityShard(0, 1, sqlite_url, settle_s=0.0), VelocityShard(0, 1, sqlite_url, settle_s=0.0)
    try:
        assert await warm.warm(3) == 3
        assert set(warm.users) == set(users[:3])  # the three most recently active
        assert warm.unsettled == {}  # a first start settles at once: nothing is loaded twice
        assert await warm.warm(3) == 0  # already loaded: a redeploy's call is cheap
        for uid in users:
            assert await warm.user_counts(uid, NOW) == await cold.user_counts(uid, NOW)
    finally:
        await warm.close()
        await cold.close()


async def test_each_shard_warms_only_its_own_users_and_a_restart_still_settles(sqlite_url: str) -> None:
    users = await _history(sqlite_url)
    shards = [VelocityShard(i, 2, sqlite_url, settle_s=5.0) for i in range(2)]
    try:
        loaded = [await shard.warm(10) for shard in shards]
        assert sum(loaded) == len(users)
        for i, shard in enumerate(shards):
            assert all(shard_of_user(uid, 2) == i for uid in shard.users)
            # a restarted incarnation (settle_s > 0) rebuilds what it loaded early once more
            assert set(shard.unsettled) == set(shard.users)
        assert await shards[0].warm(0) == 0
    finally:
        for shard in shards:
            await shard.close()


async def test_a_restarted_shard_loads_on_first_use_and_settles_once(sqlite_url: str) -> None:
    users = await _history(sqlite_url)
    shard = VelocityShard(0, 1, sqlite_url, settle_s=0.3)
    settles: list[int] = []
    settle = shard._settle

    async def counting() -> None:
        settles.append(len(shard.unsettled))
        await settle()

    shard._settle = counting  # type: ignore[method-assign]
    try:
        probe = [Observation("restart-probe-1", _event(users[4]), user=True, entity=True)]
        await shard.observe(probe)  # inside the settle window: loads only its own user, lazily
        assert set(shard.users) == {users[4]} and set(shard.unsettled) == {users[4]} and settles == []
        await asyncio.sleep(0.35)
        for n, uid in enumerate(users[:2]):  # past the window: settled once, then first use only
            await shard.observe([Observation(f"restart-probe-{n + 2}", _event(uid), user=True, entity=True)])
        assert settles == [1]
        assert set(shard.users) == {users[4], *users[:2]} and shard.unsettled == {}
    finally:
        await shard.close()


async def _commit_late(url: str, user_id: int, key: str) -> None:
    """Store one transaction of ``user_id`` the way a dead incarnation's batch would land: screened
    and committed by another screening path, after the restarted shard rebuilt the user."""
    service = VigilService(url)
    graph = LocalGraph(url, supervised=None, anomaly=None)
    service.attach_screening(graph, DecisionPolicy())
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            account = (
                await conn.execute(
                    sa.text("SELECT account_id FROM accounts WHERE user_id = :u"), {"u": user_id}
                )
            ).scalar_one()
            merchant = (await conn.execute(sa.text("SELECT min(merchant_id) FROM merchants"))).scalar_one()
        at = NOW - timedelta(seconds=30)
        tx = TransactionCreate(
            idempotency_key=key,
            user_id=user_id,
            account_id=account,
            merchant_id=merchant,
            amount=Decimal("99.00"),
            currency="EUR",
            channel="ecommerce",
            country="GB",
            created_at=at,
        )
        await service.screen(tx, received_at=at)
    finally:
        await engine.dispose()
        await service.close()
        await graph.close()


async def test_after_the_window_only_users_that_missed_a_late_commit_are_rebuilt(sqlite_url: str) -> None:
    users = await _history(sqlite_url)
    late_user, quiet_user = users[0], users[1]
    shard = VelocityShard(0, 1, sqlite_url, settle_s=0.3)  # a restarted incarnation
    reference = VelocityShard(0, 1, sqlite_url, settle_s=0.0)
    loads: list[list[int]] = []
    load_users = shard._load_users

    async def counting(user_ids: list[int]) -> None:
        loads.append(list(user_ids))
        await load_users(user_ids)

    shard._load_users = counting  # type: ignore[method-assign]
    own = [
        [
            Observation(f"own-{n}-{uid}", _event(uid), user=True, entity=True)
            for uid in (late_user, quiet_user)
        ]
        for n in range(2)
    ]
    try:
        await shard.observe(own[0])  # inside the window: both users rebuilt from the database
        assert set(shard.unsettled) == {late_user, quiet_user}
        await _commit_late(sqlite_url, late_user, "answered-by-the-dead-incarnation")
        await asyncio.sleep(0.35)
        loads.clear()
        await shard.observe(own[1])  # past the window: one query, one user rebuilt
        assert loads == [[late_user]]
        assert shard.unsettled == {}
        for batch in own:
            await reference.observe(batch)  # loads both users with the late event, learns the same
        for uid in (late_user, quiet_user):
            assert await shard.user_counts(uid, NOW) == await reference.user_counts(uid, NOW)
        late_counts, quiet_counts = (
            await shard.user_counts(late_user, NOW),
            await shard.user_counts(quiet_user, NOW),
        )
        assert late_counts["txn_count_all_by_user"] == quiet_counts["txn_count_all_by_user"] + 1
    finally:
        await shard.close()
        await reference.close()
