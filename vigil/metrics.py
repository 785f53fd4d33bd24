"""Prometheus metrics of the screening path (prometheus-client, one registry per process).

Each ingress replica (or baseline process) exposes its own at ``/metrics``; Prometheus sums over
replicas. Ray Serve's built-in ``ray_serve_*`` metrics (per-deployment request counts, latency,
batch sizes) come from Ray's metrics export port, next to these. The review-queue size is
``sum(vigil_review_cases_created_total) - sum(vigil_review_cases_resolved_total)``: counters add up
across replicas where a per-replica gauge would not.
"""

from __future__ import annotations

import gc
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
_SCORE_BUCKETS = tuple(i / 20 for i in range(1, 21))

DECISIONS = Counter(
    "vigil_decisions_total", "Screened transactions by outcome.", ["outcome"], registry=REGISTRY
)
REPLAYS = Counter(
    "vigil_idempotent_replays_total", "Retries answered from the stored decision.", registry=REGISTRY
)
REJECTED = Counter(
    "vigil_rejected_total",
    "Transactions refused (a 4xx, or 503 overloaded), by error code.",
    ["code"],
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "vigil_http_request_seconds",
    "Time from a request reaching the app to its last byte sent, by method, route template and "
    "status class (2xx, 4xx, 5xx). Compare with a client's figure: the difference is time spent "
    "before the app (the HTTP server, Serve's queue).",
    ["method", "route", "status"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
SCREEN_PATH = Counter(
    "vigil_screen_requests_total",
    "POST /v1/transactions requests by who answered them: fast_path (well-formed: answered by "
    "vigil.gateway.api.ScreenFastPath) or route (handed to the FastAPI route: errors, other content types).",
    ["answered_by"],
    registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    "vigil_stage_seconds",
    "Time per screening stage and batch (lookup, graph, persist, publish, total; on Ray the graph "
    "stage is the Ingress's call to RuleScreen, which reports its own two parts: features, the "
    "velocity shard actors, and scorers, the rules while both scorer deployments run).",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "vigil_batch_size",
    "Transactions per micro-batch.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    registry=REGISTRY,
)
FRAUD_SCORE = Histogram(
    "vigil_fraud_score",
    "Supervised p(fraud) of screened transactions.",
    buckets=_SCORE_BUCKETS,
    registry=REGISTRY,
)
ANOMALY_SCORE = Histogram(
    "vigil_anomaly_score",
    "Anomaly score (0-1) of screened transactions.",
    buckets=_SCORE_BUCKETS,
    registry=REGISTRY,
)
RULE_HITS = Counter(
    "vigil_rule_hits_total",
    "Rules that fired, by rule id, outcome and mode.",
    ["rule_id", "outcome", "mode"],
    registry=REGISTRY,
)
SCORER_UNAVAILABLE = Counter(
    "vigil_scorer_unavailable_total",
    "Batches decided without a scorer's scores (supervised, anomaly): the scorer missed its deadline, "
    "failed, or is not loaded (vigil.decision.circuit).",
    ["scorer"],
    registry=REGISTRY,
)
for _scorer in ("supervised", "anomaly"):  # both series exist from the start: rate() and alerts see 0
    SCORER_UNAVAILABLE.labels(_scorer)
GRAPH_FAILED = Counter(
    "vigil_graph_failures_total",
    "Batches answered 503 because the scoring graph failed (a velocity shard or RuleScreen died "
    "mid-call): nothing stored, the clients retry with the same idempotency keys.",
    registry=REGISTRY,
)
REVIEW_CREATED = Counter("vigil_review_cases_created_total", "Review cases opened.", registry=REGISTRY)
REVIEW_RESOLVED = Counter(
    "vigil_review_cases_resolved_total",
    "Review cases resolved, by verdict.",
    ["resolution"],
    registry=REGISTRY,
)
DB_CHECKPOINT_SECONDS = Histogram(
    "vigil_db_checkpoint_seconds",
    "Background SQLite WAL checkpoints (vigil.db.engine.WalCheckpointer), off the write path.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
EVENTS_FAILED = Counter(
    "vigil_event_publish_failures_total",
    "Events whose publishing failed (their outbox row stays: a relay publishes them later).",
    registry=REGISTRY,
)
EVENTS_REPUBLISHED = Counter(
    "vigil_events_republished_total",
    "Events published by the outbox relay (their first attempt failed or never happened).",
    registry=REGISTRY,
)
OUTBOX_ROWS = Gauge(
    "vigil_event_outbox_rows",
    "Outbox rows (screened batches whose events are not yet known to be published), as the "
    "relay last counted them.",
    registry=REGISTRY,
)

GC_PAUSE_SECONDS = Histogram(
    "vigil_gc_pause_seconds",
    "Python garbage-collector pauses of this process, by generation (the whole process stops, "
    "so every request in flight waits this long).",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.1, 0.25),
    registry=REGISTRY,
)
_gc_started: list[float] = []


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started.append(time.perf_counter())
    elif _gc_started:
        GC_PAUSE_SECONDS.labels(str(info.get("generation", "?"))).observe(
            time.perf_counter() - _gc_started.pop()
        )


def track_gc_pauses() -> None:
    """Record every collection's pause in :data:`GC_PAUSE_SECONDS` (once per process)."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


def render_metrics() -> bytes:
    return generate_latest(REGISTRY)
