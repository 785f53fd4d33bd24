"""The stored blacklist's in-memory copies, and which committed state each one reflects.

The blacklist lives in the database. Every RuleScreen replica keeps a copy for the rules
(:class:`vigil.rules.Blacklist`) and every velocity shard one for the features
(:class:`vigil.features.online.BlacklistIndex`). The process that commits a change (the Ingress,
or the in-process graph) moves its :class:`RevisionCounter` on; every batch carries the current
:data:`Revision`, and a copy behind it is reloaded from the database before the batch is
screened. So nothing is pushed to a replica that may be dead or one of several, a removed entry
stops matching from the next batch on, and a replica or shard started anew loads the table before
its first batch.

A revision is ``(writer, n)``: ``writer`` names the committing process's incarnation, so a
restarted writer (counting from 0 again) still makes every copy reload. Two writers at once (two
Ingress replicas) would make copies reload on every batch that alternates between them: they
would need a revision read from the database instead.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vigil.db import history
from vigil.features.online import BlacklistIndex

if TYPE_CHECKING:
    from vigil.rules import Blacklist

T = TypeVar("T")

#: ``(writer incarnation, changes committed by it)``: plain values, cheap on the wire.
Revision = tuple[str, int]


class RevisionCounter:
    """The committing side: :meth:`bump` after each committed change."""

    def __init__(self) -> None:
        self.current: Revision = (uuid.uuid4().hex[:8], 0)

    def bump(self) -> None:
        self.current = (self.current[0], self.current[1] + 1)


def behind(loaded: Revision | None, wanted: Revision) -> bool:
    """Whether a copy loaded at ``loaded`` is older than ``wanted`` (another writer: assume so)."""
    return loaded is None or loaded[0] != wanted[0] or loaded[1] < wanted[1]


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
    from vigil.rules import Blacklist  # here: a velocity shard never evaluates rules (21 ms of its restart)

    async with sessions() as session:
        return Blacklist.from_rows(await history.blacklist_events(session))


async def features_blacklist(sessions: async_sessionmaker[AsyncSession]) -> BlacklistIndex:
    """The stored blacklist, as the ``blacklist_hit_by_*`` features read it."""
    async with sessions() as session:
        return BlacklistIndex(await history.blacklist_events(session))
