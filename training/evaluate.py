"""Evaluate fraud models the way a fraud team does: by time, with the label delay respected.

* :func:`time_split` — train / calibration / test by event time, with a label-delay gap.
* :func:`choose_thresholds` — approve / review / block cut-offs that minimise a stated cost.
* :func:`evaluate` — ROC-AUC, PR-AUC, precision/recall/F1 at the thresholds, recall at 1 % FPR,
  precision of the top-k alerts per day, and all of it per fraud type.
* :func:`write_report` — Markdown + PNG curves + metrics JSON into a run directory.

Scores are "higher = riskier" in [0, 1] throughout.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.models.data import FeatureMatrix

__all__ = [
    "CostConfig",
    "Evaluation",
    "Thresholds",
    "TimeSplit",
    "choose_thresholds",
    "evaluate",
    "precision_at_k_per_day",
    "recall_at_fpr",
    "threshold_metrics",
    "time_split",
    "write_report",
]


# --------------------------------------------------------------------------------------------------
# Time split with a label-delay gap


@dataclass(frozen=True, eq=False)
class TimeSplit:
    """Train and calibration as known at ``cutoff``; test after it, with the final labels.

    Train/calibration rows all happened at least ``label_delay`` before ``cutoff``; their label is
    what was known at ``cutoff`` (fraud if its label arrived by then, otherwise assumed legit), so
    ``late_fraud_as_legit`` frauds whose label came later are (realistically) trained as legit.
    Rows inside the delay window before the cut-off are left out (``maturing_dropped``): keeping
    only their already-reported frauds would inflate the fraud rate of the most recent slice, the
    one calibration uses. Test rows are those at or after ``cutoff``; ``test_rows`` are their
    positions in the split matrix (to name them by the table's own transaction ids).
    """

    train: FeatureMatrix
    calibration: FeatureMatrix
    test: FeatureMatrix
    cutoff: pd.Timestamp
    label_delay: timedelta
    maturing_dropped: int
    late_fraud_as_legit: int
    test_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def training_window(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last event time the model (train + calibration) saw, UTC."""
        starts = [m.window[0] for m in (self.train, self.calibration) if len(m)]
        ends = [m.window[1] for m in (self.train, self.calibration) if len(m)]
        return min(starts), max(ends)

    def summary(self) -> dict[str, Any]:
        start, end = self.training_window
        return {
            "cutoff": self.cutoff.isoformat(),
            "label_delay_days": self.label_delay.total_seconds() / 86_400,
            "train_window_start": start.isoformat(),
            "train_window_end": end.isoformat(),
            "test_window_start": self.test.window[0].isoformat() if len(self.test) else None,
            "test_window_end": self.test.window[1].isoformat() if len(self.test) else None,
            "n_train": len(self.train),
            "n_calibration": len(self.calibration),
            "n_test": len(self.test),
            "train_fraud_rate": float(self.train.y.mean()) if len(self.train) else math.nan,
            "test_fraud_rate": float(self.test.y.mean()) if len(self.test) else math.nan,
            "maturing_dropped": self.maturing_dropped,
            "late_fraud_as_legit": self.late_fraud_as_legit,
        }


def time_split(
    matrix: FeatureMatrix,
    *,
    label_delay: timedelta = timedelta(days=14),
    cutoff: pd.Timestamp | str | None = None,
    test_fraction: float = 0.2,
    calibration_fraction: float = 0.2,
    include_early_fraud: bool = False,
) -> TimeSplit:
    """Split ``matrix`` by event time as a model trained at ``cutoff`` would have seen it.

    ``cutoff`` defaults to the event-time quantile leaving ``test_fraction`` of rows for test.
    Mature rows (``event_time <= cutoff - label_delay``) are labelled as known at ``cutoff``; the
    latest ``calibration_fraction`` of them (by time) form the calibration slice. With
    ``include_early_fraud`` the frauds already reported from the maturing window join training.
    """
    times = matrix.event_time
    if cutoff is None:
        cut = pd.Timestamp(times.quantile(1.0 - test_fraction))
    else:
        cut = pd.Timestamp(cutoff)
        cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut.tz_convert("UTC")
    mature_end = cut - pd.Timedelta(label_delay)
    known_fraud = (
        (matrix.y == 1) & matrix.label_time.notna().to_numpy() & (matrix.label_time <= cut).to_numpy()
    )
    before = (times < cut).to_numpy()
    mature = (times <= mature_end).to_numpy()
    use = mature | (before & known_fraud) if include_early_fraud else mature
    known_labels = known_fraud.astype(np.int8)
    maturing_dropped = int((before & ~use).sum())
    late = int(((matrix.y == 1) & use & ~known_fraud).sum())

    history = matrix.with_labels(known_labels).subset(use)
    order = np.argsort(history.event_time.to_numpy(), kind="stable")
    n_cal = round(len(order) * calibration_fraction)
    train = history.subset(order[: len(order) - n_cal])
    calibration = history.subset(order[len(order) - n_cal :])
    test = matrix.subset(~before)
    return TimeSplit(
        train=train,
        calibration=calibration,
        test=test,
        cutoff=cut,
        label_delay=label_delay,
        maturing_dropped=maturing_dropped,
        late_fraud_as_legit=late,
        test_rows=np.flatnonzero(~before),
    )


# --------------------------------------------------------------------------------------------------
# Costs and thresholds


@dataclass(frozen=True)
class CostConfig:
    """What each outcome costs, in one currency unit (say EUR) per transaction.

    Defaults are a card-not-present wallet's rough numbers; set them from finance's figures:

    * ``missed_fraud`` (150): an approved fraud — average fraud amount lost plus chargeback fee
      and handling.
    * ``review`` (4): sending a transaction to manual review — about 3 analyst-minutes plus the
      customer's wait. A reviewed fraud is assumed caught.
    * ``false_block`` (25): blocking a legitimate payment — lost margin plus the chance the
      customer leaves. A blocked fraud costs nothing.
    * ``max_review_rate`` (0.02): review queue capacity as a share of traffic; thresholds that
      send more than this to review are not considered.
    * ``target_fpr`` (0.01) and ``top_k_per_day`` (50) set the fixed-budget metrics.
    """

    missed_fraud: float = 150.0
    review: float = 4.0
    false_block: float = 25.0
    max_review_rate: float = 0.02
    target_fpr: float = 0.01
    top_k_per_day: int = 50


@dataclass(frozen=True)
class Thresholds:
    """Score cut-offs: ``score < review`` approve, ``review <= score < block`` review, else block."""

    review: float
    block: float
    expected_cost_per_txn: float = math.nan

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """The decision per score: ``"approve"``, ``"review"`` or ``"block"``."""
        s = np.asarray(scores)
        return np.where(s >= self.block, "block", np.where(s >= self.review, "review", "approve"))


def _decision_cost(y: np.ndarray, s: np.ndarray, review: float, block: float, costs: CostConfig) -> float:
    approve = s < review
    blocked = s >= block
    reviewed = ~approve & ~blocked
    total = (
        costs.missed_fraud * float((approve & (y == 1)).sum())
        + costs.review * float(reviewed.sum())
        + costs.false_block * float((blocked & (y == 0)).sum())
    )
    return total / max(len(y), 1)


def choose_thresholds(
    y: np.ndarray, scores: np.ndarray, costs: CostConfig = CostConfig(), *, n_candidates: int = 256
) -> Thresholds:
    """Review and block thresholds minimising the mean cost per transaction on ``(y, scores)``.

    Use a slice the model did not train on (the calibration slice). Candidates are score
    quantiles plus "never" (above every score); pairs sending more than ``max_review_rate`` of the
    traffic to review are excluded.
    """
    y = np.asarray(y).astype(np.int8)
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    cands = np.unique(np.quantile(s, np.linspace(0.0, 1.0, n_candidates)))
    cands = np.append(cands, np.nextafter(s.max(), np.inf))  # "never": nothing reaches it
    order = np.sort(s)
    fraud_sorted = np.sort(s[y == 1])
    legit_sorted = np.sort(s[y == 0])
    # Counts at or above each candidate.
    n_above = n - np.searchsorted(order, cands, side="left")
    fraud_below = np.searchsorted(fraud_sorted, cands, side="left")
    legit_above = len(legit_sorted) - np.searchsorted(legit_sorted, cands, side="left")
    # cost(r, b) for r <= b: missed frauds below r, reviews in [r, b), false blocks at/above b.
    reviews = n_above[:, None] - n_above[None, :]
    cost = (
        costs.missed_fraud * fraud_below[:, None]
        + costs.review * reviews
        + costs.false_block * legit_above[None, :]
    ).astype(np.float64)
    valid = np.triu(np.ones((cands.size, cands.size), dtype=bool))
    valid &= reviews <= costs.max_review_rate * n
    cost[~valid] = np.inf
    i, j = np.unravel_index(int(np.argmin(cost)), cost.shape)
    return Thresholds(
        review=float(cands[i]), block=float(cands[j]), expected_cost_per_txn=float(cost[i, j] / n)
    )


# --------------------------------------------------------------------------------------------------
# Metrics


def recall_at_fpr(y: np.ndarray, scores: np.ndarray, fpr: float = 0.01) -> tuple[float, float]:
    """(recall, threshold) when alerting on ``score > threshold`` with at most ``fpr`` of legit rows.

    The threshold is the ``floor(fpr * n_legit)``-th highest legit score, so exactly that many legit
    rows (fewer with ties) score above it.
    """
    y = np.asarray(y)
    s = np.asarray(scores, dtype=np.float64)
    neg = np.sort(s[y == 0])[::-1]
    pos = s[y == 1]
    if neg.size == 0 or pos.size == 0:
        return math.nan, math.nan
    k = math.floor(fpr * neg.size + 1e-9)
    threshold = float(neg[min(k, neg.size - 1)]) if k < neg.size else -math.inf
    return float((pos > threshold).mean()), threshold


def threshold_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall, F1, FPR and alert rate when alerting on ``score >= threshold``."""
    y = np.asarray(y)
    alert = np.asarray(scores) >= threshold
    tp = float((alert & (y == 1)).sum())
    fp = float((alert & (y == 0)).sum())
    fn = float((~alert & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    n_neg = float((y == 0).sum())
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fpr": fp / n_neg if n_neg else math.nan,
        "alert_rate": float(alert.mean()) if len(alert) else math.nan,
    }


def precision_at_k_per_day(
    y: np.ndarray, scores: np.ndarray, event_time: pd.Series, k: int = 50
) -> tuple[float, pd.Series]:
    """Mean over UTC days of the fraud share among that day's ``k`` highest-scoring events.

    This is what an analyst team with a daily budget of ``k`` alerts sees. Days with fewer than
    ``k`` events use all of them. Returns (mean, per-day Series indexed by date).
    """
    frame = pd.DataFrame(
        {
            "day": pd.to_datetime(event_time, utc=True).dt.floor("D").to_numpy(),
            "y": np.asarray(y),
            "s": scores,
        }
    )
    top = frame.sort_values(["day", "s"], ascending=[True, False], kind="stable").groupby("day").head(k)
    per_day = top.groupby("day")["y"].mean()
    return (float(per_day.mean()) if len(per_day) else math.nan), per_day


def _auc(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(np.unique(y)) < 2:
        return math.nan, math.nan
    return float(roc_auc_score(y, s)), float(average_precision_score(y, s))


@dataclass
class Evaluation:
    """Everything :func:`evaluate` measured; ``metrics`` is flat (name -> float) for MLflow."""

    metrics: dict[str, float]
    per_type: pd.DataFrame
    thresholds: Thresholds
    costs: CostConfig
    y: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)
    daily_precision: pd.Series = field(repr=False)


def evaluate(
    scores: np.ndarray,
    test: FeatureMatrix,
    thresholds: Thresholds,
    costs: CostConfig = CostConfig(),
) -> Evaluation:
    """Score quality on ``test`` (final labels) at the given operating thresholds."""
    y = np.asarray(test.y).astype(np.int8)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != y.shape:
        raise ValueError(f"{s.shape[0]} scores for {y.shape[0]} test rows")
    roc, pr = _auc(y, s)
    rec_fpr, thr_fpr = recall_at_fpr(y, s, costs.target_fpr)
    pct = f"{costs.target_fpr * 100:g}pct"
    mean_daily, per_day = precision_at_k_per_day(y, s, test.event_time, costs.top_k_per_day)
    metrics: dict[str, float] = {
        "n": float(len(y)),
        "fraud_rate": float(y.mean()) if len(y) else math.nan,
        "roc_auc": roc,
        "pr_auc": pr,
        f"recall_at_{pct}_fpr": rec_fpr,
        f"threshold_at_{pct}_fpr": thr_fpr,
        f"precision_top{costs.top_k_per_day}_per_day": mean_daily,
        "threshold_review": thresholds.review,
        "threshold_block": thresholds.block,
        "cost_per_txn": _decision_cost(y, s, thresholds.review, thresholds.block, costs),
        "cost_per_txn_approve_all": costs.missed_fraud * float(y.mean()) if len(y) else math.nan,
    }
    for name, t in (("review", thresholds.review), ("block", thresholds.block)):
        for key, value in threshold_metrics(y, s, t).items():
            metrics[f"{key}_at_{name}"] = value

    rows: list[dict[str, Any]] = []
    legit = y == 0
    types = test.fraud_type.to_numpy(dtype=object)
    for fraud_type in test.fraud_types:
        mask = (types == fraud_type) & (y == 1)
        st = s[mask]
        keep = legit | mask
        rec_t, _ = recall_at_fpr(y[keep], s[keep], costs.target_fpr)
        rows.append(
            {
                "fraud_type": fraud_type,
                "n": int(mask.sum()),
                "recall_at_review": float((st >= thresholds.review).mean()) if st.size else math.nan,
                "recall_at_block": float((st >= thresholds.block).mean()) if st.size else math.nan,
                f"recall_at_{pct}_fpr": rec_t,
            }
        )
        metrics[f"recall_at_{pct}_fpr__{fraud_type}"] = rec_t
        metrics[f"recall_at_review__{fraud_type}"] = float(rows[-1]["recall_at_review"])
    per_type = pd.DataFrame(
        rows, columns=["fraud_type", "n", "recall_at_review", "recall_at_block", f"recall_at_{pct}_fpr"]
    )
    return Evaluation(
        metrics=metrics,
        per_type=per_type,
        thresholds=thresholds,
        costs=costs,
        y=y,
        scores=s,
        daily_precision=per_day,
    )


# --------------------------------------------------------------------------------------------------
# Report


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _plots(ev: Evaluation, run_dir: Path) -> list[str]:
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    from sklearn.metrics import precision_recall_curve, roc_curve

    y, s = ev.y, ev.scores
    files = []
    if len(np.unique(y)) == 2:
        prec, rec, _ = precision_recall_curve(y, s)
        fig = Figure(figsize=(5, 4))
        ax = fig.subplots()
        ax.plot(rec, prec)
        ax.axhline(y.mean(), ls="--", c="grey", lw=0.8, label="base rate")
        ax.set(xlabel="recall", ylabel="precision", title=f"PR (AP={ev.metrics['pr_auc']:.3f})")
        ax.legend(loc="upper right")
        fig.savefig(run_dir / "pr_curve.png", dpi=100, bbox_inches="tight")
        files.append("pr_curve.png")

        fpr, tpr, _ = roc_curve(y, s)
        fig = Figure(figsize=(5, 4))
        ax = fig.subplots()
        ax.plot(fpr, tpr)
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
        ax.axvline(ev.costs.target_fpr, ls=":", c="red", lw=0.8, label=f"FPR {ev.costs.target_fpr:g}")
        ax.set(xlabel="false positive rate", ylabel="recall", title=f"ROC (AUC={ev.metrics['roc_auc']:.3f})")
        ax.legend(loc="lower right")
        fig.savefig(run_dir / "roc_curve.png", dpi=100, bbox_inches="tight")
        files.append("roc_curve.png")

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    bins = np.linspace(0.0, 1.0, 51).tolist()
    ax.hist(s[y == 0], bins=bins, alpha=0.6, density=True, label="legit", log=True)
    ax.hist(s[y == 1], bins=bins, alpha=0.6, density=True, label="fraud", log=True)
    for name, t in (("review", ev.thresholds.review), ("block", ev.thresholds.block)):
        if 0.0 <= t <= 1.0:
            ax.axvline(t, ls="--", lw=0.8, c="black")
            ax.text(t, ax.get_ylim()[1], name, rotation=90, va="top", ha="right", fontsize=8)
    ax.set(xlabel="score", ylabel="density (log)", title="score distribution")
    ax.legend()
    fig.savefig(run_dir / "score_distribution.png", dpi=100, bbox_inches="tight")
    files.append("score_distribution.png")
    return files


def write_report(
    ev: Evaluation,
    run_dir: str | Path,
    *,
    title: str,
    model_info: Mapping[str, Any] | None = None,
    split: TimeSplit | None = None,
    extra_sections: Mapping[str, str] | None = None,
) -> Path:
    """Write ``report.md``, the PNG curves and ``metrics.json`` into ``run_dir``; return report path."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    images = _plots(ev, run)
    pct = f"{ev.costs.target_fpr * 100:g}"
    m = ev.metrics
    lines = [f"# {title}", ""]
    if model_info:
        lines += ["## Model", "", "| | |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in model_info.items()]
        lines.append("")
    if split is not None:
        lines += ["## Data (time split, label-delay gap)", "", "| | |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in split.summary().items()]
        lines.append("")
    lines += [
        "## Ranking quality (test window, final labels)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| test rows / fraud rate | {int(m['n'])} / {_fmt(m['fraud_rate'])} |",
        f"| ROC-AUC | {_fmt(m['roc_auc'])} |",
        f"| PR-AUC (average precision) | {_fmt(m['pr_auc'])} |",
        f"| recall at {pct} % FPR | {_fmt(m[f'recall_at_{pct}pct_fpr'])} |",
        f"| precision of top {ev.costs.top_k_per_day} alerts per day (mean) | "
        f"{_fmt(m[f'precision_top{ev.costs.top_k_per_day}_per_day'])} |",
        "",
        "## Operating thresholds (chosen on the calibration slice by cost)",
        "",
        f"Costs: missed fraud {ev.costs.missed_fraud:g}, review {ev.costs.review:g}, "
        f"false block {ev.costs.false_block:g} per transaction; review capacity "
        f"{ev.costs.max_review_rate:.1%} of traffic.",
        "",
        "| decision | threshold | precision | recall | F1 | FPR | share of traffic |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("review", "block"):
        lines.append(
            f"| {name} (score ≥) | {_fmt(m[f'threshold_{name}'])} | {_fmt(m[f'precision_at_{name}'])} | "
            f"{_fmt(m[f'recall_at_{name}'])} | {_fmt(m[f'f1_at_{name}'])} | {_fmt(m[f'fpr_at_{name}'])} | "
            f"{_fmt(m[f'alert_rate_at_{name}'])} |"
        )
    lines += [
        "",
        f"Cost per transaction on test: {_fmt(m['cost_per_txn'])} "
        f"(approve everything: {_fmt(m['cost_per_txn_approve_all'])}).",
        "",
        "## Per fraud type",
        "",
    ]
    if len(ev.per_type):
        cols = list(ev.per_type.columns)
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in ev.per_type.itertuples(index=False):
            lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    else:
        lines.append("No fraud types in the test window.")
    for heading, body in (extra_sections or {}).items():
        lines += ["", f"## {heading}", "", body]
    lines += ["", "## Curves", ""] + [f"![{img}]({img})" for img in images] + [""]
    report = run / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    payload = {
        "metrics": ev.metrics,
        "per_type": ev.per_type.to_dict(orient="records"),
        "thresholds": asdict(ev.thresholds),
        "costs": asdict(ev.costs),
        "split": split.summary() if split is not None else None,
    }
    (run / "metrics.json").write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    return report
