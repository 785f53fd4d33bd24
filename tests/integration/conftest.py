"""Integration tier: real PostgreSQL, Redis and a local Ray.

PostgreSQL and Redis come from ``VIGIL_TEST_POSTGRES_URL`` / ``VIGIL_TEST_REDIS_URL`` (defaults:
the local servers on 127.0.0.1). When the configured server does not answer, the session starts a
throwaway one of its own from the installed binaries (``services.py``: Debian packages
``postgresql`` and ``redis-server``) and stops it at the end. Only when that is impossible too do
the tests that need it skip, with the reason; under ``CI=true`` they fail instead (``tests/conftest.py``
turns any skip into a failure there), so a CI run can never pass by skipping them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib: no package here
import services

POSTGRES_ADMIN_URL = os.environ.get(
    "VIGIL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("VIGIL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _unavailable(what: str, exc: BaseException) -> None:
    reason = f"{what} is not reachable, and no throwaway server could be started ({exc})"
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
    pytest.skip(reason)


async def _pg_admin(admin_url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _pg_unreachable(admin_url: str) -> str | None:
    """Why ``admin_url`` does not answer, or None when it does."""
    try:
        asyncio.run(_pg_admin(admin_url, "SELECT 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _database_url(admin_url: str, name: str) -> str:
    """The async (``postgresql+asyncpg``) URL of database ``name`` on ``admin_url``'s server."""
    base, _, _ = admin_url.rpartition("/")
    return base.replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A superuser URL (database ``postgres``) of a PostgreSQL that answers: the configured one,
    else a throwaway server started for this session."""
    why = _pg_unreachable(POSTGRES_ADMIN_URL)
    if why is None:
        yield POSTGRES_ADMIN_URL
        return
    try:
        server = services.start_postgres()
    except services.ServiceUnavailable as exc:
        _unavailable(f"PostgreSQL at {POSTGRES_ADMIN_URL} ({why})", exc)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fresh_postgres_database(postgres_admin_url: str) -> Callable[[str], Iterator[str]]:
    """A factory for more fresh databases on the same server: ``with ...(prefix) as url``."""

    @contextmanager
    def make(prefix: str) -> Iterator[str]:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        asyncio.run(_pg_admin(postgres_admin_url, f'CREATE DATABASE "{name}"'))
        try:
            yield _database_url(postgres_admin_url, name)
        finally:
            asyncio.run(_pg_admin(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return make  # type: ignore[return-value]


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session (dropped afterwards)."""
    name = f"vigil_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(postgres_admin_url, f'CREATE DATABASE "{name}"'))
    yield _database_url(postgres_admin_url, name)
    asyncio.run(_pg_admin(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis that answers: the configured one, else a throwaway server started for this session."""
    if _redis_answers(REDIS_URL):
        yield REDIS_URL
        return
    try:
        server = services.start_redis()
    except services.ServiceUnavailable as exc:
        _unavailable(f"Redis at {REDIS_URL}", exc)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty database of each backend, with no tables: migrations start from nothing."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'vigil.db'}"
        return
    with request.getfixturevalue("fresh_postgres_database")("vigil_t") as url:
        yield url


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    """A migrated, empty database of each backend."""
    from vigil.db.migrate import upgrade

    upgrade(empty_database_url)
    return empty_database_url
