"""Async engines and sessions for SQLite (aiosqlite) and PostgreSQL (asyncpg), and
:class:`BatchDb`, which runs a whole hot-path unit of work in one hop off the event loop."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger("vigil.db")

# The hot-path writer's auto-checkpoint threshold in WAL pages (SQLite's default is 1000, ~4 MB):
# a safety net only, for when the background checkpointer falls behind (see WalCheckpointer).
WRITER_AUTOCHECKPOINT_PAGES = 16384


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Build an async engine for ``url``.

    On SQLite it turns on foreign keys (off by default there, which would let an orphan
    transaction in), WAL journaling (readers do not block the writer) and a busy timeout.
    """
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session whose transaction commits on success and rolls back on any exception."""
    async with factory() as session, session.begin():
        yield session


class WalCheckpointer:
    """Checkpoints a SQLite database's write-ahead log from its own thread and connection.

    By default the connection whose commit takes the WAL past 1000 pages copies the log into the
    database file and syncs it, inside that commit. Under a steady stream of decisions that made
    one batch's write every few seconds many times slower than the others, and every request
    queued behind it waited too: the worst tail latencies (docs/storage-and-events.md). Here a
    ``PASSIVE`` checkpoint runs every ``interval_s`` beside the
    writer (SQLite lets a checkpoint and a writer work at once in WAL mode; ``sqlite3`` releases
    the GIL meanwhile), and the writer's own threshold is raised to
    :data:`WRITER_AUTOCHECKPOINT_PAGES` as a safety net. Durability is unchanged: a commit is in
    the WAL either way; checkpointing only moves it.
    """

    def __init__(self, path: str, *, interval_s: float = 1.0) -> None:
        self.path = path
        self.interval_s = interval_s
        self.last: tuple[int, int, int] | None = None  # (busy, frames in the WAL, checkpointed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vigil-wal-checkpoint", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        from vigil import metrics

        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        try:
            while not self._stop.wait(self.interval_s):
                started = time.perf_counter()
                try:
                    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # e.g. the file went away: keep trying, say why
                    log.warning("WAL checkpoint of %s failed: %s", self.path, exc)
                    continue
                metrics.DB_CHECKPOINT_SECONDS.observe(time.perf_counter() - started)
                self.last = (int(row[0]), int(row[1]), int(row[2]))
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _writer_pragmas(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT_PAGES}")
    cursor.close()


class BatchDb:
    """Runs a synchronous unit of work (``fn(session, ...)``) on a sync :class:`Session`.

    The screening path reads and writes a whole batch per call; through the async session
    every statement is its own await (aiosqlite: a hop to its thread and back per execute and
    per fetch; SQLAlchemy's greenlet bridge per call either way), and each hop waits its turn
    on a busy event loop. Here the unit of work is one hop:

    - file SQLite: a sync ``sqlite3`` engine on one dedicated thread (``sqlite3`` releases the
      GIL while SQLite works). One thread is also the single writer SQLite wants: concurrent
      batches queue here instead of meeting in SQLite's busy handler (1-100 ms sleeps);
    - anything else (PostgreSQL/asyncpg): ``AsyncSession.run_sync``, one greenlet for the whole
      function instead of one await per statement.

    :meth:`write` commits when ``fn`` returns and rolls back if it raises, so a batch is stored
    whole or not at all. On file SQLite a :class:`WalCheckpointer` keeps WAL checkpoints out of
    the batch's commit (``checkpoint_interval_s``).
    """

    def __init__(self, url: str, engine: AsyncEngine, *, checkpoint_interval_s: float = 1.0) -> None:
        self._async = session_factory(engine)
        self._sync: sa.Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self.checkpointer: WalCheckpointer | None = None
        database = make_url(url).database
        if is_sqlite(url) and database and database != ":memory:":
            self._sync = sa.create_engine(
                make_url(url).set(drivername="sqlite"),
                connect_args={"timeout": 30, "check_same_thread": False},
                pool_size=1,
                max_overflow=0,
                poolclass=sa.pool.QueuePool,
            )
            sa.event.listen(self._sync, "connect", _writer_pragmas)
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-db")
            self.checkpointer = WalCheckpointer(database, interval_s=checkpoint_interval_s)

    async def read(self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(False, fn, *args, **kwargs)

    async def write(self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(True, fn, *args, **kwargs)

    async def _run(self, commit: bool, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._sync is None:
            async with self._async() as session:
                if not commit:
                    return await session.run_sync(fn, *args, **kwargs)
                async with session.begin():
                    return await session.run_sync(fn, *args, **kwargs)
        assert self._thread is not None
        engine = self._sync

        def unit() -> T:
            with Session(engine, expire_on_commit=False) as session:
                if not commit:
                    return fn(session, *args, **kwargs)
                with session.begin():
                    return fn(session, *args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._thread, unit)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        if self.checkpointer is not None:
            self.checkpointer.close()
        if self._sync is not None:
            self._sync.dispose()
