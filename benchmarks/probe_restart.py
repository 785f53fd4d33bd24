"""Probe: where a killed velocity shard's restart time goes.

    .venv/bin/python benchmarks/probe_restart.py [--kills 5] [--env K=V ...]

``make bench-restart`` measures the outage a client sees when a shard dies under load
(docs/serving.md). This takes the restart apart on an otherwise idle machine:
it starts a local Ray the way ``vigil up`` does (loopback, workers at nice 0, the same runtime
env), creates the two named velocity shards on a copy of the bench home's demo database
(``make bench-serve`` builds it) and warms them, then ``--kills`` times SIGKILLs shard 0's
process and measures, from the kill:

- ``spawned``: the new process's start (its ``create_time``, 10 ms resolution),
- ``imported``: the shard's modules imported in the new process (after Ray's own start-up and
  the job's worker setup hook),
- ``constructed``: the actor's ``__init__`` done,
- ``ready``: the first answer to ``info()`` (the new process's imports, Ray's worker
  registration, the actor's ``__init__``), polled with a call that Ray retries on the new
  incarnation, as RuleScreen's calls are,
- ``recovered``: ``warm(64)`` answered on top (entity state from the database and 64 users, what
  the first batch after a restart pays), reported as its own duration.

Writes ``benchmarks/results/restart-probe-<UTC stamp>.json`` (local, ignored by git). Not part of
``make bench``: an investigation tool for when a restart's outage grows (docs/serving.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def create_time_offset() -> float:
    """psutil's ``create_time`` counts from the boot time in whole seconds: its offset from
    ``time.time()`` on this box, read off a child started now."""
    import subprocess

    started = time.time()
    child = subprocess.Popen(["sleep", "0.2"])
    offset = psutil.Process(child.pid).create_time() - started
    child.wait()
    return offset


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", type=Path, default=ROOT / "var" / "bench" / "template.db")
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--warm-users", type=int, default=2000)
    ap.add_argument("--env", action="append", default=[], help="K=V set before Ray starts")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    if not args.db.exists():
        ap.error(f"{args.db} does not exist: run make bench-serve once (it builds the bench home)")
    for item in args.env:
        name, _, value = item.partition("=")
        os.environ[name] = value

    import ray

    from actors.velocity import get_or_create_shards, warm_shards
    from deployments.launch import start_local_ray

    work = Path(tempfile.mkdtemp(prefix="vigil-restart-probe-"))
    db = work / "probe.db"
    shutil.copy(args.db, db)
    url = f"sqlite+aiosqlite:///{db}"
    offset = create_time_offset()
    start_local_ray(num_cpus=2)
    rounds: list[dict[str, Any]] = []
    try:
        shards = get_or_create_shards(2, url)
        warm_shards(shards, args.warm_users)
        time.sleep(3.0)
        for n in range(args.kills):
            before = ray.get(shards[0].info.remote())
            pid = before["pid"]
            killed = time.time()
            os.kill(pid, signal.SIGKILL)
            info = ray.get(shards[0].info.remote(), timeout=120)
            ready = time.time() - killed
            assert info["incarnation"] != before["incarnation"], "the call reached the old incarnation"
            spawned = psutil.Process(info["pid"]).create_time() - offset - killed
            t = time.perf_counter()
            ray.get(shards[0].warm.remote(64), timeout=120)
            recovered = time.perf_counter() - t
            row = {
                "round": n,
                "spawned_s": round(spawned, 3),
                "imported_s": round(info["imported_at"] - killed, 3),
                "constructed_s": round(info["started_at"] - killed, 3),
                "ready_s": round(ready, 3),
                "recover_64_s": round(recovered, 3),
            }
            print(json.dumps(row), flush=True)
            rounds.append(row)
            time.sleep(8.0)  # past the settle window
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        key: round(statistics.median(r[key] for r in rounds), 3) for key in rounds[0] if key != "round"
    }
    result = {
        "label": args.label,
        "env": args.env,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),
        "rounds": rounds,
        "median": summary,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"restart-probe-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"median {summary} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
