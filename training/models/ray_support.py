"""Starting Ray for training jobs: local and loopback-only unless an address is given."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["init_local_ray"]


def init_local_ray(num_cpus: int | None = None, address: str | None = None, **kwargs: Any) -> None:
    """Connect to Ray if it is not running: ``address`` (or ``RAY_ADDRESS``, e.g. inside a Ray Job)
    joins a cluster; otherwise a local Ray starts bound to 127.0.0.1 without the dashboard."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **kwargs)
        return
    from vigil.infra.ray_local import init_loopback_ray

    init_loopback_ray(num_cpus=num_cpus or os.cpu_count() or 2, **kwargs)
