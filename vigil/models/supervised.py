"""Fitted supervised models as serving loads them: the classifier plus its calibrator.

Training (``training/models/supervised.py``) builds these; the registry pickles them; the
scoring deployments unpickle them, so they live in the shared core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from vigil.models.base import check_columns, top_k_contributions

__all__ = ["Calibrator", "SupervisedModel"]


# --------------------------------------------------------------------------------------------------
# Calibration


@dataclass
class Calibrator:
    """Maps a raw model score to a fraud probability; fit on a time-later slice, never on train.

    ``method="isotonic"`` (monotone, needs a few hundred positives) or ``"platt"`` (logistic on the
    log-odds; fewer positives suffice). Unfitted, it is the identity.
    """

    method: Literal["isotonic", "platt"] = "isotonic"
    model_: Any = None

    def fit(self, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        y = np.asarray(y)
        if y.min() == y.max():
            raise ValueError("calibration slice needs both classes; widen it or move the cut-off")
        if self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            self.model_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
        elif self.method == "platt":
            from sklearn.linear_model import LogisticRegression

            self.model_ = LogisticRegression(C=1e4).fit(_logit(raw)[:, None], y)
        else:
            raise ValueError(f"unknown calibration method {self.method!r}")
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        if self.model_ is None:
            return np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            # IsotonicRegression.predict with out_of_bounds="clip" is this linear interpolation
            # between its thresholds (clamped at the ends), without its per-call input checks.
            model = self.model_
            return np.interp(np.asarray(raw, dtype=np.float64), model.X_thresholds_, model.y_thresholds_)
        return np.asarray(self.model_.predict_proba(_logit(raw)[:, None])[:, 1], dtype=np.float64)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


# --------------------------------------------------------------------------------------------------
# The model bundle


@dataclass
class SupervisedModel:
    """A fitted fraud classifier plus its calibrator; ``predict_proba`` gives calibrated p(fraud).

    ``estimator`` is an ``xgboost.Booster``, a ``lightgbm.Booster`` or a scikit-learn forest.
    Contributions (``contributions``/``explain``) are exact TreeSHAP values in log-odds before
    calibration, for XGBoost and LightGBM; the forest has none (``explain`` returns None). For
    XGBoost they come from :class:`vigil.models.treeshap.TreeShap` (the same values for less
    CPU, ``make bench-explain``), built on first use and not pickled; XGBoost's own where that does not apply.
    """

    algorithm: str
    estimator: Any
    calibrator: Calibrator
    feature_names_: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)
    best_iteration: int | None = None
    kind: str = "supervised"
    # the TreeShap explainer (False: tried, XGBoost's own applies); rebuilt after unpickling
    _treeshap: Any = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_treeshap"] = None
        return state

    def prepare_explainer(self) -> None:
        """Build what :meth:`contributions` needs now (serving calls this at load, not at the
        first flagged transaction, which would otherwise wait for the tables to be built)."""
        if self.algorithm == "xgboost" and self._treeshap is None:
            from vigil.models.treeshap import TreeShap

            self._treeshap = TreeShap.from_booster(self.estimator) or False

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.feature_names_

    def raw_score(self, X: pd.DataFrame) -> np.ndarray:
        """Uncalibrated score in [0, 1] (the estimator's own probability)."""
        check_columns(X, self.feature_names_)
        if self.algorithm == "xgboost":
            # float32 is what XGBoost compares anyway; a DataFrame costs a conversion per call
            values = X.to_numpy(dtype=np.float32)
            return np.asarray(
                self.estimator.inplace_predict(values, validate_features=False), dtype=np.float64
            )
        if self.algorithm == "lightgbm":
            return np.asarray(self.estimator.predict(X.to_numpy(dtype=np.float32)), dtype=np.float64)
        return np.asarray(
            self.estimator.predict_proba(X.to_numpy(dtype=np.float32, copy=True))[:, 1], dtype=np.float64
        )

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated fraud probability per row, shape (n,), in [0, 1]."""
        return self.calibrator.transform(self.raw_score(X))

    def contributions(self, X: pd.DataFrame) -> np.ndarray | None:
        """(n, n_features + 1) TreeSHAP contributions in log-odds; the last column is the bias."""
        check_columns(X, self.feature_names_)
        if self.algorithm == "xgboost":
            import xgboost as xgb

            self.prepare_explainer()
            if self._treeshap:
                return self._treeshap.contributions(X.to_numpy(dtype=np.float32))
            matrix = xgb.DMatrix(X.to_numpy(dtype=np.float32), nthread=1)  # columns checked above
            return np.asarray(self.estimator.predict(matrix, pred_contribs=True, validate_features=False))
        if self.algorithm == "lightgbm":
            return np.asarray(self.estimator.predict(X.to_numpy(dtype=np.float32), pred_contrib=True))
        return None

    def explain(self, X: pd.DataFrame, k: int = 3) -> list[list[tuple[str, float]]] | None:
        """Per row, the ``k`` features pushing the score most (name, log-odds contribution)."""
        contrib = self.contributions(X)
        if contrib is None:
            return None
        return top_k_contributions(contrib[:, :-1], self.feature_names_, k)
