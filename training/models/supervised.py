"""Supervised fraud models: XGBoost (plain or distributed on Ray Train), LightGBM, Random Forest.

Each is wrapped in :class:`SupervisedModel`, which adds a calibrator fitted on a time-later slice
(so ``predict_proba`` is a probability the decision thresholds can be costed against) and per-row
feature contributions for explanations.

Ray Train note: each ``train.report`` waits for the controller's next poll
(``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``), so reporting every boosting round made a fit spend most
of its time waiting (docs/training.md). :func:`fit_xgboost_ray` therefore reports once, at the
end, unless ``report_every`` asks for progress.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from training.models.data import FeatureMatrix
from vigil.models.supervised import Calibrator, SupervisedModel

__all__ = [
    "ALGORITHMS",
    "DEFAULT_PARAMS",
    "Calibrator",
    "SupervisedModel",
    "fit_lightgbm",
    "fit_random_forest",
    "fit_xgboost",
    "fit_xgboost_ray",
    "train_supervised",
]

Algorithm = Literal["xgboost", "lightgbm", "random_forest"]
ALGORITHMS: tuple[str, ...] = ("xgboost", "lightgbm", "random_forest")

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "xgboost": {
        "objective": "binary:logistic",
        "eval_metric": ["aucpr", "logloss"],
        "tree_method": "hist",
        "max_depth": 6,
        "eta": 0.1,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "min_child_weight": 1.0,
        "num_boost_round": 300,
        "early_stopping_rounds": 30,
    },
    "lightgbm": {
        "objective": "binary",
        "metric": "average_precision",
        "num_leaves": 31,
        "learning_rate": 0.1,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "min_child_samples": 20,
        "verbosity": -1,
        "num_boost_round": 300,
        "early_stopping_rounds": 30,
    },
    "random_forest": {
        "n_estimators": 100,
        "max_depth": 12,
        "min_samples_leaf": 20,
        "max_features": "sqrt",
    },
}

LABEL = "__label__"


def _split_params(algorithm: str, params: Mapping[str, Any] | None) -> tuple[dict[str, Any], int, int]:
    merged = {**DEFAULT_PARAMS[algorithm], **(params or {})}
    rounds = int(merged.pop("num_boost_round", 0))
    early = int(merged.pop("early_stopping_rounds", 0) or 0)
    return merged, rounds, early


# --------------------------------------------------------------------------------------------------
# Fitting


def fit_xgboost(
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    X_valid: pd.DataFrame | None = None,
    y_valid: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
    nthread: int | None = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """Plain single-process ``xgboost.train``; returns the Booster (early-stopped on the valid set)."""
    import xgboost as xgb

    booster_params, rounds, early = _split_params("xgboost", params)
    booster_params.setdefault("nthread", nthread or os.cpu_count() or 1)
    dtrain = xgb.QuantileDMatrix(X, label=y, max_bin=int(booster_params.get("max_bin", 256)))
    evals = []
    if X_valid is not None and y_valid is not None:
        evals.append((xgb.DMatrix(X_valid, label=y_valid), "valid"))
    return xgb.train(
        booster_params,
        dtrain,
        num_boost_round=rounds,
        evals=evals,
        early_stopping_rounds=early if evals and early else None,
        verbose_eval=False,
        callbacks=callbacks,
    )


def _xgboost_ray_worker(config: dict[str, Any]) -> None:
    """Ray Train worker loop: build a QuantileDMatrix from this worker's shard, train collectively."""
    import ray.train
    import xgboost as xgb

    def shard(name: str) -> tuple[pd.DataFrame, np.ndarray]:
        df = ray.train.get_dataset_shard(name).materialize().to_pandas()
        y = df.pop(LABEL).to_numpy()
        return df[config["feature_names"]], y

    X, y = shard("train")
    params = dict(config["params"])
    dtrain = xgb.QuantileDMatrix(X, label=y, max_bin=int(params.get("max_bin", 256)))
    del X
    evals = []
    if config["has_valid"]:
        Xv, yv = shard("valid")
        evals.append((xgb.DMatrix(Xv, label=yv), "valid"))

    callbacks: list[Any] = []
    report_every = int(config.get("report_every", 0))
    if report_every > 0:

        class Progress(xgb.callback.TrainingCallback):
            # Every report is a barrier with the controller's poll: keep them rare.
            def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, Any]) -> bool:
                if (epoch + 1) % report_every == 0:
                    ray.train.report({"round": epoch + 1, **_last_metrics(evals_log)})
                return False

        callbacks.append(Progress())

    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=config["num_boost_round"],
        evals=evals,
        early_stopping_rounds=config["early_stopping_rounds"] or None if evals else None,
        verbose_eval=False,
        callbacks=callbacks,
    )
    metrics = {"rounds": booster.num_boosted_rounds()}
    if ray.train.get_context().get_world_rank() == 0:
        with tempfile.TemporaryDirectory() as tmp:
            booster.save_model(os.path.join(tmp, "model.ubj"))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(metrics)


def _last_metrics(evals_log: Mapping[str, Mapping[str, list[float]]]) -> dict[str, float]:
    return {f"{d}-{m}": float(v[-1]) for d, ms in evals_log.items() for m, v in ms.items() if v}


def fit_xgboost_ray(
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    X_valid: pd.DataFrame | None = None,
    y_valid: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
    num_workers: int = 2,
    cpus_per_worker: int = 1,
    storage_path: str | None = None,
    run_name: str | None = None,
    report_every: int = 0,
) -> Any:
    """Data-parallel XGBoost on Ray Train (``ray.train.xgboost.XGBoostTrainer``, v2 API).

    Needs a running Ray (``ray.init`` by the caller; see ``training.models.ray_support``). The
    DataFrame goes to the object store as a Ray Dataset, split across ``num_workers`` workers that
    train one model collectively. Reports to Ray Train once at the end (plus every ``report_every``
    rounds if > 0). Returns the ``xgboost.Booster`` from the final checkpoint.
    """
    import ray
    import ray.data
    import ray.train
    import xgboost as xgb
    from ray.train.xgboost import XGBoostTrainer

    if not ray.is_initialized():
        raise RuntimeError("start Ray first (training.models.ray_support.init_local_ray)")
    booster_params, rounds, early = _split_params("xgboost", params)
    booster_params["nthread"] = cpus_per_worker
    names = [str(c) for c in X.columns]
    # Ray Data's per-block progress bars flood logs (and Tune's/Job's output) without telling much.
    ray.data.DataContext.get_current().enable_progress_bars = report_every > 0
    datasets: dict[str, Any] = {"train": ray.data.from_pandas(X.assign(**{LABEL: np.asarray(y)}))}
    if X_valid is not None and y_valid is not None:
        datasets["valid"] = ray.data.from_pandas(X_valid.assign(**{LABEL: np.asarray(y_valid)}))
    storage = storage_path or os.path.abspath(os.path.join("var", "ray_results"))
    trainer = XGBoostTrainer(
        _xgboost_ray_worker,
        train_loop_config={
            "params": booster_params,
            "num_boost_round": rounds,
            "early_stopping_rounds": early,
            "feature_names": names,
            "has_valid": "valid" in datasets,
            "report_every": report_every,
        },
        datasets=datasets,
        scaling_config=ray.train.ScalingConfig(
            num_workers=num_workers, resources_per_worker={"CPU": cpus_per_worker}
        ),
        run_config=ray.train.RunConfig(
            name=run_name or f"xgboost-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
            storage_path=storage,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError("Ray Train finished without a checkpoint")
    with result.checkpoint.as_directory() as ckpt:
        booster = xgb.Booster(model_file=os.path.join(ckpt, "model.ubj"))
    booster.feature_names = names
    return booster


def fit_lightgbm(
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    X_valid: pd.DataFrame | None = None,
    y_valid: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
    nthread: int | None = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """LightGBM on numpy float32 (names kept on the model); early-stopped on the valid set."""
    import lightgbm as lgb

    booster_params, rounds, early = _split_params("lightgbm", params)
    booster_params.setdefault("num_threads", nthread or os.cpu_count() or 1)
    booster_params.setdefault("seed", 0)
    booster_params.setdefault("deterministic", True)
    names = [str(c) for c in X.columns]
    dtrain = lgb.Dataset(X.to_numpy(dtype=np.float32), label=y, feature_name=names, free_raw_data=True)
    valid_sets = []
    cbs = list(callbacks or [])
    if X_valid is not None and y_valid is not None:
        valid_sets.append(lgb.Dataset(X_valid.to_numpy(dtype=np.float32), label=y_valid, reference=dtrain))
        if early:
            cbs.append(lgb.early_stopping(early, verbose=False))
    return lgb.train(booster_params, dtrain, num_boost_round=rounds, valid_sets=valid_sets, callbacks=cbs)


def fit_random_forest(
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    params: Mapping[str, Any] | None = None,
    n_jobs: int | None = None,
    seed: int = 0,
) -> Any:
    """scikit-learn RandomForestClassifier (handles NaN natively)."""
    from sklearn.ensemble import RandomForestClassifier

    merged = {**DEFAULT_PARAMS["random_forest"], **(params or {})}
    return RandomForestClassifier(n_jobs=n_jobs or os.cpu_count() or 1, random_state=seed, **merged).fit(
        X.to_numpy(dtype=np.float32, copy=True), y
    )


def train_supervised(
    algorithm: str,
    train: FeatureMatrix,
    calibration: FeatureMatrix,
    *,
    params: Mapping[str, Any] | None = None,
    calibration_method: Literal["isotonic", "platt"] = "isotonic",
    use_ray: bool = False,
    ray_workers: int = 2,
    early_stopping_fraction: float = 0.1,
    nthread: int | None = None,
) -> SupervisedModel:
    """Fit ``algorithm`` on ``train`` and calibrate on ``calibration`` (a time-later slice).

    Early stopping uses the latest ``early_stopping_fraction`` of ``train`` by event time, so the
    calibration slice stays unseen until calibration. ``use_ray`` runs XGBoost on Ray Train.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    order = np.argsort(train.event_time.to_numpy(), kind="stable")
    n_stop = int(len(order) * early_stopping_fraction) if algorithm != "random_forest" else 0
    fit_rows, stop_rows = order[: len(order) - n_stop], order[len(order) - n_stop :]
    if n_stop and train.y[stop_rows].min() == train.y[stop_rows].max():
        fit_rows, stop_rows = order, order[:0]
    fit_part = train.subset(fit_rows)
    stop_part = train.subset(stop_rows) if len(stop_rows) else None
    Xv = stop_part.X if stop_part is not None else None
    yv = stop_part.y if stop_part is not None else None

    best_iteration: int | None = None
    if algorithm == "xgboost":
        if use_ray:
            estimator = fit_xgboost_ray(
                fit_part.X, fit_part.y, X_valid=Xv, y_valid=yv, params=params, num_workers=ray_workers
            )
        else:
            estimator = fit_xgboost(
                fit_part.X, fit_part.y, X_valid=Xv, y_valid=yv, params=params, nthread=nthread
            )
        if Xv is not None and estimator.best_iteration is not None:
            best_iteration = int(estimator.best_iteration)
            # Keep only the trees early stopping chose, so inference and SHAP use the same model.
            estimator = estimator[: best_iteration + 1]
    elif algorithm == "lightgbm":
        estimator = fit_lightgbm(
            fit_part.X, fit_part.y, X_valid=Xv, y_valid=yv, params=params, nthread=nthread
        )
        best_iteration = int(estimator.best_iteration) or None
        if best_iteration:
            estimator = estimator.__class__(model_str=estimator.model_to_string(num_iteration=best_iteration))
    else:
        estimator = fit_random_forest(fit_part.X, fit_part.y, params=params, n_jobs=nthread)

    model = SupervisedModel(
        algorithm=algorithm,
        estimator=estimator,
        calibrator=Calibrator(calibration_method),
        feature_names_=train.feature_names,
        params={**DEFAULT_PARAMS[algorithm], **(params or {})},
        best_iteration=best_iteration,
    )
    model.calibrator.fit(model.raw_score(calibration.X), calibration.y)
    return model
