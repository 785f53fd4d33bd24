"""The whole screening graph on a real local Ray, with PostgreSQL and Redis.

One module-scoped deployment: a generated dataset is split in time; the earlier part is loaded
into a fresh PostgreSQL database and trains the champion models; the later part is replayed
through the live Serve application (as a client would: idempotency keys, retries on 5xx).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from vigil.decision.policy import (
    ANOMALY_SCORE_HIGH,
    FRAUD_SCORE_BLOCK,
    FRAUD_SCORE_HIGH,
    FRAUD_SCORE_UNAVAILABLE,
    MODEL_PREFIX,
)
from vigil.infra.ports import free_port_pair
from vigil.replay import ReplaySummary, request_body

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

ADMIN_KEY = "adm_" + uuid.uuid4().hex
ANALYST_KEY = "ana_" + uuid.uuid4().hex
SHARDS = 2


@dataclass
class Live:
    base_url: str
    database_url: str
    redis_url: str
    replay_rows: pd.DataFrame
    fraud: pd.DataFrame  # the truth for the replayed rows: transaction_id, fraud_type


@pytest.fixture(scope="module")
def live(
    fresh_postgres_database: Any, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    import ray
    from ray import serve

    from deployments.launch import (
        SERVING_RAY_ENV,
        deploy,
        direct_ingress_env,
        load_serve_config,
        start_local_ray,
    )
    from training.dataset import matrix_from_dataset
    from training.generate import GenerateConfig, generate, split_at
    from training.pipeline import train_and_promote
    from vigil.db.bulk import bulk_load
    from vigil.db.migrate import upgrade
    from vigil.settings import Settings

    root = tmp_path_factory.mktemp("graph")
    generate(GenerateConfig(users=600, transactions=60_000, seed=11), root / "full", progress=False)
    tx_all = pd.read_parquet(root / "full" / "transactions.parquet")
    cutoff = tx_all["created_at"].max() - pd.Timedelta(days=2)
    split_at(root / "full", root / "early", cutoff)
    later = tx_all[tx_all["created_at"] >= cutoff].sort_values(["created_at", "transaction_id"])
    labels = pd.read_parquet(root / "full" / "fraud_labels.parquet")
    fraud = labels[labels["transaction_id"].isin(later["transaction_id"])][["transaction_id", "fraud_type"]]

    cleanup = contextlib.ExitStack()
    database_url = cleanup.enter_context(fresh_postgres_database("vigil_graph"))
    upgrade(database_url)
    asyncio.run(bulk_load(database_url, root / "early", progress=False))
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    train_and_promote(
        matrix_from_dataset(root / "early"),
        tracking_uri=tracking_uri,
        run_dir=root / "runs",
        label_delay=timedelta(days=7),
    )

    import redis

    from vigil.events.bus import STREAMS

    redis.Redis.from_url(redis_url).delete(*STREAMS)  # this module's graph publishes to these
    port = free_port_pair()
    os.environ["VIGIL_API_KEYS"] = f"admin:ops:{ADMIN_KEY},analyst:ana:{ANALYST_KEY}"
    os.environ["VIGIL_HOME"] = str(root)
    settings = Settings(home=root, http_port=port)
    # as `vigil up` starts it: the Ingress replica answers the port itself (direct ingress)
    ray_env = direct_ingress_env(settings)
    os.environ.update(ray_env)
    start_local_ray(num_cpus=2)
    try:
        config = load_serve_config(Path("ray_config.yaml"), settings, direct=True)
        config.applications[0].args.update(
            {
                "database_url": database_url,
                "redis_url": redis_url,
                "tracking_uri": tracking_uri,
                "velocity_shards": SHARDS,
                "rate_limit_per_minute": 10**7,
            }
        )
        deploy(config)
        yield Live(f"http://127.0.0.1:{port}", database_url, redis_url, later, fraud)
    finally:
        serve.shutdown()
        ray.shutdown()
        os.environ.pop("VIGIL_API_KEYS", None)
        for name in (*ray_env, *SERVING_RAY_ENV):
            os.environ.pop(name, None)
        cleanup.close()


async def _scalar(url: str, sql: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def _replay(
    live: Live,
    rows: pd.DataFrame,
    *,
    concurrency: int = 16,
    rate: float | None = None,
    during: Any = None,
) -> ReplaySummary:
    """Replay ``rows``; ``during(task)`` runs alongside (it gets the replay's task)."""
    from vigil.replay import replay

    bodies = [request_body(r) for r in rows.to_dict("records")]

    async def run() -> ReplaySummary:
        task = asyncio.create_task(
            replay(live.base_url, ADMIN_KEY, bodies, concurrency=concurrency, rate=rate, retries=12)
        )
        if during is not None:
            await during(task)
        return await task

    return asyncio.run(run())


def test_serving_workers_run_at_normal_priority(live: Live) -> None:
    """Ray would start every replica and actor at nice 15 (deployments/launch.py, SERVING_RAY_ENV)."""
    import psutil

    workers = []
    for proc in psutil.process_iter(["cmdline"]):
        title = " ".join(proc.info["cmdline"] or [])
        if title.startswith("ray::ServeReplica:vigil:") or title.startswith("ray::VelocityShard"):
            workers.append((title, proc.nice()))
    assert any("Ingress" in title for title, _ in workers), workers
    assert any("VelocityShard" in title for title, _ in workers), workers
    assert all(nice == 0 for _, nice in workers), workers


def test_a_replayed_stream_is_decided_durably_with_reasons_from_every_detector(live: Live) -> None:
    rows = live.replay_rows.iloc[: len(live.replay_rows) // 2]
    summary = _replay(live, rows)
    assert summary.failed == 0 and not summary.rejected, summary.line()
    assert len(summary.decisions) == len(rows)
    stored = asyncio.run(_scalar(live.database_url, "SELECT COUNT(*) FROM decisions"))
    assert stored == len(rows)

    decisions = pd.DataFrame([{"transaction_key": k, **v} for k, v in summary.decisions.items()]).assign(
        source_id=lambda d: d["transaction_key"].str.removeprefix("replay-").astype(int)
    )
    fraud_ids = set(live.fraud["transaction_id"])
    caught = decisions[decisions["source_id"].isin(fraud_ids) & (decisions["outcome"] != "approve")]
    codes = [code for row in caught["reason_codes"] for code in row]
    model_codes = {ANOMALY_SCORE_HIGH, FRAUD_SCORE_HIGH, FRAUD_SCORE_BLOCK, FRAUD_SCORE_UNAVAILABLE}
    rule_codes = {c for c in codes if not c.startswith(MODEL_PREFIX) and c not in model_codes}
    assert rule_codes, "no fraud was caught by a rule"
    # The supervised model answered: a scorer that is down leaves fraud_score None (and, for large
    # amounts, FRAUD_SCORE_UNAVAILABLE), which is no model signal.
    unscored = decisions[decisions["fraud_score"].isna()]
    assert len(unscored) <= len(decisions) // 100, (
        f"no fraud score for {len(unscored)} of {len(decisions)} decisions: the scorer was unavailable",
        unscored["reason_codes"].head(5).tolist(),
    )
    by_model = caught[
        caught["fraud_score"].notna()
        & caught["reason_codes"].map(lambda row: bool({FRAUD_SCORE_HIGH, FRAUD_SCORE_BLOCK} & set(row)))
    ]
    assert len(by_model), "the supervised model caught nothing"
    assert any(c.startswith(MODEL_PREFIX) for row in by_model["reason_codes"] for c in row), (
        "the model's catches carry no MODEL:<feature> explanation"
    )
    assert "ANOMALY_SCORE_HIGH" in codes, "the anomaly scorer caught nothing"
    # the model should catch far more fraud than it flags legit traffic
    legit = decisions[~decisions["source_id"].isin(fraud_ids)]
    recall = len(caught) / max(1, decisions["source_id"].isin(fraud_ids).sum())
    false_alarms = (legit["outcome"] != "approve").mean()
    legit_codes = pd.Series(
        [c for row in legit.loc[legit["outcome"] != "approve", "reason_codes"] for c in row]
    )
    assert recall > 0.5 and false_alarms < 0.1, (
        recall,
        false_alarms,
        legit_codes.value_counts().head(8).to_dict(),
    )

    # Every decision went out on Redis once, alerts for review and block; the outbox drained.
    deadline = time.monotonic() + 15
    while asyncio.run(_scalar(live.database_url, "SELECT COUNT(*) FROM event_outbox")) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.5)
    assert asyncio.run(_scalar(live.database_url, "SELECT COUNT(*) FROM event_outbox")) == 0
    published = _stream(live, "vigil:decisions")
    assert sorted(e["idempotency_key"] for e in published) == sorted(summary.decisions)
    assert {e["idempotency_key"]: e["outcome"] for e in published} == {
        k: v["outcome"] for k, v in summary.decisions.items()
    }
    alerted = sorted(e["idempotency_key"] for e in _stream(live, "vigil:alerts"))
    assert alerted == sorted(k for k, v in summary.decisions.items() if v["outcome"] != "approve")


def _stream(live: Live, name: str) -> list[dict[str, Any]]:
    import redis

    from vigil.events.bus import PAYLOAD_FIELD, decode_event

    entries = redis.Redis.from_url(live.redis_url).xrange(name)
    return [decode_event(fields[PAYLOAD_FIELD.encode()]) for _, fields in entries]


def test_retries_return_the_stored_decision(live: Live) -> None:
    body = request_body(live.replay_rows.iloc[0].to_dict())
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=live.base_url, headers=headers, timeout=30) as client:
        again = client.post("/v1/transactions", json=body)
        conflicting = client.post("/v1/transactions", json={**body, "amount": "1.23"})
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert conflicting.status_code == 409


def _stage_totals(text: str) -> dict[tuple[str, str], float]:
    return {
        (name, stage): float(value)
        for name, stage, value in re.findall(r'vigil_stage_seconds_(sum|count)\{stage="(\w+)"\} (\S+)', text)
    }


def test_the_ingress_times_each_hop_of_the_graph(live: Live) -> None:
    body = request_body(live.replay_rows.iloc[1].to_dict()) | {"idempotency_key": "stage-metrics-1"}
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=live.base_url, headers=headers, timeout=30) as client:
        before = _stage_totals(client.get("/metrics").text)
        assert client.post("/v1/transactions", json=body).status_code == 201
        after = _stage_totals(client.get("/metrics").text)
    # what this one request's batch added (other tests' batches, failed ones included, cancel out)
    added = {key: after[key] - before.get(key, 0.0) for key in after}
    for stage in ("features", "scorers", "graph"):
        assert added[("count", stage)] == 1, stage
    # the two hops are inside the graph stage: their times add up to at most its time
    assert 0 < added[("sum", "features")] + added[("sum", "scorers")] <= added[("sum", "graph")]


def test_resolving_a_review_case_writes_a_label(live: Live) -> None:
    headers = {"Authorization": f"Bearer {ANALYST_KEY}"}
    with httpx.Client(base_url=live.base_url, headers=headers, timeout=30) as client:
        queue = client.get("/v1/review", params={"limit": 5})
        assert queue.status_code == 200 and queue.json(), "nothing went to review"
        case = queue.json()[0]["case"]
        assert client.post(f"/v1/review/{case['id']}/claim").status_code == 200
        resolved = client.post(
            f"/v1/review/{case['id']}/resolve", json={"resolution": "fraud", "notes": "confirmed"}
        )
        assert resolved.status_code == 200, resolved.text
    source = asyncio.run(
        _scalar(
            live.database_url,
            f"SELECT source FROM fraud_labels WHERE transaction_id = {case['transaction_id']}",
        )
    )
    assert source == "analyst"


def test_a_blacklist_change_applies_from_the_next_request_on_every_copy(live: Live) -> None:
    """Added: blocked at once, also by a RuleScreen replica started after the change; removed:
    no longer matched (the copies reload from the database: vigil/state/blacklists.py)."""
    ip = "198.51.100.77"
    row = live.replay_rows.iloc[2].to_dict()

    def send(client: httpx.Client, key: str) -> dict[str, Any]:
        body = request_body(row) | {
            "idempotency_key": key,
            "ip": ip,
            "created_at": datetime.now(UTC).isoformat(),
        }
        answer = client.post("/v1/transactions", json=body)
        for _ in range(30):  # a batch sent to the killed replica is a 503: retried, as clients do
            if answer.status_code != 503:
                break
            time.sleep(1)
            answer = client.post("/v1/transactions", json=body)
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=live.base_url, headers=admin, timeout=60) as client:
        assert "BLACKLIST_HIT" not in send(client, "blacklist-live-1")["reason_codes"]
        added = client.post("/v1/blacklist", json={"kind": "ip", "value": ip, "reason": "mule network"})
        assert added.status_code == 201, added.text
        listed = send(client, "blacklist-live-2")
        assert listed["outcome"] == "block" and "BLACKLIST_HIT" in listed["reason_codes"], listed
        _kill_replica("RuleScreen", wait=True, every=True)
        again = send(client, "blacklist-live-3")  # a successor's copy, loaded from the database
        assert again["outcome"] == "block" and "BLACKLIST_HIT" in again["reason_codes"], again
        assert client.delete(f"/v1/blacklist/{added.json()['id']}").status_code == 200
        assert "BLACKLIST_HIT" not in send(client, "blacklist-live-4")["reason_codes"]


def _kill_replica(deployment: str, *, wait: bool = False, every: bool = False) -> None:
    """SIGKILL-like ``ray.kill`` of a replica of the deployment (``every``: of all of them);
    ``wait``: until it is gone (the kill is asynchronous: a request right after it may still
    reach the old replica)."""
    import ray

    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True) if deployment in a["name"]]
    assert replicas, f"no {deployment} replica found"
    names = set()
    for replica in replicas if every else replicas[:1]:
        ray.kill(ray.get_actor(replica["name"], namespace=replica["namespace"]), no_restart=True)
        names.add(replica["name"])
    deadline = time.monotonic() + 30
    while wait and any(a["name"] in names for a in ray.util.list_named_actors(all_namespaces=True)):
        assert time.monotonic() < deadline, f"{names} still alive 30 s after ray.kill"
        time.sleep(0.05)
    if wait:
        time.sleep(0.5)  # its worker process may outlive the name briefly; a successor takes seconds


def _unavailable(metrics_text: str, scorer: str) -> float:
    found = re.search(rf'vigil_scorer_unavailable_total\{{scorer="{scorer}"\}} (\S+)', metrics_text)
    return float(found.group(1)) if found else 0.0


def test_a_dead_scorer_is_decided_without_until_its_successor_answers(live: Live) -> None:
    """Right after the AnomalyScorer's replica dies, a transaction is decided within the scorer
    deadline without an anomaly score (its successor takes seconds to start and load its model),
    and once the successor answers, transactions get anomaly scores again."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    rows = live.replay_rows.iloc[:40].to_dict("records")
    with httpx.Client(base_url=live.base_url, headers=headers, timeout=30) as client:
        before = _unavailable(client.get("/metrics").text, "anomaly")
        _kill_replica("AnomalyScorer", wait=True)
        during = client.post(
            "/v1/transactions", json=request_body(rows[0]) | {"idempotency_key": "dead-scorer-0"}
        )
        assert during.status_code == 201, during.text
        assert during.json()["anomaly_score"] is None
        assert during.json()["fraud_score"] is not None
        assert _unavailable(client.get("/metrics").text, "anomaly") > before
        deadline = time.monotonic() + 90
        for i, row in enumerate(rows[1:], start=1):
            answer = client.post(
                "/v1/transactions", json=request_body(row) | {"idempotency_key": f"dead-scorer-{i}"}
            )
            assert answer.status_code == 201, answer.text
            if answer.json()["anomaly_score"] is not None:
                break
            assert time.monotonic() < deadline, "the AnomalyScorer's successor never scored a batch"
            time.sleep(2)
        else:
            pytest.fail("no transaction got an anomaly score again")
    stored = asyncio.run(
        _scalar(
            live.database_url,
            "SELECT d.anomaly_score IS NULL FROM decisions d JOIN transactions t USING (transaction_id) "
            "WHERE t.idempotency_key = 'dead-scorer-0'",
        )
    )
    assert stored is True, "the decision made without the anomaly scorer is stored without its score"


def test_killing_a_velocity_actor_and_scorer_replicas_loses_nothing(live: Live) -> None:
    """A velocity shard, then a SupervisedScorer replica, then the RuleScreen replica (which calls
    the shards and scorers for every batch: killed after the shards learned a batch, its retry
    must not count twice) die during a replay."""
    import ray

    from actors.velocity import shard_name

    rows = live.replay_rows.iloc[len(live.replay_rows) // 2 :]

    killed_while_replaying: list[bool] = []

    async def chaos(replaying: asyncio.Task[Any]) -> None:
        for kill in (
            lambda: ray.kill(ray.get_actor(shard_name(0, SHARDS), namespace="vigil"), no_restart=False),
            lambda: _kill_replica("SupervisedScorer"),
            lambda: _kill_replica("RuleScreen"),
        ):
            await asyncio.sleep(1.5)
            killed_while_replaying.append(not replaying.done())
            kill()

    # paced, so that the replay is still running at the last kill (checked below)
    summary = _replay(live, rows, rate=100.0, during=chaos)
    assert killed_while_replaying == [True, True, True], "a kill came after the replay had finished"
    assert summary.failed == 0 and not summary.rejected, summary.line()
    assert len(summary.decisions) == len(rows)
    keys = ",".join(f"'replay-{int(t)}'" for t in rows["transaction_id"])
    stored = asyncio.run(
        _scalar(live.database_url, f"SELECT COUNT(*) FROM transactions WHERE idempotency_key IN ({keys})")
    )
    assert stored == len(rows), "an acknowledged transaction is missing"

    # Every user's velocity state equals the stored history (none lost, none counted twice).
    at = pd.Timestamp(rows["created_at"].max()).to_pydatetime() + timedelta(seconds=1)
    users = sorted(set(rows["user_id"].astype(int)))[:60]
    for user_id in users:
        shard = ray.get_actor(shard_name(_shard_of(user_id), SHARDS), namespace="vigil")
        counts = ray.get(shard.user_counts.remote(user_id, at))
        in_db = asyncio.run(
            _scalar(live.database_url, f"SELECT COUNT(*) FROM transactions WHERE user_id = {user_id}")
        )
        assert counts["txn_count_all_by_user"] == in_db, (user_id, counts["txn_count_all_by_user"], in_db)


def _shard_of(user_id: int) -> int:
    from vigil.state.velocity import shard_of_user

    return shard_of_user(user_id, SHARDS)


def test_a_kyc_submission_is_verified_on_its_replica_and_feeds_velocity_state(live: Live) -> None:
    import ray

    from actors.velocity import shard_name
    from vigil.state.velocity import shard_of_user

    kyc_data = Path(__file__).resolve().parents[1] / "data" / "kyc"  # part of the repository
    selfie_path = kyc_data / "liveness" / "image_T1.jpg"
    document_path = kyc_data / "mrz" / "passport-td3.jpg"
    if not (selfie_path.exists() and document_path.exists()):
        pytest.fail(f"KYC test images missing under {kyc_data}")
    user_id = int(live.replay_rows["user_id"].iloc[0])
    shard = ray.get_actor(shard_name(shard_of_user(user_id, SHARDS), SHARDS), namespace="vigil")
    at = pd.Timestamp.now(tz="UTC").to_pydatetime()
    ray.get(shard.user_counts.remote(user_id, at))  # the user's state is loaded in its shard

    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=live.base_url, headers=headers, timeout=120) as client:
        response = client.post(
            "/v1/kyc/submissions",
            data={"user_id": str(user_id)},
            files=[
                ("document", ("passport.jpg", document_path.read_bytes(), "image/jpeg")),
                ("selfie", ("selfie.jpg", selfie_path.read_bytes(), "image/jpeg")),
            ],
        )
    assert response.status_code == 201, response.text
    body = response.json()
    # The selfie is not the specimen passport's holder: rejected, high risk, with the reason.
    assert (body["status"], body["risk_level"]) == ("rejected", "high")
    assert "face_mismatch" in body["reason_codes"]
    stored = asyncio.run(
        _scalar(live.database_url, f"SELECT kyc_risk_level FROM users WHERE user_id = {user_id}")
    )
    assert stored == "high"
    features = ray.get(shard.user_counts.remote(user_id, at))
    assert features["kyc_risk_level_by_user"] == 3.0  # KYC_RISK_CODES["high"], without a restart
