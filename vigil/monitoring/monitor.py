"""The monitor's computation: model performance, data drift and business KPIs from the database.

:func:`load_frames` reads the rows (async session, a handful of SELECTs); :func:`compute` turns
them into a :class:`Snapshot` of samples (pure pandas and NumPy, no I/O). Figures come from the
stored rows only, so they survive restarts and an analyst recomputes them from the same tables.

Windows (``now`` is the evaluation time, UTC; every window is half-open on the left, ``(start, end]``):

- performance, per model version (``decisions.model_version``, ``name:version``; ``none`` when
  the decision had no model score): transactions with ``created_at`` in
  ``(now - label_delay - w, now - label_delay]`` (label-matured), labels with ``labeled_at <= now``.
  Alert = outcome ``review`` or ``block`` (the deployed thresholds as they were applied).
- drift and business KPIs: decisions with ``decided_at`` in ``(now - w, now]`` (what the model
  scored in the window, replays included); review turnaround by ``resolved_at``; KYC by
  ``created_at``.
- drift reference: the model version's reference bins from the registry when given, else bins
  fitted on the transactions (and their stored scores) with ``created_at`` in
  ``config.reference_window`` (default the seven days ending one day before ``now``).

Drift features are those recomputable from stored rows (decisions do not store the feature
vector): ``amount``, ``hour_utc`` and ``channel_code`` (named as the model's features) and the
transaction ``country``, plus the fraud score (``vigil_score_psi``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from vigil.db.models import Decision, FraudLabel, KycSubmission, ReviewCase, Transaction
from vigil.features.spec import CHANNEL_CODES
from vigil.monitoring.drift import ReferenceProfile, reference_profile

ALERT_OUTCOMES = frozenset({"review", "block"})
OUTCOMES = ("approve", "review", "block")
KYC_OUTCOMES = ("approved", "review", "rejected")
NUMERIC_FEATURES = ("amount", "hour_utc")
CATEGORICAL_FEATURES = ("channel_code", "country")
TURNAROUND_QUANTILES = (0.5, 0.9)

log = logging.getLogger("vigil.monitoring")


@dataclass(frozen=True)
class MonitorConfig:
    """Windows by name (the ``window`` label), the label delay and the drift settings."""

    label_delay: timedelta = timedelta(days=14)
    performance_windows: Mapping[str, timedelta] = field(
        default_factory=lambda: {"7d": timedelta(days=7), "30d": timedelta(days=30)}
    )
    drift_windows: Mapping[str, timedelta] = field(
        default_factory=lambda: {"1h": timedelta(hours=1), "24h": timedelta(hours=24)}
    )
    business_windows: Mapping[str, timedelta] = field(
        default_factory=lambda: {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
    )
    #: ``(start, end)`` of the fallback drift reference, or ``None`` for (now - 8 days, now - 1 day].
    reference_window: tuple[datetime, datetime] | None = None
    reference_bins: int = 10
    #: A drift figure needs at least this many rows in the window (fewer is noise).
    drift_min_rows: int = 50

    def reference_span(self, now: datetime) -> tuple[datetime, datetime]:
        if self.reference_window is not None:
            return self.reference_window
        return now - timedelta(days=8), now - timedelta(days=1)


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass
class Snapshot:
    """Everything the monitor exports, computed at ``computed_at``."""

    computed_at: datetime
    samples: list[Sample] = field(default_factory=list)

    def add(self, name: str, value: float, **labels: str) -> None:
        self.samples.append(Sample(name, tuple(labels.items()), float(value)))

    def get(self, name: str, **labels: str) -> float | None:
        """The value of one series (labels given exactly), or ``None`` when it was not exported."""
        want = dict(labels)
        for s in self.samples:
            if s.name == name and dict(s.labels) == want:
                return s.value
        return None


@dataclass
class Frames:
    """The rows :func:`compute` reads, as DataFrames (timestamps tz-aware UTC, amounts float)."""

    now: datetime
    performance: pd.DataFrame
    recent: pd.DataFrame
    reference: pd.DataFrame
    review_open: pd.DataFrame
    review_resolved: pd.DataFrame
    kyc: pd.DataFrame
    labels_received: int


def split_model_version(value: Any) -> tuple[str, str]:
    """``"fraud-supervised:3"`` -> ``("fraud-supervised", "3")``; no model -> ``("none", "none")``."""
    if not isinstance(value, str) or not value:
        return "none", "none"
    name, sep, version = value.rpartition(":")
    return (name, version) if sep and name else (value, "unknown")


async def _frame(session: AsyncSession, query: Any, columns: list[str]) -> pd.DataFrame:
    rows = (await session.execute(query)).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def _utc(frame: pd.DataFrame, *columns: str) -> None:
    for c in columns:
        frame[c] = pd.to_datetime(frame[c], utc=True)


def _table(model: type) -> sa.Table:
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]


async def load_frames(session: AsyncSession, *, now: datetime, config: MonitorConfig) -> Frames:
    """Read the rows every figure of :func:`compute` needs (nothing else; no writes)."""
    d, t, lab = _table(Decision), _table(Transaction), _table(FraudLabel)
    label_join = sa.and_(lab.c.transaction_id == t.c.transaction_id, lab.c.labeled_at <= now)
    matured_end = now - config.label_delay
    matured_start = matured_end - max(config.performance_windows.values(), default=timedelta(0))
    perf = await _frame(
        session,
        sa.select(d.c.model_version, d.c.outcome, d.c.fraud_score, t.c.created_at, lab.c.is_fraud)
        .join(t, t.c.transaction_id == d.c.transaction_id)
        .outerjoin(lab, label_join)
        .where(t.c.created_at > matured_start, t.c.created_at <= matured_end),
        ["model_version", "outcome", "fraud_score", "created_at", "is_fraud"],
    )
    recent_span = max([*config.drift_windows.values(), *config.business_windows.values()])
    recent = await _frame(
        session,
        sa.select(
            d.c.model_version,
            d.c.outcome,
            d.c.fraud_score,
            d.c.decided_at,
            t.c.created_at,
            t.c.amount,
            t.c.currency,
            t.c.channel,
            t.c.country,
            lab.c.is_fraud,
        )
        .join(t, t.c.transaction_id == d.c.transaction_id)
        .outerjoin(lab, label_join)
        .where(d.c.decided_at > now - recent_span, d.c.decided_at <= now),
        [
            "model_version",
            "outcome",
            "fraud_score",
            "decided_at",
            "created_at",
            "amount",
            "currency",
            "channel",
            "country",
            "is_fraud",
        ],
    )
    ref_start, ref_end = config.reference_span(now)
    reference = await _frame(
        session,
        sa.select(t.c.created_at, t.c.amount, t.c.channel, t.c.country, d.c.fraud_score)
        .outerjoin(d, d.c.transaction_id == t.c.transaction_id)
        .where(t.c.created_at > ref_start, t.c.created_at <= ref_end),
        ["created_at", "amount", "channel", "country", "fraud_score"],
    )
    r = _table(ReviewCase)
    review_open = await _frame(
        session,
        sa.select(r.c.created_at).where(r.c.status != "resolved", r.c.created_at <= now),
        ["created_at"],
    )
    business_span = max(config.business_windows.values())
    review_resolved = await _frame(
        session,
        sa.select(r.c.created_at, r.c.resolved_at).where(
            r.c.status == "resolved",
            r.c.resolved_at > now - business_span,
            r.c.resolved_at <= now,
        ),
        ["created_at", "resolved_at"],
    )
    k = _table(KycSubmission)
    kyc = await _frame(
        session,
        sa.select(k.c.status, k.c.created_at).where(
            k.c.created_at > now - business_span,
            k.c.created_at <= now,
        ),
        ["status", "created_at"],
    )
    labels_received = int(
        (
            await session.execute(sa.select(sa.func.count()).select_from(lab).where(lab.c.labeled_at <= now))
        ).scalar_one()
    )
    for frame, columns in (
        (perf, ("created_at",)),
        (recent, ("decided_at", "created_at")),
        (reference, ("created_at",)),
        (review_open, ("created_at",)),
        (review_resolved, ("created_at", "resolved_at")),
        (kyc, ("created_at",)),
    ):
        _utc(frame, *columns)
    for frame in (recent, reference):
        frame["amount"] = frame["amount"].astype(float)
        frame["hour_utc"] = frame["created_at"].dt.hour.astype(float)
        frame["channel_code"] = frame["channel"].map(CHANNEL_CODES)
    return Frames(now, perf, recent, reference, review_open, review_resolved, kyc, labels_received)


def _with_model(frame: pd.DataFrame) -> pd.DataFrame:
    parts = [split_model_version(v) for v in frame["model_version"]]
    return frame.assign(model=[p[0] for p in parts], version=[p[1] for p in parts])


def _performance(out: Snapshot, frames: Frames, config: MonitorConfig) -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    df = _with_model(frames.performance)
    end = frames.now - config.label_delay
    for window, span in config.performance_windows.items():
        in_window = df[(df["created_at"] > end - span) & (df["created_at"] <= end)]
        for (model, version), g in in_window.groupby(["model", "version"], sort=True):
            labels = {"model": str(model), "version": str(version), "window": window}
            labelled = g[g["is_fraud"].notna()]
            out.add("vigil_model_window_transactions", len(g), **labels)
            out.add("vigil_model_labelled_fraction", len(labelled) / len(g), **labels)
            y = labelled["is_fraud"].astype(bool).to_numpy()
            alert = labelled["outcome"].isin(ALERT_OUTCOMES).to_numpy()
            tp, fp, fn = int((alert & y).sum()), int((alert & ~y).sum()), int((~alert & y).sum())
            precision = tp / (tp + fp) if tp + fp else None
            recall = tp / (tp + fn) if tp + fn else None
            if precision is not None:
                out.add("vigil_model_precision", precision, **labels)
            if recall is not None:
                out.add("vigil_model_recall", recall, **labels)
            if precision is not None and recall is not None:
                f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
                out.add("vigil_model_f1", f1, **labels)
            scored = labelled[labelled["fraud_score"].notna()]
            ys = scored["is_fraud"].astype(bool).to_numpy()
            if 0 < ys.sum() < len(ys):
                scores = scored["fraud_score"].astype(float).to_numpy()
                out.add("vigil_model_roc_auc", float(roc_auc_score(ys, scores)), **labels)
                out.add("vigil_model_pr_auc", float(average_precision_score(ys, scores)), **labels)


def fallback_reference(frames: Frames, config: MonitorConfig) -> ReferenceProfile:
    """Reference bins fitted on the reference window's stored transactions and scores."""
    start, end = config.reference_span(frames.now)
    return reference_profile(
        frames.reference,
        numeric=(*NUMERIC_FEATURES, ReferenceProfile.SCORE),
        categorical=CATEGORICAL_FEATURES,
        n_bins=config.reference_bins,
        source=f"stored transactions created in ({start.isoformat()}, {end.isoformat()}]",
    )


def _drift(
    out: Snapshot,
    frames: Frames,
    config: MonitorConfig,
    references: Mapping[tuple[str, str], ReferenceProfile],
) -> None:
    df = _with_model(frames.recent)
    fallback: ReferenceProfile | None = None
    for window, span in config.drift_windows.items():
        in_window = df[df["decided_at"] > frames.now - span]
        for (model, version), g in in_window.groupby(["model", "version"], sort=True):
            if len(g) < config.drift_min_rows:
                continue
            reference = references.get((str(model), str(version)))
            if reference is None:
                fallback = fallback or fallback_reference(frames, config)
                reference = fallback
            for feature, bins in reference.bins.items():
                if feature == ReferenceProfile.SCORE:
                    scores = g["fraud_score"].dropna()
                    if len(scores) >= config.drift_min_rows:
                        out.add(
                            "vigil_score_psi", bins.psi(scores), model=model, version=version, window=window
                        )
                    continue
                if feature not in g:
                    continue
                labels = {"model": str(model), "version": str(version), "feature": feature, "window": window}
                out.add("vigil_feature_psi", bins.psi(g[feature]), **labels)
                if bins.kind == "numeric":
                    out.add("vigil_feature_ks", bins.ks(g[feature]), **labels)


def _business(out: Snapshot, frames: Frames, config: MonitorConfig) -> None:
    now, df = frames.now, frames.recent
    for window, span in config.business_windows.items():
        g = df[df["decided_at"] > now - span]
        alert = g["outcome"].isin(ALERT_OUTCOMES)
        fraud = g["is_fraud"].eq(True)
        legit = g["is_fraud"].eq(False)
        caught = g[alert & fraud]
        out.add("vigil_fraud_caught_transactions", len(caught), window=window)
        for currency, amount in caught.groupby("currency")["amount"].sum().items():
            out.add("vigil_fraud_caught_amount", float(amount), window=window, currency=str(currency))
        if legit.any():
            out.add("vigil_false_positive_rate", float((alert & legit).sum() / legit.sum()), window=window)
        if len(g):
            counts = g["outcome"].value_counts()
            for outcome in sorted({*OUTCOMES, *counts.index}):
                out.add(
                    "vigil_outcome_share", counts.get(outcome, 0) / len(g), outcome=outcome, window=window
                )
        resolved = frames.review_resolved
        resolved = resolved[resolved["resolved_at"] > now - span]
        if len(resolved):
            seconds = (resolved["resolved_at"] - resolved["created_at"]).dt.total_seconds()
            for q in TURNAROUND_QUANTILES:
                out.add(
                    "vigil_review_turnaround_seconds",
                    float(seconds.quantile(q)),
                    quantile=str(q),
                    window=window,
                )
        kyc = frames.kyc[frames.kyc["created_at"] > now - span]
        kyc_counts = kyc["status"].value_counts()
        for outcome in sorted({*KYC_OUTCOMES, *kyc_counts.index}):
            n = int(kyc_counts.get(outcome, 0))
            out.add("vigil_kyc_submissions", n, outcome=outcome, window=window)
            if len(kyc):
                out.add("vigil_kyc_outcome_share", n / len(kyc), outcome=outcome, window=window)
    waiting = frames.review_open["created_at"]
    out.add("vigil_review_queue_cases", len(waiting))
    oldest = (now - waiting.min()).total_seconds() if len(waiting) else 0.0
    out.add("vigil_review_queue_oldest_age_seconds", max(0.0, oldest))
    out.add("vigil_labels_received", frames.labels_received)


def compute(
    frames: Frames,
    config: MonitorConfig,
    *,
    references: Mapping[tuple[str, str], ReferenceProfile] | None = None,
    evaluations: Mapping[tuple[str, str], Mapping[str, float]] | None = None,
) -> Snapshot:
    """Every figure from ``frames``. ``references``: registry reference bins by (model, version);
    ``evaluations``: the registry's evaluation metrics by (model, version) (``precision_at_review``,
    ``recall_at_review``)."""
    out = Snapshot(frames.now)
    _performance(out, frames, config)
    _drift(out, frames, config, references or {})
    _business(out, frames, config)
    for (model, version), metrics in sorted((evaluations or {}).items()):
        for key, name in (
            ("precision_at_review", "vigil_model_evaluation_precision"),
            ("recall_at_review", "vigil_model_evaluation_recall"),
        ):
            value = metrics.get(key)
            if value is not None and np.isfinite(value):
                out.add(name, float(value), model=model, version=version)
    out.add("vigil_monitor_computed_timestamp_seconds", frames.now.timestamp())
    return out


def model_versions(frames: Frames) -> list[tuple[str, str]]:
    """The (model, version) pairs that decided anything in the frames (registry look-ups)."""
    values = set(frames.performance["model_version"]) | set(frames.recent["model_version"])
    return sorted({split_model_version(v) for v in values if isinstance(v, str) and v})


class Monitor:
    """Loads and computes in one call. ``registry(model, version)`` -> (reference bins or None,
    evaluation metrics) is called once per version seen, from a worker thread, and cached."""

    def __init__(
        self,
        sessions: Callable[[], AsyncSession],
        config: MonitorConfig | None = None,
        *,
        registry: Callable[[str, str], tuple[ReferenceProfile | None, Mapping[str, float]]] | None = None,
    ) -> None:
        self.sessions = sessions
        self.config = config or MonitorConfig()
        self.registry = registry
        self._registry_cache: dict[tuple[str, str], tuple[ReferenceProfile | None, Mapping[str, float]]] = {}

    async def snapshot(self, now: datetime) -> Snapshot:
        import asyncio

        async with self.sessions() as session:
            frames = await load_frames(session, now=now, config=self.config)
        if self.registry is not None:
            for key in model_versions(frames):
                if key in self._registry_cache or key[0] == "none":
                    continue
                try:
                    self._registry_cache[key] = await asyncio.to_thread(self.registry, *key)
                except Exception as exc:  # no registry now: fallback reference, asked again next time
                    log.warning("registry look-up for %s v%s failed: %s", *key, exc)
        references = {k: r for k, (r, _) in self._registry_cache.items() if r is not None}
        evaluations = {k: e for k, (_, e) in self._registry_cache.items() if e}
        return await asyncio.to_thread(
            compute, frames, self.config, references=references, evaluations=evaluations
        )
