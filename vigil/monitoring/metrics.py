"""What the monitor exports: one definition per series (name, kind, labels, meaning).

These names and labels are a contract: the alert rules and dashboards in ``dashboards/`` select
them (``dashboards/catalog.py`` lists the ones they read). A counter's name here is its family
name; Prometheus shows it with ``_total``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: Literal["gauge", "counter"]
    labels: tuple[str, ...]
    help: str


_MVW = ("model", "version", "window")

DEFINITIONS: tuple[MetricDef, ...] = (
    MetricDef(
        "vigil_model_precision",
        "gauge",
        _MVW,
        "Precision (0-1) at the deployed thresholds (review or block = alert) on the label-matured window.",
    ),
    MetricDef("vigil_model_recall", "gauge", _MVW, "Recall (0-1) at the deployed thresholds, label-matured."),
    MetricDef("vigil_model_f1", "gauge", _MVW, "F1 at the deployed thresholds, label-matured window."),
    MetricDef(
        "vigil_model_roc_auc", "gauge", _MVW, "ROC-AUC of the stored fraud score, label-matured window."
    ),
    MetricDef(
        "vigil_model_pr_auc",
        "gauge",
        _MVW,
        "PR-AUC (average precision) of the stored fraud score, label-matured window.",
    ),
    MetricDef(
        "vigil_model_labelled_fraction",
        "gauge",
        _MVW,
        "Share (0-1) of the window's screened transactions that have a label yet.",
    ),
    MetricDef(
        "vigil_model_window_transactions",
        "gauge",
        _MVW,
        "Screened transactions in the label-matured window, labelled or not.",
    ),
    MetricDef(
        "vigil_model_evaluation_precision",
        "gauge",
        ("model", "version"),
        "Precision at the review threshold in the model's own evaluation report (the registry).",
    ),
    MetricDef(
        "vigil_model_evaluation_recall",
        "gauge",
        ("model", "version"),
        "Recall at the review threshold in the model's own evaluation report (the registry).",
    ),
    MetricDef(
        "vigil_feature_psi",
        "gauge",
        ("model", "version", "feature", "window"),
        "Population stability index of the feature over the window against its reference bins.",
    ),
    MetricDef(
        "vigil_feature_ks",
        "gauge",
        ("model", "version", "feature", "window"),
        "Kolmogorov-Smirnov statistic of a numeric feature (binned) against its reference bins.",
    ),
    MetricDef(
        "vigil_score_psi",
        "gauge",
        _MVW,
        "Population stability index of the model's fraud scores over the window against the reference.",
    ),
    MetricDef("vigil_labels_received", "counter", (), "Fraud labels stored (chargebacks, analyst verdicts)."),
    MetricDef("vigil_review_queue_cases", "gauge", (), "Review cases not resolved yet (open or claimed)."),
    MetricDef(
        "vigil_review_queue_oldest_age_seconds",
        "gauge",
        (),
        "Age of the oldest unresolved review case, in seconds (0 when none).",
    ),
    MetricDef(
        "vigil_review_turnaround_seconds",
        "gauge",
        ("quantile", "window"),
        "Time from a case's opening to its resolution, by quantile, over cases resolved in the window.",
    ),
    MetricDef(
        "vigil_fraud_caught_transactions",
        "gauge",
        ("window",),
        "Labelled-fraud transactions decided in the window that were blocked or sent to review.",
    ),
    MetricDef(
        "vigil_fraud_caught_amount",
        "gauge",
        ("window", "currency"),
        "Their summed amount, per currency.",
    ),
    MetricDef(
        "vigil_false_positive_rate",
        "gauge",
        ("window",),
        "Share (0-1) of the window's labelled-legitimate transactions that were blocked or reviewed.",
    ),
    MetricDef(
        "vigil_outcome_share",
        "gauge",
        ("outcome", "window"),
        "Share (0-1) of the window's decisions by outcome (approve, review, block).",
    ),
    MetricDef(
        "vigil_kyc_submissions",
        "gauge",
        ("outcome", "window"),
        "KYC submissions of the window by outcome (approved, review, rejected).",
    ),
    MetricDef(
        "vigil_kyc_outcome_share",
        "gauge",
        ("outcome", "window"),
        "Share (0-1) of the window's KYC submissions by outcome.",
    ),
    MetricDef(
        "vigil_monitor_computed_timestamp_seconds",
        "gauge",
        (),
        "When the figures exported now were computed (Unix time).",
    ),
)

BY_NAME: dict[str, MetricDef] = {d.name: d for d in DEFINITIONS}
