"""The one detector contract, run over every detector, plus a quality floor on synthetic data."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from training.models.data import FeatureMatrix, make_synthetic_matrix
from vigil.models.anomaly import DETECTORS, Detector, make_detector
from vigil.models.base import FeatureMismatchError

SMALL = {
    "isolation_forest": {"n_estimators": 50},
    "one_class_svm": {"max_fit_rows": 500},
    "autoencoder": {"epochs": 3, "batch_size": 256},
}


@pytest.fixture(scope="module")
def data() -> FeatureMatrix:
    return make_synthetic_matrix(3000, 12, fraud_rate=0.05, days=10, seed=11)


@pytest.fixture(scope="module", params=sorted(DETECTORS))
def fitted(request: pytest.FixtureRequest, data: FeatureMatrix) -> Detector:
    legit = data.subset(data.y == 0)
    return make_detector(request.param, seed=0, **SMALL[request.param]).fit(legit.X)


def test_fitted_attributes_end_in_underscore(fitted: Detector) -> None:
    for attr in ("feature_names_", "center_", "scale_", "train_quantiles_", "threshold_"):
        assert hasattr(fitted, attr)
    assert fitted.kind == "anomaly"
    assert fitted.feature_names == tuple(f"f{i:02d}" for i in range(12))


def test_unfitted_detector_refuses(data: FeatureMatrix) -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        make_detector("isolation_forest").decision_function(data.X)


def test_higher_is_more_anomalous(fitted: Detector, data: FeatureMatrix) -> None:
    X = data.X.iloc[:200]
    far = X.fillna(0.0) * 8.0 + 6.0
    assert np.median(fitted.decision_function(far)) > np.median(fitted.decision_function(X))


def test_unit_scores(fitted: Detector, data: FeatureMatrix) -> None:
    p = fitted.predict_proba(data.X)
    assert p.shape == (len(data),) and p.dtype == np.float64
    assert np.all((p >= 0) & (p <= 1))
    raw = fitted.decision_function(data.X)
    # The 0-1 mapping is monotone in the raw score.
    order = np.argsort(raw)
    assert np.all(np.diff(p[order]) >= -1e-12)


def test_batch_equals_rows(fitted: Detector, data: FeatureMatrix) -> None:
    X = data.X.iloc[:32]
    batch = fitted.predict_proba(X)
    one_by_one = np.array([fitted.predict_proba(X.iloc[[i]])[0] for i in range(len(X))])
    np.testing.assert_allclose(batch, one_by_one, rtol=1e-5, atol=1e-6)


def test_nan_and_numpy_input(fitted: Detector, data: FeatureMatrix) -> None:
    X = data.X.iloc[:10].copy()
    X.iloc[0, :] = np.nan
    assert np.isfinite(fitted.decision_function(X)).all()
    np.testing.assert_allclose(fitted.decision_function(X.to_numpy()), fitted.decision_function(X))


def test_refuses_other_columns(fitted: Detector, data: FeatureMatrix) -> None:
    with pytest.raises(FeatureMismatchError):
        fitted.predict_proba(data.X.iloc[:5, ::-1])
    with pytest.raises(FeatureMismatchError):
        fitted.predict_proba(data.X.iloc[:5].drop(columns=["f00"]))


def test_pickle_round_trip(fitted: Detector, data: FeatureMatrix) -> None:
    clone = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(clone.predict_proba(data.X.iloc[:50]), fitted.predict_proba(data.X.iloc[:50]))


def test_quality_floor(fitted: Detector, data: FeatureMatrix) -> None:
    # bust_out is far from the legit bulk by construction: every detector must rank it high.
    types = data.fraud_type.to_numpy(dtype=object)
    keep = (data.y == 0) | (types == "bust_out")
    auc = roc_auc_score(data.y[keep], fitted.decision_function(data.X[keep]))
    assert auc >= 0.85


def test_deterministic_for_a_seed(data: FeatureMatrix) -> None:
    legit = data.subset(data.y == 0).X.iloc[:800]
    for name in DETECTORS:
        a = make_detector(name, seed=3, **SMALL[name]).fit(legit).decision_function(legit.iloc[:20])
        b = make_detector(name, seed=3, **SMALL[name]).fit(legit).decision_function(legit.iloc[:20])
        np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=name)


def test_ocsvm_subsamples(data: FeatureMatrix) -> None:
    det = make_detector("one_class_svm", max_fit_rows=300).fit(data.X)
    assert det.n_fit_rows_ == 300  # type: ignore[attr-defined]


def test_unknown_detector() -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        make_detector("lof")


def test_numpy_fit_names_columns() -> None:
    det = make_detector("isolation_forest", n_estimators=10).fit(
        np.random.default_rng(0).normal(size=(100, 3))
    )
    assert det.feature_names == ("x0", "x1", "x2")
    assert det.predict_proba(pd.DataFrame(np.zeros((2, 3)), columns=["x0", "x1", "x2"])).shape == (2,)


@pytest.mark.parametrize("max_samples", [1, 7, 256])
def test_packed_isolation_forest_equals_pyod(data: FeatureMatrix, max_samples: int) -> None:
    """The flattened all-trees walk that serving uses scores exactly like PyOD/scikit-learn
    (to float summation order), on fitted rows, unseen rows, far tails and single rows."""
    det = make_detector("isolation_forest", n_estimators=40, max_samples=max_samples, seed=3)
    det.fit(data.X.iloc[:1500])
    Z = det._transform(det._checked(pd.concat([data.X, data.X.fillna(0.0) * 50.0 - 7.0])))
    reference = np.asarray(det.model_.decision_function(Z))  # type: ignore[attr-defined]
    np.testing.assert_allclose(det._score_scaled(Z), reference, rtol=0, atol=1e-12)
    np.testing.assert_allclose(det._score_scaled(Z[:1]), reference[:1], rtol=0, atol=1e-12)
    # the packed form is derived state: not pickled, rebuilt after loading
    clone = pickle.loads(pickle.dumps(det))
    assert "_packed" not in clone.__dict__
    np.testing.assert_allclose(clone.decision_function(data.X), det.decision_function(data.X), atol=1e-12)
    # a missing value (never left by _transform) takes scikit-learn's own path, which refuses it
    with pytest.raises(ValueError, match="NaN"):
        det._score_scaled(np.full((1, Z.shape[1]), np.nan, dtype=np.float32))
