"""The serving benchmark's durability check also counts decisions made without a scorer."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_serve  # a script directory, not a package


def test_durable_counts_acked_stored_and_unscored_decisions(tmp_path: Path) -> None:
    db = tmp_path / "system.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE transactions (transaction_id INTEGER, idempotency_key TEXT)")
        conn.execute(
            "CREATE TABLE decisions (transaction_id INTEGER, outcome TEXT, fraud_score REAL, anomaly_score REAL)"
        )
        rows: list[tuple[Any, ...]] = [
            (1, "run1-a", "approve", 0.1, 0.2),
            (2, "run1-b", "review", None, 0.3),  # decided while the supervised scorer was down
            (3, "run1-c", "block", 0.9, None),
            (4, "run2-a", "approve", None, None),  # another run's: not counted
        ]
        for tid, key, outcome, fraud, anomaly in rows:
            conn.execute("INSERT INTO transactions VALUES (?, ?)", (tid, key))
            conn.execute("INSERT INTO decisions VALUES (?, ?, ?, ?)", (tid, outcome, fraud, anomaly))
    acks = tmp_path / "acks"
    acks.write_text("run1-a\nrun1-b\nrun1-c\nrun1-d\n")  # run1-d acknowledged, never stored

    result = bench_serve.durable(SimpleNamespace(db=db), "run1", [acks])  # type: ignore[arg-type]

    assert result["unscored"] == {"fraud": 1, "anomaly": 1}
    assert result["missing"] == 1 and result["missing_sample"] == ["run1-d"] and not result["ok"]
    assert bench_serve.unscored_note(result) == ", 1 without a fraud score, 1 without an anomaly score"
    assert bench_serve.unscored_note({"unscored": {"fraud": 0, "anomaly": 0}}) == ""
