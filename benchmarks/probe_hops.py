"""Probe: one hop from an async actor to two actors, as plain actor calls and as a Ray Compiled Graph.

    .venv/bin/python benchmarks/probe_hops.py [--calls 500] [--busy 2]

The graph's RuleScreen calls the velocity shards once per batch; Ray's docs put a Compiled
Graph's overhead far below a plain call's. This measures both on the machine at hand, the way
RuleScreen would use them: an async "caller" actor sends the same small batch
to two "shard" actors and awaits both answers (plain: ``asyncio.gather`` of two ``.remote()``
calls; compiled: ``execute_async`` of a two-output DAG compiled with ``enable_asyncio``), first
on an otherwise idle machine, then with ``--busy`` background processes that each run 2 ms of
CPU and sleep 2 ms (about one core of bursty load, like the serving processes). For each, the
round trip's p50/p90/p99 and the CPU each actor spent per round trip; then the CPU the compiled
graph's participants burn while no execution is in flight. The plain path is measured before the
graph is compiled: once compiled, its participants spin while they wait (so the compiled path's
CPU per round trip is its wall time, not its work), which would slow everything else measured.

A Compiled Graph cannot bind an ``async def`` method (it tries to pickle the coroutine); the
shard's method here is sync, as a compiled shard's would have to be. Writes
``benchmarks/results/hops-<UTC stamp>.json`` (local, ignored by git). Not part of ``make bench``:
it decided a design question on two cores, and is the tool to ask it again on a machine with
cores to spare (docs/serving.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ray
from ray.dag import InputNode, MultiOutputNode

RESULTS = Path(__file__).resolve().parent / "results"
BURSTY = "import time\nwhile True:\n t = time.perf_counter()\n while time.perf_counter() - t < 0.002: pass\n time.sleep(0.002)\n"


@ray.remote(num_cpus=0)
class Shard:
    def observe(self, batch: list[tuple[int, str, float]]) -> list[tuple[int, float]]:
        return [(key, amount * 2.0) for key, _, amount in batch]

    def cpu(self) -> float:
        return time.process_time()


@ray.remote(num_cpus=0)
class Caller:
    def __init__(self, shards: list[Any]) -> None:
        self.shards = shards
        self.dag: Any = None

    def compile(self) -> float:
        started = time.perf_counter()
        with InputNode() as inp:
            dag = MultiOutputNode([shard.observe.bind(inp) for shard in self.shards])
        self.dag = dag.experimental_compile(enable_asyncio=True)
        return time.perf_counter() - started

    async def round_trips(self, n: int, batch: list[Any], compiled: bool) -> list[float]:
        times = []
        for _ in range(n):
            started = time.perf_counter()
            if compiled:
                await asyncio.gather(*(await self.dag.execute_async(batch)))
            else:
                await asyncio.gather(*[shard.observe.remote(batch) for shard in self.shards])
            times.append(time.perf_counter() - started)
        return times

    def cpu(self) -> float:
        return time.process_time()


def cpu_times(caller: Any, shards: list[Any]) -> list[float]:
    return [ray.get(caller.cpu.remote()), *ray.get([s.cpu.remote() for s in shards])]


def measure(caller: Any, shards: list[Any], n: int, batch: list[Any], compiled: bool) -> dict[str, Any]:
    before = cpu_times(caller, shards)
    times = sorted(ray.get(caller.round_trips.remote(n, batch, compiled)))
    after = cpu_times(caller, shards)
    cpu = [(b - a) / n * 1000.0 for a, b in zip(before, after, strict=True)]
    return {
        "p50_ms": round(statistics.median(times) * 1000.0, 3),
        "p90_ms": round(times[int(len(times) * 0.9)] * 1000.0, 3),
        "p99_ms": round(times[int(len(times) * 0.99)] * 1000.0, 3),
        "cpu_ms_per_round_trip": {"caller": round(cpu[0], 3), "shards": round(sum(cpu[1:]), 3)},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=500, help="round trips per measurement")
    ap.add_argument("--busy", type=int, default=2, help="bursty background processes for the loaded case")
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    args = ap.parse_args()

    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=2, log_to_driver=False)
    shards = [Shard.remote(), Shard.remote()]  # type: ignore[attr-defined]
    caller = Caller.remote(shards)  # type: ignore[attr-defined]
    batch = [(i, f"user-{i}", 12.5) for i in range(8)]  # a shard's share of a batch of ~16
    result: dict[str, Any] = {"benchmark": "hops", "stamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")}
    for path in ("plain", "compiled"):
        if path == "compiled":
            result["compile_s"] = round(ray.get(caller.compile.remote()), 3)
        ray.get(caller.round_trips.remote(50, batch, path == "compiled"))  # warm up
        for load in ("idle", "busy"):
            busy = [
                subprocess.Popen([sys.executable, "-c", BURSTY])
                for _ in range(args.busy if load == "busy" else 0)
            ]
            try:
                row = measure(caller, shards, args.calls, batch, path == "compiled")
            finally:
                for proc in busy:
                    proc.kill()
                    proc.wait()
            result[f"{load}_{path}"] = row
            print(f"{load:5s} {path:9s} {row}", flush=True)
    before = cpu_times(caller, shards)
    time.sleep(args.idle_seconds)
    after = cpu_times(caller, shards)
    idle = [round((b - a) / args.idle_seconds, 3) for a, b in zip(before, after, strict=True)]
    result["compiled_idle_cpu_cores"] = {"caller": idle[0], "shards": idle[1:]}
    print(f"compiled graph compiled, no execution in flight: CPU cores caller {idle[0]}, shards {idle[1:]}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"hops-{result['stamp']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out.relative_to(RESULTS.parent.parent)}")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
