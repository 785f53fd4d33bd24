"""The monitor on Ray Serve: a background deployment that recomputes the operator figures from
the database every ``every_s`` seconds and serves them for Prometheus on loopback.

Why a Serve deployment: it is declared, started, health-checked and replaced with the rest of the
application by the same ``build_app``, and its replica never sees a request, so screening pays
nothing for it; a scheduled Ray job would need a scheduler of its own and lose its Prometheus
endpoint between runs. One replica, no CPU share reserved: its work is a few queries and a pandas
pass per period. The figures live in the database, so a restarted replica exports the same ones.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from ray import serve

from vigil.db.engine import create_engine, session_factory
from vigil.infra.periodic import Periodic
from vigil.monitoring.exposition import monitor_registry
from vigil.monitoring.monitor import Monitor, MonitorConfig
from vigil.monitoring.reference import registry_lookup

log = logging.getLogger("vigil.monitoring")

#: Where Prometheus scrapes the monitor (``dashboards/prometheus/prometheus.yml``), loopback only.
DEFAULT_PORT = 9108


@serve.deployment(name="Monitor", num_replicas=1, ray_actor_options={"num_cpus": 0})
class MonitorDeployment:
    def __init__(
        self,
        database_url: str,
        tracking_uri: str | None = None,
        every_s: float = 60.0,
        port: int = DEFAULT_PORT,
        label_delay_days: float = 14.0,
    ) -> None:
        self.engine = create_engine(database_url)
        self.monitor = Monitor(
            session_factory(self.engine),
            MonitorConfig(label_delay=timedelta(days=label_delay_days)),
            registry=registry_lookup(tracking_uri),
        )
        self.registry, self.collector = monitor_registry()
        self.server: Any = None
        if port:
            from prometheus_client import start_http_server

            try:
                self.server, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)
            except OSError as exc:  # another monitor holds the port: compute anyway, say so
                log.warning("monitor: cannot serve metrics on 127.0.0.1:%s: %s", port, exc)
        self.loop = Periodic("vigil-monitor", self.refresh, every_s, self._failed)
        self.loop.start()

    def _failed(self, exc: Exception) -> None:
        log.warning("monitor: computation failed (next period retries): %s", exc, exc_info=exc)

    async def refresh(self) -> None:
        self.collector.snapshot = await self.monitor.snapshot(datetime.now(UTC))

    async def check_health(self) -> None:
        self.loop.start()  # no-op while running; starts it once the replica's loop runs

    async def metrics(self) -> bytes:
        """The exposition text (for a caller without access to the port)."""
        from vigil.monitoring.exposition import render

        return render(self.registry)

    async def __del__(self) -> None:  # Serve awaits an async __del__ when the replica stops
        if self.server is not None:
            self.server.shutdown()
        await self.loop.stop()
        await self.engine.dispose()
