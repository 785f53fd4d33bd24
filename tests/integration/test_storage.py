"""The data model, migrations, repository and bulk load, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil.db import repository as repo
from vigil.db.bulk import bulk_load
from vigil.db.engine import (
    WRITER_AUTOCHECKPOINT_PAGES,
    BatchDb,
    create_engine,
    session_factory,
    session_scope,
)
from vigil.db.migrate import downgrade_async, upgrade_async
from vigil.db.models import TABLE_ORDER, Decision, DeviceIpHistory, ReviewCase, Transaction, User
from vigil.errors import Conflict, DuplicateIdempotencyKey, InvalidRequest, UnknownReference
from vigil.schemas import (
    AccountCreate,
    BlacklistCreate,
    DeviceCreate,
    MerchantCreate,
    TransactionCreate,
    UserCreate,
)
from vigil.state.blacklists import stored_revision

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_migrations_go_up_and_down_cleanly(empty_database_url: str) -> None:
    url = empty_database_url
    await upgrade_async(url)
    assert set(TABLE_ORDER) | {"alembic_version"} <= await _tables(url)
    await downgrade_async(url, "base")
    assert await _tables(url) <= {"alembic_version"}
    await upgrade_async(url)  # and up again from nothing
    assert set(TABLE_ORDER) <= await _tables(url)


class World:
    """A user with an account, a merchant and a device, made through the repository."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.sessions = session_factory(self.engine)

    async def build(self) -> World:
        async with session_scope(self.sessions) as s:
            self.user = await repo.create_user(
                s, data=UserCreate(full_name="Ada", country="GB", home_lat=51.5, home_lon=-0.1, created_at=T0)
            )
            assert self.user.user_id is not None
            self.account = await repo.create_account(
                s, data=AccountCreate(user_id=self.user.user_id, currency="EUR", opened_at=T0)
            )
            self.merchant = await repo.create_merchant(
                s, data=MerchantCreate(name="Shop", category="grocery", country="GB", lat=51.5, lon=-0.1)
            )
            self.device = await repo.create_device(s, data=DeviceCreate(fingerprint="fp-1", os="ios"))
        return self

    def tx(self, key: str, **overrides: object) -> TransactionCreate:
        fields: dict[str, object] = {
            "idempotency_key": key,
            "user_id": self.user.user_id,
            "account_id": self.account.account_id,
            "merchant_id": self.merchant.merchant_id,
            "device_id": self.device.device_id,
            "ip": "203.0.113.7",
            "amount": "12.50",
            "currency": "EUR",
            "channel": "ecommerce",
            "country": "GB",
            "created_at": T0,
        }
        fields.update(overrides)
        return TransactionCreate.model_validate(fields)

    async def counts(self) -> dict[str, int]:
        async with self.sessions() as s:
            return {
                t.__tablename__: await repo.count_rows(s, t) for t in (User, Transaction, DeviceIpHistory)
            }


async def test_transaction_round_trip_and_history_queries(database_url: str) -> None:
    world = await World(database_url).build()
    try:
        async with session_scope(world.sessions) as s:
            for i in range(3):
                await repo.record_transaction(
                    s, data=world.tx(f"key-000{i}", created_at=T0 + timedelta(hours=i))
                )
        async with world.sessions() as s:
            recent = await repo.user_transactions(
                s, user_id=world.user.user_id, since=T0 + timedelta(minutes=30)
            )
            assert [t.idempotency_key for t in recent] == ["key-0002", "key-0001"]
            assert recent[0].amount == Decimal("12.50")
            assert recent[0].created_at == T0 + timedelta(hours=2)
            assert recent[0].created_at.tzinfo is not None
            assert await repo.device_users(s, device_id=world.device.device_id, since=T0) == [
                world.user.user_id
            ]
            assert await repo.ip_users(s, ip="203.0.113.7", since=T0) == [world.user.user_id]
    finally:
        await world.engine.dispose()


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"user_id": 999_999}, "user 999999 does not exist"),
        ({"account_id": 999_999}, "account 999999 does not exist"),
        ({"merchant_id": 999_999}, "merchant 999999 does not exist"),
        ({"device_id": 999_999}, "device 999999 does not exist"),
        ({"currency": "USD"}, "is in EUR"),
    ],
)
async def test_bad_references_are_rejected_and_leave_the_database_unchanged(
    database_url: str, overrides: dict[str, object], error: str
) -> None:
    world = await World(database_url).build()
    try:
        before = await world.counts()
        with pytest.raises(UnknownReference, match=error):
            async with session_scope(world.sessions) as s:
                await repo.record_transaction(s, data=world.tx("key-bad-1", **overrides))
        assert await world.counts() == before
    finally:
        await world.engine.dispose()


async def test_another_users_account_is_rejected_among_good_items(database_url: str) -> None:
    world = await World(database_url).build()
    try:
        async with session_scope(world.sessions) as s:
            other = await repo.create_user(
                s, data=UserCreate(full_name="Bo", country="GB", home_lat=51.5, home_lon=-0.1, created_at=T0)
            )
            assert other.user_id is not None
            account = await repo.create_account(
                s, data=AccountCreate(user_id=other.user_id, currency="EUR", opened_at=T0)
            )
        items = [
            world.tx("key-mix-1"),
            world.tx("key-mix-2", account_id=account.account_id),
            world.tx("key-mix-3", user_id=other.user_id, account_id=account.account_id),
        ]
        async with world.sessions() as s:
            bad = await s.run_sync(repo.missing_references, items=items)
        assert bad == {1: f"account {account.account_id} does not belong to user {world.user.user_id}"}
    finally:
        await world.engine.dispose()


def _decided(
    world: World, key: str, outcome: str = "approve"
) -> tuple[TransactionCreate, datetime, Decision]:
    decision = Decision(
        transaction_id=0,
        outcome=outcome,
        reason_codes=["test"],
        rule_hits=[],
        latency_ms=1.0,
        decided_at=T0,
    )
    return world.tx(key), T0, decision


async def test_batch_db_stores_a_batch_whole_or_not_at_all(database_url: str) -> None:
    """The screening path's one-hop unit of work: committed on return, rolled back on raise."""
    world = await World(database_url).build()
    db = BatchDb(database_url, world.engine)
    try:
        stored = await db.write(
            repo.record_decided, items=[_decided(world, "batch-001"), _decided(world, "batch-002", "review")]
        )
        ids = [d.transaction_id for d in stored]
        assert all(i > 0 for i in ids) and ids == sorted(set(ids)), ids  # filled in, distinct, in order

        def write_then_fail(session: Session) -> None:
            repo.record_decided(session, items=[_decided(world, "batch-003")])
            raise RuntimeError("fails after the insert")

        with pytest.raises(RuntimeError):
            await db.write(write_then_fail)
        # a duplicate key in a batch with a fresh one: neither is stored
        with pytest.raises(IntegrityError):
            await db.write(
                repo.record_decided, items=[_decided(world, "batch-004"), _decided(world, "batch-001")]
            )
        # concurrent batches (one writer on SQLite: they queue, none meets a locked database)
        await asyncio.gather(
            *(db.write(repo.record_decided, items=[_decided(world, f"concurrent-{i}")]) for i in range(8))
        )
        found, missing = await db.read(
            repo.screening_lookup,
            keys=["batch-001", "batch-002", "batch-003", "batch-004", "concurrent-0"],
            items=[world.tx("lookup-ok"), world.tx("lookup-bad", merchant_id=999_999)],
        )
        assert set(found) == {"batch-001", "batch-002", "concurrent-0"}
        assert found["batch-002"][1] is not None and found["batch-002"][1].outcome == "review"
        assert [found[k][0].transaction_id for k in ("batch-001", "batch-002")] == ids
        assert missing == {1: "merchant 999999 does not exist"}
        async with world.sessions() as s:
            assert await repo.count_rows(s, Transaction) == 10
            assert await repo.count_rows(s, ReviewCase) == 1
    finally:
        db.close()
        await world.engine.dispose()


async def test_sqlite_wal_is_checkpointed_beside_the_writer(tmp_path: Path) -> None:
    """On file SQLite the batch writer does not checkpoint inside its commits (its threshold is
    a safety net only); a background thread checkpoints every frame the writer appended."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'vigil.db'}"
    await upgrade_async(database_url)
    world = await World(database_url).build()
    db = BatchDb(database_url, world.engine, checkpoint_interval_s=0.05)
    try:
        assert db.checkpointer is not None
        pages = await db.read(lambda s: s.execute(sa.text("PRAGMA wal_autocheckpoint")).scalar())
        assert pages == WRITER_AUTOCHECKPOINT_PAGES
        for i in range(5):
            await db.write(repo.record_decided, items=[_decided(world, f"wal-batch-{i}")])
        deadline = time.monotonic() + 10
        while not (db.checkpointer.last and db.checkpointer.last[1] > 0):
            assert time.monotonic() < deadline, (
                f"no checkpoint of the writer's frames: {db.checkpointer.last}"
            )
            await asyncio.sleep(0.05)
        busy, frames, done = db.checkpointer.last
        assert busy == 0 and done == frames, db.checkpointer.last
    finally:
        db.close()
        await world.engine.dispose()
    assert not db.checkpointer._thread.is_alive()


async def test_duplicate_idempotency_key_is_rejected_and_changes_nothing(database_url: str) -> None:
    world = await World(database_url).build()
    try:
        async with session_scope(world.sessions) as s:
            first = await repo.record_transaction(s, data=world.tx("key-dup-1"))
        before = await world.counts()
        with pytest.raises(DuplicateIdempotencyKey) as caught:
            async with session_scope(world.sessions) as s:
                await repo.record_transaction(s, data=world.tx("key-dup-1", amount="99.00"))
        assert caught.value.transaction_id == first.transaction_id
        assert await world.counts() == before
    finally:
        await world.engine.dispose()


async def test_concurrent_blacklist_writers_keep_one_span_and_count_each_change(database_url: str) -> None:
    """Before the blacklist's write lock, 8 concurrent adds of one value stored 8 overlapping
    spans on PostgreSQL; the revision every copy follows moves once per committed change."""
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    listed = BlacklistCreate(kind="beneficiary", value="DE00 1234", reason="mule account")

    async def add() -> int | None:
        async with session_scope(sessions) as s:
            return (await repo.add_blacklist_entry(s, data=listed, added_by="ana")).id

    async def remove(entry_id: int, who: str) -> str | None:
        async with session_scope(sessions) as s:
            return (await repo.remove_blacklist_entry(s, entry_id=entry_id, removed_by=who)).removed_by

    async def revision() -> int:
        async with sessions() as s:
            return await stored_revision(s)

    try:
        start = await revision()
        added = await asyncio.gather(*(add() for _ in range(8)), return_exceptions=True)
        ids = [r for r in added if isinstance(r, int)]
        assert len(ids) == 1 and sum(isinstance(r, Conflict) for r in added) == 7, added
        assert await revision() == start + 1
        removers = await asyncio.gather(*(remove(ids[0], f"admin-{i}") for i in range(4)))
        assert len(set(removers)) == 1  # the first ender stays on record
        assert await revision() == start + 2
        async with sessions() as s:
            assert len(await repo.blacklist_entries(s, active=None, after_id=0, limit=None)) == 1
    finally:
        await engine.dispose()


async def test_database_constraints_hold_even_past_the_schemas(database_url: str) -> None:
    """The schema is the last line: a negative amount written around the API still fails."""
    world = await World(database_url).build()
    try:
        before = await world.counts()
        with pytest.raises(sa.exc.IntegrityError):
            async with session_scope(world.sessions) as s:
                row = Transaction(**world.tx("key-neg-1").model_dump())
                row.amount = Decimal("-1.00")
                s.add(row)
        assert await world.counts() == before
    finally:
        await world.engine.dispose()


def test_schemas_reject_bad_values_with_reasons() -> None:
    base = {
        "idempotency_key": "key-00001",
        "user_id": 1,
        "account_id": 1,
        "merchant_id": 1,
        "amount": "10.00",
        "currency": "EUR",
        "channel": "pos",
        "country": "GB",
    }
    TransactionCreate.model_validate(base)
    for field, value, reason in [
        ("amount", "-5", "greater than 0"),
        ("amount", "0", "greater than 0"),
        ("amount", "1.234", "decimal places"),
        ("currency", "XYZ", "unknown currency"),
        ("channel", "fax", "Input should be"),
        ("created_at", "2026-01-01T00:00:00", "time zone"),
        ("ip", "999.1.1.1", "not an IPv4/IPv6 address"),
    ]:
        with pytest.raises(ValidationError, match=reason):
            TransactionCreate.model_validate({**base, field: value})


def _write(path: Path, table: str, rows: list[dict[str, object]]) -> None:
    pq.write_table(pa.Table.from_pylist(rows), path / f"{table}.parquet")


async def test_bulk_load_is_all_or_nothing(database_url: str, tmp_path: Path) -> None:
    users = [
        {"user_id": i, "created_at": T0, "full_name": f"U{i}", "country": "GB", "home_lat": 51.0,
         "home_lon": 0.0, "segment": "retail", "kyc_status": "none", "kyc_risk_level": "unknown"}
        for i in (1, 2, 3)
    ]  # fmt: skip
    accounts = [
        {"account_id": 10 + i, "user_id": i, "opened_at": T0, "kind": "checking", "currency": "EUR",
         "status": "active"}
        for i in (1, 2, 3)
    ]  # fmt: skip
    good = tmp_path / "good"
    good.mkdir()
    _write(good, "users", users)
    _write(good, "accounts", accounts)
    loaded = await bulk_load(database_url, good, progress=False)
    assert loaded == {"users": 3, "accounts": 3}

    # New rows after a bulk load get fresh ids (PostgreSQL's sequences were moved past them).
    world = World(database_url)
    try:
        async with session_scope(world.sessions) as s:
            user = await repo.create_user(
                s, data=UserCreate(full_name="New", country="FR", home_lat=48.8, home_lon=2.3)
            )
            assert user.user_id == 4
        # A second load whose accounts reference a missing user loads nothing at all.
        bad = tmp_path / "bad"
        bad.mkdir()
        _write(bad, "users", [{**users[0], "user_id": 50}])
        _write(bad, "accounts", [{**accounts[0], "account_id": 60, "user_id": 777}])
        with pytest.raises(InvalidRequest, match=r"accounts: .*nothing was loaded"):
            await bulk_load(database_url, bad, progress=False)
        async with world.sessions() as s:
            assert await repo.count_rows(s, User) == 4
    finally:
        await world.engine.dispose()


async def test_a_generated_dataset_loads_whole(database_url: str, tmp_path: Path) -> None:
    from training.generate import GenerateConfig, generate

    summary = generate(GenerateConfig(users=200, transactions=5_000, seed=3), tmp_path, progress=False)
    loaded = await bulk_load(database_url, tmp_path, progress=False)
    assert loaded["transactions"] == 5_000
    assert loaded == {table: rows for table, rows in summary.rows.items() if table in loaded}
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as s:
            assert await repo.count_rows(s, Transaction) == 5_000
            fraud = (
                await s.execute(sa.text("SELECT COUNT(*) FROM fraud_labels WHERE is_fraud"))
            ).scalar_one()
            assert fraud == summary.rows["fraud_labels"]
    finally:
        await engine.dispose()
