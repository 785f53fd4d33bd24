"""Repository functions: the only code that writes rows. Keyword-only, one session each.

Each function checks references before it writes, so a bad request fails with a clear
:class:`~vigil.errors.VigilError` and leaves the database as it was (the caller's transaction
rolls back; see :func:`vigil.db.engine.session_scope`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from vigil.db.models import (
    Account,
    BlacklistEntry,
    Device,
    DeviceIpHistory,
    FraudLabel,
    Merchant,
    Transaction,
    User,
)
from vigil.errors import Conflict, DuplicateIdempotencyKey, NotFound, UnknownReference
from vigil.schemas import (
    AccountCreate,
    BlacklistCreate,
    DeviceCreate,
    LabelCreate,
    MerchantCreate,
    TransactionCreate,
    UserCreate,
)


def _now() -> datetime:
    return datetime.now(UTC)


async def create_user(session: AsyncSession, *, data: UserCreate) -> User:
    user = User(**data.model_dump(exclude={"created_at"}), created_at=data.created_at or _now())
    session.add(user)
    await session.flush()
    return user


async def create_account(session: AsyncSession, *, data: AccountCreate) -> Account:
    if await session.get(User, data.user_id) is None:
        raise UnknownReference(f"user {data.user_id} does not exist")
    account = Account(**data.model_dump(exclude={"opened_at"}), opened_at=data.opened_at or _now())
    session.add(account)
    await session.flush()
    return account


async def create_merchant(session: AsyncSession, *, data: MerchantCreate) -> Merchant:
    merchant = Merchant(**data.model_dump(exclude={"created_at"}), created_at=data.created_at or _now())
    session.add(merchant)
    await session.flush()
    return merchant


async def create_device(session: AsyncSession, *, data: DeviceCreate) -> Device:
    existing = (
        await session.execute(select(Device).where(col(Device.fingerprint) == data.fingerprint))
    ).scalar_one_or_none()
    if existing is not None:
        raise Conflict(
            f"device with fingerprint {data.fingerprint!r} exists (device_id={existing.device_id})"
        )
    device = Device(**data.model_dump(exclude={"first_seen_at"}), first_seen_at=data.first_seen_at or _now())
    session.add(device)
    await session.flush()
    return device


async def find_by_idempotency_key(session: AsyncSession, *, key: str) -> Transaction | None:
    result = await session.execute(select(Transaction).where(col(Transaction.idempotency_key) == key))
    return result.scalar_one_or_none()


async def record_transaction(
    session: AsyncSession, *, data: TransactionCreate, received_at: datetime | None = None
) -> Transaction:
    """Insert a transaction after checking every reference.

    Raises :class:`DuplicateIdempotencyKey` when the key was used before (the caller decides
    whether that is a retry to answer from the stored decision), :class:`UnknownReference` when
    the user, account, merchant or device does not exist or the account is not the user's.
    """
    existing = await find_by_idempotency_key(session, key=data.idempotency_key)
    if existing is not None:
        assert existing.transaction_id is not None
        raise DuplicateIdempotencyKey(data.idempotency_key, existing.transaction_id)
    account = await session.get(Account, data.account_id)
    if await session.get(User, data.user_id) is None:
        raise UnknownReference(f"user {data.user_id} does not exist")
    if account is None:
        raise UnknownReference(f"account {data.account_id} does not exist")
    if account.user_id != data.user_id:
        raise UnknownReference(f"account {data.account_id} does not belong to user {data.user_id}")
    if account.currency != data.currency:
        raise UnknownReference(
            f"account {data.account_id} is in {account.currency}, the transaction in {data.currency}"
        )
    if await session.get(Merchant, data.merchant_id) is None:
        raise UnknownReference(f"merchant {data.merchant_id} does not exist")
    if data.device_id is not None and await session.get(Device, data.device_id) is None:
        raise UnknownReference(f"device {data.device_id} does not exist")
    tx = Transaction(
        **data.model_dump(exclude={"created_at"}), created_at=data.created_at or received_at or _now()
    )
    session.add(tx)
    try:
        await session.flush()
    except IntegrityError as exc:
        # A concurrent request with the same key won the race between our check and insert.
        raise Conflict(f"idempotency key {data.idempotency_key!r} is being used concurrently") from exc
    if data.device_id is not None and data.ip is not None:
        session.add(
            DeviceIpHistory(
                device_id=data.device_id,
                user_id=data.user_id,
                ip=data.ip,
                country=data.country,
                seen_at=tx.created_at,
            )
        )
        await session.flush()
    return tx


async def get_transaction(session: AsyncSession, *, transaction_id: int) -> Transaction:
    tx = await session.get(Transaction, transaction_id)
    if tx is None:
        raise NotFound(f"transaction {transaction_id} does not exist")
    return tx


async def user_transactions(
    session: AsyncSession, *, user_id: int, since: datetime, until: datetime | None = None, limit: int = 500
) -> Sequence[Transaction]:
    """This user's transactions with ``since <= created_at < until``, newest first."""
    query = select(Transaction).where(
        col(Transaction.user_id) == user_id, col(Transaction.created_at) >= since
    )
    if until is not None:
        query = query.where(col(Transaction.created_at) < until)
    query = query.order_by(col(Transaction.created_at).desc()).limit(limit)
    return (await session.execute(query)).scalars().all()


async def device_users(session: AsyncSession, *, device_id: int, since: datetime) -> list[int]:
    """Distinct users seen on this device since ``since``."""
    query = (
        select(DeviceIpHistory.user_id)
        .where(col(DeviceIpHistory.device_id) == device_id, col(DeviceIpHistory.seen_at) >= since)
        .distinct()
    )
    return sorted((await session.execute(query)).scalars().all())


async def ip_users(session: AsyncSession, *, ip: str, since: datetime) -> list[int]:
    """Distinct users seen from this IP since ``since``."""
    query = (
        select(DeviceIpHistory.user_id)
        .where(col(DeviceIpHistory.ip) == ip, col(DeviceIpHistory.seen_at) >= since)
        .distinct()
    )
    return sorted((await session.execute(query)).scalars().all())


async def add_label(session: AsyncSession, *, data: LabelCreate) -> FraudLabel:
    """Record (or overwrite) the truth about a transaction; the newest label wins."""
    if await session.get(Transaction, data.transaction_id) is None:
        raise UnknownReference(f"transaction {data.transaction_id} does not exist")
    label = await session.get(FraudLabel, data.transaction_id)
    labeled_at = data.labeled_at or _now()
    if label is None:
        label = FraudLabel(**data.model_dump(exclude={"labeled_at"}), labeled_at=labeled_at)
        session.add(label)
    else:
        label.is_fraud, label.fraud_type = data.is_fraud, data.fraud_type
        label.source, label.labeled_at = data.source, labeled_at
    await session.flush()
    return label


async def add_blacklist_entry(
    session: AsyncSession, *, data: BlacklistCreate, added_by: str
) -> BlacklistEntry:
    existing = (
        await session.execute(
            select(BlacklistEntry).where(
                col(BlacklistEntry.kind) == data.kind, col(BlacklistEntry.value) == data.value
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        raise Conflict(f"{data.kind} {data.value!r} is already blacklisted (entry {existing.id})")
    entry = BlacklistEntry(**data.model_dump(), added_by=added_by, added_at=_now())
    session.add(entry)
    await session.flush()
    return entry


async def count_rows(session: AsyncSession, table: type) -> int:
    return int((await session.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())
