"""Registry round trip on a temporary SQLite store: register, list, promote, load the champion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.evaluate import CostConfig, choose_thresholds, evaluate, write_report
from training.models.data import FeatureMatrix, make_synthetic_matrix
from training.models.supervised import train_supervised
from vigil.models import registry
from vigil.models.anomaly import make_detector

pytestmark = [
    # MLflow 3.x's SQLAlchemy store uses the ``noload`` strategy that SQLAlchemy 2.1 deprecates.
    pytest.mark.filterwarnings(r"ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def data() -> tuple[FeatureMatrix, FeatureMatrix]:
    m = make_synthetic_matrix(4000, 10, fraud_rate=0.05, days=20, seed=4)
    idx = np.arange(len(m))
    return m.subset(idx < 3000), m.subset(idx >= 3000)


def test_round_trip(store: str, data: tuple[FeatureMatrix, FeatureMatrix], tmp_path: Path) -> None:
    train, cal = data
    model = train_supervised("xgboost", train, cal, params={"num_boost_round": 20}, nthread=1)
    p_cal = model.predict_proba(cal.X)
    ev = evaluate(p_cal, cal, choose_thresholds(cal.y, p_cal), CostConfig())
    report = write_report(ev, tmp_path / "run", title="registry test")

    v1 = registry.register(
        model,
        name="fraud-supervised",
        feature_version=train.feature_version,
        training_window=train.window,
        params={"num_boost_round": 20},
        metrics=ev.metrics,
        report_dir=report.parent,
        tracking_uri=store,
    )
    v2 = registry.register(model, name="fraud-supervised", feature_version="synthetic-1", tracking_uri=store)
    assert (v1.version, v2.version) == ("1", "2")

    with pytest.raises(Exception, match="alias"):
        registry.load_champion("fraud-supervised", tracking_uri=store)

    registry.promote("fraud-supervised", v1.version, tracking_uri=store)
    listed = registry.list_models("fraud-supervised", tracking_uri=store)
    assert [(i.version, i.aliases) for i in listed] == [("2", ()), ("1", ("champion",))]
    assert listed[1].feature_version == "synthetic-1" and listed[1].algorithm == "xgboost"

    loaded = registry.load_champion("fraud-supervised", tracking_uri=store)
    assert loaded.version == "1"
    assert loaded.feature_names == train.feature_names
    assert loaded.feature_version == "synthetic-1"
    assert loaded.manifest["training_window"][0].startswith(str(train.window[0].date()))
    assert loaded.manifest["metrics"]["roc_auc"] == pytest.approx(ev.metrics["roc_auc"])
    np.testing.assert_allclose(loaded.predict_proba(cal.X), p_cal)
    assert loaded.explain(cal.X.iloc[:2], k=2) is not None

    with pytest.raises(registry.FeatureMismatchError):
        loaded.predict_proba(cal.X.drop(columns=[cal.X.columns[0]]))
    with pytest.raises(registry.FeatureMismatchError):
        loaded.predict_proba(cal.X[list(reversed(cal.X.columns))])
    with pytest.raises(registry.FeatureMismatchError):
        loaded.check(cal.X, feature_version="features-2")

    registry.promote("fraud-supervised", v2.version, tracking_uri=store)
    assert registry.load_champion("fraud-supervised", tracking_uri=store).version == "2"


def test_anomaly_bundle_same_format(store: str, data: tuple[FeatureMatrix, FeatureMatrix]) -> None:
    train, cal = data
    det = make_detector("isolation_forest", n_estimators=20).fit(train.X)
    v = registry.register(det, name="fraud-anomaly", feature_version="synthetic-1", tracking_uri=store)
    registry.promote("fraud-anomaly", v.version, tracking_uri=store)
    loaded = registry.load_champion("fraud-anomaly", tracking_uri=store)
    assert loaded.kind == "anomaly" and loaded.algorithm == "isolation_forest"
    np.testing.assert_allclose(loaded.predict_proba(cal.X), det.predict_proba(cal.X))
    assert loaded.explain(cal.X.iloc[:2]) is None
    names = {i.name for i in registry.list_models(tracking_uri=store)}
    assert {"fraud-supervised", "fraud-anomaly"} <= names


def test_promote_unknown_version_fails(store: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - MLflow raises its own RESOURCE_DOES_NOT_EXIST
        registry.promote("fraud-anomaly", 99, tracking_uri=store)


def test_bundle_without_mlflow(tmp_path: Path, data: tuple[FeatureMatrix, FeatureMatrix]) -> None:
    train, _ = data
    det = make_detector("isolation_forest", n_estimators=10).fit(train.X)
    registry.save_bundle(det, tmp_path / "b", feature_version="v9")
    loaded = registry.load_bundle(tmp_path / "b")
    assert loaded.feature_version == "v9" and loaded.feature_names == train.feature_names


def test_explain_where_explains_only_rows_at_the_threshold(
    tmp_path: Path, data: tuple[FeatureMatrix, FeatureMatrix]
) -> None:
    train, cal = data
    model = train_supervised("xgboost", train, cal, params={"num_boost_round": 20}, nthread=1)
    registry.save_bundle(model, tmp_path / "m", feature_version="v1")
    loaded = registry.load_bundle(tmp_path / "m").for_serving()
    X = cal.X.iloc[:200]
    scores = loaded.predict_proba(X)
    above = float(np.quantile(scores, 0.9))
    explained = loaded.explain_where(X, scores, above=above, k=2)
    assert explained is not None and len(explained) == len(X)
    full = loaded.explain(X, k=2)
    assert full is not None
    for score, got, want in zip(scores, explained, full, strict=True):
        assert got == (want if score >= above else None)
    assert sum(e is not None for e in explained) == int((scores >= above).sum()) > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Serve's pydantic-v1 style fields
def test_a_serving_replica_loads_the_champion_once_reloads_a_promotion_and_refuses_other_features(
    tmp_path: Path,
) -> None:
    """deployments.graph._ModelHolder, as a scorer replica uses it (Serve calls reconfigure right
    after the constructor: the same champion is not loaded twice)."""
    from deployments.graph import _ModelHolder
    from vigil.features.spec import FEATURE_NAMES, FEATURE_VERSION

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.standard_normal((500, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES))
    det = make_detector("isolation_forest", n_estimators=10).fit(X)
    v1 = registry.register(det, name="fraud-anomaly", feature_version=FEATURE_VERSION, tracking_uri=store)
    v2 = registry.register(det, name="fraud-anomaly", feature_version=FEATURE_VERSION, tracking_uri=store)
    registry.promote("fraud-anomaly", v1.version, tracking_uri=store)

    holder = _ModelHolder("fraud-anomaly", store)
    holder.load(None)
    first = holder.model
    assert holder.version == "fraud-anomaly:1"
    holder.load(None)  # reconfigure({}) with the champion unchanged
    assert holder.model is first
    registry.promote("fraud-anomaly", v2.version, tracking_uri=store)
    holder.load(None)  # reconfigure after a promotion
    assert holder.version == "fraud-anomaly:2" and holder.model is not first
    holder.load("1")  # a pinned version
    assert holder.version == "fraud-anomaly:1"

    other = make_detector("isolation_forest", n_estimators=10).fit(X.iloc[:, :9])
    v3 = registry.register(other, name="fraud-anomaly", feature_version=FEATURE_VERSION, tracking_uri=store)
    registry.promote("fraud-anomaly", v3.version, tracking_uri=store)
    with pytest.raises(registry.FeatureMismatchError, match="refusing"):
        holder.load(None)
    assert holder.version == "fraud-anomaly:1"  # still serving the last good model
