"""Schema migrations (Alembic), driven from Python so `vigil db upgrade` needs no alembic.ini.

The async functions run Alembic on a connection of the async engine (``run_sync``), so they also
work inside a running event loop; the plain functions are their synchronous front doors.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from vigil.db.engine import create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def _with_connection(url: str, action: Callable[[Config], None]) -> None:
    # One connection, closed on return (no pool to outlive the migration).
    engine = create_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:

            def run(sync_conn: Connection) -> None:
                config = alembic_config(url)
                config.attributes["connection"] = sync_conn
                action(config)

            await conn.run_sync(run)
    finally:
        await engine.dispose()


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (creating it from empty if needed)."""
    await _with_connection(url, lambda config: command.upgrade(config, revision))


async def downgrade_async(url: str, revision: str = "base") -> None:
    """Migrate the database at ``url`` down to ``revision`` (``base`` drops every table)."""
    await _with_connection(url, lambda config: command.downgrade(config, revision))


def upgrade(url: str, revision: str = "head") -> None:
    asyncio.run(upgrade_async(url, revision))


def downgrade(url: str, revision: str = "base") -> None:
    asyncio.run(downgrade_async(url, revision))


@functools.cache
def head_revision() -> str:
    """The revision this code's schema is at (the newest migration)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, "no migrations"
    return head


def current(url: str) -> None:
    """Print the revision the database is at."""
    asyncio.run(_with_connection(url, lambda config: command.current(config, verbose=False)))
