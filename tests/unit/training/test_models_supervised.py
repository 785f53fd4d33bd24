"""Supervised models: calibrated probabilities, contributions, the feature check, quality floors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.models.data import FeatureMatrix, make_synthetic_matrix
from training.models.supervised import ALGORITHMS, Calibrator, SupervisedModel, train_supervised
from vigil.models.base import FeatureMismatchError, top_k_contributions

FAST = {
    "xgboost": {"num_boost_round": 60, "max_depth": 4},
    "lightgbm": {"num_boost_round": 60, "num_leaves": 15},
    "random_forest": {"n_estimators": 30, "max_depth": 8},
}


@pytest.fixture(scope="module")
def parts() -> tuple[FeatureMatrix, FeatureMatrix, FeatureMatrix]:
    m = make_synthetic_matrix(12_000, 12, fraud_rate=0.05, days=30, seed=2)
    n = len(m)
    idx = np.arange(n)
    return m.subset(idx < 0.6 * n), m.subset((idx >= 0.6 * n) & (idx < 0.8 * n)), m.subset(idx >= 0.8 * n)


@pytest.fixture(scope="module", params=ALGORITHMS)
def model(request: pytest.FixtureRequest, parts: tuple[FeatureMatrix, ...]) -> SupervisedModel:
    train, cal, _ = parts
    return train_supervised(request.param, train, cal, params=FAST[request.param], nthread=1)


def test_probabilities_and_quality_floor(model: SupervisedModel, parts: tuple[FeatureMatrix, ...]) -> None:
    test = parts[2]
    p = model.predict_proba(test.X)
    assert p.shape == (len(test),)
    assert np.all((p >= 0) & (p <= 1))
    assert roc_auc_score(test.y, p) >= 0.85
    assert model.kind == "supervised" and model.feature_names == test.feature_names


def test_calibrated_mean_close_to_base_rate(model: SupervisedModel, parts: tuple[FeatureMatrix, ...]) -> None:
    test = parts[2]
    assert abs(model.predict_proba(test.X).mean() - test.y.mean()) < 0.02


def test_contributions(model: SupervisedModel, parts: tuple[FeatureMatrix, ...]) -> None:
    X = parts[2].X.iloc[:16]
    contrib = model.contributions(X)
    explained = model.explain(X, k=3)
    if model.algorithm == "random_forest":
        assert contrib is None and explained is None
        return
    assert contrib is not None and explained is not None
    assert contrib.shape == (16, len(X.columns) + 1)
    # TreeSHAP is exact: contributions + bias sum to the raw margin.
    raw = model.raw_score(X)
    np.testing.assert_allclose(1 / (1 + np.exp(-contrib.sum(axis=1))), raw, rtol=1e-3, atol=1e-4)
    assert all(len(row) == 3 and row[0][0] in X.columns for row in explained)


def test_refuses_other_columns(model: SupervisedModel, parts: tuple[FeatureMatrix, ...]) -> None:
    X = parts[2].X.iloc[:5]
    with pytest.raises(FeatureMismatchError):
        model.predict_proba(X[list(reversed(X.columns))])
    with pytest.raises(FeatureMismatchError):
        model.predict_proba(X.assign(extra=1.0))


def test_top_k_contributions_orders_by_magnitude() -> None:
    rows = top_k_contributions(np.array([[0.1, -2.0, 0.5]]), ["a", "b", "c"], k=2)
    assert rows == [[("b", -2.0), ("c", 0.5)]]


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibrator_on_miscalibrated_scores(method: str) -> None:
    rng = np.random.default_rng(0)
    true_p = rng.random(20_000) * 0.2
    y = (rng.random(20_000) < true_p).astype(int)
    raw = np.sqrt(true_p)  # monotone but miscalibrated
    cal = Calibrator(method).fit(raw, y)  # type: ignore[arg-type]
    got = cal.transform(raw)
    assert abs(got.mean() - y.mean()) < 0.005
    assert np.all(np.diff(cal.transform(np.linspace(0, 0.45, 50))) >= -1e-12)


def test_isotonic_transform_equals_scikit_learn() -> None:
    """Serving interpolates the isotonic thresholds itself; it must equal IsotonicRegression's
    predict, out-of-range scores (clipped) and ties included."""
    rng = np.random.default_rng(1)
    raw = np.round(rng.random(5_000), 3)  # ties
    y = (rng.random(5_000) < raw * 0.3).astype(int)
    cal = Calibrator("isotonic").fit(raw, y)
    probe = np.r_[-1.0, 0.0, rng.random(2_000) * 1.2 - 0.1, 1.0, 2.0, raw[:50]]
    np.testing.assert_allclose(cal.transform(probe), cal.model_.predict(probe), rtol=0, atol=1e-12)


def test_xgboost_scores_equal_the_booster_on_a_dataframe(parts: tuple[FeatureMatrix, ...]) -> None:
    """raw_score/contributions hand XGBoost float32 numpy (fast); same numbers as the DataFrame."""
    import xgboost as xgb

    model = train_supervised("xgboost", parts[0], parts[1], params=FAST["xgboost"], nthread=1)
    X = parts[2].X.iloc[:64]
    booster = model.estimator
    np.testing.assert_array_equal(model.raw_score(X), booster.inplace_predict(X).astype(np.float64))
    np.testing.assert_allclose(
        model.contributions(X), booster.predict(xgb.DMatrix(X), pred_contribs=True), rtol=0, atol=1e-6
    )


def test_calibrator_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        Calibrator().fit(np.array([0.1, 0.2]), np.array([0, 0]))


def test_unknown_algorithm(parts: tuple[FeatureMatrix, ...]) -> None:
    with pytest.raises(ValueError, match="algorithm"):
        train_supervised("svm", parts[0], parts[1])
