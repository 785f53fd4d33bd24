"""The Serve ingress: the FastAPI app of :mod:`vigil.gateway.api` on a Serve deployment.

Thin on purpose: ``__init__`` builds the service (never at import), attaches the Ray scoring
graph (one call per micro-batch to ``RuleScreen``, which calls the velocity shard actors and
the scorer deployments; the shard handles stay here for KYC risk and labels) and the gateway
concerns (API keys, rate limits, event bus); everything else lives in ``vigil``. ``user_config``
carries the decision thresholds and the micro-batch settings, applied by ``reconfigure`` without
a redeploy.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError

from actors.velocity import get_or_create_shards, warm_shards
from deployments.graph import ServeGraph
from kyc.config import default_model_dir
from kyc.errors import InvalidImage, ModelsUnavailable
from kyc.models import check_model_files
from vigil.db.models import FraudLabel, Transaction
from vigil.decision.policy import DecisionPolicy
from vigil.errors import InvalidRequest, ServiceUnavailable
from vigil.events.bus import create_event_bus
from vigil.features.events import LabelEvent
from vigil.gateway.api import create_api, install_service
from vigil.gateway.auth import install_key_store, load_key_store
from vigil.gateway.ratelimit import InMemoryRateLimiter, RateLimit, RedisRateLimiter, install_rate_limiter
from vigil.infra.heap import raise_young_threshold
from vigil.service import VigilService

api = create_api()

#: What a Serve handle call raises when the replica died or became unreachable mid-call (the
#: request may or may not have run there). Serve replaces the replica; the caller decides.
REPLICA_GONE = (ActorUnavailableError, RayActorError)


def check_kyc_models(service: VigilService, model_dir: Path) -> None:
    """The KYC verifier refuses to start without its models; mark KYC unready with the reason, so
    ``/readyz`` says why and submissions get a 503 naming it instead of waiting for a verifier
    that never comes."""
    try:
        check_model_files(model_dir)
    except ModelsUnavailable as exc:
        service.unready["kyc"] = str(exc)


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress:
    def __init__(
        self,
        database_url: str,
        redis_url: str | None,
        home: str,
        velocity_shards: int,
        rules: Any,
        rate_limit_per_minute: float = 6000.0,
        kyc: Any = None,
        warm_users: int = 0,
        monitor: Any = None,
    ) -> None:
        self.monitor = monitor  # held only so that Serve deploys it: it never sees a request
        self.service = VigilService(database_url)
        self.shards = get_or_create_shards(velocity_shards, database_url)
        warm_shards(self.shards, warm_users)
        self.graph = ServeGraph(self.shards, rules)
        self.service.attach_screening(self.graph, DecisionPolicy(), create_event_bus(redis_url))
        self.service.label_listeners.append(self._on_label)
        if kyc is not None:
            self.kyc = kyc
            self.service.attach_kyc(self._verify_kyc)
            check_kyc_models(self.service, default_model_dir())
        install_service(api, self.service)
        install_key_store(api, load_key_store(Path(home)).store)
        limit = RateLimit.per_minute(rate_limit_per_minute)
        if redis_url:
            import redis.asyncio as aioredis

            install_rate_limiter(api, RedisRateLimiter(aioredis.Redis.from_url(redis_url), limit))
        else:
            install_rate_limiter(api, InMemoryRateLimiter(limit))
        raise_young_threshold()  # Serve collects and freezes the heap once this returns

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config``: ``{policy: {anomaly_review: 0.995, ...}, batch: {max_batch: 64, ...}}``."""
        self.service.configure_screening(
            DecisionPolicy.from_config(config.get("policy")), **(config.get("batch") or {})
        )

    async def _verify_kyc(self, selfie_frames: list[bytes], document: bytes, today: date) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await self.kyc.verify.remote(selfie_frames, document, today)
        except InvalidImage as exc:  # Serve re-raises the replica's exception as its own type
            field, reason = getattr(exc, "field", "image"), getattr(exc, "reason", str(exc))
            raise InvalidRequest(f"{field}: {reason}") from None
        except REPLICA_GONE:
            # Nothing is stored before the verification: the client's retry is safe, so a
            # KycVerifier that died mid-submission is a 503 to retry, never a 500.
            error = ServiceUnavailable("KYC verification is restarting: retry shortly")
            error.headers = {"Retry-After": "5"}
            raise error from None
        return result

    async def _on_label(self, label: FraudLabel, tx: Transaction) -> None:
        event = LabelEvent(
            transaction_id=label.transaction_id,
            is_fraud=label.is_fraud,
            labeled_at=label.labeled_at,
            transaction_created_at=tx.created_at,
            merchant_id=tx.merchant_id,
            device_id=tx.device_id,
            ip=tx.ip,
            user_id=tx.user_id,
        )
        for shard in self.shards:
            await shard.add_label.remote(event)
