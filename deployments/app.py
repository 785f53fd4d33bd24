"""``build_app(args)``: the one typed composition of Vigil's Serve application.

``ray_config.yaml`` names ``deployments.app:build_app`` as its import path; ``vigil up`` deploys
it (``serve run`` / ``serve deploy`` accept the same file). Arguments not given in the config come from
the environment (:class:`vigil.settings.Settings`), read when the app is built, not at import.
(No ``from __future__ import annotations`` here: Serve reads the ``AppArgs`` annotation at run time.)

    Ingress ─┬─► RuleScreen: one call per micro-batch ─┬─► VelocityShard actors (read, then learn)
             │                                           ├─► SupervisedScorer ┐ concurrently, while
             │                                           └─► AnomalyScorer    ┘ the rules run
             ├─► VelocityShard actors (KYC risk, labels)
             └─► KycVerifier (POST /v1/kyc/submissions; own replica, 2 requests at a time)
"""

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from deployments.graph import AnomalyScorer, RuleScreen, SupervisedScorer
from deployments.ingress import Ingress
from deployments.kyc import KycVerifier
from deployments.monitor import DEFAULT_PORT, MonitorDeployment
from vigil.settings import get_settings


class AppArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database_url: str | None = None
    redis_url: str | None = None
    tracking_uri: str | None = None
    supervised_model: str = "fraud-supervised"
    anomaly_model: str = "fraud-anomaly"
    velocity_shards: int = Field(default=2, ge=1, le=256)
    velocity_warm_users: int = Field(
        default=20000,
        ge=0,
        description="Most recently active users the shards load before the Ingress is ready (in "
        "all; 0 = load each user on first use). Each warm user costs start-up time (a replay of "
        "its stored history) and shard memory; size it to the users active in the last hours "
        "(docs/serving.md).",
    )
    rate_limit_per_minute: float = Field(default=6000.0, gt=0)
    kyc: bool = Field(default=True, description="Deploy the KYC verifier (its own replica).")
    monitor: bool = Field(
        default=True,
        description="Deploy the monitor (deployments/monitor.py): model performance, drift and business "
        "KPIs from the database, for Prometheus on 127.0.0.1:monitor_port. Off the request path.",
    )
    monitor_port: int = Field(default=DEFAULT_PORT, ge=0, le=65535, description="0: no HTTP endpoint.")
    monitor_every_s: float = Field(default=60.0, gt=0)


def build_app(args: AppArgs) -> Application:
    settings = get_settings()
    database_url = args.database_url or settings.effective_database_url
    tracking_uri = args.tracking_uri or settings.tracking_uri
    supervised = SupervisedScorer.bind(args.supervised_model, tracking_uri)  # type: ignore[attr-defined]
    anomaly = AnomalyScorer.bind(args.anomaly_model, tracking_uri)  # type: ignore[attr-defined]
    rules = RuleScreen.bind(database_url, supervised, anomaly, args.velocity_shards)  # type: ignore[attr-defined]
    return Ingress.bind(  # type: ignore[attr-defined]
        database_url,
        args.redis_url or settings.redis_url,
        str(settings.home.resolve()),
        args.velocity_shards,
        rules,
        args.rate_limit_per_minute,
        KycVerifier.bind() if args.kyc else None,  # type: ignore[attr-defined]
        args.velocity_warm_users,
        monitor=(
            MonitorDeployment.bind(database_url, tracking_uri, args.monitor_every_s, args.monitor_port)  # type: ignore[attr-defined]
            if args.monitor
            else None
        ),
    )
