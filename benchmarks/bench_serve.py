"""Serving benchmark: the composed Ray Serve graph against a strong single-process baseline.

Usage: ``.venv/bin/python benchmarks/bench_serve.py`` (= ``make bench-serve``); ``--help`` lists
the knobs (``--quick`` for a smoke run, ``--systems graph`` to tune the graph alone,
``--serve-config`` / ``--env`` to try another config or Ray environment variable,
``--concurrency '' --open-loops 3`` for open-loop probes only, three on one start; ``--users
20000`` for a demo dataset of that many users in its own home, whose open loop sends one
transaction for each of 6,000 users the closed loops never send, at its event time: the
realistic mix, where the default's 2,000 users pay several times a minute).

Systems, each on its own fresh copy of the same SQLite database (demo dataset loaded):

* ``graph``: ``vigil up`` in a subprocess (local Ray on 127.0.0.1, ``ray_config.yaml`` deployed
  with the rate limit raised out of the way), i.e. exactly what ``make run`` starts;
* ``baseline``: ``benchmarks/baseline_app.py``, one uvicorn process running the same FastAPI app
  and Screener over :class:`vigil.decision.local_graph.LocalGraph`, with the thresholds, micro-batch
  settings, key store and rate limiter of the same config, and ``OMP_NUM_THREADS=1`` (what Ray
  sets in its fractional-CPU replicas; ``--baseline-env`` overrides it).

Both systems are up at once and their runs are interleaved (at each concurrency back to back,
order alternating; each run first waits until its system is idle), so other load on a shared
machine hits both alike; the idle peer's CPU is recorded with each run.
CPU per run is accounted from /proc: the system's process tree (with a per-process breakdown),
the load generator, and everything else ("other"), with the load average.

Load: ``wrk`` (Debian package) in its own process on 127.0.0.1, closed loop at each concurrency
(warm-up, then a measured run), with ``serve_load.lua`` sending POST /v1/transactions with unique
idempotency keys over real user/account/merchant/device tuples of the demo dataset. Then an
open-loop run at a fixed rate (default 300/s) from a Python/aiohttp generator in its own process,
latency measured from each request's *scheduled* send time (no coordinated omission). After each
run, every idempotency key answered 2xx is looked up in the database with its decision. Each run
also keeps where a batch's time went: the system's own ``vigil_stage_seconds`` and
``vigil_batch_size`` over the run (``stage_ms_per_batch``, ``batch_size_mean``).
Memory: PSS of every process of each system's tree (``vigil up`` → GCS, raylet → workers).

Exits non-zero only when something crashed, never on a missed target.

Results: ``benchmarks/results/serve-<UTC stamp>.json`` for every run (the local history, ignored
by git), and ``serve-latest.json`` (committed; the README's table links to it) for a run with
every option at its default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vigil.infra.ports import free_port_pair

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "benchmarks" / "results"
LUA = ROOT / "benchmarks" / "serve_load.lua"
PY = sys.executable
GB = 1024**3
BODIES = 5000  # distinct real tuples the load cycles through
RAISED_RATE_LIMIT = 1e9  # per minute: out of the way of the benchmark, still the same code path

SETUP = """
from vigil.gateway.auth import load_key_store
from cli.main import _ensure_champion, _ensure_demo_data, _settings
from vigil.db.migrate import upgrade

settings = _settings()
upgrade(settings.effective_database_url)
_ensure_demo_data(settings)
_ensure_champion(settings)
load_key_store(settings.home.resolve())
"""


# ---------------------------------------------------------------------------------------------
# setup
# ---------------------------------------------------------------------------------------------


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path.resolve()}"


def base_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("VIGIL_API_KEYS", "MLFLOW_TRACKING_URI", "VIGIL_MLFLOW_TRACKING_URI", "VIGIL_RAY_ADDRESS"):
        env.pop(name, None)  # the dev key and the bench home's own registry, a local Ray
    for name in ("VIGIL_DATABASE_URL", "DATABASE_URL", "VIGIL_REDIS_URL", "REDIS_URL"):
        env.pop(name, None)  # set per system below; SQLite and the in-process bus for both
    env.update(VIGIL_HOME=str(home.resolve()), VIGIL_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    return env


def demo_home(users: int, home: Path | None = None) -> Path:
    """The bench home for a demo dataset of ``users`` users (``var/bench`` for the standard 2,000,
    ``var/bench-u<N>`` otherwise, unless ``home`` is given), with the dataset size set in this
    process's environment, where `vigil up`'s demo-data helper reads it (in :func:`prepare_home`,
    and in every system started from here)."""
    os.environ["VIGIL_DEMO_USERS"] = str(users)
    os.environ["VIGIL_DEMO_TRANSACTIONS"] = str(50 * users)
    return (home or ROOT / "var" / ("bench" if users == 2_000 else f"bench-u{users}")).resolve()


def prepare_home(home: Path) -> Path:
    """Demo dataset + champions in ``home`` via ``vigil up``'s own helpers; a template database."""
    home.mkdir(parents=True, exist_ok=True)
    template = home / "template.db"
    env = base_env(home) | {"VIGIL_DATABASE_URL": sqlite_url(template)}
    started = time.perf_counter()
    subprocess.run([PY, "-c", SETUP], cwd=ROOT, env=env, check=True)
    print(f"setup: {home} ready in {time.perf_counter() - started:.1f} s", flush=True)
    return template


def fresh_db(template: Path, target: Path) -> Path:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    src, dst = sqlite3.connect(template), sqlite3.connect(target)
    with contextlib.closing(src), contextlib.closing(dst):
        src.backup(dst)
    return target


def write_bench_config(source: Path, target: Path) -> dict[str, Any]:
    import yaml

    raw = yaml.safe_load(source.read_text())
    for app in raw["applications"]:
        app.setdefault("args", {})["rate_limit_per_minute"] = RAISED_RATE_LIMIT
    target.write_text(yaml.safe_dump(raw, sort_keys=False))
    return raw


def write_bodies(
    home: Path, out: Path, count: int = BODIES, *, open_out: Path | None = None, open_count: int = 0
) -> tuple[int, int]:
    """JSON bodies (placeholder ``@KEY@`` for the idempotency key) from the newest demo rows.

    With enough users in the dataset, the open loop gets bodies of its own: one transaction for
    each of ``open_count`` users that the closed loops never send (each user's newest, with its
    own event time, as ``vigil replay`` sends it), so its users pay once, right after a history
    of their own, as most users of a real service do in a minute. (Without the event time the
    server's clock puts every payment 20 months after its user's history: every 90-day feature
    reads "new" and the anomaly scorer flagged 37% of them.)
    Otherwise (the 2,000-user demo) ``open_out`` is a copy of ``out``; without ``open_out`` only
    ``out`` is written (the restart benchmark). Returns the closed loops' body count and the open
    loop's user count (0: the copy, or none)."""
    import pandas as pd

    tx = pd.read_parquet(home / "demo-data" / "transactions.parquet")
    accounts = pd.read_parquet(home / "demo-data" / "accounts.parquet")[["account_id", "user_id", "currency"]]
    tx = tx.sort_values("created_at")
    open_rows = tx.iloc[:0]
    if open_out is not None and open_count and tx.user_id.nunique() >= open_count + 1_000:
        open_rows = tx.drop_duplicates("user_id", keep="last").tail(open_count)
        tx = tx[~tx.user_id.isin(open_rows.user_id)]
    rows = tx.tail(count)

    def write(part: Any, path: Path, *, event_time: bool) -> None:
        check = part.merge(accounts, on="account_id", suffixes=("", "_acct"))
        assert len(check) == len(part)
        assert (check.user_id == check.user_id_acct).all() and (check.currency == check.currency_acct).all()
        with path.open("w") as handle:
            for r in part.itertuples(index=False):
                handle.write(_body(r, event_time=event_time) + "\n")

    write(rows, out, event_time=False)
    if open_out is not None:
        if open_rows.empty:
            shutil.copyfile(out, open_out)
        else:
            write(open_rows, open_out, event_time=True)
    return len(rows), len(open_rows)


def _body(r: Any, *, event_time: bool = False) -> str:
    body: dict[str, Any] = {"idempotency_key": "@KEY@", "user_id": int(r.user_id)}
    body |= {"account_id": int(r.account_id), "merchant_id": int(r.merchant_id)}
    if r.device_id == r.device_id:  # not NaN
        body["device_id"] = int(r.device_id)
    if isinstance(r.ip, str):
        body["ip"] = r.ip
    body |= {"amount": f"{r.amount:.2f}", "currency": str(r.currency), "channel": str(r.channel)}
    body["country"] = str(r.country)
    if r.lat == r.lat and r.lon == r.lon:
        body |= {"lat": round(float(r.lat), 5), "lon": round(float(r.lon), 5)}
    if event_time:
        import pandas as pd

        at = pd.Timestamp(r.created_at)
        body["created_at"] = (at if at.tzinfo else at.tz_localize("UTC")).isoformat()
    return json.dumps(body, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------------


@dataclass
class System:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    db: Path
    log: Path
    seen_pids: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tree(self) -> list[Any]:
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        self.seen_pids.update(p.pid for p in procs)
        return procs


def start_system(name: str, home: Path, db: Path, env_extra: dict[str, str], bench_config: Path) -> System:
    port = free_port_pair()
    env = base_env(home) | {"VIGIL_DATABASE_URL": sqlite_url(db), "VIGIL_HTTP_PORT": str(port)}
    env |= env_extra
    log = home / "logs" / f"{name}.log"
    log.parent.mkdir(exist_ok=True)
    if name == "graph":
        env["VIGIL_SERVE_CONFIG"] = str(bench_config)
        cmd = [str(Path(PY).parent / "vigil"), "up"]
    else:
        cmd = [PY, str(ROOT / "benchmarks" / "baseline_app.py"), "--port", str(port)]
        cmd += ["--serve-config", str(bench_config)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return System(name, proc, port, db, log)


def stop_system(system: System) -> list[int]:
    """SIGINT (what Ctrl-C sends to ``vigil up``; uvicorn stops on it too), then escalate.
    Returns pids of the system's processes still alive afterwards (then killed by pid)."""
    import psutil

    system.tree()  # remember every pid of the tree before it unravels
    proc = system.proc
    for sig, wait_s in ((signal.SIGINT, 90.0), (signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait_s)
    leftovers = []
    deadline = time.monotonic() + 15.0
    for pid in sorted(system.seen_pids - {proc.pid}):
        with contextlib.suppress(psutil.NoSuchProcess):
            p = psutil.Process(pid)
            while p.is_running() and p.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
                time.sleep(0.2)
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                leftovers.append(pid)
                p.kill()
    return leftovers


def http(
    url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:  # its response: closed, not left to the collector
            return exc.code, exc.read()


def wait_ready(system: System, api_key: str, body: str, timeout_s: float = 600.0) -> float:
    """Until the system says it is up (``vigil up`` prints "Vigil is up." once every deployment
    is RUNNING; uvicorn answers /healthz) and a probe transaction gets a 201; seconds it took."""
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    while True:
        if system.proc.poll() is not None:
            raise RuntimeError(f"{system.name} exited with {system.proc.returncode}; see {system.log}")
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{system.name} not ready after {timeout_s:.0f} s; see {system.log}")
        up = system.name != "graph" or b"Vigil is up." in system.log.read_bytes()
        status = 0
        if up:
            with contextlib.suppress(OSError):
                status, _ = http(system.url + "/healthz")
        if status == 200:
            probe = body.replace("@KEY@", f"probe-{system.name}-{time.time_ns()}").encode()
            with contextlib.suppress(OSError):
                status, answer = http(
                    system.url + "/v1/transactions", data=probe, headers=headers, timeout=60
                )
                if status == 201:
                    return time.monotonic() - started
                if status not in (404, 500, 503):
                    raise RuntimeError(f"{system.name}: probe answered {status}: {answer[:300]!r}")
        time.sleep(1.0)


# ---------------------------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------------------------


def memory(system: System) -> dict[str, Any]:
    import psutil

    procs, total, rss = [], 0, 0
    for p in system.tree():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            info = p.memory_full_info()
            name = " ".join(p.cmdline()[:2])[-60:] or p.name()
            omp = p.environ().get("OMP_NUM_THREADS")
            procs.append(
                {
                    "pid": p.pid,
                    "name": p.name(),
                    "cmd": name,
                    "pss_mb": round(info.pss / 2**20, 1),
                    "omp": omp,
                }
            )
            total += info.pss
            rss += info.rss
    outside = []  # Ray processes on this machine that are not in the tree (should be none)
    tree_pids = {p["pid"] for p in procs}
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["pid"] not in tree_pids and ("ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd):
            outside.append({"pid": p.info["pid"], "cmd": cmd[:80]})
    procs.sort(key=lambda d: -d["pss_mb"])
    return {
        "pss_total_gb": round(total / GB, 3),
        "rss_total_gb": round(rss / GB, 3),
        "processes": len(procs),
        "by_process": procs,
        "ray_processes_outside_tree": outside,
    }


class CpuMeter:
    """CPU-seconds: the whole machine (/proc/stat), this system's process tree, the load generator
    (a waited-for child of this script: RUSAGE_CHILDREN) and this script; "other" is the rest,
    i.e. other work sharing the machine. "steal" is time the hypervisor gave this machine's vCPUs
    to someone else (it can take a large share of a small machine for tens of seconds); a run
    with steal measured a slower machine than one without."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.labels: dict[int, str] = {}
        self.by_pid: dict[int, float] = {}

    def snapshot(self) -> dict[str, float]:
        import resource

        import psutil

        total = psutil.cpu_times()
        tree = 0.0
        for p in self.system.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                t = p.cpu_times()
                spent = t.user + t.system + t.children_user + t.children_system
                tree += spent
                if p.pid not in self.labels:
                    cmd = p.cmdline()
                    label = cmd[0].strip() if cmd and cmd[0].startswith("ray::") else p.name()
                    # ray::ServeReplica:vigil:Ingress.handle_request -> Ingress
                    label = label.removeprefix("ray::ServeReplica:vigil:").removeprefix("ray::")
                    self.labels[p.pid] = label.split(".")[0].split(" ")[0][:40]
                self.by_pid[p.pid] = spent
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "busy": sum(total) - total.idle - total.iowait,
            "steal": total.steal,
            "system": tree,
            "generator": children.ru_utime + children.ru_stime,
            "self": me.ru_utime + me.ru_stime,
        }

    def by_process(self, before: dict[int, float], wall: float) -> dict[str, float]:
        """Cores per process label since ``before`` (a copy of :attr:`by_pid` then), the largest first."""
        by_label: dict[str, float] = {}
        for pid, spent in self.by_pid.items():
            label = self.labels[pid]
            by_label[label] = by_label.get(label, 0.0) + (spent - before.get(pid, 0.0)) / wall
        return {k: round(v, 3) for k, v in sorted(by_label.items(), key=lambda kv: -kv[1]) if v >= 0.005}

    @staticmethod
    def cores(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
        d = {k: after[k] - before[k] for k in before}
        other = d["busy"] - d["steal"] - d["system"] - d["generator"] - d["self"]
        return {
            "server_cpu_cores": round(d["system"] / wall, 2),
            "generator_cpu_cores": round(d["generator"] / wall, 2),
            "other_cpu_cores": round(max(0.0, other) / wall, 2),
            "steal_cores": round(d["steal"] / wall, 2),
            "machine_busy_cores": round(d["busy"] / wall, 2),
        }


def screening_sums(
    system: System, *, attempts: int = 20, pause_s: float = 0.5
) -> dict[tuple[str, str, str], float]:
    """The Ingress's (or the baseline's) own screening series from ``/metrics``: sums and counts of
    ``vigil_stage_seconds`` per stage and of ``vigil_batch_size`` ({} if unreachable, or still
    refusing after ``attempts`` tries)."""
    from prometheus_client.parser import text_string_to_metric_families

    # Right after an overloading run the Ingress may still refuse requests (503 from Serve's
    # admission, a plain-text body): wait for it rather than parse that as metrics.
    for _ in range(attempts):
        try:
            status, text = http(system.url + "/metrics", timeout=5)
        except OSError:
            return {}
        if status == 200:
            break
        time.sleep(pause_s)
    else:
        return {}
    found = {}
    for family in text_string_to_metric_families(text.decode(errors="replace")):
        if family.name not in ("vigil_stage_seconds", "vigil_batch_size"):
            continue
        for sample in family.samples:
            kind = sample.name.removeprefix(family.name + "_")
            if kind in ("sum", "count"):
                found[(family.name, sample.labels.get("stage", ""), kind)] = float(sample.value)
    return found


def screening_means(
    before: dict[tuple[str, str, str], float], after: dict[tuple[str, str, str], float]
) -> dict[str, Any]:
    """Per-batch means between two :func:`screening_sums`: ms per stage, transactions per batch.
    Where a batch's time goes (the graph's ``features`` and ``scorers`` as RuleScreen reports them)."""
    stages: dict[str, float] = {}
    batch = None
    for (name, stage, kind), total in after.items():
        if kind != "sum":
            continue
        count = after.get((name, stage, "count"), 0.0) - before.get((name, stage, "count"), 0.0)
        if count <= 0:
            continue
        mean = (total - before.get((name, stage, "sum"), 0.0)) / count
        if name == "vigil_batch_size":
            batch = round(mean, 2)
        else:
            stages[stage] = round(mean * 1000, 2)
    return {"stage_ms_per_batch": dict(sorted(stages.items())), "batch_size_mean": batch}


def durable(system: System, prefix: str, ack_files: list[Path]) -> dict[str, Any]:
    """Every key the load generator saw a 2xx for must be stored, with its decision; and how many
    of the run's decisions were made without a scorer's score (the graph's scorer deadline: a
    run that skipped a scorer did less work than the baseline, and must say so)."""
    acked: list[str] = []
    for path in ack_files:
        if path.exists():
            acked += [line for line in path.read_text().splitlines() if line]
            path.unlink()
    db = sqlite3.connect(f"file:{system.db}?mode=ro", uri=True, timeout=30)
    with contextlib.closing(db):
        rows = db.execute(
            "SELECT t.idempotency_key, d.outcome, d.fraud_score IS NULL, d.anomaly_score IS NULL"
            " FROM transactions t JOIN decisions d ON d.transaction_id = t.transaction_id"
            " WHERE t.idempotency_key >= ? AND t.idempotency_key < ?",
            (prefix + "-", prefix + "-\x7f"),
        ).fetchall()
    outcome_of = {key: outcome for key, outcome, _, _ in rows}
    stored = set(outcome_of)
    acked_set = set(acked)
    missing = acked_set - stored
    outcomes: dict[str, int] = {}
    for outcome in outcome_of.values():
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return {
        # The run's decisions by outcome: review and block cost more (TreeSHAP for the model's
        # reason codes, review cases, alerts), and replaying 2,000 users this fast trips velocity.
        "outcomes": outcomes,
        "unscored": {"fraud": sum(r[2] for r in rows), "anomaly": sum(r[3] for r in rows)},
        "acked": len(acked),
        "acked_unique": len(acked_set),
        "stored_with_decision": len(stored),
        "missing": len(missing),
        "missing_sample": sorted(missing)[:5],
        "ok": not missing and len(acked_set) == len(acked),
    }


def unscored_note(durable: dict[str, Any]) -> str:
    """``", 12 without a fraud score"`` for a run with decisions a scorer skipped, else ``""``."""
    missing = durable.get("unscored") or {}
    parts = [
        f"{n} without a{'n' if kind == 'anomaly' else ''} {kind} score" for kind, n in missing.items() if n
    ]
    return ", " + ", ".join(parts) if parts else ""


def flagged_share(durable: dict[str, Any]) -> float:
    """The share of a run's stored decisions that are review or block."""
    outcomes = durable.get("outcomes") or {}
    total = sum(outcomes.values())
    return (outcomes.get("review", 0) + outcomes.get("block", 0)) / total if total else float("nan")


def run_wrk(
    system: System, *, concurrency: int, seconds: float, bodies: Path, prefix: str, api_key: str, acks: Path
) -> tuple[dict[str, Any], list[Path]]:
    threads = 1  # one wrk thread does far more than these servers answer; leaves the CPU to them
    cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    cmd += ["-s", str(LUA), system.url + "/v1/transactions", "--", str(bodies), prefix, api_key, str(acks)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=seconds + 60)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.strip()[:500]}")
    line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {out[-500:]} {err[-500:]}")
    return json.loads(line[len("WRKJSON ") :]), [Path(f"{acks}-{t}.txt") for t in range(1, threads + 1)]


def closed_loop(
    system: System, c: int, args: argparse.Namespace, bodies: Path, api_key: str, stamp: str
) -> dict[str, Any]:
    acks = system.log.parent / f"acks-{system.name}-c{c}"
    if args.warmup > 0:
        _, files = run_wrk(
            system, concurrency=c, seconds=args.warmup, bodies=bodies, prefix=f"w{stamp}-{system.name}-c{c}",
            api_key=api_key, acks=acks,
        )  # fmt: skip
        for path in files:
            path.unlink(missing_ok=True)
    prefix = f"m{stamp}-{system.name}-c{c}"
    meter = CpuMeter(system)
    load_before = os.getloadavg()
    cpu_before = meter.snapshot()
    pid_before = dict(meter.by_pid)
    sums_before = screening_sums(system)
    wall = time.monotonic()
    stats, files = run_wrk(
        system, concurrency=c, seconds=args.seconds, bodies=bodies, prefix=prefix, api_key=api_key, acks=acks
    )
    wall = time.monotonic() - wall
    cpu_after = meter.snapshot()
    stages = screening_means(sums_before, screening_sums(system))
    time.sleep(0.5)  # answers still in flight when wrk stopped: their commits land before the check
    seconds = stats["duration_us"] / 1e6
    result = {
        "concurrency": c,
        "seconds": round(seconds, 2),
        "requests": stats["requests"],
        "ok": stats["ok"],
        "rps": round(stats["ok"] / seconds, 1),
        "p50_ms": stats["p50_us"] / 1000,
        "p90_ms": stats["p90_us"] / 1000,
        "p95_ms": stats["p95_us"] / 1000,
        "p99_ms": stats["p99_us"] / 1000,
        "p999_ms": stats["p999_us"] / 1000,
        "max_ms": stats["lat_max_us"] / 1000,
        "errors": stats["non2xx"] + stats["connect_errors"] + stats["read_errors"] + stats["timeouts"],
        "non2xx": stats["non2xx"],
        "socket_errors": {k: stats[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")},
        "first_error": stats["first_error"] or None,
        "durable": durable(system, prefix, files),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        **CpuMeter.cores(cpu_before, cpu_after, wall),
    }
    result["rps_per_server_core"] = round(result["rps"] / max(result["server_cpu_cores"], 0.01), 1)
    result["server_cpu_cores_by_process"] = meter.by_process(pid_before, wall)
    result |= stages
    # CPU-milliseconds the server spent per successful decision
    result["server_cpu_ms_per_decision"] = round(
        1000 * result["server_cpu_cores"] / max(result["rps"], 0.01), 1
    )
    print(
        f"  {system.name:8} c={c:<3} {result['rps']:8.1f} req/s  p50 {result['p50_ms']:7.1f}  "
        f"p99 {result['p99_ms']:7.1f} ms  errors {result['errors']}  durable {result['durable']['ok']}  "
        f"cpu {result['server_cpu_cores']} (other {result['other_cpu_cores']}, steal {result['steal_cores']}) "
        f"load {result['loadavg_after'][0]}{unscored_note(result['durable'])}",
        flush=True,
    )
    return result


def open_loop(
    system: System, args: argparse.Namespace, bodies: Path, api_key: str, stamp: str, *, index: int = 0
) -> dict[str, Any]:
    prefix = f"o{stamp}-{system.name}" + (f"-{index}" if index else "")  # fresh keys per loop
    acks = system.log.parent / f"acks-{system.name}-open.txt"
    out = system.log.parent / f"open-{system.name}.json"
    cmd = [PY, __file__, "_openloop", "--url", system.url + "/v1/transactions", "--rate", str(args.rate)]
    cmd += ["--seconds", str(args.seconds), "--bodies", str(bodies), "--prefix", prefix]
    cmd += ["--acks", str(acks), "--out", str(out)]
    load_before = os.getloadavg()
    meter = CpuMeter(system)
    cpu_before, sums_before, wall = meter.snapshot(), screening_sums(system), time.monotonic()
    pid_before = dict(meter.by_pid)
    subprocess.run(cmd, check=True, env=dict(os.environ, BENCH_API_KEY=api_key), timeout=args.seconds + 120)
    wall = time.monotonic() - wall
    cpu: dict[str, Any] = dict(CpuMeter.cores(cpu_before, meter.snapshot(), wall))
    cpu["server_cpu_cores_by_process"] = meter.by_process(pid_before, wall)
    stages = screening_means(sums_before, screening_sums(system))
    time.sleep(0.5)
    result: dict[str, Any] = json.loads(out.read_text()) | cpu | stages
    out.unlink()
    result["durable"] = durable(system, prefix, [acks])
    result["loadavg_before"] = [round(x, 2) for x in load_before]
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["target"] = f"p99 < 100 ms at {args.rate:g}/s"
    result["pass"] = bool(
        result["p99_ms"] < 100 and result["achieved_rps"] >= 0.98 * args.rate and result["errors"] == 0
    )
    print(
        f"  {system.name:8} open loop {args.rate:g}/s: achieved {result['achieved_rps']:.1f}/s  "
        f"p50 {result['p50_ms']:.1f}  p99 {result['p99_ms']:.1f} ms  errors {result['errors']}  "
        f"durable {result['durable']['ok']}  review/block {flagged_share(result['durable']):.0%}  "
        f"-> {'PASS' if result['pass'] else 'FAIL'}{unscored_note(result['durable'])}",
        flush=True,
    )
    if result["batch_size_mean"] is not None:
        per_stage = " ".join(f"{k} {v:.1f}" for k, v in result["stage_ms_per_batch"].items())
        print(f"           batches of {result['batch_size_mean']:.1f}, ms per batch: {per_stage}", flush=True)
    return result


# ---------------------------------------------------------------------------------------------
# the open-loop generator (runs in its own process: bench_serve.py _openloop ...)
# ---------------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))]


async def _open_loop(ns: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    bodies = [line.split("@KEY@", 1) for line in ns.bodies.read_text().splitlines() if "@KEY@" in line]
    headers = {"Authorization": f"Bearer {os.environ['BENCH_API_KEY']}", "Content-Type": "application/json"}
    total = int(ns.rate * ns.seconds)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []  # from the scheduled send time: what a client at this rate sees
    service: list[float] = []  # from the actual send time
    late: list[float] = []  # how far behind schedule the generator sent
    statuses: dict[str, int] = {}
    acked: list[str] = []
    last_done = 0.0
    connector = aiohttp.TCPConnector(limit=1024, force_close=False)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:

        async def one(i: int, due: float) -> None:
            nonlocal last_done
            pre, suf = bodies[i % len(bodies)]
            key = f"{ns.prefix}-{i}"
            sent = loop.time()
            late.append(sent - due)
            try:
                async with session.post(ns.url, data=pre + key + suf) as response:
                    await response.read()
                    status = str(response.status)
            except Exception as exc:  # timeouts, resets: counted as errors
                status = type(exc).__name__
            finished = loop.time()
            last_done = max(last_done, finished)
            statuses[status] = statuses.get(status, 0) + 1
            if status.startswith("2"):
                acked.append(key)
                latencies.append(finished - due)
                service.append(finished - sent)

        start = loop.time() + 0.2
        tasks = []
        for i in range(total):
            due = start + i / ns.rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(loop.create_task(one(i, due)))
        await asyncio.gather(*tasks)
    ns.acks.write_text("".join(k + "\n" for k in acked))
    latencies.sort()
    service.sort()
    late.sort()
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    span = (last_done - start) if last_done > start else float("nan")
    return {
        "rate": ns.rate,
        "seconds": ns.seconds,
        "sent": total,
        "ok": ok,
        "errors": total - ok,
        "statuses": statuses,
        "achieved_rps": round(ok / span, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p95_ms": round(percentile(latencies, 95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "max_ms": round((latencies[-1] if latencies else float("nan")) * 1000, 2),
        "service_p99_ms": round(percentile(service, 99) * 1000, 2),
        "send_lag_p99_ms": round(percentile(late, 99) * 1000, 2),
        "latency_from": "scheduled send time (open loop, no coordinated omission)",
    }


def open_loop_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="bench_serve.py _openloop")
    ap.add_argument("--url", required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--bodies", type=Path, required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--acks", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ns = ap.parse_args(argv)
    host = ns.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        raise SystemExit("load goes to loopback only")
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    ns.out.write_text(json.dumps(asyncio.run(_open_loop(ns))))


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def ratios(systems: dict[str, Any]) -> list[dict[str, Any]]:
    if "graph" not in systems or "baseline" not in systems:
        return []
    base = {r["concurrency"]: r for r in systems["baseline"].get("runs", [])}
    out = []
    for run in systems["graph"].get("runs", []):
        b = base.get(run["concurrency"])
        if b and b["rps"] and b["p99_ms"]:
            out.append(
                {
                    "concurrency": run["concurrency"],
                    "rps_graph_over_baseline": round(run["rps"] / b["rps"], 3),
                    "p99_graph_over_baseline": round(run["p99_ms"] / b["p99_ms"], 3),
                    "rps_per_core_graph_over_baseline": round(
                        run["rps_per_server_core"] / max(b["rps_per_server_core"], 0.01), 3
                    ),
                }
            )
    return out


def print_table(result: dict[str, Any]) -> None:
    print()
    print(
        f"{'system':9} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'cores':>6} {'req/s/core':>10} {'other':>6} {'steal':>6}  durable"
    )
    for name, data in result["systems"].items():
        for r in data.get("runs", []):
            d = r["durable"]
            print(
                f"{name:9} {r['concurrency']:>4} {r['rps']:>9.1f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
                f"{r['p99_ms']:>8.1f} {r['errors']:>7} {r['server_cpu_cores']:>6.2f} "
                f"{r['rps_per_server_core']:>10.1f} {r['other_cpu_cores']:>6.2f} {r.get('steal_cores', 0):>6.2f}  "
                f"{'yes' if d['ok'] else 'NO'} "
                f"({d['acked'] - d['missing']}/{d['acked']} 2xx stored){unscored_note(d)}"
            )
    for r in result["ratios"]:
        print(
            f"graph/baseline at c={r['concurrency']:<3}: throughput x{r['rps_graph_over_baseline']:.2f}, "
            f"p99 x{r['p99_graph_over_baseline']:.2f}, req/s per server core x{r['rps_per_core_graph_over_baseline']:.2f}"
        )
    for name, data in result["systems"].items():
        mem = data.get("memory")
        if mem:
            print(f"{name}: PSS {mem['pss_total_gb']:.2f} GB over {mem['processes']} processes", end="")
            print(" (< 4 GB: yes)" if mem["pss_total_gb"] < 4 else " (< 4 GB: NO)")
        loops = [data["open_loop"], *data.get("more_open_loops", [])] if "open_loop" in data else []
        for ol in loops:
            print(
                f"{name}: {ol['rate']:g}/s open loop: achieved {ol['achieved_rps']:.1f}/s, "
                f"p99 {ol['p99_ms']:.1f} ms, errors {ol['errors']} -> {'PASS' if ol['pass'] else 'FAIL'}"
            )
        if data.get("error"):
            print(f"{name}: CRASHED: {data['error']}")


def save(result: dict[str, Any], stamp: str, *, latest: bool) -> Path:
    """``serve-<stamp>.json``; also ``serve-latest.json`` (what the README quotes) when ``latest``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"serve-{stamp}.json"
    text = json.dumps(result, indent=2, default=str) + "\n"
    targets = [path, RESULTS / "serve-latest.json"] if latest else [path]
    for target in targets:
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(text)
        tmp.replace(target)
    return path


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def settle(system: System, *, idle_cores: float = 0.15, timeout_s: float = 90.0) -> float:
    """Wait until the system's tree is idle (an overloaded run leaves a backlog being worked off,
    which must not land in the next measurement); seconds waited."""
    meter, started = CpuMeter(system), time.monotonic()
    while time.monotonic() - started < timeout_s:
        before = meter.snapshot()["system"]
        time.sleep(1.0)
        if meter.snapshot()["system"] - before < idle_cores:
            break
    return round(time.monotonic() - started, 1)


def keep_peak_memory(system: System, data: dict[str, Any]) -> None:
    mem = memory(system)
    if mem["pss_total_gb"] >= data.get("memory", {}).get("pss_total_gb", 0.0):
        mem["measured"] = "largest of the samples taken after each run"
        data["memory"] = mem


def bench_all(
    names: list[str], args: argparse.Namespace, home: Path, template: Path, bench_config: Path,
    bodies: Path, open_bodies: Path, api_key: str, stamp: str, env_extra: dict[str, dict[str, str]],
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Start every system (each on a fresh database copy), then interleave their runs: at each
    concurrency both systems run back to back (order alternating), so a change in the other
    engineer's load hits both alike. The idle peer's CPU is recorded with each run."""
    data: dict[str, dict[str, Any]] = {name: {"runs": []} for name in names}
    systems: dict[str, System] = {}
    first_body = bodies.read_text().splitlines()[0]
    try:
        for name in names:
            db = fresh_db(template, home / f"{name}.db")
            print(f"{name}: starting (fresh database {db.name})", flush=True)
            systems[name] = start_system(name, home, db, env_extra[name], bench_config)
            data[name]["ready_s"] = round(wait_ready(systems[name], api_key, first_body), 1)
            data[name]["memory_idle"] = memory(systems[name])
            print(
                f"{name}: ready in {data[name]['ready_s']} s, "
                f"idle PSS {data[name]['memory_idle']['pss_total_gb']:.2f} GB",
                flush=True,
            )
        for level, c in enumerate(args.concurrency):
            order = names if level % 2 == 0 else names[::-1]
            for name in order:
                system = systems[name]
                peers = [systems[n] for n in names if n != name]
                settled = settle(system)
                peer_meters = [CpuMeter(p) for p in peers]
                peer_before = [m.snapshot()["system"] for m in peer_meters]
                wall = time.monotonic()
                run = closed_loop(system, c, args, bodies, api_key, stamp)
                wall = time.monotonic() - wall
                run["idle_peer_cpu_cores"] = round(
                    sum(m.snapshot()["system"] - b for m, b in zip(peer_meters, peer_before, strict=True))
                    / wall,
                    2,
                )
                run["settle_wait_s"] = settled
                data[name]["runs"].append(run)
                keep_peak_memory(system, data[name])
        if args.rate > 0:
            for name in names:
                system = systems[name]
                data[name]["settle_before_open_loop_s"] = settle(system)
                data[name]["open_loop"] = open_loop(system, args, open_bodies, api_key, stamp)
                keep_peak_memory(system, data[name])
                for index in range(1, args.open_loops):  # more of them on the same start
                    settled = settle(system)
                    more = open_loop(system, args, open_bodies, api_key, stamp, index=index)
                    data[name].setdefault("more_open_loops", []).append(more | {"settle_wait_s": settled})
                    keep_peak_memory(system, data[name])
                data[name]["settle_after_open_loop_s"] = settle(system)
    except Exception as exc:
        for name in names:
            data[name].setdefault("error", f"{type(exc).__name__}: {exc}")
        print(f"ERROR {type(exc).__name__}: {exc}", flush=True)
    finally:
        for name, system in systems.items():
            stop_started = time.monotonic()
            leftovers = stop_system(system)
            data[name]["stop_s"] = round(time.monotonic() - stop_started, 1)
            data[name]["exit_code"] = system.proc.returncode
            data[name]["leftover_processes_killed"] = leftovers
            print(
                f"{name}: stopped in {data[name]['stop_s']} s "
                f"(exit {system.proc.returncode}, leftovers {leftovers})",
                flush=True,
            )
    return data


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_openloop":
        open_loop_main(sys.argv[2:])
        return 0
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[-1].strip()
    )
    ap.add_argument(
        "--home",
        type=Path,
        default=None,
        help="bench VIGIL_HOME (default var/bench, var/bench-u<N> for --users N)",
    )
    ap.add_argument(
        "--users",
        type=int,
        default=2_000,
        help="users of the bench's demo dataset (50 transactions each); at the default 2,000 every user "
        "pays several times a minute at 300/s and velocity rules flag nearly every decision",
    )
    ap.add_argument(
        "--bodies", type=int, default=BODIES, help="distinct newest demo transactions the load replays"
    )
    ap.add_argument("--systems", default="graph,baseline", help="comma list of graph, baseline")
    ap.add_argument("--concurrency", default="1,8,32,64,128", help="closed-loop concurrencies")
    ap.add_argument("--seconds", type=float, default=20.0, help="each measured run")
    ap.add_argument("--warmup", type=float, default=3.0, help="warm-up before each concurrency")
    ap.add_argument("--rate", type=float, default=300.0, help="open-loop rate (0 = skip)")
    ap.add_argument(
        "--open-loops",
        type=int,
        default=1,
        help="open loops per system (a probe: --concurrency '' --open-loops 3)",
    )
    ap.add_argument("--serve-config", type=Path, default=ROOT / "ray_config.yaml")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for `vigil up` (repeatable)")
    ap.add_argument(
        "--baseline-env",
        action="append",
        default=["OMP_NUM_THREADS=1"],
        help="KEY=VALUE for the baseline (repeatable); default OMP_NUM_THREADS=1, what Ray sets for "
        "its fractional-CPU replicas (without it XGBoost's OpenMP threads cost far more CPU per call)",
    )
    ap.add_argument("--label", default="", help="free text saved with the result (e.g. a tuning step)")
    ap.add_argument("--quick", action="store_true", help="smoke run: c=8, 3 s runs, 1 s warm-up")
    args = ap.parse_args()
    # `make bench-serve` as the README runs it: only such a run replaces serve-latest.json
    knobs = (
        "home",
        "users",
        "bodies",
        "systems",
        "concurrency",
        "seconds",
        "warmup",
        "rate",
        "open_loops",
        "serve_config",
        "env",
        "baseline_env",
    )
    standard = not args.quick and all(getattr(args, k) == ap.get_default(k) for k in knobs)
    if args.quick:
        args.concurrency, args.seconds, args.warmup = "8", 3.0, 1.0
    args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c]
    if args.open_loops < 1:
        ap.error("--open-loops: at least 1")
    systems = [s for s in args.systems.split(",") if s]
    if not set(systems) <= {"graph", "baseline"}:
        ap.error("--systems: graph and/or baseline")
    env_extra = {
        "graph": dict(item.split("=", 1) for item in args.env),
        "baseline": dict(item.split("=", 1) for item in args.baseline_env),
    }
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2

    import psutil
    import ray

    def _terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # unwinds through bench_all's finally: every system is stopped

    signal.signal(signal.SIGTERM, _terminate)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if args.users < 10 or args.bodies < 1:
        ap.error("--users: at least 10; --bodies: at least 1")
    home = demo_home(args.users, args.home)
    template = prepare_home(home)
    bench_config = home / "ray_config.bench.yaml"
    config = write_bench_config(args.serve_config.resolve(), bench_config)
    bodies = home / "bodies.jsonl"
    open_bodies = home / "open-loop-bodies.jsonl"
    open_requests = int(args.rate * args.seconds) * args.open_loops if args.rate > 0 else 0
    n_bodies, n_open = write_bodies(home, bodies, args.bodies, open_out=open_bodies, open_count=open_requests)
    api_key = (home / "dev-api-key").read_text().strip()
    result: dict[str, Any] = {
        "benchmark": "serve",
        "stamp": stamp,
        "label": args.label,
        "standard": standard,
        "host": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / GB, 1),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "ray": ray.__version__,
            "platform": platform.platform(),
            "note": "2 cores shared with another engineer's CPU work: see loadavg and other_cpu_cores",
        },
        "setup": {
            "database": "SQLite (WAL), a fresh copy of the same demo database per system",
            "schedule": "both systems up at once; at each concurrency they run back to back, order "
            "alternating; each run waits until its system is idle first",
            "load_generator": "wrk -t1 (closed loop), Python aiohttp process (open loop)",
            "bodies": f"{n_bodies} real demo-data tuples, unique idempotency key per request",
            "open_loop_bodies": (
                f"one transaction each of {n_open} users the closed loops never send, at its event time"
                if n_open
                else "the closed loops' bodies"
            ),
            "demo_users": args.users,
            "seconds": args.seconds,
            "warmup_s": args.warmup,
            "serve_config": str(args.serve_config),
            "serve_config_used": config,
            "rate_limit_per_minute": f"{RAISED_RATE_LIMIT:g} (raised for the benchmark)",
            "extra_env": env_extra,
        },
        "systems": {},
    }
    result["systems"] = bench_all(
        systems, args, home, template, bench_config, bodies, open_bodies, api_key, stamp, env_extra
    )
    crashed = any("error" in d for d in result["systems"].values())
    result["ratios"] = ratios(result["systems"])
    graph_mem = result["systems"].get("graph", {}).get("memory")
    result["targets"] = {
        "graph_pss_under_4gb": None if graph_mem is None else graph_mem["pss_total_gb"] < 4,
        "p99_under_100ms_at_rate": {
            n: d["open_loop"]["pass"] for n, d in result["systems"].items() if "open_loop" in d
        },
    }
    path = save(result, stamp, latest=result["standard"])
    print_table(result)
    also = " and serve-latest.json" if result["standard"] else " (not a standard run: serve-latest.json kept)"
    print(f"\nsaved {path.relative_to(ROOT)}{also}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
