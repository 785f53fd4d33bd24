"""Repository functions: the only code that writes rows. Keyword-only, one session each.

Most take an :class:`AsyncSession`. The screening path's batch functions
(:func:`screening_lookup`, :func:`record_decided`) are synchronous, on a sync
:class:`~sqlalchemy.orm.Session`: they run whole in one hop through
:class:`vigil.db.engine.BatchDb` (or ``AsyncSession.run_sync``).

Each function checks references before it writes, so a bad request fails with a clear
:class:`~vigil.errors.VigilError` and leaves the database as it was (the caller's transaction
rolls back; see :func:`vigil.db.engine.session_scope`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import col, select

from vigil.db.models import (
    Account,
    Alert,
    BlacklistEntry,
    Decision,
    Device,
    DeviceIpHistory,
    EventOutbox,
    FraudLabel,
    Merchant,
    ReviewCase,
    Transaction,
    User,
)
from vigil.errors import Conflict, DuplicateIdempotencyKey, InvalidRequest, NotFound, UnknownReference
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
    bad = await session.run_sync(missing_references, items=[data])
    if bad:
        raise UnknownReference(bad[0])
    tx = Transaction(
        **data.model_dump(exclude={"created_at"}), created_at=data.created_at or received_at or _now()
    )
    session.add(tx)
    try:
        await session.flush()
    except IntegrityError as exc:
        # A concurrent request with the same key won the race between our check and insert.
        raise Conflict(f"idempotency key {data.idempotency_key!r} is being used concurrently") from exc
    if (seen := _ip_sighting(data, tx.created_at)) is not None:
        session.add(DeviceIpHistory(**seen))
        await session.flush()
    return tx


def _ip_sighting(data: TransactionCreate, seen_at: datetime) -> dict[str, Any] | None:
    """The device_ip_history row a transaction records (answers "this device's / IP's users")."""
    if data.device_id is None or data.ip is None:
        return None
    return {
        "device_id": data.device_id,
        "user_id": data.user_id,
        "ip": data.ip,
        "country": data.country,
        "seen_at": seen_at,
    }


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


async def lock_blacklist(session: AsyncSession) -> None:
    """Keep other writers off the blacklist until this transaction ends (readers go on).

    Without it two adds of one value at once (two requests, two Ingress replicas) both find no
    active span and both insert, and one value ends up with overlapping spans (concurrent adds
    on PostgreSQL showed it). It also makes the revision read after a change count exactly that change
    (:mod:`vigil.state.blacklists`).
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(sa.text("LOCK TABLE blacklist_entries IN SHARE ROW EXCLUSIVE MODE"))
    else:  # SQLite has one writer at a time: any write statement, even of no row, takes its lock
        await session.execute(sa.update(BlacklistEntry).where(col(BlacklistEntry.id) == -1).values(id=-1))


async def add_blacklist_entry(
    session: AsyncSession, *, data: BlacklistCreate, added_by: str
) -> BlacklistEntry:
    await lock_blacklist(session)
    now = _now()
    if data.expires_at is not None and data.expires_at <= now:
        raise InvalidRequest(f"expires_at {data.expires_at.isoformat()} is not in the future")
    existing = (
        (
            await session.execute(
                select(BlacklistEntry).where(
                    col(BlacklistEntry.kind) == data.kind,
                    col(BlacklistEntry.value) == data.value,
                    sa.or_(col(BlacklistEntry.expires_at).is_(None), col(BlacklistEntry.expires_at) > now),
                )
            )
        )
        .scalars()
        .first()
    )
    if existing is not None:
        raise Conflict(f"{data.kind} {data.value!r} is already blacklisted (entry {existing.id})")
    entry = BlacklistEntry(**data.model_dump(), added_by=added_by, added_at=now)
    session.add(entry)
    await session.flush()
    return entry


async def count_rows(session: AsyncSession, table: type) -> int:
    return int((await session.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


def screening_lookup(
    session: Session, *, keys: Sequence[str], items: Sequence[TransactionCreate]
) -> tuple[dict[str, tuple[Transaction, Decision | None]], dict[int, str]]:
    """What screening a batch reads first: stored decisions by key, then bad references."""
    return decisions_by_keys(session, keys=keys), missing_references(session, items=items)


def decisions_by_keys(
    session: Session, *, keys: Sequence[str]
) -> dict[str, tuple[Transaction, Decision | None]]:
    """Stored transactions (and their decisions) for these idempotency keys, by key."""
    if not keys:
        return {}
    query = (
        select(Transaction, Decision)
        .join(Decision, col(Decision.transaction_id) == col(Transaction.transaction_id), isouter=True)
        .where(col(Transaction.idempotency_key).in_(list(keys)))
    )
    return {tx.idempotency_key: (tx, decision) for tx, decision in session.execute(query).all()}


def missing_references(session: Session, *, items: Sequence[TransactionCreate]) -> dict[int, str]:
    """Check every reference of a batch in one query; returns ``{index: reason}`` for bad ones.

    Only the columns the checks read are selected (no ORM objects), and the four lookups (users,
    accounts, merchants, devices) are one ``UNION ALL``: this runs for every batch, and on a busy
    event loop each round trip waits its turn (four queries were a visible part of a batch).
    """
    wanted: dict[str, tuple[list[Any], set[int]]] = {
        "user": ([col(User.user_id)], {i.user_id for i in items}),
        "account": (
            [col(Account.account_id), col(Account.user_id), col(Account.currency)],
            {i.account_id for i in items},
        ),
        "merchant": ([col(Merchant.merchant_id)], {i.merchant_id for i in items}),
        "device": ([col(Device.device_id)], {i.device_id for i in items if i.device_id is not None}),
    }
    parts = [
        sa.select(
            sa.literal(kind).label("kind"),
            columns[0].label("id"),
            (columns[1] if len(columns) > 1 else sa.null()).label("owner"),
            (columns[2] if len(columns) > 2 else sa.null()).label("currency"),
        ).where(columns[0].in_(sorted(ids)))
        for kind, (columns, ids) in wanted.items()
        if ids
    ]
    found: dict[str, dict[int, Any]] = {kind: {} for kind in wanted}
    if parts:
        for row in session.execute(sa.union_all(*parts)).all():
            found[row.kind][int(row.id)] = row
    users, accounts, merchants, devices = (found[k] for k in ("user", "account", "merchant", "device"))
    bad: dict[int, str] = {}
    for index, item in enumerate(items):
        account = accounts.get(item.account_id)
        if item.user_id not in users:
            bad[index] = f"user {item.user_id} does not exist"
        elif account is None:
            bad[index] = f"account {item.account_id} does not exist"
        elif account.owner != item.user_id:
            bad[index] = f"account {item.account_id} does not belong to user {item.user_id}"
        elif account.currency != item.currency:
            bad[index] = (
                f"account {item.account_id} is in {account.currency}, the transaction in {item.currency}"
            )
        elif item.merchant_id not in merchants:
            bad[index] = f"merchant {item.merchant_id} does not exist"
        elif item.device_id is not None and item.device_id not in devices:
            bad[index] = f"device {item.device_id} does not exist"
    return bad


def record_decided(
    session: Session,
    *,
    items: Sequence[tuple[TransactionCreate, datetime, Decision]],
    review_outcomes: frozenset[str] = frozenset({"review"}),
) -> list[Decision]:
    """Insert transactions with their decisions (and a review case for each ``review``) at once.

    Returns the decisions, in order, their ``transaction_id`` filled in. References must have
    been checked (:func:`missing_references`); a duplicate key raises ``IntegrityError`` and the
    caller's transaction rolls back, so the batch is stored whole or not at all. Idempotency
    keys must be distinct within ``items``.

    Core executemany INSERTs (ids come back through RETURNING, matched by idempotency key), no
    ORM objects: the ORM's unit of work was the largest CPU cost of screening a batch; each
    statement below compiles once and is cached.
    """
    if not items:
        return []
    tx_rows = []
    for data, received, _ in items:
        row = data.model_dump(exclude={"created_at"})
        row["created_at"] = data.created_at or received
        tx_rows.append(row)
    table = Transaction.__table__  # type: ignore[attr-defined]
    returned = session.execute(
        sa.insert(table).returning(table.c.transaction_id, table.c.idempotency_key), tx_rows
    )
    ids = {key: int(tx_id) for tx_id, key in returned.all()}
    decisions, history, cases, alerts = [], [], [], []
    for row, (data, _received, decision) in zip(tx_rows, items, strict=True):
        tx_id = ids[row["idempotency_key"]]
        decision.transaction_id = tx_id
        decisions.append(decision.model_dump())
        if (seen := _ip_sighting(data, row["created_at"])) is not None:
            history.append(seen)
        if decision.outcome in review_outcomes:
            cases.append({"transaction_id": tx_id, "status": "open", "created_at": decision.decided_at})
        if decision.outcome in {"review", "block"}:
            alerts.append(
                {
                    "transaction_id": tx_id,
                    "user_id": data.user_id,
                    "kind": decision.outcome,
                    "severity": "high" if decision.outcome == "block" else "medium",
                    "message": (", ".join(decision.reason_codes) or decision.outcome)[:500],
                    "created_at": decision.decided_at,
                }
            )
    for model, rows in (
        (Decision, decisions),
        (DeviceIpHistory, history),
        (ReviewCase, cases),
        (Alert, alerts),
    ):
        if rows:
            session.execute(sa.insert(model.__table__), rows)  # type: ignore[union-attr]
    return [decision for _, _, decision in items]


def record_decided_with_outbox(
    session: Session,
    *,
    items: Sequence[tuple[TransactionCreate, datetime, Decision]],
    due_at: datetime,
) -> tuple[list[Decision], int]:
    """:func:`record_decided` plus one :class:`EventOutbox` row naming the batch's transactions,
    in the same database transaction: either the decisions and the debt of their events are
    both stored, or neither. Returns the decisions and the outbox row's id."""
    decisions = record_decided(session, items=items)
    table = EventOutbox.__table__  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    outbox_id = session.execute(
        sa.insert(table).returning(table.c.id),
        {
            "transaction_ids": [d.transaction_id for d in decisions],
            "created_at": now,
            "due_at": due_at,
            "attempts": 0,
        },
    ).scalar_one()
    return decisions, int(outbox_id)


def outbox_claim(
    session: Session, *, now: datetime, lease_until: datetime, limit: int
) -> list[tuple[int, list[int], int]]:
    """Claim up to ``limit`` outbox rows that are due, oldest first: one UPDATE moves their
    ``due_at`` to ``lease_until`` where it is still due, so two relays never hold the same row at
    once (a relay that dies holding one leaves it due again at ``lease_until``). Returns
    ``(id, transaction_ids, attempts before this one)`` of the rows this call claimed, by id."""
    table = EventOutbox.__table__  # type: ignore[attr-defined]
    due = sa.select(table.c.id).where(table.c.due_at <= now).order_by(table.c.id).limit(limit)
    claimed = session.execute(
        sa.update(table)
        .where(table.c.id.in_(due.scalar_subquery()), table.c.due_at <= now)
        .values(due_at=lease_until, attempts=table.c.attempts + 1)
        .returning(table.c.id, table.c.transaction_ids, table.c.attempts)
    ).all()
    return sorted((int(i), [int(t) for t in ids], int(attempts) - 1) for i, ids, attempts in claimed)


def outbox_failed(session: Session, *, ids: Sequence[int], error: str, due_at: datetime) -> None:
    """Record why publishing these rows failed; they stay, due again at ``due_at``."""
    if ids:
        table = EventOutbox.__table__  # type: ignore[attr-defined]
        session.execute(
            sa.update(table).where(table.c.id.in_(list(ids))).values(last_error=error[:500], due_at=due_at)
        )


def outbox_delete(session: Session, *, ids: Sequence[int]) -> int:
    """Forget outbox rows whose events are published; returns how many went."""
    if not ids:
        return 0
    table = EventOutbox.__table__  # type: ignore[attr-defined]
    deleted = cast(CursorResult[Any], session.execute(sa.delete(table).where(table.c.id.in_(list(ids)))))
    return int(deleted.rowcount)


def outbox_size(session: Session) -> int:
    table = EventOutbox.__table__  # type: ignore[attr-defined]
    return int(session.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def decisions_by_ids(session: Session, *, ids: Sequence[int]) -> list[tuple[str, Decision]]:
    """``(idempotency key, decision)`` of these transactions, in id order (those with one)."""
    if not ids:
        return []
    query = (
        select(col(Transaction.idempotency_key), Decision)
        .join(Decision, col(Decision.transaction_id) == col(Transaction.transaction_id))
        .where(col(Transaction.transaction_id).in_(list(ids)))
        .order_by(col(Transaction.transaction_id))
    )
    return [(key, decision) for key, decision in session.execute(query).all()]


async def review_cases(
    session: AsyncSession, *, status: str | None, limit: int, after_id: int = 0
) -> Sequence[tuple[ReviewCase, Transaction, Decision]]:
    """Review cases (oldest first) with their transaction and decision."""
    query = (
        select(ReviewCase, Transaction, Decision)
        .join(Transaction, col(Transaction.transaction_id) == col(ReviewCase.transaction_id))
        .join(Decision, col(Decision.transaction_id) == col(ReviewCase.transaction_id))
        .where(col(ReviewCase.id) > after_id)
        .order_by(col(ReviewCase.id))
        .limit(limit)
    )
    if status is not None:
        query = query.where(col(ReviewCase.status) == status)
    return [tuple(row) for row in (await session.execute(query)).all()]  # type: ignore[misc]


async def claim_case(session: AsyncSession, *, case_id: int, analyst: str, now: datetime) -> ReviewCase:
    case = await session.get(ReviewCase, case_id, with_for_update=True)
    if case is None:
        raise NotFound(f"review case {case_id} does not exist")
    if case.status == "resolved":
        raise Conflict(f"review case {case_id} is already resolved ({case.resolution})")
    if case.status == "claimed" and case.assignee != analyst:
        raise Conflict(f"review case {case_id} is claimed by {case.assignee}")
    case.status, case.assignee, case.claimed_at = "claimed", analyst, case.claimed_at or now
    await session.flush()
    return case


async def resolve_case(
    session: AsyncSession, *, case_id: int, analyst: str, resolution: str, notes: str | None, now: datetime
) -> tuple[ReviewCase, FraudLabel]:
    """Close a case with the analyst's verdict and record it as the transaction's label."""
    case = await session.get(ReviewCase, case_id, with_for_update=True)
    if case is None:
        raise NotFound(f"review case {case_id} does not exist")
    if case.status == "resolved":
        raise Conflict(f"review case {case_id} is already resolved ({case.resolution})")
    if case.status == "claimed" and case.assignee != analyst:
        raise Conflict(f"review case {case_id} is claimed by {case.assignee}")
    case.status, case.assignee, case.resolution, case.notes = "resolved", analyst, resolution, notes
    case.claimed_at, case.resolved_at = case.claimed_at or now, now
    label = await add_label(
        session,
        data=LabelCreate(
            transaction_id=case.transaction_id,
            is_fraud=resolution == "fraud",
            fraud_type="analyst_confirmed" if resolution == "fraud" else None,
            source="analyst",
            labeled_at=now,
        ),
    )
    await session.flush()
    return case, label


async def alerts_for(
    session: AsyncSession, *, user_id: int | None, after_id: int, limit: int
) -> Sequence[Alert]:
    query = select(Alert).where(col(Alert.id) > after_id).order_by(col(Alert.id)).limit(limit)
    if user_id is not None:
        query = query.where(col(Alert.user_id) == user_id)
    return (await session.execute(query)).scalars().all()


async def blacklist_entries(
    session: AsyncSession, *, active: bool | None = None, after_id: int = 0, limit: int | None = None
) -> Sequence[BlacklistEntry]:
    """Entries by id; ``active``: only those matching now (True) or only ended ones (False)."""
    query = select(BlacklistEntry).where(col(BlacklistEntry.id) > after_id).order_by(col(BlacklistEntry.id))
    if active is not None:
        now = _now()
        current = sa.and_(
            col(BlacklistEntry.added_at) <= now,
            sa.or_(col(BlacklistEntry.expires_at).is_(None), col(BlacklistEntry.expires_at) > now),
        )
        query = query.where(current if active else sa.not_(current))
    if limit is not None:
        query = query.limit(limit)
    return (await session.execute(query)).scalars().all()


async def remove_blacklist_entry(session: AsyncSession, *, entry_id: int, removed_by: str) -> BlacklistEntry:
    """End the entry's span now (the row stays: see :class:`BlacklistEntry`); an entry already
    ended is returned as it is."""
    await lock_blacklist(session)
    entry = await session.get(BlacklistEntry, entry_id)
    if entry is None:
        raise NotFound(f"blacklist entry {entry_id} does not exist")
    now = _now()
    if entry.expires_at is None or entry.expires_at > now:
        entry.expires_at, entry.removed_by = now, removed_by
        await session.flush()
    return entry
