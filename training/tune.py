"""Ray Tune search (ASHA) over the supervised models, then a final run with the best config.

    python -m training.tune --data features.parquet --num-samples 16
    ray job submit --working-dir . -- python -m training.tune --data /data/features.parquet

Each trial fits one model (XGBoost, LightGBM or Random Forest, chosen by the search) on the
training slice and reports validation PR-AUC on the time-later calibration slice every
``--report-every`` boosting rounds (every 25 trees for the forest); ASHA stops weak trials early.
The best config is then refit by :func:`training.train.run_training` (report + registry).
Trials train in-process (one CPU each) rather than on Ray Train: at this size a Ray Train worker
group per trial costs more in start-up than it saves; ``--final-ray`` fits the winner on Ray Train.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.models.supervised import ALGORITHMS
from training.train import add_common_arguments, costs_from_args, matrix_from_args, run_training

__all__ = ["config_to_params", "main", "run_tune", "search_space"]

log = logging.getLogger("vigil.training.tune")
METRIC = "val_pr_auc"


def search_space(algorithms: Sequence[str], max_rounds: int) -> dict[str, Any]:
    """One flat space; each trial reads the keys of the algorithm it drew (prefix xgb_/lgb_/rf_)."""
    from ray import tune

    return {
        "algorithm": tune.choice(list(algorithms)),
        "num_boost_round": max_rounds,
        "xgb_max_depth": tune.randint(3, 10),
        "xgb_eta": tune.loguniform(0.02, 0.3),
        "xgb_subsample": tune.uniform(0.6, 1.0),
        "xgb_colsample_bytree": tune.uniform(0.5, 1.0),
        "xgb_min_child_weight": tune.loguniform(1.0, 20.0),
        "lgb_num_leaves": tune.randint(15, 128),
        "lgb_learning_rate": tune.loguniform(0.02, 0.3),
        "lgb_feature_fraction": tune.uniform(0.5, 1.0),
        "lgb_min_child_samples": tune.randint(10, 100),
        "rf_max_depth": tune.randint(6, 20),
        "rf_min_samples_leaf": tune.randint(1, 50),
        "rf_max_features": tune.choice(["sqrt", 0.3, 0.5]),
    }


def config_to_params(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(algorithm, params for ``train_supervised``) from a trial config."""
    algorithm = str(config["algorithm"])
    prefix = {"xgboost": "xgb_", "lightgbm": "lgb_", "random_forest": "rf_"}[algorithm]
    params = {k.removeprefix(prefix): v for k, v in config.items() if k.startswith(prefix)}
    if algorithm != "random_forest":
        params["num_boost_round"] = int(config["num_boost_round"])
    else:
        params["n_estimators"] = int(config.get("rf_n_estimators", 100))
    # Plain Python types: numpy scalars do not survive JSON (MLflow params, reports).
    return algorithm, {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}


def _trainable(
    config: dict[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    X_valid: pd.DataFrame,
    y_valid: np.ndarray,
    report_every: int,
) -> None:
    """One trial: fit, and report validation PR-AUC every ``report_every`` rounds (ASHA rungs)."""
    from ray import tune
    from sklearn.metrics import average_precision_score

    algorithm, params = config_to_params(config)
    nthread = max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    if algorithm == "xgboost":
        import xgboost as xgb

        from training.models.supervised import fit_xgboost

        dvalid = xgb.DMatrix(X_valid)

        class Report(xgb.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                if (epoch + 1) % report_every == 0:
                    pr = average_precision_score(y_valid, model.predict(dvalid))
                    tune.report({METRIC: float(pr), "rounds": epoch + 1})
                return False

        fit_xgboost(
            X, y, params={**params, "early_stopping_rounds": 0}, nthread=nthread, callbacks=[Report()]
        )
    elif algorithm == "lightgbm":
        from training.models.supervised import fit_lightgbm

        Xv = X_valid.to_numpy(dtype=np.float32)

        def report(env: Any) -> None:
            if (env.iteration + 1) % report_every == 0:
                pr = average_precision_score(y_valid, env.model.predict(Xv))
                tune.report({METRIC: float(pr), "rounds": env.iteration + 1})

        fit_lightgbm(X, y, params={**params, "early_stopping_rounds": 0}, nthread=nthread, callbacks=[report])
    else:
        from sklearn.ensemble import RandomForestClassifier

        total = int(params.pop("n_estimators"))
        forest = RandomForestClassifier(
            warm_start=True, n_estimators=0, n_jobs=nthread, random_state=0, **params
        )
        Xa, Xva = X.to_numpy(dtype=np.float32, copy=True), X_valid.to_numpy(dtype=np.float32, copy=True)
        step = 25
        for n in range(step, total + 1, step):
            forest.set_params(n_estimators=n)
            forest.fit(Xa, y)
            pr = average_precision_score(y_valid, forest.predict_proba(Xva)[:, 1])
            tune.report({METRIC: float(pr), "rounds": n})


def run_tune(
    matrix: Any,
    *,
    algorithms: Sequence[str] = ALGORITHMS,
    num_samples: int = 8,
    max_rounds: int = 200,
    report_every: int = 10,
    grace_period: int = 2,
    cpus_per_trial: int = 1,
    label_delay: timedelta = timedelta(days=14),
    storage_path: str | None = None,
    name: str = "vigil-tune",
    verbose: int = 1,
    seed: int = 0,
) -> tuple[dict[str, Any], Any]:
    """Run the ASHA search on Ray (already initialised); return (best config, ResultGrid)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from training.evaluate import time_split

    split = time_split(matrix, label_delay=label_delay)
    trainable = tune.with_resources(
        tune.with_parameters(
            _trainable,
            X=split.train.X,
            y=split.train.y,
            X_valid=split.calibration.X,
            y_valid=split.calibration.y,
            report_every=report_every,
        ),
        {"cpu": cpus_per_trial},
    )
    max_t = max(1, max_rounds // report_every)
    tuner = tune.Tuner(
        trainable,
        param_space=search_space(algorithms, max_rounds),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            scheduler=ASHAScheduler(max_t=max(max_t, 8), grace_period=grace_period, reduction_factor=3),
            num_samples=num_samples,
            search_alg=BasicVariantGenerator(random_state=seed),
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path or str(Path("var/ray_results").resolve()),
            verbose=verbose,
        ),
    )
    results = tuner.fit()
    best = results.get_best_result(metric=METRIC, mode="max")
    log.info(
        "best %s=%.4f with %s",
        METRIC,
        (best.metrics or {}).get(METRIC, float("nan")),
        json.dumps(best.config, default=str),
    )
    return dict(best.config or {}), results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.tune",
        description="ASHA hyper-parameter search over XGBoost / LightGBM / Random Forest on Ray Tune, "
        "then train, evaluate and register the best configuration.",
    )
    add_common_arguments(parser)
    tune_group = parser.add_argument_group("search")
    tune_group.add_argument("--algorithms", default=",".join(ALGORITHMS), help="comma-separated subset")
    tune_group.add_argument("--num-samples", type=int, default=8, help="number of trials (default 8)")
    tune_group.add_argument("--max-rounds", type=int, default=200, help="boosting rounds / trees per trial")
    tune_group.add_argument("--report-every", type=int, default=10, help="rounds between ASHA reports")
    tune_group.add_argument("--grace-period", type=int, default=2, help="ASHA grace period, in reports")
    tune_group.add_argument("--cpus-per-trial", type=int, default=1)
    tune_group.add_argument("--storage-path", help="Ray Tune results dir (default var/ray_results)")
    tune_group.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (ignored on a cluster)")
    tune_group.add_argument("--final-ray", action="store_true", help="fit the winning XGBoost on Ray Train")
    tune_group.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    unknown = sorted(set(algorithms) - set(ALGORITHMS))
    if unknown:
        raise SystemExit(f"unknown algorithms {unknown}; choose from {ALGORITHMS}")
    from training.models.ray_support import init_local_ray

    init_local_ray(num_cpus=args.num_cpus)
    matrix = matrix_from_args(args)
    label_delay = timedelta(days=args.label_delay_days)
    best, results = run_tune(
        matrix,
        algorithms=algorithms,
        num_samples=args.num_samples,
        max_rounds=args.max_rounds,
        report_every=args.report_every,
        grace_period=args.grace_period,
        cpus_per_trial=args.cpus_per_trial,
        label_delay=label_delay,
        storage_path=args.storage_path,
        seed=args.seed,
    )
    algorithm, params = config_to_params(best)
    outcome = run_training(
        matrix,
        algorithm=algorithm,
        params=params,
        costs=costs_from_args(args),
        label_delay=label_delay,
        test_fraction=args.test_fraction,
        calibration_fraction=args.calibration_fraction,
        use_ray=args.final_ray,
        run_dir=args.run_dir,
        model_name=args.model_name,
        register_model=args.register,
        tracking_uri=args.tracking_uri,
    )
    if args.promote and outcome.registered is not None:
        from vigil.models.registry import promote

        promote(outcome.registered.name, outcome.registered.version, tracking_uri=args.tracking_uri)
    table = results.get_dataframe()
    cols = [c for c in ("config/algorithm", METRIC, "training_iteration") if c in table]
    print(table[cols].sort_values(METRIC, ascending=False).to_string(index=False))
    print(
        json.dumps(
            {
                "best": {"algorithm": algorithm, **params},
                "report": str(outcome.report_path),
                "registered": outcome.registered.__dict__ if outcome.registered else None,
            },
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
