"""Velocity state in Ray actors: each shard of :class:`vigil.state.velocity.VelocityShard` is a named,
detached actor (shared by every ingress replica, outliving the replica that created it) that Ray
restarts when it dies (``max_restarts=-1``); calls in flight are retried on the new incarnation
(``max_task_retries=-1``), which rebuilds its state from the database (see vigil/state/velocity.py).

Only a restarted incarnation needs the settle window (answers of the dead one may still be
committing); a first start has no predecessor, so it settles at once and users it warms or
loads are final. A first start is warmed before traffic (:func:`warm_shards`, from the Ingress);
a restarted one loads users on first use and, once settled, freezes its heap without a full
collection (:func:`vigil.infra.heap.freeze_heap`).
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import ray

from vigil.infra.heap import freeze_heap, raise_young_threshold, settle_heap
from vigil.state import velocity

log = logging.getLogger("vigil.state.velocity")
SETTLE_S = 5.0
#: When this process had imported the shard's modules (wall clock): a restart's timeline
#: (benchmarks/probe_restart.py) reads it and ``started_at`` from :meth:`VelocityShard.info`.
IMPORTED_AT = time.time()


class VelocityShard(velocity.VelocityShard):
    """The actor's class: the shard logic, settling only when it replaces a dead incarnation
    (named like that logic, so Ray's process title stays ``ray::VelocityShard``)."""

    def __init__(self, index: int, count: int, database_url: str) -> None:
        with warnings.catch_warnings():  # Ray's own property reads its deprecated ``actor_id``
            warnings.simplefilter("ignore", DeprecationWarning)
            self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        super().__init__(index, count, database_url, settle_s=SETTLE_S if self.restarted else 0.0)
        if self.restarted:  # not warmed before traffic: collect rarely until the heap settles
            raise_young_threshold()
        self.started_at = time.time()

    async def warm(self, max_users: int, *, chunk: int = 64) -> int:
        """Load the users (see the base class), then freeze the loaded state out of the
        collector's way (:func:`vigil.infra.heap.settle_heap`)."""
        loaded = await super().warm(max_users, chunk=chunk)
        settle_heap(f"velocity shard {self.index}/{self.count}")
        return loaded

    async def _settle(self) -> None:
        """A restarted incarnation freezes its heap once its users are settled, without the full
        collection of :func:`settle_heap`: it is serving by then."""
        await super()._settle()
        freeze_heap(f"velocity shard {self.index}/{self.count}, restarted")

    async def info(self) -> dict[str, Any]:
        return await super().info() | {"imported_at": IMPORTED_AT, "started_at": self.started_at}


VelocityShardActor = ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0)(VelocityShard)


def shard_name(index: int, count: int) -> str:
    return f"vigil-velocity-{index}-of-{count}"


def share(users: int, count: int) -> int:
    """Each of ``count`` shards' part of ``users`` to warm (rounded up)."""
    return -(-users // count)


def get_or_create_shards(count: int, database_url: str, *, namespace: str = "vigil") -> list[Any]:
    """Handles to the ``count`` named shard actors, created if missing."""
    return [
        VelocityShardActor.options(
            name=shard_name(i, count), namespace=namespace, lifetime="detached", get_if_exists=True
        ).remote(i, count, database_url)
        for i in range(count)
    ]


def warm_shards(shards: list[Any], users: int, *, timeout_s: float = 120.0) -> None:
    """Have every shard load its share of the ``users`` most recently active users, and wait
    (a replica becomes ready warm). Past ``timeout_s`` the shards go on loading in the
    background and traffic is served meanwhile (users not loaded yet load on first use)."""
    if users <= 0 or not shards:
        return
    pending = [shard.warm.remote(share(users, len(shards))) for shard in shards]
    started = time.monotonic()
    _, not_done = ray.wait(pending, num_returns=len(pending), timeout=timeout_s)
    loaded = sum(ray.get(ref) for ref in pending if ref not in not_done)
    log.info(
        "velocity shards: %d users loaded in %.1f s%s",
        loaded,
        time.monotonic() - started,
        f" ({len(not_done)} shards still loading)" if not_done else "",
    )
