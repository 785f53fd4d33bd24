"""What a signed-in customer may read and change: their own profile, accounts, history, spending,
devices and alerts. Every function takes the customer's ``user_id`` (from their access token) and
reads nothing that is not theirs; a row of someone else's answers exactly as a row that does not
exist (404), so ids cannot be probed.

What customers see of a decision is its outcome in their words (:func:`explain`), not the fraud
score, the rule hits or the reason codes: those would tell a fraudster working an account which
rule to stay under.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from vigil.db.models import (
    Account,
    CustomerCredential,
    CustomerDevice,
    Decision,
    Device,
    KycSubmission,
    Merchant,
    ReviewCase,
    Transaction,
    User,
)
from vigil.errors import Conflict, NotFound
from vigil.identity.schemas import CleanText
from vigil.schemas import (
    Amount,
    Channel,
    Country,
    Currency,
    Id,
    Latitude,
    Longitude,
    ScreenResult,
    TransactionCreate,
)

#: What a customer is told about a decision.
Status = Literal["approved", "held", "declined", "pending"]
STATUS_OF_OUTCOME: dict[str, Status] = {"approve": "approved", "review": "held", "block": "declined"}


class KycSummary(BaseModel):
    submission_id: int
    status: str
    submitted_at: datetime


class Profile(BaseModel):
    user_id: int
    email: str | None
    full_name: str
    country: str
    birth_date: date | None
    created_at: datetime
    kyc_status: str = Field(description="none, pending, verified, rejected or review")
    latest_kyc: KycSummary | None


class MyAccount(BaseModel):
    account_id: int
    kind: str
    currency: str
    status: str = Field(description="active, frozen or closed")
    opened_at: datetime


class HistoryItem(BaseModel):
    transaction_id: int
    created_at: datetime
    account_id: int
    merchant_id: int
    merchant_name: str
    merchant_category: str
    amount: Decimal
    currency: str
    channel: str
    status: Status
    review: str | None = Field(description="for a held payment: open, claimed or resolved")


class SpendRow(BaseModel):
    key: str = Field(description="the merchant category, or the month as YYYY-MM (UTC)")
    currency: str
    total: Decimal
    count: int


class MyDevice(BaseModel):
    device_id: int
    name: str
    os: str
    first_seen_at: datetime
    last_seen_at: datetime
    current: bool = Field(description="the device of the session asking")


class SendMoney(BaseModel):
    """A payment or transfer from one of the customer's accounts. The user, the device and the
    IP address come from the session, never from here. ``idempotency_key``: the app's, reused
    on every retry of the same payment (it is kept per customer)."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "idempotency_key": "pay-2026-0001",
                    "account_id": 1,
                    "merchant_id": 1,
                    "amount": "19.99",
                    "currency": "EUR",
                    "channel": "transfer",
                    "country": "GB",
                }
            ]
        },
    )

    idempotency_key: str = Field(min_length=8, max_length=96, pattern=r"^[A-Za-z0-9._:-]+$")
    account_id: Id
    merchant_id: Id = Field(description="the payee: a merchant or a beneficiary")
    amount: Amount
    currency: Currency
    channel: Channel = "transfer"
    country: Country
    lat: Latitude | None = None
    lon: Longitude | None = None
    note: CleanText | None = Field(default=None, max_length=140, description="not stored yet")


class SendResult(BaseModel):
    """The decision on a payment, told to the customer."""

    transaction_id: int
    idempotency_key: str
    status: Status
    title: str
    message: str
    next_steps: str | None
    decided_at: datetime
    replayed: bool


def customer_key(user_id: int, key: str) -> str:
    """The stored idempotency key of a customer's payment: keys are unique across all clients,
    so the customer's own is prefixed, and one customer's key can never replay another's answer."""
    return f"c{user_id}:{key}"


def explain(result: ScreenResult, *, user_id: int) -> SendResult:
    """The decision in the customer's words (no scores, rules or reason codes)."""
    status = STATUS_OF_OUTCOME.get(result.outcome, "pending")
    if status == "approved":
        title, message, next_steps = "Payment sent", "Your payment was approved and is on its way.", None
    elif status == "held":
        title = "Payment on hold"
        message = (
            "We are checking this payment before it goes out, to keep your account safe. "
            "The money has not left your account."
        )
        next_steps = (
            "A member of our team will review it. You will get an alert in the app as soon as it is "
            "released or declined; you do not need to send it again."
        )
    else:
        title = "Payment declined"
        message = "We declined this payment to protect your account. No money has left your account."
        next_steps = (
            "If you made this payment, contact support from the app. If you did not, sign out of "
            "all devices and change your password now."
        )
    prefix = customer_key(user_id, "")
    return SendResult(
        transaction_id=result.transaction_id,
        idempotency_key=result.idempotency_key.removeprefix(prefix),
        status=status,
        title=title,
        message=message,
        next_steps=next_steps,
        decided_at=result.decided_at,
        replayed=result.replayed,
    )


async def profile(s: AsyncSession, *, user_id: int) -> Profile:
    user = await s.get(User, user_id)
    if user is None:
        raise NotFound("this customer no longer exists")
    credential = await s.get(CustomerCredential, user_id)
    latest = (
        await s.execute(
            select(KycSubmission)
            .where(col(KycSubmission.user_id) == user_id)
            .order_by(col(KycSubmission.created_at).desc(), col(KycSubmission.id).desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    return Profile(
        user_id=user.user_id,
        email=credential.email if credential is not None else None,
        full_name=user.full_name,
        country=user.country,
        birth_date=user.birth_date,
        created_at=user.created_at,
        kyc_status=user.kyc_status,
        latest_kyc=None
        if latest is None or latest.id is None
        else KycSummary(submission_id=latest.id, status=latest.status, submitted_at=latest.created_at),
    )


def _account_view(a: Account) -> MyAccount:
    return MyAccount(
        account_id=a.account_id, kind=a.kind, currency=a.currency, status=a.status, opened_at=a.opened_at
    )


async def accounts(s: AsyncSession, *, user_id: int) -> list[MyAccount]:
    rows = await s.execute(
        select(Account).where(col(Account.user_id) == user_id).order_by(col(Account.account_id))
    )
    return [_account_view(a) for a in rows.scalars().all()]


async def own_account(s: AsyncSession, *, user_id: int, account_id: int, for_update: bool = False) -> Account:
    """The customer's account ``account_id``; 404 when it does not exist or is someone else's."""
    account = await s.get(Account, account_id, with_for_update=for_update)
    if account is None or account.user_id != user_id:
        raise NotFound(f"account {account_id} not found")
    return account


async def set_frozen(s: AsyncSession, *, user_id: int, account_id: int, frozen: bool) -> MyAccount:
    """Freeze (no payments go out) or unfreeze one of the customer's accounts; a closed account
    stays closed (409)."""
    account = await own_account(s, user_id=user_id, account_id=account_id, for_update=True)
    if account.status == "closed":
        raise Conflict(f"account {account_id} is closed")
    account.status = "frozen" if frozen else "active"
    await s.flush()
    return _account_view(account)


async def payment_of(
    s: AsyncSession, *, user_id: int, device_id: int, ip: str | None, body: SendMoney
) -> TransactionCreate:
    """The transaction to screen for a customer's payment: the account must be theirs (404)
    and not frozen or closed (409)."""
    account = await own_account(s, user_id=user_id, account_id=body.account_id)
    if account.status != "active":
        raise Conflict(f"account {body.account_id} is {account.status}: no payments can leave it")
    return TransactionCreate(
        idempotency_key=customer_key(user_id, body.idempotency_key),
        user_id=user_id,
        account_id=body.account_id,
        merchant_id=body.merchant_id,
        device_id=device_id,
        ip=ip,
        amount=body.amount,
        currency=body.currency,
        channel=body.channel,
        country=body.country,
        lat=body.lat,
        lon=body.lon,
    )


async def history(
    s: AsyncSession,
    *,
    user_id: int,
    since: datetime | None,
    until: datetime | None,
    status: Status | None,
    before_id: int,
    limit: int,
) -> list[HistoryItem]:
    """The customer's transactions, newest first (by id), ``limit`` at a time: pass the last
    ``transaction_id`` seen as ``before_id`` for the next page (0 = from the newest)."""
    query = (
        sa.select(
            Transaction,
            col(Merchant.name),
            col(Merchant.category),
            col(Decision.outcome),
            col(ReviewCase.status),
        )
        .join(Merchant, col(Merchant.merchant_id) == col(Transaction.merchant_id))
        .join(Decision, col(Decision.transaction_id) == col(Transaction.transaction_id), isouter=True)
        .join(ReviewCase, col(ReviewCase.transaction_id) == col(Transaction.transaction_id), isouter=True)
        .where(col(Transaction.user_id) == user_id)
        .order_by(col(Transaction.transaction_id).desc())
        .limit(limit)
    )
    if before_id:
        query = query.where(col(Transaction.transaction_id) < before_id)
    if since is not None:
        query = query.where(col(Transaction.created_at) >= since)
    if until is not None:
        query = query.where(col(Transaction.created_at) < until)
    if status is not None:
        outcomes = [o for o, st in STATUS_OF_OUTCOME.items() if st == status]
        query = query.where(
            col(Decision.outcome).is_(None) if status == "pending" else col(Decision.outcome).in_(outcomes)
        )
    items = []
    for tx, merchant_name, category, outcome, review in (await s.execute(query)).all():
        assert tx.transaction_id is not None
        items.append(
            HistoryItem(
                transaction_id=tx.transaction_id,
                created_at=tx.created_at,
                account_id=tx.account_id,
                merchant_id=tx.merchant_id,
                merchant_name=merchant_name,
                merchant_category=category,
                amount=tx.amount,
                currency=tx.currency,
                channel=tx.channel,
                status=STATUS_OF_OUTCOME.get(outcome, "pending") if outcome else "pending",
                review=review,
            )
        )
    return items


async def spend(
    s: AsyncSession,
    *,
    user_id: int,
    by: Literal["category", "month"],
    since: datetime | None,
    until: datetime | None,
) -> list[SpendRow]:
    """Money spent, per merchant category or per calendar month (UTC), and per currency (amounts
    in different currencies are never added up). Spent = approved, or held and then released by
    an analyst; declined and still-held payments are not spent."""
    released = sa.and_(col(ReviewCase.status) == "resolved", col(ReviewCase.resolution) == "legit")
    query = (
        sa.select(
            col(Transaction.amount),
            col(Transaction.currency),
            col(Transaction.created_at),
            col(Merchant.category),
        )
        .join(Merchant, col(Merchant.merchant_id) == col(Transaction.merchant_id))
        .join(Decision, col(Decision.transaction_id) == col(Transaction.transaction_id))
        .join(ReviewCase, col(ReviewCase.transaction_id) == col(Transaction.transaction_id), isouter=True)
        .where(col(Transaction.user_id) == user_id, sa.or_(col(Decision.outcome) == "approve", released))
    )
    if since is not None:
        query = query.where(col(Transaction.created_at) >= since)
    if until is not None:
        query = query.where(col(Transaction.created_at) < until)
    totals: dict[tuple[str, str], list[Decimal | int]] = defaultdict(lambda: [Decimal(0), 0])
    for amount, currency, created_at, category in (await s.execute(query)).all():
        key = category if by == "category" else f"{created_at:%Y-%m}"
        row = totals[(key, currency)]
        row[0] = Decimal(row[0]) + Decimal(amount)
        row[1] = int(row[1]) + 1
    return [
        SpendRow(key=key, currency=currency, total=Decimal(total), count=int(count))
        for (key, currency), (total, count) in sorted(totals.items())
    ]


async def devices(s: AsyncSession, *, user_id: int, current_device_id: int) -> list[MyDevice]:
    rows = await s.execute(
        select(CustomerDevice, Device.os)
        .join(Device, col(Device.device_id) == col(CustomerDevice.device_id))
        .where(col(CustomerDevice.user_id) == user_id)
        .order_by(col(CustomerDevice.first_seen_at), col(CustomerDevice.id))
    )
    return [
        MyDevice(
            device_id=link.device_id,
            name=link.name,
            os=os,
            first_seen_at=link.first_seen_at,
            last_seen_at=link.last_seen_at,
            current=link.device_id == current_device_id,
        )
        for link, os in rows.all()
    ]
