"""Velocity state in Ray actors: each shard of :class:`vigil.velocity.VelocityShard` is a named,
detached actor (shared by every ingress replica, outliving the replica that created it) that Ray
restarts when it dies (``max_restarts=-1``); calls in flight are retried on the new incarnation
(``max_task_retries=-1``), which rebuilds its state from the database (see vigil/velocity.py).
"""

from __future__ import annotations

from typing import Any

import ray

from vigil.velocity import VelocityShard

VelocityShardActor = ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0)(VelocityShard)


def shard_name(index: int, count: int) -> str:
    return f"vigil-velocity-{index}-of-{count}"


def get_or_create_shards(count: int, database_url: str, *, namespace: str = "vigil") -> list[Any]:
    """Handles to the ``count`` named shard actors, created if missing."""
    return [
        VelocityShardActor.options(
            name=shard_name(i, count), namespace=namespace, lifetime="detached", get_if_exists=True
        ).remote(i, count, database_url)
        for i in range(count)
    ]
