"""Benchmark ``training.generate``: wall time, rows/s and peak RSS (not a test).

Run: ``.venv/bin/python benchmarks/bench_generate.py --users 50000 --transactions 5000000``.
Budget (the issue's acceptance): <= 60 s wall and <= 4 GB peak RSS for 5M/50K on 2 cores,
including the data-quality validation of the output.

Results: ``benchmarks/results/generate-<UTC stamp>.json`` (the local history, ignored by git)
and ``generate-latest.json`` (committed; the README's table links to it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.generate import GenerateConfig, generate  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
WALL_BUDGET_S = 60.0
RSS_BUDGET_MB = 4096.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process and its children, in MiB (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n")[-1].strip()
    )
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--transactions", type=int, default=5_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None, help="output dir (default: a temp dir, removed)")
    parser.add_argument("--no-validate", action="store_true", help="skip the data-quality check")
    args = parser.parse_args(argv)

    out = args.out or Path(tempfile.mkdtemp(prefix="vigil-bench-generate-"))
    config = GenerateConfig(
        users=args.users, transactions=args.transactions, seed=args.seed, validate=not args.no_validate
    )
    started = time.perf_counter()
    summary = generate(config, out, progress=False)
    wall = time.perf_counter() - started
    rss = peak_rss_mb()
    size_mb = sum(f.stat().st_size for f in out.glob("*.parquet")) / 2**20
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)

    rows_per_s = args.transactions / wall
    result = {
        "benchmark": "generate",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "users": args.users,
        "transactions": args.transactions,
        "seed": args.seed,
        "validated": not args.no_validate,
        "wall_s": round(wall, 3),
        "rows_per_s": round(rows_per_s),
        "peak_rss_mb": round(rss, 1),
        "parquet_mb": round(size_mb, 1),
        "rows": summary.rows,
        "fraud_rate": summary.fraud_rate,
        "quality_ok": None if summary.quality is None else summary.quality.ok,
        "budget": {"wall_s": WALL_BUDGET_S, "peak_rss_mb": RSS_BUDGET_MB},
        "within_budget": wall <= WALL_BUDGET_S and rss <= RSS_BUDGET_MB,
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_1m": os.getloadavg()[0],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(result, indent=2) + "\n"
    (RESULTS / f"generate-{stamp}.json").write_text(text)
    (RESULTS / "generate-latest.json").write_text(text)
    print(
        f"generate {args.transactions:,} tx / {args.users:,} users: {wall:.1f} s wall, "
        f"{rows_per_s:,.0f} rows/s, peak RSS {rss:,.0f} MiB, {size_mb:.0f} MiB Parquet "
        f"(budget {WALL_BUDGET_S:.0f} s, {RSS_BUDGET_MB:.0f} MiB: {'OK' if result['within_budget'] else 'OVER'})"
    )
    return 0 if result["within_budget"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
