"""Customer identity on SQLite and the real PostgreSQL: migration 0004 up and down, concurrent
refreshes of one token, the sign-in lockout counted in the database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from vigil.db.engine import create_engine
from vigil.db.migrate import downgrade_async, upgrade_async
from vigil.identity.passwords import HashParameters, PasswordHashing
from vigil.identity.schemas import SignIn, SignUp
from vigil.identity.service import Identity, InvalidCredentials
from vigil.identity.throttle import AccountLocked, SignInLimits
from vigil.identity.tokens import InvalidToken, TokenSigner
from vigil.service import VigilService

pytestmark = pytest.mark.integration

NEW_TABLES = {
    "customer_credentials",
    "customer_devices",
    "customer_sessions",
    "refresh_tokens",
    "sign_in_attempts",
}


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_migration_0004_goes_down_to_0003_and_up_again(empty_database_url: str) -> None:
    url = empty_database_url
    await upgrade_async(url)
    assert await _tables(url) >= NEW_TABLES
    await downgrade_async(url, "0003")
    left = await _tables(url)
    assert not NEW_TABLES & left and {"users", "devices", "alerts"} <= left
    await upgrade_async(url)
    assert await _tables(url) >= NEW_TABLES


def _identity(service: VigilService, now: datetime) -> Identity:
    return Identity(
        service.sessions,
        TokenSigner("i" * 40),
        hashing=PasswordHashing(HashParameters(time_cost=1, memory_cost_kib=64, parallelism=1)),
        limits=SignInLimits(account_failures=3),
        clock=lambda: now,
    )


SIGN_UP = SignUp(
    email="ada@example.com",
    password="correct horse battery",
    full_name="Ada",
    country="GB",
    home_lat=51.5,
    home_lon=0.0,
    device_fingerprint="device-0001",
    device_name="phone",
)


async def test_concurrent_refreshes_of_one_token_let_at_most_one_through_and_end_the_session(
    database_url: str,
) -> None:
    service = VigilService(database_url)
    try:
        identity = _identity(service, datetime.now(UTC))
        pair = await identity.sign_up(SIGN_UP, ip="203.0.113.1")
        results = await asyncio.gather(
            *(identity.refresh(pair.refresh_token) for _ in range(4)), return_exceptions=True
        )
        won = [r for r in results if not isinstance(r, BaseException)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) <= 1 and all(isinstance(e, InvalidToken) for e in lost), results
        # Racing copies of one token are a reuse: the session is over for everyone.
        for token in [pair.access_token, *(w.access_token for w in won)]:
            with pytest.raises(InvalidToken):
                await identity.authenticate(token)
    finally:
        await service.close()


async def test_the_lockout_is_counted_in_the_database(database_url: str) -> None:
    service = VigilService(database_url)
    try:
        now = datetime.now(UTC)
        await _identity(service, now).sign_up(SIGN_UP, ip="203.0.113.1")
        wrong = SignIn(email="ada@example.com", password="wrong", device_fingerprint="device-0001")
        for _ in range(3):
            with pytest.raises(InvalidCredentials):
                await _identity(service, now).sign_in(wrong, ip="203.0.113.1")
        right = wrong.model_copy(update={"password": "correct horse battery"})
        with pytest.raises(AccountLocked):
            await _identity(service, now + timedelta(minutes=1)).sign_in(right, ip="203.0.113.2")
        later = await _identity(service, now + timedelta(minutes=16)).sign_in(right, ip="203.0.113.2")
        assert later.user_id and later.new_device is False
    finally:
        await service.close()
