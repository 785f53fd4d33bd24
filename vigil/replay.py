"""Replay transactions through the live service: the demo of the whole system (`vigil replay`),
and the client the integration tests use to drive it.

Behaves like a well-written client: every request carries an idempotency key, and a failure
that may not have been processed (a 5xx, a 429, a dropped connection) is retried with the same
key after a short back-off, so the service answers each transaction exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow.parquet as pq

RETRYABLE = {429, 500, 502, 503, 504}


@dataclass
class ReplaySummary:
    sent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    rejected: Counter[int] = field(default_factory=Counter)
    retries: int = 0
    failed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        done = sum(self.outcomes.values())
        rate = done / self.seconds if self.seconds else 0.0
        parts = " ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
        extra = f" rejected={dict(self.rejected)}" if self.rejected else ""
        return f"{done:,}/{self.sent:,} decided ({rate:,.0f}/s): {parts}{extra} retries={self.retries} failed={self.failed}"


def dataset_requests(
    data_dir: Path, *, after: pd.Timestamp | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Request bodies from a `vigil generate` directory, oldest first (``after``: from then on).

    Idempotency keys are ``replay-<transaction_id>``, so replaying the same rows twice is safe.
    """
    tx = pq.read_table(data_dir / "transactions.parquet").to_pandas()
    if after is not None:
        tx = tx[tx["created_at"] >= after]
    tx = tx.sort_values(["created_at", "transaction_id"], kind="stable")
    if limit is not None:
        tx = tx.head(limit)
    return [request_body(row) for row in tx.to_dict("records")]


def request_body(row: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "idempotency_key": f"replay-{int(row['transaction_id'])}",
        "user_id": int(row["user_id"]),
        "account_id": int(row["account_id"]),
        "merchant_id": int(row["merchant_id"]),
        "amount": f"{float(row['amount']):.2f}",
        "currency": str(row["currency"]),
        "channel": str(row["channel"]),
        "country": str(row["country"]),
        "created_at": pd.Timestamp(row["created_at"]).isoformat(),
    }
    if row.get("device_id") is not None and not pd.isna(row["device_id"]):
        body["device_id"] = int(row["device_id"])
    if row.get("ip") is not None and not pd.isna(row["ip"]):
        body["ip"] = str(row["ip"])
    for key in ("lat", "lon"):
        if row.get(key) is not None and not pd.isna(row[key]):
            body[key] = float(row[key])
    return body


async def replay(
    base_url: str,
    api_key: str,
    bodies: Iterable[dict[str, Any]],
    *,
    concurrency: int = 16,
    rate: float | None = None,
    retries: int = 8,
    timeout_s: float = 30.0,
    on_progress: Callable[[ReplaySummary], None] | None = None,
    progress_every_s: float = 1.0,
) -> ReplaySummary:
    """POST every body to ``/v1/transactions``; ``rate`` caps requests per second (None: as fast
    as ``concurrency`` allows). Only 127.0.0.1 / localhost targets are sensible here."""
    summary = ReplaySummary()
    queue: Iterator[dict[str, Any]] = iter(bodies)
    lock = asyncio.Lock()
    started = time.perf_counter()
    interval = 1.0 / rate if rate else 0.0
    next_slot = started

    async def take() -> dict[str, Any] | None:
        nonlocal next_slot
        async with lock:
            body = next(queue, None)
            if body is None:
                return None
            summary.sent += 1
            if interval:
                wait = next_slot - time.perf_counter()
                next_slot = max(next_slot, time.perf_counter()) + interval
                if wait > 0:
                    await asyncio.sleep(wait)
            return body

    async def worker(client: httpx.AsyncClient) -> None:
        while (body := await take()) is not None:
            for attempt in range(retries + 1):
                t0 = time.perf_counter()
                try:
                    response = await client.post("/v1/transactions", json=body)
                except httpx.TransportError:
                    status = 0
                else:
                    status = response.status_code
                if status in (200, 201):
                    summary.latencies_ms.append((time.perf_counter() - t0) * 1000)
                    decision = response.json()
                    summary.outcomes[decision["outcome"]] += 1
                    summary.decisions[body["idempotency_key"]] = decision
                    break
                if status and status not in RETRYABLE:
                    summary.rejected[status] += 1
                    break
                if attempt == retries:
                    summary.failed += 1
                    break
                summary.retries += 1
                await asyncio.sleep(min(2.0, 0.05 * 2**attempt))

    async def reporter() -> None:
        while True:
            await asyncio.sleep(progress_every_s)
            summary.seconds = time.perf_counter() - started
            if on_progress is not None:
                on_progress(summary)

    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=timeout_s, limits=limits
    ) as client:
        report = asyncio.create_task(reporter())
        try:
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        finally:
            report.cancel()
    summary.seconds = time.perf_counter() - started
    return summary
