"""What every scoring model (supervised or anomaly) promises to serving and to the registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

__all__ = ["FeatureMismatchError", "ScoringModel", "check_columns", "top_k_contributions"]


class FeatureMismatchError(ValueError):
    """The DataFrame's columns are not the model's feature list (names, order or count)."""


@runtime_checkable
class ScoringModel(Protocol):
    """A fitted model that turns a feature DataFrame into a risk score in [0, 1].

    ``predict_proba`` returns a 1-D float array, one value per row, higher = riskier: a calibrated
    fraud probability for supervised models, the empirical CDF of the training anomaly scores for
    detectors. ``kind`` is ``"supervised"`` or ``"anomaly"``; ``algorithm`` names the estimator.
    """

    @property
    def kind(self) -> str: ...

    @property
    def algorithm(self) -> str: ...

    @property
    def feature_names(self) -> tuple[str, ...]: ...

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray: ...


def check_columns(X: pd.DataFrame, feature_names: Sequence[str]) -> None:
    """Raise :class:`FeatureMismatchError` unless ``X.columns`` equals ``feature_names`` exactly."""
    got = [str(c) for c in X.columns]
    want = list(feature_names)
    if got == want:
        return
    missing = [c for c in want if c not in set(got)]
    extra = [c for c in got if c not in set(want)]
    detail = f"missing={missing[:5]} extra={extra[:5]}" if missing or extra else "same names, other order"
    raise FeatureMismatchError(f"columns do not match the model's {len(want)} features: {detail}")


def top_k_contributions(
    contributions: np.ndarray, feature_names: Sequence[str], k: int = 3
) -> list[list[tuple[str, float]]]:
    """Per row, the ``k`` features with the largest absolute contribution, largest first.

    ``contributions`` is (n_rows, n_features) without the bias column; values keep their sign
    (positive pushes towards fraud).
    """
    k = min(k, contributions.shape[1])
    order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :k]
    names = np.asarray(feature_names, dtype=object)
    return [
        [(str(names[j]), float(contributions[i, j])) for j in order[i]] for i in range(contributions.shape[0])
    ]
