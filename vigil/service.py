"""The application service behind the HTTP routes: storage and (later) screening, no HTTP and no Ray.

The Serve ingress builds one :class:`VigilService` per replica in ``__init__``; the plain-uvicorn
baseline and the unit tests build one the same way. Every method opens its own database
transaction, so a failure rolls back everything that method wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from vigil.db import repository as repo
from vigil.db.engine import create_engine, session_factory, session_scope
from vigil.db.models import Account, BlacklistEntry, Device, Merchant, Transaction, User
from vigil.schemas import (
    AccountCreate,
    BlacklistCreate,
    DeviceCreate,
    MerchantCreate,
    TransactionCreate,
    UserCreate,
)


class VigilService:
    """Owns one async engine; :meth:`close` disposes of it."""

    def __init__(self, database_url: str, *, engine: AsyncEngine | None = None) -> None:
        self.database_url = database_url
        self.engine = engine or create_engine(database_url)
        self.sessions = session_factory(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping_database(self) -> str | None:
        """Return the schema revision (None if the schema was never migrated)."""
        async with self.engine.connect() as conn:
            has_table = await conn.run_sync(lambda c: sa.inspect(c).has_table("alembic_version"))
            if not has_table:
                return None
            return (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()

    async def create_user(self, data: UserCreate) -> User:
        async with session_scope(self.sessions) as session:
            return await repo.create_user(session, data=data)

    async def create_account(self, data: AccountCreate) -> Account:
        async with session_scope(self.sessions) as session:
            return await repo.create_account(session, data=data)

    async def create_merchant(self, data: MerchantCreate) -> Merchant:
        async with session_scope(self.sessions) as session:
            return await repo.create_merchant(session, data=data)

    async def create_device(self, data: DeviceCreate) -> Device:
        async with session_scope(self.sessions) as session:
            return await repo.create_device(session, data=data)

    async def record_transaction(self, data: TransactionCreate, *, received_at: datetime) -> Transaction:
        async with session_scope(self.sessions) as session:
            return await repo.record_transaction(session, data=data, received_at=received_at)

    async def get_transaction(self, transaction_id: int) -> Transaction:
        async with self.sessions() as session:
            return await repo.get_transaction(session, transaction_id=transaction_id)

    async def user_transactions(self, user_id: int, *, since: datetime, limit: int) -> Sequence[Transaction]:
        async with self.sessions() as session:
            return await repo.user_transactions(session, user_id=user_id, since=since, limit=limit)

    async def add_blacklist_entry(self, data: BlacklistCreate, *, added_by: str) -> BlacklistEntry:
        async with session_scope(self.sessions) as session:
            return await repo.add_blacklist_entry(session, data=data, added_by=added_by)
