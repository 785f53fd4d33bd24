"""Zero-day check: does the anomaly scorer catch a fraud type the supervised model never saw?

Train the supervised model with one fraud type removed from its history, fit an anomaly detector
on the same history without labels, then measure on the test window how much of the held-out type
each one catches at a fixed 1 % false-positive rate (legit test rows only as negatives).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from training.evaluate import recall_at_fpr, time_split
from training.models.data import FeatureMatrix
from training.models.supervised import train_supervised
from vigil.models.anomaly import make_detector

__all__ = ["ZeroDayResult", "zero_day_check"]


@dataclass(frozen=True)
class ZeroDayResult:
    """Recall on the held-out fraud type at ``fpr`` (same legit negatives for every scorer).

    ``combined`` alerts when either scorer alerts, each at ``fpr / 2`` so the pair stays within
    ``fpr``. ``seen_types_recall_supervised`` is the supervised recall on the types it did see,
    for contrast.
    """

    held_out_type: str
    fpr: float
    n_held_out_test: int
    supervised_recall: float
    anomaly_recall: float
    combined_recall: float
    seen_types_recall_supervised: float
    supervised_algorithm: str
    detector: str

    def as_markdown(self) -> str:
        pct = f"{self.fpr * 100:g} %"
        return "\n".join(
            [
                f"Held-out fraud type: `{self.held_out_type}` ({self.n_held_out_test} test frauds), "
                f"recall at {pct} FPR:",
                "",
                "| scorer | recall |",
                "|---|---|",
                f"| supervised `{self.supervised_algorithm}` (never saw the type) | {self.supervised_recall:.3f} |",
                f"| anomaly `{self.detector}` | {self.anomaly_recall:.3f} |",
                f"| either (each at {self.fpr * 50:g} % FPR) | {self.combined_recall:.3f} |",
                f"| supervised on the types it saw | {self.seen_types_recall_supervised:.3f} |",
            ]
        )


def zero_day_check(
    matrix: FeatureMatrix,
    held_out_type: str,
    *,
    supervised_algorithm: str = "xgboost",
    supervised_params: Mapping[str, Any] | None = None,
    detector: str = "isolation_forest",
    detector_params: Mapping[str, Any] | None = None,
    label_delay: timedelta = timedelta(days=14),
    fpr: float = 0.01,
    max_detector_rows: int = 200_000,
    seed: int = 0,
) -> ZeroDayResult:
    """Run the zero-day experiment on ``matrix`` for ``held_out_type`` (see module docstring).

    The detector fits on rows labelled legit in the training window (at most
    ``max_detector_rows``, sampled): what an unsupervised model would be given in production.
    """
    if held_out_type not in matrix.fraud_types:
        raise ValueError(f"{held_out_type!r} not among fraud types {matrix.fraud_types}")
    split = time_split(matrix, label_delay=label_delay)

    def without_type(m: FeatureMatrix) -> FeatureMatrix:
        return m.subset((m.fraud_type != held_out_type).to_numpy())

    train, calibration = without_type(split.train), without_type(split.calibration)
    model = train_supervised(supervised_algorithm, train, calibration, params=supervised_params)

    legit_rows = np.flatnonzero(train.y == 0)
    rng = np.random.default_rng(seed)
    if legit_rows.size > max_detector_rows:
        legit_rows = np.sort(rng.choice(legit_rows, size=max_detector_rows, replace=False))
    det = make_detector(detector, seed=seed, **dict(detector_params or {})).fit(train.X.iloc[legit_rows])

    test = split.test
    types = test.fraud_type.to_numpy(dtype=object)
    legit = test.y == 0
    held = (test.y == 1) & (types == held_out_type)
    seen = (test.y == 1) & ~held
    sup = model.predict_proba(test.X)
    ano = det.decision_function(test.X)

    def recall(mask: np.ndarray, scores: np.ndarray, rate: float) -> tuple[float, float]:
        keep = legit | mask
        return recall_at_fpr(test.y[keep], scores[keep], rate)

    sup_recall, _ = recall(held, sup, fpr)
    ano_recall, _ = recall(held, ano, fpr)
    _, sup_thr = recall(held, sup, fpr / 2)
    _, ano_thr = recall(held, ano, fpr / 2)
    either = (sup > sup_thr) | (ano > ano_thr)
    combined = float(either[held].mean()) if held.any() else float("nan")
    seen_recall, _ = recall(seen, sup, fpr)
    return ZeroDayResult(
        held_out_type=held_out_type,
        fpr=fpr,
        n_held_out_test=int(held.sum()),
        supervised_recall=sup_recall,
        anomaly_recall=ano_recall,
        combined_recall=combined,
        seen_types_recall_supervised=seen_recall,
        supervised_algorithm=supervised_algorithm,
        detector=detector,
    )
