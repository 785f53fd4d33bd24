"""Benchmark: TreeSHAP contributions per scoring batch, XGBoost's own against the lookup tables.

    .venv/bin/python benchmarks/bench_explain.py

Two boosters trained here on synthetic rows with the serving feature count: one shaped like the
demo champion (100 rounds of depth 6) and a larger one (300 rounds of depth 6). For each batch
size, the median CPU time of ``Booster.predict(pred_contribs=True)`` (one thread, as serving runs
it) and of :class:`vigil.models.treeshap.TreeShap`, their ratio, and the largest difference between
the two (the values must be the same).

Results: ``benchmarks/results/explain-<UTC stamp>.json`` (the local history, ignored by git) and
``explain-latest.json`` (committed; the README's table links to it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from vigil.features.spec import FEATURE_NAMES
from vigil.models.treeshap import TreeShap

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_ms(fn: Any, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.process_time()
        fn()
        times.append((time.process_time() - started) * 1000.0)
    return statistics.median(times)


def booster(rounds: int, depth: int, rows: int, seed: int = 0) -> xgb.Booster:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, len(FEATURE_NAMES))).astype(np.float32)
    X[rng.random(X.shape) < 0.03] = np.nan
    clean = np.nan_to_num(X)
    y = (clean[:, 0] + clean[:, 1] * clean[:, 2] - clean[:, 3] ** 2 + rng.normal(size=rows) > 1.5).astype(int)
    params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.1, "nthread": 1, "seed": seed}
    return xgb.train(params, xgb.DMatrix(X, label=y), rounds)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[-1].strip()
    )
    ap.add_argument("--batches", default="1,8,16,32,64", help="rows per call")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",") if b]
    rng = np.random.default_rng(1)
    result: dict[str, Any] = {
        "benchmark": "explain",
        "stamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "xgboost": xgb.__version__},
        "measure": "median process CPU ms per call over --repeats calls, one thread",
        "models": {},
    }
    for name, rounds, depth in (("demo-shaped", 100, 6), ("larger", 300, 6)):
        model = booster(rounds, depth, rows=20_000)
        started = time.perf_counter()
        explainer = TreeShap.from_booster(model)
        build_s = time.perf_counter() - started
        assert explainer is not None
        entry: dict[str, Any] = {
            "rounds": rounds,
            "max_depth": depth,
            "leaves": sum(d.count("leaf=") for d in model.get_dump()),
            "table_mb": round(explainer.table.nbytes / 2**20, 1),
            "build_s": round(build_s, 2),
            "batches": [],
        }
        for size in batches:
            X = rng.normal(size=(size, len(FEATURE_NAMES))).astype(np.float32)
            matrix = xgb.DMatrix(X, nthread=1)
            native = model.predict(matrix, pred_contribs=True, validate_features=False)
            diff = float(np.abs(explainer.contributions(X) - native).max())
            xgb_ms = cpu_ms(
                lambda m=matrix, b=model: b.predict(m, pred_contribs=True, validate_features=False),
                args.repeats,
            )
            table_ms = cpu_ms(lambda x=X, e=explainer: e.contributions(x), args.repeats)
            row = {"rows": size, "xgboost_ms": round(xgb_ms, 3), "tables_ms": round(table_ms, 3)}
            row |= {"speedup": round(xgb_ms / table_ms, 2), "max_abs_diff": diff}
            entry["batches"].append(row)
            print(
                f"{name:12} {size:3d} rows: XGBoost {xgb_ms:7.2f} ms  tables {table_ms:6.2f} ms  "
                f"x{xgb_ms / table_ms:4.1f}  max diff {diff:.1e}",
                flush=True,
            )
        result["models"][name] = entry
        print(f"{name:12} {entry['leaves']} leaves, table {entry['table_mb']} MB, built in {build_s:.2f} s")
    RESULTS.mkdir(exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    (RESULTS / f"explain-{result['stamp']}.json").write_text(text)
    (RESULTS / "explain-latest.json").write_text(text)
    print(f"saved benchmarks/results/explain-{result['stamp']}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
