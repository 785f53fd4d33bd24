"""The whole offline pipeline in one call: dataset → features → train → evaluate → register →
promote. What `vigil train` runs, and what `vigil up` runs when the registry has no champion."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from training.dataset import LabelledTable
from training.evaluate import CostConfig
from training.models.data import FeatureMatrix
from training.train import TrainingOutcome, run_training
from vigil.models.registry import promote

log = logging.getLogger("training.pipeline")

SUPERVISED_MODEL = "fraud-supervised"
ANOMALY_MODEL = "fraud-anomaly"


@dataclass
class PipelineResult:
    supervised: TrainingOutcome
    anomaly: TrainingOutcome | None


def train_and_promote(
    matrix: FeatureMatrix | LabelledTable,
    *,
    tracking_uri: str,
    run_dir: Path,
    algorithm: str = "xgboost",
    detector: str | None = "isolation_forest",
    params: dict[str, Any] | None = None,
    label_delay: timedelta = timedelta(days=14),
    use_ray: bool = False,
    promote_champion: bool = True,
    zero_day_type: str | None = None,
    transaction_ids: np.ndarray | None = None,
    label_source: str = "labeled_at",
) -> PipelineResult:
    """Train the supervised model (and the anomaly detector), register both, and make them the
    ``champion`` that serving loads (unless ``promote_champion`` is False).

    ``matrix`` may be a :class:`~training.dataset.LabelledTable` (from ``load_table`` or
    ``dataset_table``): its ids name the saved test scores and its label source and delay are
    recorded with the models, which is what ``vigil score`` reads back.
    """
    if isinstance(matrix, LabelledTable):
        table = matrix
        matrix = table.matrix
        transaction_ids = table.transaction_ids
        label_source = table.label_source
        if table.label_delay is not None and table.label_delay != label_delay:
            raise ValueError(
                f"labels arrive {table.label_delay} after each transaction but the split gap is {label_delay}"
            )
    common: dict[str, Any] = {
        "costs": CostConfig(),
        "label_delay": label_delay,
        "transaction_ids": transaction_ids,
        "label_source": label_source,
        "run_dir": run_dir,
        "register_model": True,
        "tracking_uri": tracking_uri,
    }
    supervised = run_training(
        matrix,
        algorithm=algorithm,
        params=params,
        use_ray=use_ray,
        model_name=SUPERVISED_MODEL,
        zero_day_type=zero_day_type,
        **common,
    )
    anomaly = None
    if detector is not None:
        anomaly = run_training(matrix, algorithm=detector, model_name=ANOMALY_MODEL, **common)
    if promote_champion:
        for outcome in (supervised, anomaly):
            if outcome is not None and outcome.registered is not None:
                promote(outcome.registered.name, outcome.registered.version, tracking_uri=tracking_uri)
                log.info("champion: %s v%s", outcome.registered.name, outcome.registered.version)
    return PipelineResult(supervised=supervised, anomaly=anomaly)
