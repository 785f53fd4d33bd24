"""The no-Ray baseline of the serving benchmark: one uvicorn process, the same API and Screener.

What a strong engineer would build without Ray: the FastAPI app of :func:`vigil.gateway.api.create_api`
served by a single uvicorn worker, whose :class:`~vigil.service.VigilService` screens through
:class:`vigil.decision.local_graph.LocalGraph` (the same velocity-shard logic, rules and champion models,
called in-process). Everything else is taken from the Serve config the graph is deployed with, so
both systems do the same work: the decision thresholds and micro-batch settings of the Ingress
``user_config``, the rate limit of the application args, the same API key store, the in-process
event bus, and the same durable write (``Screener`` commits each decision before answering).

Usage (the benchmark starts it; settings come from the environment like ``vigil up``)::

    VIGIL_HOME=var/bench VIGIL_DATABASE_URL=sqlite+aiosqlite:///... \\
        .venv/bin/python benchmarks/baseline_app.py --port 8101 --serve-config ray_config.yaml
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def ingress_settings(serve_config: Path) -> tuple[dict[str, Any], dict[str, Any], float, int]:
    """``(policy, batch, rate_limit_per_minute, velocity_warm_users)`` as the graph's Ingress gets them."""
    raw = yaml.safe_load(serve_config.read_text())
    (app,) = [a for a in raw["applications"] if a["import_path"] == "deployments.app:build_app"]
    (ingress,) = [d for d in app.get("deployments", []) if d["name"] == "Ingress"]
    user_config = ingress.get("user_config") or {}
    args = app.get("args") or {}
    rate = float(args.get("rate_limit_per_minute", 6000.0))  # AppArgs' defaults
    warm = int(args.get("velocity_warm_users", 20000))
    return dict(user_config.get("policy") or {}), dict(user_config.get("batch") or {}), rate, warm


def build(serve_config: Path) -> Any:
    """The FastAPI app with its service, graph, key store and rate limiter installed."""
    from vigil.decision.local_graph import LocalGraph
    from vigil.decision.policy import DecisionPolicy
    from vigil.events.bus import create_event_bus
    from vigil.gateway.api import create_api, install_service
    from vigil.gateway.auth import install_key_store, load_key_store
    from vigil.gateway.ratelimit import InMemoryRateLimiter, RateLimit, install_rate_limiter
    from vigil.infra.heap import settle_heap
    from vigil.models.registry import load_champion
    from vigil.service import VigilService
    from vigil.settings import get_settings

    settings = get_settings()
    database_url = settings.effective_database_url
    tracking_uri = settings.tracking_uri
    policy, batch, rate, warm = ingress_settings(serve_config)
    api = create_api()
    service = VigilService(database_url)
    graph = LocalGraph(
        database_url,
        supervised=load_champion("fraud-supervised", tracking_uri=tracking_uri),
        anomaly=load_champion("fraud-anomaly", tracking_uri=tracking_uri),
    )
    service.attach_screening(
        graph,
        DecisionPolicy.from_config(policy),
        create_event_bus(settings.redis_url),
        **{
            k: batch[k]
            for k in ("max_batch", "max_wait_s", "max_concurrency", "max_queue", "overlap_at")
            if k in batch
        },
    )
    install_service(api, service)
    install_key_store(api, load_key_store(settings.home.resolve()).store)
    install_rate_limiter(api, InMemoryRateLimiter(RateLimit.per_minute(rate)))

    async def _warm() -> None:  # as the graph's Ingress does before it is ready
        service.start_background()
        await graph.shard.warm(warm)
        settle_heap("baseline")  # as each of the graph's processes does once it has loaded

    async def _close() -> None:
        await service.close()

    api.router.on_startup.append(_warm)
    api.router.on_shutdown.append(_close)
    return api


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8100)
    ap.add_argument("--serve-config", type=Path, default=ROOT / "ray_config.yaml")
    args = ap.parse_args()
    import uvicorn

    logging.basicConfig(level=logging.WARNING)
    uvicorn.run(
        build(args.serve_config), host=args.host, port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
