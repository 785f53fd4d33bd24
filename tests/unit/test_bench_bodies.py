"""The load bodies of the serving and restart benchmarks (benchmarks/bench_serve.py write_bodies)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_serve  # a script directory, not a package


def _demo_home(tmp_path: Path, users: int, per_user: int = 2) -> Path:
    """A home whose demo-data holds ``users`` users with ``per_user`` transactions each."""
    rows = []
    start = pd.Timestamp("2026-01-01", tz="UTC")
    for i in range(users * per_user):
        uid = 1 + i % users
        rows.append(
            {
                "transaction_id": i + 1,
                "user_id": uid,
                "account_id": 10_000 + uid,
                "merchant_id": 7,
                "device_id": float(uid) if uid % 3 else float("nan"),
                "ip": f"10.0.{uid // 256}.{uid % 256}" if uid % 2 else None,
                "amount": 12.5 + i,
                "currency": "EUR",
                "channel": "ecommerce",
                "country": "DE",
                "lat": 52.5,
                "lon": 13.4,
                "created_at": start + pd.Timedelta(minutes=i),
            }
        )
    data = tmp_path / "demo-data"
    data.mkdir()
    pd.DataFrame(rows).to_parquet(data / "transactions.parquet")
    accounts = pd.DataFrame(
        {"account_id": [10_001 + u for u in range(users)], "user_id": range(1, users + 1), "currency": "EUR"}
    )
    accounts.to_parquet(data / "accounts.parquet")
    return tmp_path


def _bodies(path: Path) -> list[dict[str, object]]:
    lines = path.read_text().splitlines()
    assert all(line.count("@KEY@") == 1 for line in lines)
    return [json.loads(line.replace("@KEY@", "bench-key-1")) for line in lines]


def test_closed_loop_bodies_only_as_the_restart_benchmark_asks(tmp_path: Path) -> None:
    home = _demo_home(tmp_path, users=30)
    out = tmp_path / "bodies.jsonl"
    assert bench_serve.write_bodies(home, out, 40) == (40, 0)
    bodies = _bodies(out)
    assert len(bodies) == 40
    assert all("created_at" not in b for b in bodies)  # the server's clock
    # the newest 40 of 60 rows, oldest first: amounts 12.5 + 20 ... 12.5 + 59
    assert [b["amount"] for b in bodies] == [f"{12.5 + i:.2f}" for i in range(20, 60)]
    assert not (tmp_path / "open.jsonl").exists()


def test_open_loop_users_of_their_own_at_their_event_time(tmp_path: Path) -> None:
    home = _demo_home(tmp_path, users=1_010)
    out, open_out = tmp_path / "bodies.jsonl", tmp_path / "open.jsonl"
    assert bench_serve.write_bodies(home, out, 100, open_out=open_out, open_count=5) == (100, 5)
    closed, opened = _bodies(out), _bodies(open_out)
    assert len(opened) == 5 and all("created_at" in b for b in opened)
    assert not {b["user_id"] for b in opened} & {b["user_id"] for b in closed}
    assert len({b["user_id"] for b in opened}) == 5  # one transaction per user


def test_too_few_users_for_an_open_loop_of_their_own_reuse_the_closed_bodies(tmp_path: Path) -> None:
    home = _demo_home(tmp_path, users=50)
    out, open_out = tmp_path / "bodies.jsonl", tmp_path / "open.jsonl"
    assert bench_serve.write_bodies(home, out, 100, open_out=open_out, open_count=5) == (100, 0)
    assert open_out.read_text() == out.read_text()


@pytest.mark.parametrize("count", [1, 100])
def test_every_body_is_a_valid_transaction_request(tmp_path: Path, count: int) -> None:
    from vigil.schemas import TransactionCreate

    home = _demo_home(tmp_path, users=20)
    out = tmp_path / "bodies.jsonl"
    n, _ = bench_serve.write_bodies(home, out, count)
    assert n == min(count, 40)
    for body in _bodies(out):
        TransactionCreate.model_validate(body)


def test_demo_home_names_the_dataset_and_sets_its_size(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # set here so that the monkeypatch restores them after demo_home writes os.environ itself
    monkeypatch.setenv("VIGIL_DEMO_USERS", "-")
    monkeypatch.setenv("VIGIL_DEMO_TRANSACTIONS", "-")
    assert bench_serve.demo_home(2_000) == bench_serve.ROOT / "var" / "bench"
    assert bench_serve.demo_home(20_000) == bench_serve.ROOT / "var" / "bench-u20000"
    assert (os.environ["VIGIL_DEMO_USERS"], os.environ["VIGIL_DEMO_TRANSACTIONS"]) == ("20000", "1000000")
    assert bench_serve.demo_home(500, tmp_path / "h") == (tmp_path / "h").resolve()
    assert os.environ["VIGIL_DEMO_USERS"] == "500"
