"""Start (or join) Ray and deploy ``ray_config.yaml``: what ``vigil up`` and ``make run`` do.

A local Ray is bound to 127.0.0.1 only and starts without its dashboard (memory a small machine
would rather give to the serving processes); ``VIGIL_RAY_ADDRESS`` joins an existing cluster instead.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from vigil.infra.ray_local import init_loopback_ray
from vigil.settings import Settings

log = logging.getLogger("vigil.launch")


#: Ray starts its workers (every Serve replica and actor) at nice 15, below its own daemons and
#: anything else on the machine; a serving node runs them at normal priority, which lowered the
#: tail latency in paired runs (docs/serving.md). Set it to 15 to go back.
SERVING_RAY_ENV = {"RAY_worker_niceness": "0"}


def start_local_ray(*, num_cpus: int | None = None, host: str = "127.0.0.1") -> None:
    """A local Ray for Serve, on loopback only (see :mod:`vigil.infra.ray_local`), its workers
    at normal priority (:data:`SERVING_RAY_ENV`, unless the environment says otherwise)."""
    for name, value in SERVING_RAY_ENV.items():
        os.environ.setdefault(name, value)  # read by the raylet this starts
    init_loopback_ray(
        num_cpus=num_cpus,
        host=host,
        namespace="serve",
        log_to_driver=True,
        configure_logging=True,
        logging_level=logging.WARNING,
    )


def direct_ingress(settings: Settings) -> bool:
    """Serve's direct ingress on a local Ray (see :func:`direct_ingress_env`)."""
    return settings.serve_direct_ingress and not settings.ray_address


def direct_ingress_env(settings: Settings) -> dict[str, str]:
    """Environment for a local Ray whose Ingress replica serves ``http_port`` itself.

    Serve's HTTP proxy actor is one more process hop per request, paid before the ingress can
    batch anything; going straight to the replica multiplied the graph's throughput
    (docs/serving.md). ``RAY_SERVE_THROUGHPUT_OPTIMIZED`` turns on direct ingress
    (plus gRPC between deployments and user code on the replica's event loop); the replica's
    HTTP port range is pinned to exactly ``http_port``, so the one Ingress replica answers there
    (a second replica on this node would find no port: scale out across nodes, cluster/README).
    The replica binds ``http_host`` like the proxy does; the proxy itself moves to
    ``http_port + 1``. Must be in the environment before Ray starts (its processes inherit it).

    Clients reach that replica directly, with no load balancer in front, so two waits Serve
    makes for one are turned off: a released port's quarantine (for HAProxy's stale server
    lists) and a removed ingress replica's minimum draining period (for a load balancer to
    deregister it). With them, an Ingress replica that died came back only once the quarantine
    had ended (its one port held out of the pool), and Ctrl-C waited out the drain. A replica
    that stops still finishes its requests in flight (``graceful_shutdown_timeout_s``).
    """
    port = settings.http_port
    return {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + 1),  # exclusive
        "RAY_SERVE_PORT_QUARANTINE_S": "0",
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
    }


def load_serve_config(path: Path, settings: Settings, *, direct: bool = False) -> Any:
    """Read the Serve config, with the HTTP host and port from the settings. ``direct``: Ray was
    started with :func:`direct_ingress_env`, so the Ingress replica answers ``http_port`` and
    the proxy takes ``http_port + 1``."""
    from ray.serve.schema import ServeDeploySchema

    with path.open() as handle:
        raw = yaml.safe_load(handle)
    raw.setdefault("http_options", {})
    raw["http_options"]["host"] = settings.http_host
    raw["http_options"]["port"] = settings.http_port + (1 if direct else 0)
    return ServeDeploySchema.model_validate(raw)


class ServeConfigError(ValueError):
    """The Serve config cannot run here (the message says why and what to change)."""


def cpu_requests(config: Any) -> dict[str, tuple[int, float]]:
    """``{"app/deployment": (replicas at start, CPUs each)}`` as Serve will ask Ray for them. A
    deployment without ``num_cpus`` in the config counts Serve's default of 1 (none of ours sets
    one in code); an autoscaling one its initial or minimum replicas."""
    wanted = {}
    for app in config.applications:
        for deployment in app.deployments:
            fields = deployment.model_dump(exclude_unset=True)
            replicas = fields.get("num_replicas", 1)
            autoscaling = fields.get("autoscaling_config") or {}
            if not isinstance(replicas, int) or autoscaling:
                replicas = int(autoscaling.get("initial_replicas") or autoscaling.get("min_replicas", 1))
            cpus = float((fields.get("ray_actor_options") or {}).get("num_cpus", 1))
            wanted[f"{app.name}/{deployment.name}"] = (replicas, cpus)
    return wanted


def check_cpus(config: Any, available: float) -> None:
    """Refuse a config whose replicas ask for more CPUs than the local Ray has: Serve would wait
    for the last ones without end, and ``vigil up`` would sit silent instead of saying why."""
    wanted = cpu_requests(config)
    total = sum(replicas * cpus for replicas, cpus in wanted.values())
    if total > available + 1e-9:
        detail = ", ".join(f"{name} {n} x {c:g}" for name, (n, c) in wanted.items() if n * c)
        raise ServeConfigError(
            f"the Serve config's replicas ask for {total:g} CPUs ({detail}) and the local Ray has "
            f"{available:g}: Serve would wait for the rest forever. Lower num_replicas or "
            "ray_actor_options.num_cpus (a scheduling share, not a limit), or raise VIGIL_RAY_NUM_CPUS."
        )


def deploy(config: Any, *, timeout_s: float = 600.0) -> None:
    """Start Serve and deploy every application in ``config``; wait until all are RUNNING."""
    from ray import serve
    from ray.serve._private import api as serve_api
    from ray.serve.schema import ApplicationStatus

    client = serve_api.serve_start(
        http_options=config.http_options.model_dump(),
        proxy_location=config.proxy_location,
    )
    client.deploy_apps(config, _blocking=False)
    deadline = time.monotonic() + timeout_s
    names = [app.name for app in config.applications]
    while True:
        status = serve.status().applications
        states = {name: status[name].status if name in status else None for name in names}
        if all(state == ApplicationStatus.RUNNING for state in states.values()):
            return
        failed = {n: status[n].message for n, s in states.items() if s == ApplicationStatus.DEPLOY_FAILED}
        if failed:
            raise RuntimeError(f"deploy failed: {failed}{failed_deployments(status, failed)}")
        if time.monotonic() > deadline:
            waiting = {
                f"{n}/{d}": info.message
                for n in names
                if n in status
                for d, info in status[n].deployments.items()
                if info.message
            }
            raise TimeoutError(f"applications not running after {timeout_s:.0f} s: {states} {waiting}")
        time.sleep(0.5)


def failed_deployments(status: Any, apps: Any) -> str:
    """The messages of the DEPLOY_FAILED deployments of ``apps`` in ``serve.status().applications``,
    one per line: the application's own message names the deployment, not why (e.g. the exception
    a replica's constructor raised, such as the KYC verifier's missing model file)."""
    lines = [
        f"\n{app}/{name}: {info.message}"
        for app in apps
        for name, info in status[app].deployments.items()
        if info.status == "DEPLOY_FAILED" and info.message  # DeploymentStatus is a str enum
    ]
    return "".join(lines)


def run_foreground(settings: Settings, *, on_ready: Any = None) -> None:
    """Start Ray and Serve, call ``on_ready()``, then block until SIGINT/SIGTERM and shut down.

    A signal during the deploy aborts it; either way the local Ray is shut down (every process
    it started), so nothing is left running.
    """
    import ray
    from ray import serve

    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C while shutting down: stop waiting politely
            raise KeyboardInterrupt
        stop.set()
        if signum == signal.SIGINT and not ready.is_set():
            raise KeyboardInterrupt  # still deploying: abort the deploy, then clean up

    ready = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop)
    direct = direct_ingress(settings)
    if direct:
        os.environ.update(direct_ingress_env(settings))
    if settings.ray_address:
        ray.init(address=settings.ray_address, namespace="serve")
    else:
        start_local_ray(num_cpus=settings.ray_num_cpus)
    try:
        config = load_serve_config(settings.serve_config, settings, direct=direct)
        if not settings.ray_address:  # a cluster may add nodes on demand; a local Ray cannot
            check_cpus(config, ray.cluster_resources().get("CPU", 0.0))
        deploy(config)
        ready.set()
        if on_ready is not None:
            on_ready()
        while not stop.wait(timeout=1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        log.warning("shutting down Serve and Ray")
        # A joined cluster keeps running; a local one is ours to stop, every process of it.
        if not settings.ray_address:
            serve.shutdown()
        ray.shutdown()
