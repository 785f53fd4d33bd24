"""Read the durable record back as feature events: how velocity state is rebuilt after a restart.

The database holds every acknowledged transaction (it is committed before the client gets an
answer), so replaying it through the online feature state reproduces that state exactly, in the
``(created_at, transaction_id)`` order the offline computation uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from vigil.db.models import BlacklistEntry, Decision, FraudLabel, Merchant, Transaction, User
from vigil.features.events import BlacklistEntry as BlacklistEvent
from vigil.features.events import LabelEvent, MerchantProfile, TransactionEvent, UserProfile

_TX_COLUMNS: tuple[Any, ...] = (
    Transaction.transaction_id,
    Transaction.user_id,
    Transaction.created_at,
    Transaction.amount,
    Transaction.merchant_id,
    Transaction.device_id,
    Transaction.ip,
    Transaction.channel,
    Transaction.country,
    Transaction.lat,
    Transaction.lon,
)


def _event(row: Sequence[object]) -> TransactionEvent:
    tid, uid, created, amount, merchant, device, ip, channel, country, lat, lon = row
    return TransactionEvent(
        transaction_id=int(tid),  # type: ignore[call-overload]
        user_id=int(uid),  # type: ignore[call-overload]
        created_at=created,  # type: ignore[arg-type]
        amount=float(amount),  # type: ignore[arg-type]
        merchant_id=merchant,  # type: ignore[arg-type]
        device_id=device,  # type: ignore[arg-type]
        ip=ip,  # type: ignore[arg-type]
        channel=channel,  # type: ignore[arg-type]
        country=country,  # type: ignore[arg-type]
        lat=lat,  # type: ignore[arg-type]
        lon=lon,  # type: ignore[arg-type]
    )


async def user_profile(session: AsyncSession, *, user_id: int) -> UserProfile | None:
    user = await session.get(User, user_id)
    if user is None:
        return None
    return UserProfile(
        created_at=user.created_at,
        home_lat=user.home_lat,
        home_lon=user.home_lon,
        kyc_risk_level=user.kyc_risk_level,
    )


async def user_events(
    session: AsyncSession, *, user_ids: Sequence[int]
) -> dict[int, list[tuple[str, TransactionEvent]]]:
    """Every stored transaction of these users as ``(idempotency_key, event)``, oldest first."""
    out: dict[int, list[tuple[str, TransactionEvent]]] = {uid: [] for uid in user_ids}
    if not user_ids:
        return out
    query = (
        sa.select(*_TX_COLUMNS, col(Transaction.idempotency_key))
        .where(col(Transaction.user_id).in_(list(user_ids)))
        .order_by(col(Transaction.created_at), col(Transaction.transaction_id))
    )
    for row in (await session.execute(query)).all():
        out[int(row[1])].append((str(row[-1]), _event(row[:-1])))
    return out


async def keys_decided_since(
    session: AsyncSession, *, user_ids: Sequence[int], since: datetime, chunk: int = 500
) -> dict[int, set[str]]:
    """The idempotency keys of these users' transactions decided at or after ``since`` (the
    server's clock, unlike ``created_at``, which a client may set), per user."""
    out: dict[int, set[str]] = {uid: set() for uid in user_ids}
    ids = list(user_ids)
    for start in range(0, len(ids), chunk):
        query = (
            sa.select(col(Transaction.user_id), col(Transaction.idempotency_key))
            .join(Decision, col(Decision.transaction_id) == col(Transaction.transaction_id))
            .where(
                col(Transaction.user_id).in_(ids[start : start + chunk]), col(Decision.decided_at) >= since
            )
        )
        for uid, key in (await session.execute(query)).all():
            out[int(uid)].add(str(key))
    return out


async def recent_user_ids(session: AsyncSession, *, limit: int) -> list[int]:
    """The ``limit`` users whose latest stored transaction is newest, newest first (one scan of
    the ``(user_id, created_at)`` index)."""
    query = (
        sa.select(col(Transaction.user_id))
        .group_by(col(Transaction.user_id))
        .order_by(sa.func.max(col(Transaction.created_at)).desc())
        .limit(limit)
    )
    return [int(uid) for uid in (await session.execute(query)).scalars()]


async def user_profiles(session: AsyncSession, *, user_ids: Sequence[int]) -> dict[int, UserProfile]:
    query = select(User).where(col(User.user_id).in_(list(user_ids)))
    return {
        int(u.user_id): UserProfile(u.created_at, u.home_lat, u.home_lon, u.kyc_risk_level)
        for u in (await session.execute(query)).scalars()
    }


async def events_since(
    session: AsyncSession, *, since: datetime, chunk: int = 50_000
) -> AsyncIterator[TransactionEvent]:
    """Every transaction with ``created_at >= since``, oldest first, streamed in chunks."""
    query = (
        sa.select(*_TX_COLUMNS)
        .where(col(Transaction.created_at) >= since)
        .order_by(col(Transaction.created_at), col(Transaction.transaction_id))
        .execution_options(yield_per=chunk)
    )
    result = await session.stream(query)
    try:
        async for row in result:
            yield _event(row)
    finally:
        await result.close()


async def label_events(session: AsyncSession) -> list[LabelEvent]:
    """Every label, with the keys of its transaction so entity shards can route it."""
    query = sa.select(
        col(FraudLabel.transaction_id),
        col(FraudLabel.is_fraud),
        col(FraudLabel.labeled_at),
        col(Transaction.created_at),
        col(Transaction.merchant_id),
        col(Transaction.device_id),
        col(Transaction.ip),
        col(Transaction.user_id),
    ).join(Transaction, col(Transaction.transaction_id) == col(FraudLabel.transaction_id))
    return [
        LabelEvent(
            transaction_id=int(tid),
            is_fraud=bool(fraud),
            labeled_at=labeled,
            transaction_created_at=created,
            merchant_id=merchant,
            device_id=device,
            ip=ip,
            user_id=user,
        )
        for tid, fraud, labeled, created, merchant, device, ip, user in (await session.execute(query)).all()
    ]


async def merchant_profiles(session: AsyncSession) -> dict[int, MerchantProfile]:
    query = select(Merchant.merchant_id, Merchant.created_at)
    return {
        int(mid): MerchantProfile(created_at=created) for mid, created in (await session.execute(query)).all()
    }


async def blacklist_events(session: AsyncSession) -> list[BlacklistEvent]:
    rows = (await session.execute(select(BlacklistEntry))).scalars().all()
    return [
        BlacklistEvent(kind=e.kind, value=e.value, added_at=e.added_at, expires_at=e.expires_at) for e in rows
    ]
