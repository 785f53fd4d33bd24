"""A database filled through the real service for the monitor's tests (unit on SQLite, integration
on PostgreSQL), and the figures recomputed from raw rows with plain pandas, independently of
:mod:`vigil.monitoring` (only the window definitions are shared, from its docstring)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from vigil.db import repository as repo
from vigil.db.engine import session_scope
from vigil.decision.local_graph import LocalGraph
from vigil.decision.policy import DecisionPolicy
from vigil.monitoring.monitor import MonitorConfig
from vigil.schemas import LabelCreate
from vigil.service import VigilService

MODEL = "fraud-supervised:3"


def config(now: datetime) -> MonitorConfig:
    return MonitorConfig(
        label_delay=timedelta(days=1),
        performance_windows={"7d": timedelta(days=7)},
        drift_windows={"1h": timedelta(hours=1)},
        business_windows={"24h": timedelta(hours=24)},
        reference_window=(now - timedelta(days=30), now - timedelta(days=10)),
        reference_bins=4,
        drift_min_rows=5,
    )


async def fill(url: str, open_shop: Callable[[VigilService], Awaitable[Any]]) -> None:
    """Screen transactions (reference-window ones and label-matured ones), then label some, resolve
    review cases and give the decisions a model's scores."""
    service = VigilService(url)
    service.attach_screening(LocalGraph(url, supervised=None, anomaly=None), DecisionPolicy())
    try:
        shop = await open_shop(service)
        real_now = datetime.now(UTC)
        rng = np.random.default_rng(7)
        ids: list[int] = []
        # reference window: small amounts in the day
        for i in range(20):
            created = real_now - timedelta(days=12, hours=int(rng.integers(0, 48)))
            tx = shop.tx(f"reference-{i:04d}", f"{rng.uniform(5, 60):.2f}", created_at=created)
            ids.append((await service.screen(tx, received_at=created)).transaction_id)
        # matured window (2 to 8 days old): a mix, large amounts go to review without models
        for i in range(30):
            created = real_now - timedelta(days=2, hours=int(rng.integers(0, 140)))
            amount = f"{rng.uniform(2000, 9000):.2f}" if i % 3 == 0 else f"{rng.uniform(5, 300):.2f}"
            tx = shop.tx(f"matured-{i:04d}", amount, created_at=created)
            tx = tx.model_copy(update={"channel": "pos" if i % 2 else "atm"})
            ids.append((await service.screen(tx, received_at=created)).transaction_id)
        async with session_scope(service.sessions) as session:
            # scores as a scorer would have stored them (the unit tier runs without models)
            for n, tx_id in enumerate(ids):
                await session.execute(
                    sa.text(
                        "UPDATE decisions SET fraud_score = :s, model_version = :m WHERE transaction_id = :t"
                    ),
                    {"s": float(rng.uniform(0, 1)), "m": MODEL if n % 5 else None, "t": tx_id},
                )
            for n, tx_id in enumerate(ids[20:]):
                if n % 4 == 3:
                    continue  # not labelled yet
                labeled_at = real_now - timedelta(hours=2) if n % 7 else real_now + timedelta(days=3)
                await repo.add_label(
                    session,
                    data=LabelCreate(
                        transaction_id=tx_id,
                        is_fraud=bool(n % 3 == 0 or n % 5 == 0),
                        source="chargeback",
                        labeled_at=labeled_at,
                    ),
                )
        cases = await service.review_cases(status="open", limit=100, after_id=0)
        for case, _tx, _decision in list(cases)[:3]:
            assert case.id is not None
            await service.resolve_case(case.id, analyst="ana", resolution="fraud", notes=None)
    finally:
        await service.close()


async def raw_tables(url: str) -> dict[str, pd.DataFrame]:
    from vigil.db.engine import create_engine

    engine = create_engine(url)
    try:
        out: dict[str, pd.DataFrame] = {}
        async with engine.connect() as conn:
            for table in ("transactions", "decisions", "fraud_labels", "review_cases", "kyc_submissions"):

                def read(c: sa.Connection, t: str = table) -> pd.DataFrame:
                    return pd.read_sql(sa.text(f"SELECT * FROM {t}"), c)

                out[table] = await conn.run_sync(read)
    finally:
        await engine.dispose()
    for frame in out.values():
        for column in frame.columns:
            if column.endswith("_at"):
                frame[column] = pd.to_datetime(frame[column], utc=True, format="mixed")
    return out


def recompute(tables: dict[str, pd.DataFrame], now: datetime) -> dict[str, float]:
    """The expected figures for :func:`config`'s windows, from raw rows."""
    tx, dec, lab = tables["transactions"], tables["decisions"], tables["fraud_labels"]
    known = lab[lab["labeled_at"] <= now][["transaction_id", "is_fraud"]]
    rows = dec.merge(tx, on="transaction_id").merge(known, on="transaction_id", how="left")
    rows["flagged"] = rows["outcome"].isin(["review", "block"])
    expected: dict[str, float] = {}
    end = now - timedelta(days=1)
    matured = rows[(rows["created_at"] > end - timedelta(days=7)) & (rows["created_at"] <= end)]
    mine = matured[matured["model_version"] == MODEL]
    labelled = mine[mine["is_fraud"].notna()]
    fraud = labelled["is_fraud"].astype(bool)
    tp = int((labelled["flagged"] & fraud).sum())
    fp = int((labelled["flagged"] & ~fraud).sum())
    fn = int((~labelled["flagged"] & fraud).sum())
    expected["precision"] = tp / (tp + fp)
    expected["recall"] = tp / (tp + fn)
    expected["labelled"] = len(labelled) / len(mine)
    # ROC-AUC as the probability a fraud outscores a legitimate one (ties count half)
    pos = labelled.loc[fraud, "fraud_score"].to_numpy()
    neg = labelled.loc[~fraud, "fraud_score"].to_numpy()
    expected["roc_auc"] = float(np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg]))
    recent = rows[(rows["decided_at"] > now - timedelta(hours=24)) & (rows["decided_at"] <= now)]
    caught = recent[recent["flagged"] & recent["is_fraud"].eq(True)]
    expected["caught"] = len(caught)
    expected["caught_amount"] = float(caught["amount"].astype(float).sum())
    legit = recent[recent["is_fraud"].eq(False)]
    expected["fpr"] = float(legit["flagged"].mean())
    expected["share_review"] = float((recent["outcome"] == "review").mean())
    cases = tables["review_cases"]
    waiting = cases[cases["status"] != "resolved"]
    expected["queue"] = len(waiting)
    expected["oldest"] = (now - waiting["created_at"].min()).total_seconds() if len(waiting) else 0.0
    done = cases[(cases["status"] == "resolved") & (cases["resolved_at"] > now - timedelta(hours=24))]
    expected["turnaround_p50"] = float(
        np.median((done["resolved_at"] - done["created_at"]).dt.total_seconds())
    )
    expected["labels"] = int((lab["labeled_at"] <= now).sum())
    # drift of amount for the model's rows of the last hour against 4 quantile bins of the reference
    ref = tx[(tx["created_at"] > now - timedelta(days=30)) & (tx["created_at"] <= now - timedelta(days=10))]
    ref_amounts = ref["amount"].astype(float).to_numpy()
    edges = np.unique(np.quantile(ref_amounts, [0.25, 0.5, 0.75]))
    live = recent[(recent["decided_at"] > now - timedelta(hours=1)) & (recent["model_version"] == MODEL)]
    live_amounts = live["amount"].astype(float).to_numpy()

    def shares(x: np.ndarray) -> np.ndarray:
        bins = np.zeros(len(edges) + 1)
        for v in x:
            bins[sum(v > e for e in edges)] += 1
        return bins / len(x)

    e, a = np.maximum(shares(ref_amounts), 1e-4), np.maximum(shares(live_amounts), 1e-4)
    expected["amount_psi"] = float(np.sum((a - e) * np.log(a / e)))
    assert not any(isinstance(v, float) and math.isnan(v) for v in expected.values()), expected
    return expected
