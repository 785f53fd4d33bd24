"""Start a local Ray that listens on loopback only (serving and training share this).

Ray 2.60 rewrites a loopback ``node_ip_address`` to the address of the machine's outbound
interface (``services.resolve_ip_for_localhost``) and binds its gRPC servers there, reachable
from the network; and Serve replicas open their inter-deployment gRPC server on ``[::]``
(hard-coded in ``replica.py``). :func:`init_loopback_ray` keeps the loopback address as given and
installs :func:`bind_serve_replicas_to_loopback` as the job's worker setup hook, so GCS, raylet,
workers, agents and replicas all listen on 127.0.0.1 (``tests/integration/test_up.py`` checks).

Those two replica-module patches reach into Ray's private code, so they are tied to the Ray
version they were written against (:data:`PATCHED_RAY`): on any other version
:func:`check_ray_version` refuses to start instead of patching code it has never seen.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import os
import socket
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_HOOK = "vigil.infra.ray_local.bind_serve_replicas_to_loopback"
_REPLICA = "ray.serve._private.replica"
# The Ray release whose private ``replica`` and ``http_util`` modules the patches below were read
# against. Upgrading Ray means re-reading those modules, then changing this.
PATCHED_RAY = "2.60.0"


class UnsupportedRayVersion(RuntimeError):
    """The installed Ray is not the one the loopback patches were written for."""


def check_ray_version(installed: str | None = None) -> None:
    """Raise :class:`UnsupportedRayVersion` unless Ray is exactly :data:`PATCHED_RAY`."""
    version = installed if installed is not None else importlib.metadata.version("ray")
    if version != PATCHED_RAY:
        raise UnsupportedRayVersion(
            f"Ray {version} is installed, but vigil.infra.ray_local patches Serve's private replica "
            f"module as it is in Ray {PATCHED_RAY}; re-read ray/serve/_private/replica.py and "
            "http_util.py for the new version, adapt the patches, then update PATCHED_RAY"
        )


def _require(module: ModuleType, *names: str) -> None:
    missing = [name for name in names if not hasattr(module, name)]
    if missing:
        raise UnsupportedRayVersion(
            f"{module.__name__} has no {', '.join(missing)}: the loopback patches no longer fit this Ray"
        )


def _loopback_grpc_port(replica: ModuleType) -> None:
    """Serve's replica module: its gRPC server listens on 127.0.0.1, not ``[::]``."""
    _require(replica, "add_port_to_grpc_server")
    original = replica.add_port_to_grpc_server

    def loopback(server: Any, address: str) -> int:
        if address.startswith("[::]:"):
            address = "127.0.0.1:" + address.rsplit(":", 1)[1]
        return int(original(server, address))

    replica.add_port_to_grpc_server = loopback  # type: ignore[attr-defined]


def _reuse_address_only(sock: socket.socket) -> bool:
    """``SO_REUSEADDR`` without ``SO_REUSEPORT``: a port whose last listener died with connections
    still closing can be bound again, but not a port another process listens on."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return True


def _reusable_ingress_port(replica: ModuleType) -> None:
    """Serve's replica module: the direct-ingress HTTP socket may bind a port whose previous
    listener died with connections open.

    Serve creates that socket without ``SO_REUSEADDR`` (``enable_so_reuseport=False`` is
    hard-coded in ``replica.py``), so a new Ingress replica could not bind its port while the dead
    one's connections sat in FIN_WAIT/TIME_WAIT (up to 60 s), and Serve then blocked the port for
    good: with the one port of a local ``vigil up``, an Ingress killed under load never came back
    (docs/serving.md). Serve's own reuse option would also set ``SO_REUSEPORT``, which lets a
    second live listener share the port: a second ``vigil up`` on the same port then started and
    the kernel split the connections between two systems, so in a process that imports the replica
    module the option sets ``SO_REUSEADDR`` only (Serve's HTTP proxy imports it too, and its one
    socket per node gets the same)."""
    from ray.serve._private import http_util

    _require(replica, "start_asgi_http_server")
    _require(http_util, "set_socket_reuse_port")
    original = replica.start_asgi_http_server
    http_util.set_socket_reuse_port = _reuse_address_only

    async def start(app: Any, http_options: Any, **kwargs: Any) -> Any:
        kwargs["enable_so_reuseport"] = True
        return await original(app, http_options, **kwargs)

    replica.start_asgi_http_server = start  # type: ignore[attr-defined]


def _patch_replica(replica: ModuleType) -> None:
    check_ray_version()
    _loopback_grpc_port(replica)
    _reusable_ingress_port(replica)


class _PatchedLoader(importlib.abc.Loader):
    """Runs the module's own loader, then ``patch`` on the module; anything else (source
    lookups for tracebacks, resources) goes to the original loader."""

    def __init__(self, loader: Any, patch: Callable[[ModuleType], None]) -> None:
        self._loader, self._patch = loader, patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._patch(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches the module ``name`` when (and only if) the process imports it."""

    def __init__(self, name: str, patch: Callable[[ModuleType], None]) -> None:
        self.name, self.patch = name, patch

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchedLoader(spec.loader, self.patch)
        return spec


def bind_serve_replicas_to_loopback() -> None:
    """Worker setup hook: Serve replicas' inter-deployment gRPC server listens on loopback (and
    an ingress replica's HTTP socket can take over its port: :func:`_reusable_ingress_port`).

    Every worker of the job runs this hook, velocity shards and training tasks too, so it does
    not import Serve's replica module itself (a heavy import, and a large part of a restarted
    shard's start-up: benchmarks/probe_restart.py takes one apart): it patches the module when a
    process imports it, which only Serve replicas do."""
    if _REPLICA in sys.modules:
        _patch_replica(sys.modules[_REPLICA])
    elif not any(isinstance(f, _PatchOnImport) and f.name == _REPLICA for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport(_REPLICA, _patch_replica))


def init_loopback_ray(*, num_cpus: int | None = None, host: str = "127.0.0.1", **kwargs: Any) -> None:
    """``ray.init`` for a new local cluster whose every server listens on ``host`` (loopback by
    default), without the dashboard (memory a small machine would rather give to serving)."""
    check_ray_version()
    import ray
    import ray._private.services as services

    runtime_env: dict[str, Any] = dict(kwargs.pop("runtime_env", None) or {})
    if host in LOOPBACK:
        _require(services, "resolve_ip_for_localhost")
        services.resolve_ip_for_localhost = lambda address: address  # type: ignore[assignment]
        # Inherited by every task and actor of this job, Serve's controller and replicas too.
        runtime_env.setdefault("worker_process_setup_hook", _HOOK)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs.setdefault("include_dashboard", False)
    ray.init(_node_ip_address=host, num_cpus=num_cpus, runtime_env=runtime_env, **kwargs)
