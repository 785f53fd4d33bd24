"""`vigil score` computes the features `vigil train` computed: the real CLI, end to end.

MLflow runs on a SQLite store under a temporary VIGIL_HOME; no Ray. The tables are small (a few
thousand rows) so each test stays well under a minute.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from cli.main import app
from training.dataset import label_based_features, load_table
from training.scoring import ScoringRefused, plan_labels
from vigil.models.registry import TrainingInputs, load_champion, promote, register

pytestmark = [
    # MLflow 3.x's SQLAlchemy store uses the ``noload`` strategy that SQLAlchemy 2.1 deprecates.
    pytest.mark.filterwarnings(r"ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning"),
]

# The table's own names: nothing here is called like our columns.
BYOD_MAP = "transaction_id=txid,user_id=cust,merchant_id=shop,amount=amt,created_at=ts,is_fraud=fraud"
TRAIN_UNTIL = "2025-03-03"
START = pd.Timestamp("2025-01-01", tz="UTC")
DAYS = 84


def _home(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VIGIL_HOME", str(tmp))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("VIGIL_MLFLOW_TRACKING_URI", raising=False)
    return tmp


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _run(*args: str) -> str:
    code, output = _invoke(*args)
    assert code == 0, output
    return output


def _test_scores(output: str) -> pd.DataFrame:
    report = Path(re.findall(r"report: (\S+report\.md)", output)[0])
    return pd.read_parquet(report.parent / "test_scores.parquet")


def byod_table(seed: int = 3, rows: int = 5_000) -> pd.DataFrame:
    """A card table with its own column names, string ids, and fraud that only the label history
    reveals: a few merchants are compromised (a third of their payments are fraud) while users,
    amounts and times look the same everywhere, so without the known labels per merchant nothing
    tells the fraud apart."""
    rng = np.random.default_rng(seed)
    merchants = np.array([f"m{i:03d}" for i in range(60)])
    compromised = rng.choice(60, size=8, replace=False)
    shop = rng.integers(0, 60, size=rows)
    fraud_rate = np.where(np.isin(shop, compromised), 0.35, 0.005)
    seconds = np.sort(rng.integers(0, DAYS * 86_400, size=rows))
    return pd.DataFrame(
        {
            "txid": [f"tx-{i:06d}" for i in rng.permutation(rows)],
            "cust": rng.integers(0, 400, size=rows).astype(str),
            "shop": merchants[shop],
            "amt": np.round(rng.lognormal(3.5, 1.0, size=rows), 2),
            "ts": START + pd.to_timedelta(seconds, unit="s"),
            "fraud": (rng.random(rows) < fraud_rate).astype(np.int8),
        }
    )


@pytest.fixture(scope="module")
def trained_byod(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame, str]:
    """One `vigil train` on the Parquet table (and the CSV copy next to it); returns
    (home, table dir, table, train output)."""
    home = tmp_path_factory.mktemp("home")
    tables = tmp_path_factory.mktemp("byod")
    frame = byod_table()
    frame.to_parquet(tables / "cards.parquet", index=False)
    frame.assign(ts=frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(tables / "cards.csv", index=False)
    with pytest.MonkeyPatch.context() as mp:
        _home(home, mp)
        output = _run(
            "train",
            "--transactions",
            str(tables / "cards.parquet"),
            "--map",
            BYOD_MAP,
            "--label-delay",
            "7d",
            "--train-until",
            TRAIN_UNTIL,
            "--detector",
            "none",
        )
    return home, tables, frame, output


def test_model_records_its_training_inputs(
    trained_byod: tuple[Path, Path, pd.DataFrame, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, _, _, _ = trained_byod
    _home(home, monkeypatch)
    loaded = load_champion("fraud-supervised", tracking_uri=f"sqlite:///{(home / 'mlflow.db').resolve()}")
    assert loaded.training_inputs == TrainingInputs(
        feature_version=loaded.feature_version,
        label_delay=timedelta(days=7),
        label_source="label_delay",
        uses_label_features=bool(label_based_features(loaded.feature_names)),
    )
    assert loaded.training_inputs.uses_label_features
    from mlflow import MlflowClient

    uri = f"sqlite:///{(home / 'mlflow.db').resolve()}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version("fraud-supervised", "1")
    tags = version.tags
    assert "report/test_scores.parquet" in [
        a.path for a in client.list_artifacts(str(version.run_id), "report")
    ]
    assert tags["vigil.label_delay_seconds"] == str(7 * 86_400)
    assert (tags["vigil.label_source"], tags["vigil.uses_label_features"]) == ("label_delay", "true")


def test_a_model_without_a_record_scores_with_an_explicit_delay_and_a_warning(
    trained_byod: tuple[Path, Path, pd.DataFrame, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home, tables, _, _ = trained_byod
    recorded = load_champion("fraud-supervised", tracking_uri=f"sqlite:///{(home / 'mlflow.db').resolve()}")
    old_home = _home(tmp_path / "old", monkeypatch)
    uri = f"sqlite:///{(old_home / 'mlflow.db').resolve()}"
    version = register(  # as registered before models recorded their inputs
        recorded.model, name="fraud-supervised", feature_version=recorded.feature_version, tracking_uri=uri
    )
    promote("fraud-supervised", version.version, tracking_uri=uri)
    args = ["score", "--transactions", str(tables / "cards.parquet"), "--map", BYOD_MAP]
    code, output = _invoke(*args, "--out", str(tmp_path / "a.parquet"))
    assert code == 2 and "--label-delay" in output
    output = _run(*args, "--label-delay", "7d", "--out", str(tmp_path / "b.parquet"))
    assert "warning" in output and "without a record" in output
    _home(home, monkeypatch)
    _run(*args, "--out", str(tmp_path / "c.parquet"))
    explicit, recorded_scores = (
        pd.read_parquet(tmp_path / "b.parquet"),
        pd.read_parquet(tmp_path / "c.parquet"),
    )
    pd.testing.assert_frame_equal(explicit, recorded_scores)


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_score_reproduces_the_training_report_and_beats_the_label_free_path(
    trained_byod: tuple[Path, Path, pd.DataFrame, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    suffix: str,
) -> None:
    home, tables, frame, train_output = trained_byod
    _home(home, monkeypatch)
    out = tmp_path / "scores.parquet"
    _run("score", "--transactions", str(tables / f"cards.{suffix}"), "--map", BYOD_MAP, "--out", str(out))
    scores = pd.read_parquet(out)
    # The table's own ids, every row once.
    assert sorted(scores["transaction_id"]) == sorted(frame["txid"])

    # The training run's test window, scored again from the whole table: the same scores.
    expected = _test_scores(train_output)
    assert len(expected) > 100
    joined = expected.merge(scores, on="transaction_id", suffixes=("_train", "_score"), validate="1:1")
    assert len(joined) == len(expected)
    np.testing.assert_allclose(joined["score_score"], joined["score_train"], rtol=0, atol=1e-9)

    # The weeks after --train-until: ranked well above chance.
    after = frame.assign(transaction_id=frame["txid"]).merge(scores, on="transaction_id")
    after = after[after["ts"] >= pd.Timestamp(TRAIN_UNTIL, tz="UTC")]
    assert after["fraud"].sum() > 30
    auc = roc_auc_score(after["fraud"], after["score"])
    assert auc > 0.8, auc

    if suffix == "parquet":
        # The old path, once: the same rows' features without the label history (what
        # `compute_features(frame)` without `labels=` gave). Its ranking stays near chance.
        loaded = load_champion("fraud-supervised", tracking_uri=f"sqlite:///{(home / 'mlflow.db').resolve()}")
        mapping = dict(p.split("=") for p in BYOD_MAP.split(",") if not p.startswith("is_fraud"))
        unlabelled = load_table(tables / "cards.parquet", mapping=mapping, require_label=False)
        assert unlabelled.label_source == "none"
        old = pd.DataFrame(
            {"txid": unlabelled.transaction_ids, "old": loaded.predict_proba(unlabelled.matrix.X)}
        )
        after = after.merge(old, on="txid")
        old_auc = roc_auc_score(after["fraud"], after["old"])
        assert old_auc < 0.65 < 0.8 < auc, (old_auc, auc)


def test_score_refuses_a_table_without_the_label_column(
    trained_byod: tuple[Path, Path, pd.DataFrame, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home, _, frame, _ = trained_byod
    _home(home, monkeypatch)
    unlabelled = tmp_path / "unlabelled.parquet"
    frame.drop(columns=["fraud"]).to_parquet(unlabelled, index=False)
    code, output = _invoke(
        "score",
        "--transactions",
        str(unlabelled),
        "--map",
        BYOD_MAP.replace(",is_fraud=fraud", ""),
        "--out",
        str(tmp_path / "s.parquet"),
    )
    assert code == 2
    assert "label-based features" in output and "no is_fraud column" in output
    assert not (tmp_path / "s.parquet").exists()


def test_score_refuses_another_label_delay_unless_overridden(
    trained_byod: tuple[Path, Path, pd.DataFrame, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home, tables, _, _ = trained_byod
    _home(home, monkeypatch)
    args = ["score", "--transactions", str(tables / "cards.parquet"), "--map", BYOD_MAP]
    code, output = _invoke(*args, "--label-delay", "1d", "--out", str(tmp_path / "a.parquet"))
    assert code == 2
    assert "differs from the model's" in output and "7d" in output and "skew" in output
    # The model's own delay, spelled out, is fine; another one with the override too (with a warning).
    _run(*args, "--label-delay", "7d", "--out", str(tmp_path / "b.parquet"))
    forced = _run(
        *args, "--label-delay", "1d", "--label-delay-override", "--out", str(tmp_path / "c.parquet")
    )
    assert "warning" in forced and "skew" in forced
    same, shifted = pd.read_parquet(tmp_path / "b.parquet"), pd.read_parquet(tmp_path / "c.parquet")
    assert not np.allclose(same["score"], shifted["score"])


def test_score_on_a_generated_dataset_reproduces_the_training_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _home(tmp_path / "home", monkeypatch)
    data = tmp_path / "data"
    _run("generate", "--out", str(data), "--users", "150", "--transactions", "4000", "--days", "30",
         "--no-progress", "--no-validate")  # fmt: skip
    train_output = _run("train", "--data", str(data), "--label-delay", "3d", "--detector", "none")
    out = tmp_path / "scores.parquet"
    _run("score", "--data", str(data), "--out", str(out))
    scores = pd.read_parquet(out)
    ids = pd.read_parquet(data / "transactions.parquet", columns=["transaction_id"])["transaction_id"]
    assert sorted(scores["transaction_id"]) == sorted(ids)
    expected = _test_scores(train_output)
    joined = expected.merge(scores, on="transaction_id", suffixes=("_train", "_score"), validate="1:1")
    assert len(joined) == len(expected) > 100
    np.testing.assert_allclose(joined["score_score"], joined["score_train"], rtol=0, atol=1e-9)


def test_score_needs_exactly_one_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _home(tmp_path, monkeypatch)
    code, output = _invoke("score", "--out", str(tmp_path / "s.parquet"))
    assert code == 2 and "exactly one of --transactions and --data" in output


def test_score_without_a_champion_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _home(tmp_path, monkeypatch)
    table = tmp_path / "t.parquet"
    byod_table(rows=1_000).to_parquet(table, index=False)
    code, output = _invoke(
        "score", "--transactions", str(table), "--map", BYOD_MAP, "--out", str(tmp_path / "s")
    )
    assert code == 2 and "no model fraud-supervised champion" in output


# --------------------------------------------------------------------------------------------------
# The label-timing decision, without the CLI

INPUTS = TrainingInputs(
    feature_version="v", label_delay=timedelta(days=7), label_source="label_delay", uses_label_features=True
)


def test_plan_uses_the_recorded_delay_by_default() -> None:
    plan = plan_labels(INPUTS, requested=None)
    assert (plan.label_delay, plan.labeled_at, plan.warnings) == (timedelta(days=7), False, ())


def test_plan_refuses_another_delay_and_names_both() -> None:
    with pytest.raises(ScoringRefused, match=r"--label-delay 2d differs.*trained with labels known 7d"):
        plan_labels(INPUTS, requested=timedelta(days=2))
    forced = plan_labels(INPUTS, requested=timedelta(days=2), override=True)
    assert forced.label_delay == timedelta(days=2) and forced.warnings


def test_plan_for_a_model_trained_on_arrival_times() -> None:
    arrival = TrainingInputs("v", timedelta(days=14), "labeled_at", True)
    assert plan_labels(arrival, requested=None).labeled_at is True
    with pytest.raises(ScoringRefused, match="labeled_at"):
        plan_labels(arrival, requested=timedelta(days=14))


def test_plan_for_a_model_without_a_record_warns() -> None:
    plan = plan_labels(None, requested=timedelta(hours=12))
    assert plan.label_delay == timedelta(hours=12)
    assert "12h" in plan.warnings[0] and "without a record" in plan.warnings[0]


def test_load_table_keeps_string_ids_and_refuses_missing_label_times(tmp_path: Path) -> None:
    frame = byod_table(rows=1_000)
    path = tmp_path / "t.parquet"
    frame.to_parquet(path, index=False)
    mapping = dict(p.split("=") for p in BYOD_MAP.split(","))
    table = load_table(path, mapping=mapping, label_delay=timedelta(days=7), until="2025-02-01")
    keep = frame["ts"] < pd.Timestamp("2025-02-01", tz="UTC")
    assert list(table.transaction_ids) == list(frame["txid"][keep])
    assert table.matrix.y.sum() == frame["fraud"][keep].sum()
    assert (table.label_source, table.label_delay) == ("label_delay", timedelta(days=7))
    with pytest.raises(ValueError, match="labeled_at"):
        load_table(path, mapping=mapping)


def test_training_stores_the_monitors_drift_reference_with_the_model(
    trained_byod: tuple[Path, Path, pd.DataFrame, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vigil.monitoring.reference import ReferenceProfile, load_reference

    home, _, _, _ = trained_byod
    _home(home, monkeypatch)
    profile = load_reference(
        "fraud-supervised", "1", tracking_uri=f"sqlite:///{(home / 'mlflow.db').resolve()}"
    )
    assert profile is not None, "vigil train logged no drift reference with the model"
    assert "amount" in profile.bins and ReferenceProfile.SCORE in profile.bins
