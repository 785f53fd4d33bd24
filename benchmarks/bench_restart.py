"""Restart benchmark: the graph's latency at a steady open-loop rate around a killed process.

Usage: ``.venv/bin/python benchmarks/bench_restart.py`` (= ``make bench-restart``); ``--kill``
picks the process: a velocity shard by default, or a replica of the Ingress (Serve replaces it
on the same port), RuleScreen, the supervised or the anomaly scorer, or Serve's controller (Ray
restarts it; the replicas keep serving meanwhile); ``--users 20000`` runs it on the realistic load
of ``bench_serve.py --users`` (its own home, every request another user's one transaction at its
own event time).

The graph starts as ``make bench-serve`` starts it (``vigil up`` on a fresh copy of the bench
home's demo database, rate limit raised). After a 10 s warm-up at the same rate, this process
sends POST /v1/transactions at ``--rate`` per second for ``--seconds`` (open loop, each request
at its scheduled time, unique idempotency keys over the demo tuples) and SIGKILLs one
``ray::VelocityShard`` (or the ``--kill`` process) ``--kill-at``
seconds in; Ray restarts the shard, Serve replaces a replica. Each client retries a 503 (or a
reset, or a refused connection) with the same idempotency key, waiting at least the server's
``Retry-After`` and doubling per attempt up to 8 s, times 0.5-1.5 (jitter), as a well-behaved
client does; latency is measured from the request's scheduled time to its final answer.
Afterwards every acknowledged key is looked up in the database with its decision.

Reports, per second of scheduled send time, the answered requests' p50/p99/max, how many needed
a retry and how many failed (and how many answers arrived in that second), and in summary: the
outage (the longest stretch after the kill in which no request completed), the recovery time
(from the kill to the first of 5 consecutive seconds whose p99 is within twice the pre-kill p99,
with no retries; only when the system kept up before the kill, which a slow machine at the
default rate may not: then run a lower ``--rate``), failures and durability.

Results: ``benchmarks/results/restart-<UTC stamp>.json`` for every run (the local history,
ignored by git), and ``restart-latest.json`` (committed; the README's table links to it) for a
run with every option at its default.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_serve as bs  # the serving benchmark's setup and process helpers

BACKOFF_CAP_S = 8.0
PROCESS_NAMES = {
    "shard": "ray::VelocityShard",
    "ingress": "ServeReplica:vigil:Ingress",
    "rulescreen": "ServeReplica:vigil:RuleScreen",
    "supervised": "ServeReplica:vigil:SupervisedScorer",
    "anomaly": "ServeReplica:vigil:AnomalyScorer",
    "controller": "ray::ServeController",
}


def find_process(kind: str, system: bs.System) -> int:
    """The pid of the process to kill: the first of its kind in the system's process tree."""
    for p in system.tree():
        try:
            cmd = " ".join(p.cmdline())
        except Exception:
            continue
        if PROCESS_NAMES[kind] in cmd and "ray::IDLE" not in cmd:
            return int(p.pid)
    raise RuntimeError(f"no {PROCESS_NAMES[kind]} process in the graph's tree")


async def load(
    url: str,
    bodies: list[list[str]],
    api_key: str,
    prefix: str,
    *,
    rate: float,
    seconds: float,
    kill: tuple[float, int] | None = None,
    max_attempts: int = 30,
) -> tuple[list[dict[str, Any]], float | None]:
    """Open loop; returns one record per request and when (s after start) the kill was sent."""
    import aiohttp

    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    loop = asyncio.get_running_loop()
    records: list[dict[str, Any]] = []
    killed_at: float | None = None
    rng = random.Random(7)
    connector = aiohttp.TCPConnector(limit=4096)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:

        async def one(i: int, due: float) -> None:
            pre, suf = bodies[i % len(bodies)]
            key = f"{prefix}-{i}"
            status: int | str = 0
            attempt = 0
            for attempt in range(max_attempts):
                retry_after = 1.0
                try:
                    async with session.post(url, data=pre + key + suf) as response:
                        await response.read()
                        status = response.status
                        retry_after = float(response.headers.get("Retry-After", "1"))
                except Exception as exc:  # resets, timeouts: retried like a 503
                    status = type(exc).__name__
                if status != 503 and not isinstance(status, str):
                    break
                # at least Retry-After, doubling per attempt (capped), with jitter: a fixed 1 s
                # retry from every waiting client is a retry storm that keeps the system from recovering
                wait = min(BACKOFF_CAP_S, max(retry_after, 0.25 * 2**attempt))
                await asyncio.sleep(wait * (0.5 + rng.random()))
            done = loop.time()
            records.append(
                {
                    "key": key,
                    "sent": due - start,
                    "done": done - start,
                    "status": status,
                    "attempts": attempt + 1,
                }
            )

        start = loop.time() + 0.2
        tasks = []
        for i in range(int(rate * seconds)):
            due = start + i / rate
            if kill is not None and killed_at is None and due - start >= kill[0]:
                os.kill(kill[1], signal.SIGKILL)
                killed_at = loop.time() - start
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(loop.create_task(one(i, due)))
        await asyncio.gather(*tasks)
    return records, killed_at


def percentile(values: list[float], q: float) -> float:
    return bs.percentile(sorted(values), q)


RECOVERED_WINDOW_S = 5


def recovered_second(per_second: list[dict[str, Any]], killed_at: float, p99_before: float) -> int | None:
    """The first second after the kill that starts a run of ``RECOVERED_WINDOW_S`` seconds (or
    the rest of the load, if at least 2 s) each with p99 within twice the pre-kill p99 and no
    retries or failures. A sustained window, not "every later second": one noisy second 30 s
    later says nothing about the restart."""
    after = [r for r in per_second if r["second"] >= killed_at]
    for i, row in enumerate(after):
        window = after[i : i + RECOVERED_WINDOW_S]
        if len(window) < min(2, RECOVERED_WINDOW_S):
            return None
        if all(
            r["p99_ms"] is not None and r["p99_ms"] <= 2 * p99_before and not r["failed"] and not r["retried"]
            for r in window
        ):
            return int(row["second"])
    return None


def summarise(records: list[dict[str, Any]], killed_at: float, seconds: float) -> dict[str, Any]:
    ok = [r for r in records if r["status"] in (200, 201)]
    per_second: list[dict[str, Any]] = []
    for sec in range(int(seconds)):
        mine = [r for r in records if sec <= r["sent"] < sec + 1]
        lat = [(r["done"] - r["sent"]) * 1000 for r in mine if r["status"] in (200, 201)]
        per_second.append(
            {
                "second": sec,
                "sent": len(mine),
                "ok": len(lat),
                "p50_ms": round(percentile(lat, 50), 1) if lat else None,
                "p99_ms": round(percentile(lat, 99), 1) if lat else None,
                "max_ms": round(max(lat), 1) if lat else None,
                "retried": sum(1 for r in mine if r["attempts"] > 1),
                "failed": len(mine) - len(lat),
                # answers that arrived in this second, whenever sent: the drain rate after the kill
                "completed": sum(1 for r in ok if sec <= r["done"] < sec + 1),
            }
        )
    before = [(r["done"] - r["sent"]) * 1000 for r in ok if r["sent"] < killed_at - 1]
    p99_before = percentile(before, 99)
    # outage: the longest stretch after the kill with no completed request
    finished = sorted(r["done"] for r in ok if r["done"] >= killed_at)
    gaps = [b - a for a, b in zip([killed_at, *finished], finished, strict=False)]
    # recovery is only meaningful if the system kept up before the kill (no retries, no failures);
    # as for p99_before, the last second before it is left out: its requests may be in the batch
    # the kill caught (a killed RuleScreen replica takes the batch in flight with it)
    kept_up = not any(r["retried"] or r["failed"] for r in per_second if r["second"] < int(killed_at) - 1)
    recovered_at = recovered_second(per_second, killed_at, p99_before) if kept_up else None
    return {
        "sent": len(records),
        "ok": len(ok),
        "failed": len(records) - len(ok),
        "retried": sum(1 for r in records if r["attempts"] > 1),
        "killed_at_s": round(killed_at, 2),
        "p99_before_kill_ms": round(p99_before, 1),
        "p50_before_kill_ms": round(percentile(before, 50), 1),
        "kept_up_before_kill": kept_up,
        "outage_s": round(max(gaps), 2) if gaps else None,
        "recovered_after_s": None if recovered_at is None else round(recovered_at - killed_at, 1),
        "max_ms": round(max((r["done"] - r["sent"]) * 1000 for r in ok), 1) if ok else None,
        "per_second": per_second,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[-1].strip()
    )
    ap.add_argument(
        "--home", type=Path, help="bench VIGIL_HOME (default var/bench, var/bench-u<N> for --users N)"
    )
    ap.add_argument(
        "--users",
        type=int,
        default=2_000,
        help="users of the demo dataset; above 2,000 every request is another user's one transaction at "
        "its own event time (bench_serve.py --users' open loop), at 2,000 the standard load of 5,000 "
        "bodies replayed (every user pays several times a minute)",
    )
    ap.add_argument("--kill", choices=sorted(PROCESS_NAMES), default="shard")
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--seconds", type=float, default=50.0)
    ap.add_argument("--kill-at", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--serve-config", type=Path, default=bs.ROOT / "ray_config.yaml")
    args = ap.parse_args()
    if not 0 < args.kill_at < args.seconds:
        ap.error("--kill-at must fall inside --seconds")

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    home = bs.demo_home(args.users, args.home)
    template = bs.prepare_home(home)
    bench_config = home / "ray_config.bench.yaml"
    bs.write_bench_config(args.serve_config.resolve(), bench_config)
    bodies_path = home / "bodies.jsonl"
    if args.users == 2_000:
        bs.write_bodies(home, bodies_path)
    else:  # one transaction per user: as many users as requests, warm-up included
        wanted = int(args.rate * (args.warmup + args.seconds))
        _, users = bs.write_bodies(
            home, home / "bodies-unused.jsonl", open_out=bodies_path, open_count=wanted
        )
        if users < wanted:
            ap.error(f"--users {args.users}: {wanted} requests need at least {wanted + 1_000} users")
    api_key = (home / "dev-api-key").read_text().strip()
    lines = bodies_path.read_text().splitlines()
    bodies = [line.split("@KEY@", 1) for line in lines if "@KEY@" in line]
    db = bs.fresh_db(template, home / "restart.db")
    system = bs.start_system("graph", home, db, {}, bench_config)
    result: dict[str, Any] = {"benchmark": "restart", "stamp": stamp, "args": {}}
    try:
        ready_s = bs.wait_ready(system, api_key, lines[0])
        print(f"graph: ready in {ready_s:.1f} s; warm-up {args.warmup:g} s at {args.rate:g}/s", flush=True)
        url = system.url + "/v1/transactions"
        asyncio.run(load(url, bodies, api_key, f"w{stamp}", rate=args.rate, seconds=args.warmup))
        pid = find_process(args.kill, system)
        meter = bs.CpuMeter(system)
        cpu_before, wall = meter.snapshot(), time.monotonic()
        prefix = f"r{stamp}"
        records, killed_at = asyncio.run(
            load(url, bodies, api_key, prefix, rate=args.rate, seconds=args.seconds, kill=(args.kill_at, pid))
        )
        cpu_after, wall = meter.snapshot(), time.monotonic() - wall
        cpu = bs.CpuMeter.cores(cpu_before, cpu_after, wall)
        # this process is the load generator: on a small machine its retry churn competes with the server
        cpu["generator_cpu_cores"] = round((cpu_after["self"] - cpu_before["self"]) / wall, 2)
        assert killed_at is not None
        acks = home / "logs" / "acks-restart.txt"
        acks.write_text("".join(r["key"] + "\n" for r in records if r["status"] in (200, 201)))
        time.sleep(0.5)
        summary = summarise(records, killed_at, args.seconds)
        result |= {
            "args": {k: str(v) for k, v in vars(args).items()},
            "killed": {"kind": args.kill, "pid": pid, "process": PROCESS_NAMES[args.kill]},
            "summary": {k: v for k, v in summary.items() if k != "per_second"},
            "per_second": summary["per_second"],
            "cpu": cpu,
            "durable": bs.durable(system, prefix, [acks]),
        }
    finally:
        print(f"graph: stopped (leftovers {bs.stop_system(system)})", flush=True)

    for row in result["per_second"]:
        print(
            f"{row['second']:>4}s sent {row['sent']:>4} ok {row['ok']:>4}  p50 {row['p50_ms']!s:>8}  "
            f"p99 {row['p99_ms']!s:>8}  max {row['max_ms']!s:>8}  retried {row['retried']:>4}  "
            f"failed {row['failed']:>3}  completed {row['completed']}"
        )
    s = result["summary"]
    print(
        f"\nkilled {args.kill} at {s['killed_at_s']} s; before: p50 {s['p50_before_kill_ms']} ms, "
        f"p99 {s['p99_before_kill_ms']} ms{'' if s['kept_up_before_kill'] else ' (NOT keeping up before the kill)'}; "
        f"outage {s['outage_s']} s; recovered (5 s with p99 within 2x, no retries) {s['recovered_after_s']} s after "
        f"the kill; {s['failed']} failed, "
        f"{s['retried']} retried of {s['sent']}; durable {result['durable']['ok']} "
        f"({result['durable']['acked']} acknowledged{bs.unscored_note(result['durable'])}); "
        f"cores: server {result['cpu']['server_cpu_cores']}, "
        f"load generator {result['cpu']['generator_cpu_cores']}, steal {result['cpu']['steal_cores']}"
    )
    bs.RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    path = bs.RESULTS / f"restart-{stamp}.json"
    path.write_text(text)
    # only `make bench-restart` as is replaces restart-latest.json
    if all(getattr(args, k) == ap.get_default(k) for k in vars(args)):
        (bs.RESULTS / "restart-latest.json").write_text(text)
        print(f"saved {path.relative_to(bs.ROOT)} and restart-latest.json")
    else:
        print(f"saved {path.relative_to(bs.ROOT)} (not the default run: restart-latest.json kept)")
    return 0 if result["durable"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
