"""`vigil up` retrains the demo champion when the registered one was built on other features."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import cli.main as cli_main
import training.dataset
import training.pipeline
import vigil.models.registry
from vigil.features import FEATURE_VERSION
from vigil.models.registry import ModelVersionInfo


def _champion(name: str, feature_version: str) -> ModelVersionInfo:
    return ModelVersionInfo(name, "3", ("champion",), "", "", feature_version, "run", 0)


@pytest.mark.parametrize(
    ("registered", "retrains"),
    [
        ([], True),
        (
            [_champion("fraud-supervised", FEATURE_VERSION), _champion("fraud-anomaly", FEATURE_VERSION)],
            False,
        ),
        (
            [
                _champion("fraud-supervised", "features-0000000000000000"),
                _champion("fraud-anomaly", FEATURE_VERSION),
            ],
            True,
        ),
    ],
)
def test_champion_on_other_features_is_retrained(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, registered: list[ModelVersionInfo], retrains: bool
) -> None:
    trained: list[Any] = []
    monkeypatch.setattr(vigil.models.registry, "list_models", lambda **_: registered)
    monkeypatch.setattr(cli_main, "_demo_history", lambda settings: tmp_path)
    monkeypatch.setattr(training.dataset, "matrix_from_dataset", lambda path: "matrix")
    result = SimpleNamespace(supervised=SimpleNamespace(evaluation=SimpleNamespace(metrics={"pr_auc": 0.5})))

    def train_and_promote(matrix: Any, **_: Any) -> Any:
        trained.append(matrix)
        return result

    monkeypatch.setattr(training.pipeline, "train_and_promote", train_and_promote)
    cli_main._ensure_champion(SimpleNamespace(tracking_uri="sqlite://", home=tmp_path))  # type: ignore[arg-type]
    assert trained == (["matrix"] if retrains else [])
