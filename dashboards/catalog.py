"""Every metric the rules and dashboards read, by who exports it.

- ``VIGIL``: the serving processes' own series (vigil/metrics.py), at each Ingress replica's
  ``/metrics``. tests/unit/test_dashboards.py checks this list against that module.
- ``MONITOR``: what the monitor exports (deployments/monitor.py, on its own loopback port). The
  alerts in rules/alerts-model.yml and the model, drift, business and KYC panels read them, so
  these names and labels are a contract: the test checks each against vigil/monitoring/metrics.py.
- ``RAY``: Ray Serve's built-in series from Ray's metrics export (Ray prefixes ``ray_``; counters
  end in ``_total``). The test finds each name in the installed Ray's source.

``name`` is what PromQL selects: a counter's ``..._total``, a histogram's base name (its series
end in ``_bucket``, ``_sum``, ``_count``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]
Source = Literal["vigil", "monitor", "ray"]


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str
    source: Source


def _vigil(name: str, kind: Kind, labels: tuple[str, ...], help: str) -> Metric:
    return Metric(name, kind, labels, help, "vigil")


def _monitor(name: str, kind: Kind, labels: tuple[str, ...], help: str) -> Metric:
    return Metric(name, kind, labels, help, "monitor")


def _ray(name: str, kind: Kind, labels: tuple[str, ...], help: str) -> Metric:
    return Metric(name, kind, labels, help, "ray")


VIGIL: tuple[Metric, ...] = (
    _vigil("vigil_decisions_total", "counter", ("outcome",), "Screened transactions by outcome."),
    _vigil("vigil_idempotent_replays_total", "counter", (), "Retries answered from the stored decision."),
    _vigil("vigil_rejected_total", "counter", ("code",), "Transactions refused, by error code."),
    _vigil(
        "vigil_http_request_seconds",
        "histogram",
        ("method", "route", "status"),
        "Request time in the app, by method, route template and status class.",
    ),
    _vigil("vigil_screen_requests_total", "counter", ("answered_by",), "Screening requests by who answered."),
    _vigil("vigil_stage_seconds", "histogram", ("stage",), "Time per screening stage and batch."),
    _vigil("vigil_batch_size", "histogram", (), "Transactions per micro-batch."),
    _vigil("vigil_fraud_score", "histogram", (), "Supervised p(fraud) of screened transactions."),
    _vigil("vigil_anomaly_score", "histogram", (), "Anomaly score (0-1) of screened transactions."),
    _vigil("vigil_rule_hits_total", "counter", ("rule_id", "outcome", "mode"), "Rules that fired."),
    _vigil(
        "vigil_scorer_unavailable_total", "counter", ("scorer",), "Batches decided without a scorer's scores."
    ),
    _vigil("vigil_graph_failures_total", "counter", (), "Batches answered 503 because the graph failed."),
    _vigil("vigil_review_cases_created_total", "counter", (), "Review cases opened."),
    _vigil("vigil_review_cases_resolved_total", "counter", ("resolution",), "Review cases resolved."),
    _vigil("vigil_db_checkpoint_seconds", "histogram", (), "Background SQLite WAL checkpoints."),
    _vigil("vigil_event_publish_failures_total", "counter", (), "Events whose publishing failed."),
    _vigil("vigil_events_republished_total", "counter", (), "Events published by the outbox relay."),
    _vigil("vigil_event_outbox_rows", "gauge", (), "Outbox rows as the relay last counted them."),
    _vigil("vigil_gc_pause_seconds", "histogram", ("generation",), "Python garbage-collector pauses."),
)

MONITOR: tuple[Metric, ...] = (
    _monitor(
        "vigil_feature_psi",
        "gauge",
        ("model", "version", "feature", "window"),
        "Population stability index of the feature over the window against the reference bins "
        "frozen at training time and stored with the model.",
    ),
    _monitor(
        "vigil_feature_ks",
        "gauge",
        ("model", "version", "feature", "window"),
        "Kolmogorov-Smirnov statistic of a continuous feature over the window against its reference.",
    ),
    _monitor(
        "vigil_score_psi",
        "gauge",
        ("model", "version", "window"),
        "Population stability index of the model's scores over the window against its evaluation scores.",
    ),
    _monitor(
        "vigil_model_precision",
        "gauge",
        ("model", "version", "window"),
        "Precision at the deployed thresholds on the label-matured window.",
    ),
    _monitor(
        "vigil_model_recall",
        "gauge",
        ("model", "version", "window"),
        "Recall at the deployed thresholds on the label-matured window.",
    ),
    _monitor("vigil_model_f1", "gauge", ("model", "version", "window"), "F1 at the deployed thresholds."),
    _monitor("vigil_model_roc_auc", "gauge", ("model", "version", "window"), "ROC-AUC of the fraud score."),
    _monitor("vigil_model_pr_auc", "gauge", ("model", "version", "window"), "PR-AUC of the fraud score."),
    _monitor(
        "vigil_model_labelled_fraction",
        "gauge",
        ("model", "version", "window"),
        "Share (0-1) of the window's screened transactions that have a label yet.",
    ),
    _monitor(
        "vigil_model_evaluation_precision",
        "gauge",
        ("model", "version"),
        "Precision in the model's own evaluation report (the registry), the concept-drift reference.",
    ),
    _monitor(
        "vigil_model_evaluation_recall",
        "gauge",
        ("model", "version"),
        "Recall in the model's own evaluation report (the registry), the concept-drift reference.",
    ),
    _monitor(
        "vigil_labels_received_total", "counter", (), "Fraud labels stored (chargebacks, analyst verdicts)."
    ),
    _monitor("vigil_review_queue_cases", "gauge", (), "Open review cases in the database."),
    _monitor(
        "vigil_review_queue_oldest_age_seconds",
        "gauge",
        (),
        "Age of the oldest open review case, in seconds.",
    ),
    _monitor(
        "vigil_review_turnaround_seconds",
        "gauge",
        ("quantile", "window"),
        "Time from a case's opening to its resolution, by quantile (0.5, 0.9), over the window.",
    ),
    _monitor(
        "vigil_fraud_caught_transactions",
        "gauge",
        ("window",),
        "Confirmed-fraud transactions of the window that were blocked or sent to review.",
    ),
    _monitor(
        "vigil_fraud_caught_amount",
        "gauge",
        ("window", "currency"),
        "Their summed amount, per currency.",
    ),
    _monitor(
        "vigil_false_positive_rate",
        "gauge",
        ("window",),
        "Share (0-1) of the window's legitimate transactions that were blocked or sent to review.",
    ),
    _monitor(
        "vigil_outcome_share",
        "gauge",
        ("outcome", "window"),
        "Share (0-1) of the window's decisions by outcome (approve, review, block), from the database.",
    ),
    _monitor(
        "vigil_kyc_outcome_share",
        "gauge",
        ("outcome", "window"),
        "Share (0-1) of the window's KYC submissions by outcome.",
    ),
    _monitor(
        "vigil_monitor_computed_timestamp_seconds",
        "gauge",
        (),
        "When the exported figures were computed (Unix time).",
    ),
    _monitor(
        "vigil_kyc_submissions",
        "gauge",
        ("outcome", "window"),
        "KYC submissions of the window by outcome (approved, review, rejected).",
    ),
)

RAY: tuple[Metric, ...] = (
    _ray(
        "ray_serve_deployment_processing_latency_ms",
        "histogram",
        ("application", "deployment", "replica", "route"),
        "Time a replica took to process a request, in milliseconds.",
    ),
    _ray(
        "ray_serve_deployment_request_counter_total",
        "counter",
        ("application", "deployment", "replica", "route"),
        "Requests a replica processed.",
    ),
    _ray(
        "ray_serve_deployment_error_counter_total",
        "counter",
        ("application", "deployment", "replica", "route", "exception_type"),
        "Requests a replica failed.",
    ),
    _ray(
        "ray_serve_deployment_replica_healthy",
        "gauge",
        ("application", "deployment", "replica"),
        "1 for each healthy replica.",
    ),
    _ray(
        "ray_serve_deployment_queued_queries",
        "gauge",
        ("application", "deployment", "handle", "actor_id"),
        "Requests waiting at a deployment handle for a replica.",
    ),
    _ray(
        "ray_serve_replica_processing_queries",
        "gauge",
        ("application", "deployment", "replica"),
        "Requests a replica is processing.",
    ),
    _ray(
        "ray_serve_actual_batch_size",
        "histogram",
        ("application", "deployment", "replica", "function_name"),
        "Requests per @serve.batch call.",
    ),
    _ray(
        "ray_serve_batch_queue_length",
        "gauge",
        ("application", "deployment", "replica", "function_name"),
        "Requests waiting in a @serve.batch queue.",
    ),
)

ALL: dict[str, Metric] = {m.name: m for m in (*VIGIL, *MONITOR, *RAY)}
