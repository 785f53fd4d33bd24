"""One training run: split by time, fit, calibrate, choose thresholds by cost, evaluate, report,
and (optionally) register in MLflow.

    python -m training.train --data features.parquet --algorithm xgboost --ray
    python -m training.train --synthetic-rows 50000 --algorithm autoencoder --no-register

The pipeline glue can call :func:`run_training` with a :class:`FeatureMatrix` directly.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.dataset import label_based_features
from training.evaluate import (
    CostConfig,
    Evaluation,
    Thresholds,
    TimeSplit,
    choose_thresholds,
    evaluate,
    time_split,
    write_report,
)
from training.models.data import FeatureMatrix, load_feature_matrix, make_synthetic_matrix
from training.models.supervised import ALGORITHMS, train_supervised
from vigil.models.anomaly import DETECTORS, make_detector
from vigil.models.base import ScoringModel
from vigil.models.registry import TrainingInputs

__all__ = [
    "TEST_SCORES_FILE",
    "TrainingOutcome",
    "add_common_arguments",
    "costs_from_args",
    "main",
    "matrix_from_args",
    "run_training",
    "write_test_scores",
]

log = logging.getLogger("vigil.training")
ALL_ALGORITHMS: tuple[str, ...] = (*ALGORITHMS, *DETECTORS)
#: The test window's scores, next to ``report.md`` in a run directory (and in its MLflow run).
TEST_SCORES_FILE = "test_scores.parquet"


@dataclass
class TrainingOutcome:
    """What a run produced: the model, its split, thresholds, evaluation and where things went."""

    model: ScoringModel
    split: TimeSplit
    thresholds: Thresholds
    evaluation: Evaluation
    run_dir: Path
    report_path: Path
    fit_seconds: float
    registered: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def fit_model(
    algorithm: str,
    split: TimeSplit,
    *,
    params: Mapping[str, Any] | None = None,
    calibration_method: str = "isotonic",
    use_ray: bool = False,
    ray_workers: int = 2,
) -> ScoringModel:
    """Fit a supervised model (calibrated) or an anomaly detector (on rows known legit)."""
    if algorithm in ALGORITHMS:
        return train_supervised(
            algorithm,
            split.train,
            split.calibration,
            params=params,
            calibration_method=calibration_method,  # type: ignore[arg-type]
            use_ray=use_ray,
            ray_workers=ray_workers,
        )
    legit = split.train.subset(split.train.y == 0)
    return make_detector(algorithm, **dict(params or {})).fit(legit.X)


def run_training(
    matrix: FeatureMatrix,
    *,
    algorithm: str = "xgboost",
    params: Mapping[str, Any] | None = None,
    costs: CostConfig = CostConfig(),
    label_delay: timedelta = timedelta(days=14),
    test_fraction: float = 0.2,
    calibration_fraction: float = 0.2,
    calibration_method: str = "isotonic",
    use_ray: bool = False,
    ray_workers: int = 2,
    run_dir: str | Path = "var/runs",
    model_name: str | None = None,
    register_model: bool = False,
    tracking_uri: str | None = None,
    zero_day_type: str | None = None,
    transaction_ids: np.ndarray | None = None,
    label_source: str = "labeled_at",
) -> TrainingOutcome:
    """Split → fit → thresholds (calibration slice) → evaluate (test) → report → register.

    The run directory gets ``report.md``, ``metrics.json`` and ``test_scores.parquet`` (the test
    window's scores, by ``transaction_ids`` when given, else by row of ``matrix``). The registered
    version records its :class:`~vigil.models.registry.TrainingInputs`: ``label_delay``, how the
    labels' arrival times were set (``label_source``), whether label-based features are used.
    """
    if algorithm not in ALL_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALL_ALGORITHMS}")
    split = time_split(
        matrix,
        label_delay=label_delay,
        test_fraction=test_fraction,
        calibration_fraction=calibration_fraction,
    )
    log.info("split: %s", json.dumps(split.summary(), default=str))
    started = time.perf_counter()
    model = fit_model(
        algorithm,
        split,
        params=params,
        calibration_method=calibration_method,
        use_ray=use_ray,
        ray_workers=ray_workers,
    )
    fit_seconds = time.perf_counter() - started
    log.info("fitted %s in %.1f s", algorithm, fit_seconds)
    thresholds = choose_thresholds(split.calibration.y, model.predict_proba(split.calibration.X), costs)
    ev = evaluate(model.predict_proba(split.test.X), split.test, thresholds, costs)

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = Path(run_dir) / f"{stamp}-{algorithm}"
    extra_sections: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if zero_day_type:
        from training.models.zero_day import zero_day_check

        zd = zero_day_check(matrix, zero_day_type, label_delay=label_delay)
        extra_sections["Zero-day check"] = zd.as_markdown()
        extra["zero_day"] = zd
        ev.metrics[f"zero_day_anomaly_recall__{zero_day_type}"] = zd.anomaly_recall
        ev.metrics[f"zero_day_supervised_recall__{zero_day_type}"] = zd.supervised_recall
    info = {
        "algorithm": algorithm,
        "kind": model.kind,
        "feature_version": matrix.feature_version,
        "n_features": len(matrix.feature_names),
        "fit_seconds": round(fit_seconds, 2),
        "ray_train": bool(use_ray and algorithm == "xgboost"),
        "params": json.dumps(dict(params or {}), default=str),
    }
    report = write_report(
        ev,
        out,
        title=f"Vigil {model.kind} model: {algorithm}",
        model_info=info,
        split=split,
        extra_sections=extra_sections,
    )
    write_test_scores(out / TEST_SCORES_FILE, split, ev.scores, transaction_ids)
    inputs = TrainingInputs(
        feature_version=matrix.feature_version,
        label_delay=label_delay,
        label_source=label_source,
        uses_label_features=bool(label_based_features(matrix.feature_names)),
    )
    registered = None
    if register_model:
        from vigil.models.registry import register

        registered = register(
            model,
            name=model_name or ("fraud-supervised" if model.kind == "supervised" else "fraud-anomaly"),
            feature_version=matrix.feature_version,
            training_window=split.training_window,
            params={
                "algorithm": algorithm,
                **dict(params or {}),
                "label_delay_days": label_delay.total_seconds() / 86_400,
                "label_source": label_source,
                "calibration": calibration_method,
                "costs": costs.__dict__,
            },
            metrics={**ev.metrics, "fit_seconds": fit_seconds},
            report_dir=out,
            tracking_uri=tracking_uri,
            training_inputs=inputs,
        )
        log.info("registered %s version %s (run %s)", registered.name, registered.version, registered.run_id)
        if model.kind == "supervised":
            from vigil.monitoring.reference import log_reference, training_reference

            # The monitor's drift reference: bins frozen at training time, stored with the model.
            log_reference(
                registered.run_id, training_reference(split.train.X, ev.scores), tracking_uri=tracking_uri
            )
    return TrainingOutcome(
        model=model,
        split=split,
        thresholds=thresholds,
        evaluation=ev,
        run_dir=out,
        report_path=report,
        fit_seconds=fit_seconds,
        registered=registered,
        extra=extra,
    )


def write_test_scores(
    path: Path, split: TimeSplit, scores: np.ndarray, transaction_ids: np.ndarray | None = None
) -> Path:
    """Write the test window's scores as Parquet: ``transaction_id`` (the table's own ids; ``row``,
    the position in the training matrix, when unknown), ``event_time`` (UTC), ``is_fraud`` (final
    label) and ``score`` (higher = riskier), so that ``vigil score`` output can be compared."""
    rows = np.asarray(split.test_rows)
    if len(rows) != len(scores):
        raise ValueError(f"{len(scores)} scores for {len(rows)} test rows")
    key = (
        {"transaction_id": np.asarray(transaction_ids)[rows]}
        if transaction_ids is not None
        else {"row": rows}
    )
    frame = pd.DataFrame(
        {
            **key,
            "event_time": split.test.event_time.to_numpy(),
            "is_fraud": split.test.y.astype(bool),
            "score": np.asarray(scores, dtype=np.float64),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


# --------------------------------------------------------------------------------------------------
# CLI


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Data, split, cost and registry flags shared by ``training.train`` and ``training.tune``."""
    data = parser.add_argument_group("data")
    src = data.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="feature Parquet file/directory (label column is_fraud)")
    src.add_argument(
        "--synthetic-rows", type=int, help="use an in-process synthetic matrix of N rows instead"
    )
    data.add_argument("--feature-version", help="overrides the Parquet metadata vigil.feature_version")
    data.add_argument("--label-column", default="is_fraud")
    data.add_argument("--label-delay-days", type=float, default=14.0, help="label-delay gap (default 14)")
    data.add_argument("--test-fraction", type=float, default=0.2)
    data.add_argument("--calibration-fraction", type=float, default=0.2)
    cost = parser.add_argument_group("costs (per transaction, one currency unit; see CostConfig)")
    defaults = CostConfig()
    cost.add_argument("--cost-missed-fraud", type=float, default=defaults.missed_fraud)
    cost.add_argument("--cost-review", type=float, default=defaults.review)
    cost.add_argument("--cost-false-block", type=float, default=defaults.false_block)
    cost.add_argument("--max-review-rate", type=float, default=defaults.max_review_rate)
    cost.add_argument("--top-k-per-day", type=int, default=defaults.top_k_per_day)
    reg = parser.add_argument_group("outputs and registry")
    reg.add_argument("--run-dir", type=Path, default=Path("var/runs"), help="report directory root")
    reg.add_argument(
        "--register",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log the run and register the model in MLflow (default: yes)",
    )
    reg.add_argument("--promote", action="store_true", help="point the champion alias at the new version")
    reg.add_argument("--model-name", help="registered model name (default fraud-supervised / fraud-anomaly)")
    reg.add_argument(
        "--tracking-uri", help="MLflow URI (default MLFLOW_TRACKING_URI or sqlite var/mlflow.db)"
    )


def matrix_from_args(args: argparse.Namespace) -> FeatureMatrix:
    if args.data is not None:
        return load_feature_matrix(
            args.data, feature_version=args.feature_version, label_column=args.label_column
        )
    return make_synthetic_matrix(
        args.synthetic_rows, days=90, feature_version=args.feature_version or "synthetic-1"
    )


def costs_from_args(args: argparse.Namespace) -> CostConfig:
    return CostConfig(
        missed_fraud=args.cost_missed_fraud,
        review=args.cost_review,
        false_block=args.cost_false_block,
        max_review_rate=args.max_review_rate,
        top_k_per_day=args.top_k_per_day,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.train", description="Train, evaluate and register one Vigil fraud model."
    )
    add_common_arguments(parser)
    model = parser.add_argument_group("model")
    model.add_argument("--algorithm", choices=ALL_ALGORITHMS, default="xgboost")
    model.add_argument("--params", type=json.loads, default=None, help="JSON dict, e.g. '{\"max_depth\": 4}'")
    model.add_argument("--calibration", choices=("isotonic", "platt"), default="isotonic")
    model.add_argument("--ray", action="store_true", help="train XGBoost on Ray Train (XGBoostTrainer)")
    model.add_argument("--ray-workers", type=int, default=2)
    model.add_argument("--zero-day-type", help="also run the zero-day check holding out this fraud type")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    matrix = matrix_from_args(args)
    if args.ray:
        from training.models.ray_support import init_local_ray

        init_local_ray()
    outcome = run_training(
        matrix,
        algorithm=args.algorithm,
        params=args.params,
        costs=costs_from_args(args),
        label_delay=timedelta(days=args.label_delay_days),
        test_fraction=args.test_fraction,
        calibration_fraction=args.calibration_fraction,
        calibration_method=args.calibration,
        use_ray=args.ray,
        ray_workers=args.ray_workers,
        run_dir=args.run_dir,
        model_name=args.model_name,
        register_model=args.register,
        tracking_uri=args.tracking_uri,
        zero_day_type=args.zero_day_type,
    )
    if args.promote and outcome.registered is not None:
        from vigil.models.registry import promote

        promote(outcome.registered.name, outcome.registered.version, tracking_uri=args.tracking_uri)
    m = outcome.evaluation.metrics
    print(
        json.dumps(
            {
                "report": str(outcome.report_path),
                "roc_auc": m["roc_auc"],
                "pr_auc": m["pr_auc"],
                "recall_at_1pct_fpr": m.get("recall_at_1pct_fpr"),
                "thresholds": {"review": outcome.thresholds.review, "block": outcome.thresholds.block},
                "registered": outcome.registered.__dict__ if outcome.registered else None,
            },
            indent=2,
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
