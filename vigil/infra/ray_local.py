"""Start a local Ray that listens on loopback only (serving and training share this).

Ray 2.60 rewrites a loopback ``node_ip_address`` to the address of the machine's outbound
interface (``services.resolve_ip_for_localhost``) and binds its gRPC servers there, reachable
from the network; and Serve replicas open their inter-deployment gRPC server on ``[::]``
(hard-coded in ``replica.py``). :func:`init_loopback_ray` keeps the loopback address as given and
installs :func:`bind_serve_replicas_to_loopback` as the job's worker setup hook, so GCS, raylet,
workers, agents and replicas all listen on 127.0.0.1 (``tests/integration/test_up.py`` checks).
"""

from __future__ import annotations

import os
from typing import Any

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_HOOK = "vigil.infra.ray_local.bind_serve_replicas_to_loopback"


def bind_serve_replicas_to_loopback() -> None:
    """Worker setup hook: Serve replicas' inter-deployment gRPC server listens on loopback."""
    from ray.serve._private import replica

    original = replica.add_port_to_grpc_server

    def loopback(server: Any, address: str) -> int:
        if address.startswith("[::]:"):
            address = "127.0.0.1:" + address.rsplit(":", 1)[1]
        return int(original(server, address))

    replica.add_port_to_grpc_server = loopback


def init_loopback_ray(*, num_cpus: int | None = None, host: str = "127.0.0.1", **kwargs: Any) -> None:
    """``ray.init`` for a new local cluster whose every server listens on ``host`` (loopback by
    default), without the dashboard (about 1 GB of RSS a 2-core box cannot spare)."""
    import ray
    import ray._private.services as services

    runtime_env: dict[str, Any] = dict(kwargs.pop("runtime_env", None) or {})
    if host in LOOPBACK:
        services.resolve_ip_for_localhost = lambda address: address  # type: ignore[assignment]
        # Inherited by every task and actor of this job, Serve's controller and replicas too.
        runtime_env.setdefault("worker_process_setup_hook", _HOOK)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs.setdefault("include_dashboard", False)
    ray.init(_node_ip_address=host, num_cpus=num_cpus, runtime_env=runtime_env, **kwargs)
