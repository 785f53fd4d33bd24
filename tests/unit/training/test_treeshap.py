"""The lookup-table TreeSHAP gives XGBoost's own contributions, row for row."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import xgboost as xgb

from vigil.models.treeshap import TreeShap


def _data(rows: int, features: int, *, seed: int = 0, missing: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    X[rng.random(X.shape) < missing] = np.nan
    clean = np.nan_to_num(X)
    y = (clean[:, 0] + clean[:, 1] * clean[:, 2] + rng.normal(size=rows) * 0.5 > 0).astype(int)
    return X, y


def _booster(params: dict[str, object], rounds: int, X: np.ndarray, y: np.ndarray) -> xgb.Booster:
    base = {"objective": "binary:logistic", "nthread": 1, "seed": 0}
    return xgb.train(base | params, xgb.DMatrix(X, label=y), rounds)


@pytest.mark.parametrize(
    ("params", "rounds", "features"),
    [
        ({"max_depth": 1}, 3, 3),  # stumps
        ({"max_depth": 3}, 10, 4),  # few features: paths split one feature several times
        ({"max_depth": 6}, 40, 12),
        ({"max_depth": 8, "min_child_weight": 0}, 15, 20),
        ({"max_depth": 0, "grow_policy": "lossguide", "max_leaves": 24}, 10, 6),
    ],
)
def test_equals_xgboost_pred_contribs(params: dict[str, object], rounds: int, features: int) -> None:
    X, y = _data(3000, features)
    booster = _booster(params, rounds, X, y)
    explainer = TreeShap.from_booster(booster)
    assert explainer is not None
    probe = np.vstack(
        [
            X[:300],
            np.full((1, features), np.nan, np.float32),
            np.full((2, features), [[3e38], [-3e38]], np.float32),
        ]
    )
    expected = booster.predict(xgb.DMatrix(probe), pred_contribs=True)
    got = explainer.contributions(probe)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    # SHAP's own check: the contributions add up to the margin
    margin = booster.predict(xgb.DMatrix(probe), output_margin=True)
    np.testing.assert_allclose(got.sum(axis=1), margin, rtol=0, atol=1e-4)


def test_one_row_empty_input_and_bad_shape() -> None:
    X, y = _data(500, 5)
    explainer = TreeShap.from_booster(_booster({"max_depth": 4}, 5, X, y))
    assert explainer is not None
    expected = _booster({"max_depth": 4}, 5, X, y).predict(xgb.DMatrix(X[:1]), pred_contribs=True)
    np.testing.assert_allclose(explainer.contributions(X[:1]), expected, rtol=0, atol=1e-5)
    assert explainer.contributions(X[:0]).shape == (0, 6)
    with pytest.raises(ValueError, match="features"):
        explainer.contributions(X[:, :4])


def test_what_it_does_not_cover_falls_back() -> None:
    X, y = _data(500, 5)
    assert TreeShap.from_booster(_booster({"max_depth": 6}, 20, X, y), max_table_entries=1000) is None
    assert TreeShap.from_booster(_booster({"booster": "dart", "max_depth": 3}, 5, X, y)) is None
    labels = np.arange(len(y)) % 3
    multi = xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 3}, xgb.DMatrix(X, label=labels), 3
    )
    assert TreeShap.from_booster(multi) is None


def test_supervised_model_uses_it_and_does_not_pickle_it() -> None:
    import pandas as pd

    from vigil.models.supervised import Calibrator, SupervisedModel

    X, y = _data(1000, 6)
    booster = _booster({"max_depth": 5}, 20, X, y)
    names = tuple(f"f{i}" for i in range(6))
    model = SupervisedModel("xgboost", booster, Calibrator(), names)
    frame = pd.DataFrame(X[:50], columns=list(names))
    expected = booster.predict(xgb.DMatrix(X[:50]), pred_contribs=True)
    contributions = model.contributions(frame)
    assert contributions is not None
    np.testing.assert_allclose(contributions, expected, rtol=0, atol=1e-5)
    assert isinstance(model._treeshap, TreeShap)
    restored = pickle.loads(pickle.dumps(model))
    assert restored._treeshap is None  # rebuilt on first use
    np.testing.assert_allclose(restored.contributions(frame), expected, rtol=0, atol=1e-5)
