"""Velocity state, sharded: shard ``i`` of ``n`` owns the users with
``stable_shard("user", user_id, n) == i`` and the devices, IPs and merchants that
:class:`~vigil.features.online.InMemoryEntityStore` assigns to it.

Per transaction the shard reads the features, then learns the event, in one call (no other
event can slip between the read and the update). Retries are safe: events are identified by
the client's idempotency key, and a key seen before returns the row it got the first time
without learning the event again.

Recovery — rebuilt from the database, not from checkpoints. The database already holds every
acknowledged transaction (committed before the answer), so it is the one source that can never
be behind what a client was told; a checkpoint would be behind by its interval and still need a
replay of the tail. A restarted shard (``max_restarts=-1``) rebuilds each user lazily on that
user's next event by replaying the user's stored history, and its entity state eagerly from the
start of the longest day-bucketed window (:data:`~vigil.features.spec.RING_DAYS` UTC days,
which also covers the 7-day distinct-user windows) plus all labels.

One race is closed explicitly: events that the *dead* incarnation answered but whose database
commit lands after the new incarnation rebuilt that user. For each user rebuilt less than
``settle_s`` after the shard started, the shard remembers which stored events the rebuild saw;
once the window has passed, one query lists those users' transactions decided since shortly
before the start (:data:`LATE_COMMIT_S`), and a user with a stored event that neither the
rebuild nor this incarnation saw is rebuilt once more, from the database plus the events this
incarnation learned itself, so its counts converge to exactly the stored history (one query
for all of them, where rebuilding each again on its next event would cost database reads per
user). Entity distinct-user counts can miss such an event until
that device/IP is seen again; they refresh themselves on the next event.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from vigil.db import history
from vigil.db.engine import create_engine, session_factory
from vigil.features.events import EventWire, LabelEvent, TransactionEvent
from vigil.features.online import (
    NAN,
    InMemoryEntityStore,
    UserState,
    event_features,
    stable_shard,
)
from vigil.features.spec import DAY_NS, FEATURE_NAMES, RING_DAYS, WINDOWS_NS
from vigil.state.blacklists import Revision, StoredCopy, features_blacklist

Row = dict[str, float]
log = logging.getLogger("vigil.state.velocity")

#: How many idempotency keys a shard remembers (retries arrive within seconds).
SEEN_KEYS = 200_000
#: How long before a restarted shard's start an event its dead predecessor answered may have
#: been decided and still commit afterwards (a batch's write, the Ingress's persist stage, is
#: far shorter than this). An answer decided earlier still, or committed
#: after the settle window, is not caught: the window itself assumes late commits land within
#: ``settle_s``.
LATE_COMMIT_S = 60.0


@dataclass(frozen=True, slots=True)
class Observation:
    """One event for one shard: ``user`` and/or ``entity`` says which of its parts to run."""

    key: str
    event: TransactionEvent
    user: bool
    entity: bool

    def wire(self) -> ObservationWire:
        """Plain values for the call to a shard actor (see :meth:`TransactionEvent.wire`)."""
        return (self.key, self.user, self.entity, self.event.wire())

    @classmethod
    def from_wire(cls, wire: ObservationWire) -> Observation:
        key, user, entity, event = wire
        return cls(key, TransactionEvent.from_wire(event), user, entity)


ObservationWire = tuple[str, bool, bool, EventWire]


def shard_of_user(user_id: int, shard_count: int) -> int:
    return stable_shard("user", user_id, shard_count)


def route(
    keys: list[str], events: list[TransactionEvent], shard_count: int
) -> dict[int, list[tuple[int, Observation]]]:
    """Split a batch into per-shard ``(batch index, observation)`` lists, in batch order.

    The user's shard runs the user part and the entity part (for the user's latest known fraud,
    kept with the entity state because labels are routed there); the owners of the device, IP
    and merchant run the entity part (often the same shard, which then does both in one
    observation).
    """
    per_shard: dict[int, dict[int, list[bool]]] = {}
    for i, event in enumerate(events):
        per_shard.setdefault(shard_of_user(event.user_id, shard_count), {})[i] = [True, True]
        for kind, key in (("device", event.device_id), ("ip", event.ip), ("merchant", event.merchant_id)):
            if key is not None:
                per_shard.setdefault(stable_shard(kind, key, shard_count), {}).setdefault(i, [False, False])[
                    1
                ] = True
    return {
        shard: [
            (i, Observation(keys[i], events[i], user, entity)) for i, (user, entity) in sorted(items.items())
        ]
        for shard, items in per_shard.items()
    }


def merge_rows(events: list[TransactionEvent], partial: list[tuple[list[int], list[Row]]]) -> list[Row]:
    """Full feature rows (keys and order of :data:`FEATURE_NAMES`) from the shards' partial rows."""
    rows = [event_features(event) for event in events]
    for indices, shard_rows in partial:
        for index, row in zip(indices, shard_rows, strict=True):
            rows[index].update(row)
    return [{name: row.get(name, NAN) for name in FEATURE_NAMES} for row in rows]


class VelocityShard:
    """The shard's logic, plain Python (``actors/velocity.py`` wraps it in a Ray actor; tests and
    the in-process baseline use it directly)."""

    def __init__(self, index: int, count: int, database_url: str, *, settle_s: float = 5.0) -> None:
        """``settle_s``: 0 for a first start (no predecessor); a restarted incarnation loads users
        on first use and settles them once the window has passed (:meth:`_settle`)."""
        self.index, self.count = index, count
        self.incarnation = uuid.uuid4().hex[:8]
        self.engine = (
            create_engine(database_url, pool_size=2)
            if "sqlite" not in database_url
            else create_engine(database_url)
        )
        self.sessions = session_factory(self.engine)
        self.users: dict[int, UserState] = {}
        self.entities = InMemoryEntityStore(index, count)
        # read from the database before the first batch, again when a batch's revision is ahead
        self.blacklist = StoredCopy(lambda: features_blacklist(self.sessions))
        self.seen: OrderedDict[str, Row] = OrderedDict()
        self.started = time.monotonic()
        self.settle_s = settle_s
        # users rebuilt while the previous incarnation's answers may still be committing:
        # user -> events this incarnation learned since (replayed on top of the DB at settle time)
        self.unsettled: dict[int, list[tuple[str, TransactionEvent]]] = {}
        self._rebuilt_from: dict[int, set[str]] = {}  # unsettled user -> stored keys its rebuild saw
        self._late_since = datetime.now(UTC) - timedelta(seconds=LATE_COMMIT_S)
        self._settled = settle_s <= 0
        self._recovered = False
        self._lock = asyncio.Lock()

    async def _recover_entities(self) -> None:
        now_ns = time.time_ns()
        oldest_ns = min(now_ns - max(WINDOWS_NS.values()), (now_ns // DAY_NS - (RING_DAYS - 1)) * DAY_NS)
        since = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=oldest_ns // 1000)
        async with self.sessions() as session:
            for merchant_id, profile in (await history.merchant_profiles(session)).items():
                if self.entities.owns("merchant", merchant_id):
                    self.entities.set_merchant_profile(merchant_id, profile)
            for label in await history.label_events(session):
                self.entities.add_label(label)
            async for event in history.events_since(session, since=since):
                self.entities.update(event)
        self._recovered = True

    async def _load_users(self, user_ids: list[int]) -> None:
        async with self.sessions() as session:
            profiles = await history.user_profiles(session, user_ids=user_ids)
            stored = await history.user_events(session, user_ids=user_ids)
        settling = time.monotonic() - self.started < self.settle_s
        for uid in user_ids:
            own = self.unsettled.get(uid, []) if uid in self.users else []
            stored_keys = {key for key, _ in stored[uid]}
            state = UserState(uid, profiles.get(uid))
            replay = [e for _, e in stored[uid]] + [e for key, e in own if key not in stored_keys]
            # Stored events carry their database ids; this incarnation's own (not yet stored)
            # carry 0, so among equal timestamps they count as learned last.
            for event in sorted(replay, key=lambda e: (e.t_ns, e.transaction_id or 2**62)):
                state.update(event)
            self.users[uid] = state
            if settling:
                self.unsettled.setdefault(uid, [])
                self._rebuilt_from[uid] = stored_keys
            else:
                self.unsettled.pop(uid, None)
                self._rebuilt_from.pop(uid, None)

    async def _settle(self) -> None:
        """Once, when the settle window has passed: rebuild the users loaded within it that missed
        an event the dead incarnation answered (committed after their rebuild); the rest are final.
        Users not loaded yet load on first use, as in the window (a background warm-up of them
        took the shard's time under load without a benefit the benchmarks could see:
        docs/serving.md)."""
        self._settled = True
        users = sorted(self.unsettled)
        if not users:
            return
        async with self.sessions() as session:
            stored = await history.keys_decided_since(session, user_ids=users, since=self._late_since)
        late = []
        for uid in users:
            seen = self._rebuilt_from.get(uid, set()) | {key for key, _ in self.unsettled[uid]}
            if stored[uid] - seen:
                late.append(uid)
            else:
                self.unsettled.pop(uid)
                self._rebuilt_from.pop(uid, None)
        if late:
            log.warning(
                "velocity shard %d/%d: %d users rebuilt again for events committed after their rebuild",
                self.index,
                self.count,
                len(late),
            )
            await self._load_users(late)

    async def warm(self, max_users: int, *, chunk: int = 64) -> int:
        """Load up to ``max_users`` of this shard's most recently active users now, so that the
        first traffic after a start does not pay for rebuilding them (a batch of new users costs
        its features stage many times what a warm one does). Recovers the entity state
        too. Loads ``chunk`` users per turn of the lock, so traffic interleaves. Returns how many
        users it loaded (those already loaded are skipped, so a second call is cheap)."""
        if max_users <= 0:
            return 0
        async with self.sessions() as session:
            recent = await history.recent_user_ids(session, limit=max_users * self.count)
        mine = [uid for uid in recent if shard_of_user(uid, self.count) == self.index][:max_users]
        loaded = 0
        async with self._lock:
            if not self._recovered:
                await self._recover_entities()
        for start in range(0, len(mine), chunk):
            async with self._lock:
                todo = [uid for uid in mine[start : start + chunk] if uid not in self.users]
                if todo:
                    await self._load_users(todo)
                    loaded += len(todo)
        return loaded

    async def observe(self, batch: list[Observation], blacklist_at: Revision | None = None) -> list[Row]:
        """Read, then learn, each observation in order; a seen key returns its first row.
        ``blacklist_at``: the blacklist revision the batch is screened at (:mod:`vigil.state.blacklists`)."""
        async with self._lock:
            if not self._recovered:
                await self._recover_entities()
            blacklist = await self.blacklist.at(blacklist_at)
            if not self._settled and time.monotonic() - self.started >= self.settle_s:
                await self._settle()
            need = {
                o.event.user_id
                for o in batch
                if o.user and o.key not in self.seen and o.event.user_id not in self.users
            }
            if need:
                await self._load_users(sorted(need))
            rows: list[Row] = []
            for obs in batch:
                cached = self.seen.get(obs.key)
                if cached is not None:
                    self.seen.move_to_end(obs.key)
                    rows.append(cached)
                    continue
                row: Row = {}
                event = obs.event
                if obs.user:
                    state = self.users[event.user_id]
                    row.update(state.features(event))
                    row.update(blacklist.features(event))
                    state.update(event)
                    if event.user_id in self.unsettled:
                        self.unsettled[event.user_id].append((obs.key, event))
                if obs.entity:
                    row.update(self.entities.process(event))
                self.seen[obs.key] = row
                if len(self.seen) > SEEN_KEYS:
                    self.seen.popitem(last=False)
                rows.append(row)
            return rows

    async def observe_wire(
        self, batch: list[ObservationWire], blacklist_at: Revision | None = None
    ) -> list[Row]:
        """:meth:`observe` for observations sent as :meth:`Observation.wire` tuples."""
        return await self.observe([Observation.from_wire(w) for w in batch], blacklist_at)

    async def add_label(self, label: LabelEvent) -> None:
        self.entities.add_label(label)

    async def set_kyc_risk(self, user_id: int, risk_level: str) -> None:
        """A committed KYC result: a loaded user's profile takes it now (a user not loaded yet
        reads it from the database on first use)."""
        async with self._lock:  # after any load in flight, which may have read the old value
            state = self.users.get(user_id)
            if state is not None:
                state.profile = replace(state.profile, kyc_risk_level=risk_level)

    async def user_counts(self, user_id: int, at: datetime) -> Row:
        """The user's current velocity features as of ``at`` (for checks and the history route)."""
        async with self._lock:
            if not self._settled and time.monotonic() - self.started >= self.settle_s:
                await self._settle()
            if user_id not in self.users:
                await self._load_users([user_id])
            probe = TransactionEvent(transaction_id=-1, user_id=user_id, created_at=at, amount=0.01)
            return self.users[user_id].features(probe)

    async def close(self) -> None:
        await self.engine.dispose()

    async def info(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "count": self.count,
            "incarnation": self.incarnation,
            "pid": os.getpid(),
            "users": len(self.users),
            "seen_keys": len(self.seen),
        }
