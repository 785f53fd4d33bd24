"""Start (or join) Ray and deploy ``ray_config.yaml``: what ``vigil up`` and ``make run`` do.

A local Ray is bound to 127.0.0.1 only and starts without its dashboard (about 1 GB of RSS that
a 2-core box cannot spare); ``VIGIL_RAY_ADDRESS`` joins an existing cluster instead.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from vigil.infra.ray_local import init_loopback_ray
from vigil.settings import Settings

log = logging.getLogger("vigil.launch")


def start_local_ray(*, num_cpus: int | None = None, host: str = "127.0.0.1") -> None:
    """A local Ray for Serve, on loopback only (see :mod:`vigil.infra.ray_local`)."""
    init_loopback_ray(
        num_cpus=num_cpus,
        host=host,
        namespace="serve",
        log_to_driver=True,
        configure_logging=True,
        logging_level=logging.WARNING,
    )


def load_serve_config(path: Path, settings: Settings) -> Any:
    """Read the Serve config, with the HTTP host and port from the settings."""
    from ray.serve.schema import ServeDeploySchema

    with path.open() as handle:
        raw = yaml.safe_load(handle)
    raw.setdefault("http_options", {})
    raw["http_options"]["host"] = settings.http_host
    raw["http_options"]["port"] = settings.http_port
    return ServeDeploySchema.model_validate(raw)


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
            raise RuntimeError(f"deploy failed: {failed}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"applications not running after {timeout_s:.0f} s: {states}")
        time.sleep(0.5)


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
    if settings.ray_address:
        ray.init(address=settings.ray_address, namespace="serve")
    else:
        start_local_ray(num_cpus=settings.ray_num_cpus)
    try:
        deploy(load_serve_config(settings.serve_config, settings))
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
