"""The stored blacklist's in-memory copies, and which committed state each one reflects.

The blacklist lives in the database. Every RuleScreen replica keeps a copy for the rules
(:class:`vigil.decision.rules.Blacklist`) and every velocity shard one for the features
(:class:`vigil.features.online.BlacklistIndex`). Every batch carries the latest stored
:data:`Revision` its sender has seen, and a copy behind it is reloaded from the database before
the batch is screened. So nothing is pushed to a replica that may be dead or one of several, and
a replica or shard started anew loads the table before its first batch.

The revision is read from the database, so every process reading the same committed state reads
the same number, whoever wrote it. The process that commits a change (an Ingress replica, the
in-process graph) learns the new revision in the same transaction: its next batch matches the
change. Every sender also reads the revision every :data:`POLL_S` seconds
(:class:`RevisionWatch`), so a change committed elsewhere (another Ingress replica, a script
against the database) applies there within that time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from vigil.db import history
from vigil.db.models import BlacklistEntry
from vigil.features.online import BlacklistIndex
from vigil.infra.periodic import Periodic

if TYPE_CHECKING:
    from vigil.decision.rules import Blacklist

T = TypeVar("T")

log = logging.getLogger(__name__)

#: The stored blacklist's rows plus its removals. Rows are never deleted and an entry is ended at
#: most once (:func:`vigil.db.repository.remove_blacklist_entry`), so every committed change moves
#: it on; writers are serialized (:func:`vigil.db.repository.lock_blacklist`).
Revision = int

#: Seconds between two reads of the stored revision by a sender of batches.
POLL_S = 1.0


async def stored_revision(session: AsyncSession) -> Revision:
    """The revision of the blacklist as ``session`` sees it."""
    query = sa.select(sa.func.count(), sa.func.count(col(BlacklistEntry.removed_by)))
    added, removed = (await session.execute(query)).one()
    return int(added) + int(removed)


def behind(loaded: Revision | None, wanted: Revision) -> bool:
    """Whether a copy loaded at ``loaded`` is older than ``wanted``."""
    return loaded is None or loaded < wanted


class LatestRevision:
    """The newest revision a sender has seen (None before the first): what its batches carry."""

    def __init__(self) -> None:
        self.current: Revision | None = None

    def saw(self, revision: Revision) -> None:
        if self.current is None or revision > self.current:
            self.current = revision


class RevisionWatch:
    """Reads the stored revision every ``every_s`` seconds and reports it to ``saw``.

    A failed read is logged (once until one succeeds) and retried at the next tick; the batches
    meanwhile carry the last revision seen.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        saw: Callable[[Revision], None],
        every_s: float = POLL_S,
    ) -> None:
        self._sessions = sessions
        self._saw = saw
        self._failing = False
        self._periodic = Periodic("vigil-blacklist-watch", self.poll, every_s, self._poll_failed)

    async def poll(self) -> Revision:
        async with self._sessions() as session:
            revision = await stored_revision(session)
        self._saw(revision)
        self._failing = False
        return revision

    def _poll_failed(self, exc: Exception) -> None:
        if not self._failing:  # the database may be restarting: keep the last revision
            log.warning(
                "cannot read the blacklist revision (retrying every %g s): %s", self._periodic.every_s, exc
            )
        self._failing = True

    def start(self) -> None:
        self._periodic.start()

    async def close(self) -> None:
        await self._periodic.stop()


class StoredCopy(Generic[T]):
    """An in-memory copy made by ``load``, reloaded when a batch's revision is ahead of it.

    Concurrent batches wait for one reload. A failed load raises to the batch that asked (its
    request gets a 503 and is retried) and leaves the previous copy and revision in place.
    """

    def __init__(self, load: Callable[[], Awaitable[T]]) -> None:
        self._load = load
        self._value: T | None = None
        self._at: Revision | None = None
        self._lock = asyncio.Lock()

    def _stale(self, revision: Revision | None) -> bool:
        return self._value is None or (revision is not None and behind(self._at, revision))

    async def at(self, revision: Revision | None) -> T:
        """The copy, at ``revision`` or later (None: any loaded copy; the first call loads)."""
        if self._stale(revision):
            async with self._lock:
                if self._stale(revision):  # another batch may have reloaded while this one waited
                    self._value = await self._load()
                    self._at = revision
        assert self._value is not None
        return self._value


async def rules_blacklist(sessions: async_sessionmaker[AsyncSession]) -> Blacklist:
    """The stored blacklist, as the rules match it."""
    # Imported here: a velocity shard never evaluates rules and should not pay for the import
    # when it restarts.
    from vigil.decision.rules import Blacklist

    async with sessions() as session:
        return Blacklist.from_rows(await history.blacklist_events(session))


async def features_blacklist(sessions: async_sessionmaker[AsyncSession]) -> BlacklistIndex:
    """The stored blacklist, as the ``blacklist_hit_by_*`` features read it."""
    async with sessions() as session:
        return BlacklistIndex(await history.blacklist_events(session))
