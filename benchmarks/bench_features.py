"""Benchmark: offline ``compute_features`` on a large transactions table.

    .venv/bin/python benchmarks/bench_features.py                 # synthetic 5M rows / 50k users
    .venv/bin/python benchmarks/bench_features.py --rows 500000   # smaller
    .venv/bin/python benchmarks/bench_features.py --parquet DIR   # DIR/transactions.parquet (+ users,
                                                                  # merchants, fraud_labels, blacklist_entries)

Prints wall time and peak RSS. The synthetic table is random but shaped like the real one: skewed
user activity, shared devices and IPs, missing devices/IPs/coordinates, delayed labels, a blacklist.

Results: ``benchmarks/results/features-<UTC stamp>.json`` (the local history, ignored by git)
and ``features-latest.json`` (committed; the README's table links to it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vigil.features import FEATURE_NAMES, FEATURE_VERSION, compute_features

RESULTS = Path(__file__).resolve().parent / "results"
START = pd.Timestamp("2024-01-01", tz="UTC")
NS_PER_S = 1_000_000_000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def synthetic(rows: int, users: int, seed: int = 7) -> dict[str, Any]:
    """Random tables with the columns of ``vigil.db.models`` (no per-row Python)."""
    rng = np.random.default_rng(seed)
    span_s = 180 * 86400
    t = START.value + rng.integers(0, span_s, rows, dtype=np.int64) * NS_PER_S
    # Zipf-ish activity: a few users very busy, most occasional.
    user = (rng.pareto(1.2, rows) * users / 20).astype(np.int64) % users + 1
    n_dev = users * 6 // 5
    device = np.where(rng.random(rows) < 0.9, (user * 7 + rng.integers(0, 3, rows)) % n_dev, -1)
    device = np.where(rng.random(rows) < 0.01, rng.integers(0, 50, rows), device)  # shared "farm" devices
    n_ip = users * 2
    ip_code = np.where(rng.random(rows) < 0.95, (user * 13 + rng.integers(0, 4, rows)) % n_ip, -1)
    ip_pool = pa.array([f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n_ip)])
    ip = pc_take_with_nulls(ip_pool, ip_code)
    home = rng.uniform([-60, -180], [70, 180], (users + 1, 2))
    located = rng.random(rows) < 0.8
    lat = np.where(located, home[user, 0] + rng.normal(0, 0.5, rows), np.nan)
    lon = np.where(located, home[user, 1] + rng.normal(0, 0.5, rows), np.nan)
    amount = np.round(np.exp(rng.normal(3.5, 1.2, rows)), 2) + 0.01
    n_merch = max(1, users // 5)
    merchant = rng.integers(1, n_merch + 1, rows)
    tx = pa.table(
        {
            "transaction_id": np.arange(1, rows + 1, dtype=np.int64),
            "user_id": user,
            "account_id": user,
            "merchant_id": merchant,
            "device_id": pa.array(device, mask=device < 0),
            "ip": ip,
            "amount": amount,
            "currency": pa.array(np.full(rows, "EUR")).dictionary_encode(),
            "channel": pa.array(np.array(["pos", "ecommerce", "transfer", "atm"])[rng.integers(0, 4, rows)]),
            "country": pa.array(np.array(["GB", "FR", "DE", "US", "NG"])[rng.integers(0, 5, rows)]),
            "lat": pa.array(lat, mask=~located),
            "lon": pa.array(lon, mask=~located),
            "created_at": pa.array(t // 1000, type=pa.timestamp("us", tz="UTC")),  # Parquet-like: us
        }
    )
    labelled = rng.random(rows) < 0.05
    lab_t = t[labelled] + rng.integers(0, 30 * 86400, labelled.sum()) * NS_PER_S
    labels = pa.table(
        {
            "transaction_id": np.flatnonzero(labelled) + 1,
            "is_fraud": rng.random(labelled.sum()) < 0.3,
            "fraud_type": pa.nulls(int(labelled.sum()), pa.string()),
            "labeled_at": pa.array(lab_t, type=pa.timestamp("ns", tz="UTC")),
        }
    )
    users_t = pa.table(
        {
            "user_id": np.arange(1, users + 1),
            "created_at": pa.array(
                START.value - rng.integers(0, 1000 * 86400, users) * NS_PER_S,
                type=pa.timestamp("ns", tz="UTC"),
            ),
            "home_lat": home[1:, 0],
            "home_lon": home[1:, 1],
            "kyc_risk_level": pa.array(
                np.array(["unknown", "low", "medium", "high"])[rng.integers(0, 4, users)]
            ),
        }
    )
    merchants = pa.table(
        {
            "merchant_id": np.arange(1, n_merch + 1),
            "created_at": pa.array(
                START.value - rng.integers(0, 900 * 86400, n_merch) * NS_PER_S,
                type=pa.timestamp("ns", tz="UTC"),
            ),
        }
    )
    n_bl = 2000
    bl_added = START.value + rng.integers(0, span_s, n_bl) * NS_PER_S
    blacklist = pa.table(
        {
            "kind": pa.array(np.array(["user", "device", "ip", "merchant"])[rng.integers(0, 4, n_bl)]),
            "value": pa.array([str(v) for v in rng.integers(1, users, n_bl)]),
            "added_at": pa.array(bl_added, type=pa.timestamp("ns", tz="UTC")),
            "expires_at": pa.array(bl_added + 30 * 86400 * NS_PER_S, type=pa.timestamp("ns", tz="UTC")),
        }
    )
    return {
        "transactions": tx,
        "users": users_t,
        "labels": labels,
        "blacklist": blacklist,
        "merchants": merchants,
    }


def pc_take_with_nulls(pool: pa.Array, codes: np.ndarray) -> pa.Array:
    return pool.take(pa.array(np.maximum(codes, 0), mask=codes < 0))


def from_parquet(folder: Path) -> dict[str, Any]:
    files = {
        "transactions": "transactions",
        "users": "users",
        "labels": "fraud_labels",
        "blacklist": "blacklist_entries",
        "merchants": "merchants",
    }
    tables = {}
    for arg, name in files.items():
        path = folder / f"{name}.parquet"
        if not path.exists():
            path = folder / name  # a partitioned dataset folder
        if path.exists():
            tables[arg] = pq.read_table(path)
    if "transactions" not in tables:
        sys.exit(f"no transactions parquet in {folder}")
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n")[-1].strip()
    )
    parser.add_argument("--parquet", type=Path, help="folder holding transactions.parquet etc.")
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    t0 = time.perf_counter()
    tables = from_parquet(args.parquet) if args.parquet else synthetic(args.rows, args.users, args.seed)
    tx = tables.pop("transactions")
    rows = tx.num_rows
    n_users = len(pc.unique(tx.column("user_id")))
    prep_s = time.perf_counter() - t0
    rss_before = peak_rss_mb()
    print(
        f"input: {rows:,} rows, {n_users:,} users (prepared in {prep_s:.1f}s, peak RSS {rss_before:,.0f} MB)"
    )

    t1 = time.perf_counter()
    features = compute_features(tx, **tables)
    wall_s = time.perf_counter() - t1
    peak = peak_rss_mb()
    assert len(features) == rows and list(features.columns) == list(FEATURE_NAMES)
    nan_share = {c: round(float(features[c].isna().mean()), 4) for c in features.columns}
    print(f"compute_features: {wall_s:.1f}s wall, {rows / wall_s:,.0f} rows/s, peak RSS {peak:,.0f} MB")

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "benchmark": "features.compute_features",
        "timestamp": stamp,
        "source": str(args.parquet) if args.parquet else f"synthetic(seed={args.seed})",
        "rows": rows,
        "users": n_users,
        "features": len(FEATURE_NAMES),
        "feature_version": FEATURE_VERSION,
        "wall_seconds": round(wall_s, 2),
        "rows_per_second": round(rows / wall_s),
        "peak_rss_mb": round(peak),
        "peak_rss_mb_before_compute": round(rss_before),
        "nan_share": nan_share,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
        "machine": f"{platform.machine()} x{os.cpu_count()}",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    (RESULTS / f"features-{stamp}.json").write_text(text + "\n")
    (RESULTS / "features-latest.json").write_text(text + "\n")
    print(f"wrote {RESULTS / f'features-{stamp}.json'}")


if __name__ == "__main__":
    main()
