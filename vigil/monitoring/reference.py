"""Drift references and evaluation figures kept with a model version in the MLflow registry.

At training, :func:`training_reference` fits bins on the training matrix's columns that the
monitor can recompute from stored rows, plus the scores the model gave its evaluation slice, and
:func:`log_reference` stores them with the run as ``monitoring/reference.json``. The monitor
reads them back per model version (:func:`registry_lookup`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vigil.monitoring.drift import ReferenceProfile, fit_numeric, reference_profile

REFERENCE_ARTIFACT = "monitoring/reference.json"
#: Training-matrix columns the monitor recomputes from stored transactions.
MONITORED_NUMERIC = ("amount", "hour_utc")
MONITORED_CATEGORICAL = ("channel_code",)


def training_reference(
    matrix: pd.DataFrame, scores: Sequence[float] | np.ndarray | None = None, *, n_bins: int = 10
) -> ReferenceProfile:
    """Reference bins from a training feature matrix (and the model's evaluation scores)."""
    profile = reference_profile(
        matrix,
        numeric=MONITORED_NUMERIC,
        categorical=MONITORED_CATEGORICAL,
        n_bins=n_bins,
        source="training matrix",
    )
    if scores is not None and len(scores):
        profile.bins[ReferenceProfile.SCORE] = fit_numeric(ReferenceProfile.SCORE, scores, n_bins=n_bins)
    return profile


def _client(tracking_uri: str | None) -> tuple[Any, str]:
    from mlflow import MlflowClient

    from vigil.models.registry import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri


def log_reference(run_id: str, profile: ReferenceProfile, *, tracking_uri: str | None = None) -> None:
    """Store ``profile`` with a training run (before or after its version is registered)."""
    client, _ = _client(tracking_uri)
    client.log_text(run_id, profile.to_json(), REFERENCE_ARTIFACT)


def load_reference(name: str, version: str, *, tracking_uri: str | None = None) -> ReferenceProfile | None:
    """This version's reference bins, or ``None`` when its run logged none."""
    import mlflow.artifacts

    client, uri = _client(tracking_uri)
    run_id = client.get_model_version(name, version).run_id
    folder = REFERENCE_ARTIFACT.rpartition("/")[0]
    if REFERENCE_ARTIFACT not in {a.path for a in client.list_artifacts(run_id, folder)}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=tmp, tracking_uri=uri
        )
        return ReferenceProfile.from_json(Path(local).read_text(encoding="utf-8"))


def version_metrics(name: str, version: str, *, tracking_uri: str | None = None) -> dict[str, float]:
    """The metrics logged with this version's training run (its evaluation report)."""
    client, _ = _client(tracking_uri)
    run_id = client.get_model_version(name, version).run_id
    return {k: float(v) for k, v in client.get_run(run_id).data.metrics.items()}


def registry_lookup(
    tracking_uri: str | None,
) -> Callable[[str, str], tuple[ReferenceProfile | None, dict[str, float]]]:
    """``(model, version) -> (reference bins or None, evaluation metrics)`` for :class:`Monitor`."""

    def lookup(model: str, version: str) -> tuple[ReferenceProfile | None, dict[str, float]]:
        return (
            load_reference(model, version, tracking_uri=tracking_uri),
            version_metrics(model, version, tracking_uri=tracking_uri),
        )

    return lookup
