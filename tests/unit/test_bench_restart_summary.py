"""The restart benchmark's summary: what counts as keeping up before the kill, and recovery."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_restart  # a script directory, not a package


def _load(kill_at: float, *, retried_sent_at: float | None) -> list[dict[str, Any]]:
    """100 requests a second for 30 s, 40 ms each; one retried request sent at ``retried_sent_at``."""
    records = []
    for i in range(3000):
        sent = i / 100
        records.append({"sent": sent, "done": sent + 0.04, "status": 201, "attempts": 1})
    if retried_sent_at is not None:
        records.append({"sent": retried_sent_at, "done": kill_at + 1.2, "status": 201, "attempts": 2})
    return records


def test_a_request_caught_in_flight_by_the_kill_does_not_mean_it_was_not_keeping_up() -> None:
    summary = bench_restart.summarise(_load(15.0, retried_sent_at=14.95), 15.0, 30)
    assert summary["kept_up_before_kill"] and summary["retried"] == 1
    assert summary["recovered_after_s"] == 0.0


def test_retries_well_before_the_kill_do() -> None:
    summary = bench_restart.summarise(_load(15.0, retried_sent_at=10.5), 15.0, 30)
    assert not summary["kept_up_before_kill"] and summary["recovered_after_s"] is None
