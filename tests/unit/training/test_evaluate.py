"""Evaluation metrics against hand-computed cases and scikit-learn; the time split's label rules."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_curve

from training.evaluate import (
    CostConfig,
    Thresholds,
    choose_thresholds,
    evaluate,
    precision_at_k_per_day,
    recall_at_fpr,
    threshold_metrics,
    time_split,
    write_report,
)
from training.models.data import FeatureMatrix, make_synthetic_matrix


def test_recall_at_fpr_hand_computed() -> None:
    neg = np.arange(100) / 100.0  # 0.00 .. 0.99
    pos = np.array([0.985, 0.995, 0.5, 0.2])
    y = np.r_[np.zeros(100), np.ones(4)]
    recall, threshold = recall_at_fpr(y, np.r_[neg, pos], fpr=0.01)
    # 1 % of 100 negatives = 1 false positive allowed: threshold is the 2nd highest legit (0.98).
    assert threshold == pytest.approx(0.98)
    assert recall == pytest.approx(0.5)


def test_recall_at_fpr_matches_roc_curve() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(5000) < 0.05).astype(int)
    s = rng.normal(size=5000) + 1.5 * y
    recall, _ = recall_at_fpr(y, s, 0.01)
    fpr, tpr, _ = roc_curve(y, s)
    assert recall == pytest.approx(tpr[fpr <= 0.01].max(), abs=1e-9)


def test_threshold_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(1000) < 0.1).astype(int)
    s = rng.random(1000) * 0.6 + 0.4 * y
    m = threshold_metrics(y, s, 0.5)
    pred = (s >= 0.5).astype(int)
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["recall"] == pytest.approx(recall_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["alert_rate"] == pytest.approx(pred.mean())


def test_precision_at_k_per_day_hand_computed() -> None:
    t = pd.to_datetime(
        [
            "2025-01-01T01:00Z",
            "2025-01-01T02:00Z",
            "2025-01-01T03:00Z",
            "2025-01-02T01:00Z",
            "2025-01-02T05:00Z",
        ]
    )
    y = np.array([1, 0, 1, 0, 1])
    s = np.array([0.9, 0.8, 0.1, 0.7, 0.2])
    mean, per_day = precision_at_k_per_day(y, s, pd.Series(t), k=2)
    # Day 1 top-2: 0.9 (fraud), 0.8 (legit) -> 0.5. Day 2: both rows, one fraud -> 0.5.
    assert per_day.tolist() == [0.5, 0.5]
    assert mean == pytest.approx(0.5)


def test_choose_thresholds_follows_costs() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(20_000) < 0.02).astype(int)
    s = np.clip(rng.normal(0.3, 0.15, 20_000) + 0.3 * y, 0, 1)
    cheap = choose_thresholds(
        y, s, CostConfig(missed_fraud=1000, review=1, false_block=5, max_review_rate=0.5)
    )
    dear = choose_thresholds(
        y, s, CostConfig(missed_fraud=10, review=1, false_block=500, max_review_rate=0.5)
    )
    assert cheap.review <= cheap.block
    # Expensive frauds -> alert earlier; expensive false blocks -> block later.
    assert cheap.review < dear.review
    assert cheap.block < dear.block


def test_choose_thresholds_brute_force_agrees() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random(400) < 0.1).astype(int)
    s = np.round(rng.random(400) * 0.5 + 0.5 * y, 2)
    costs = CostConfig(missed_fraud=50, review=2, false_block=10, max_review_rate=1.0)
    got = choose_thresholds(y, s, costs, n_candidates=10_000)
    cands = np.append(np.unique(s), 2.0)

    def cost(r: float, b: float) -> float:
        approve, block = s < r, s >= b
        return (
            50 * (approve & (y == 1)).sum() + 2 * (~approve & ~block).sum() + 10 * (block & (y == 0)).sum()
        ) / 400

    best = min(cost(r, b) for r in cands for b in cands if r <= b)
    assert got.expected_cost_per_txn == pytest.approx(best)


def test_thresholds_decide() -> None:
    t = Thresholds(review=0.3, block=0.8)
    assert t.decide(np.array([0.1, 0.3, 0.79, 0.8])).tolist() == ["approve", "review", "review", "block"]


def _matrix() -> FeatureMatrix:
    days = pd.date_range("2025-01-01", periods=40, freq="D", tz="UTC")
    n = len(days)
    y = np.zeros(n, dtype=int)
    label_time = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]")
    # Frauds on day 5 (label on day 8), day 20 (label on day 35 - after the cut-off), day 27 (label day 28).
    for d, lag in ((5, 3), (20, 15), (27, 1)):
        y[d] = 1
        label_time[d] = days[d] + pd.Timedelta(days=lag)
    X = pd.DataFrame({"a": np.arange(n, dtype=float)})
    return FeatureMatrix.build(X, y, days, label_time, ["ato" if v else None for v in y], feature_version="t")


def test_time_split_label_delay_rules() -> None:
    m = _matrix()
    split = time_split(m, cutoff="2025-01-31", label_delay=timedelta(days=7), calibration_fraction=0.25)
    history_days = np.r_[split.train.X["a"], split.calibration.X["a"]]
    # Mature rows only: events up to cut-off - 7 days = day 23 (index 23).
    assert history_days.max() == 23
    assert split.maturing_dropped == 30 - 24
    # Day 20's fraud label arrives after the cut-off: trained as legit, and counted.
    labels = dict(zip(history_days, np.r_[split.train.y, split.calibration.y], strict=True))
    assert labels[5] == 1 and labels[20] == 0
    assert split.late_fraud_as_legit == 1
    # Calibration is the time-later slice; test is everything from the cut-off, with final labels.
    assert split.train.X["a"].max() < split.calibration.X["a"].min()
    assert split.test.X["a"].min() == 30
    assert split.test.window[0] >= split.cutoff


def test_time_split_include_early_fraud() -> None:
    split = time_split(
        _matrix(), cutoff="2025-01-31", label_delay=timedelta(days=7), include_early_fraud=True
    )
    days = np.r_[split.train.X["a"], split.calibration.X["a"]]
    assert 27 in days  # reported on day 28, before the cut-off


def test_evaluate_and_report(tmp_path: Path) -> None:
    m = make_synthetic_matrix(6000, 12, days=30, seed=5)
    rng = np.random.default_rng(0)
    scores = np.clip(0.3 * m.y + rng.random(len(m)) * 0.7, 0, 1)
    ev = evaluate(scores, m, Thresholds(review=0.6, block=0.9), CostConfig())
    assert 0.5 < ev.metrics["roc_auc"] <= 1.0
    assert set(ev.per_type["fraud_type"]) == set(m.fraud_types)
    assert ev.metrics["recall_at_review"] == pytest.approx(threshold_metrics(m.y, scores, 0.6)["recall"])
    for t in m.fraud_types:
        assert not math.isnan(ev.metrics[f"recall_at_1pct_fpr__{t}"])
    report = write_report(ev, tmp_path / "run", title="unit", model_info={"algorithm": "fake"})
    text = report.read_text()
    assert "PR-AUC" in text and "Per fraud type" in text
    for png in ("pr_curve.png", "roc_curve.png", "score_distribution.png"):
        assert (tmp_path / "run" / png).stat().st_size > 1000
    assert (tmp_path / "run" / "metrics.json").exists()
