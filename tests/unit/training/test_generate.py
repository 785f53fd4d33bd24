"""Synthetic data generator: contract, invariants for any seed and size, determinism."""

from __future__ import annotations

import hashlib
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training.generate import FRAUD_TYPES, SCHEMAS, GenerateConfig, GenerateSummary, generate
from training.generate.schema import CAT, TS
from training.quality import validate_dataset
from vigil.db import models

SMALL = {"users": 150, "transactions": 6_000}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[GenerateSummary, Path]:
    out = tmp_path_factory.mktemp("small")
    return generate(GenerateConfig(seed=11, **SMALL), out, progress=False), out


def _digests(path: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(path.iterdir())}


def test_tables_match_the_data_model(small: tuple[GenerateSummary, Path]) -> None:
    _, out = small
    for name, schema in SCHEMAS.items():
        assert name in models.TABLE_ORDER
        columns = [c.name for c in models.SQLModel.metadata.tables[name].columns]
        assert schema.names == columns, name
        written = pq.read_schema(out / f"{name}.parquet")
        assert written.names == columns
        for field in written:
            assert field.type == schema.field(field.name).type, (name, field)


def test_type_mapping(small: tuple[GenerateSummary, Path]) -> None:
    _, out = small
    tx = pq.read_schema(out / "transactions.parquet")
    assert tx.field("transaction_id").type == pa.int64()
    assert tx.field("amount").type == pa.float64()
    assert tx.field("created_at").type == TS
    assert tx.field("channel").type == CAT
    assert tx.field("idempotency_key").type == pa.string()
    assert pq.read_schema(out / "users.parquet").field("birth_date").type == pa.date32()


def test_summary_and_labels(small: tuple[GenerateSummary, Path]) -> None:
    summary, out = small
    assert summary.rows["transactions"] == SMALL["transactions"]
    assert summary.quality is not None and summary.quality.ok, summary.quality.format()
    tx = pd.read_parquet(out / "transactions.parquet")
    labels = pd.read_parquet(out / "fraud_labels.parquet")
    assert (tx.idempotency_key == "gen-" + tx.transaction_id.astype(str)).all()
    assert labels.is_fraud.all() and (labels.source == "generator").all()
    joined = labels.merge(tx[["transaction_id", "created_at"]], on="transaction_id")
    assert len(joined) == len(labels)
    assert ((joined.labeled_at - joined.created_at) >= pd.Timedelta(hours=12)).all()
    assert set(labels.fraud_type.astype(str)) == set(FRAUD_TYPES)
    assert (tx.amount.round(2) == tx.amount).all() and (tx.amount > 0).all()


def test_blacklist_table(small: tuple[GenerateSummary, Path]) -> None:
    _, out = small
    bl = pd.read_parquet(out / "blacklist_entries.parquet")
    assert set(bl.kind.astype(str)) == {"device", "ip", "merchant", "beneficiary"}
    assert not bl.duplicated(["kind", "value"]).any()
    assert (bl.expires_at.isna() | (bl.expires_at > bl.added_at)).all()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    users=st.integers(20, 300),
    per_user=st.integers(10, 40),
    rate=st.floats(0.03, 0.05),
    days=st.integers(14, 120),
)
def test_invariants_hold_for_any_seed_and_size(
    seed: int, users: int, per_user: int, rate: float, days: int
) -> None:
    transactions = max(1_000, users * per_user)
    config = GenerateConfig(users=users, transactions=transactions, seed=seed, fraud_rate=rate, days=days)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        summary = generate(config, out, progress=False)  # runs validate_dataset and raises on failure
        report = validate_dataset(out)
        assert report.ok, report.format()
        tx = pd.read_parquet(
            out / "transactions.parquet", columns=["transaction_id", "user_id", "created_at"]
        )
        assert len(tx) == transactions
        # timestamps ordered per user, in the order the rows were generated (file order)
        assert tx.groupby("user_id", sort=False).created_at.apply(lambda s: s.is_monotonic_increasing).all()
        assert tx.transaction_id.is_unique and tx.transaction_id.min() == 1
        low, high = config.fraud_rate_band
        assert low <= summary.fraud_rate <= high
        assert report.fraud_rate == pytest.approx(config.fraud_transactions / transactions)
        assert abs(config.fraud_transactions - transactions * rate) <= 1
        expected = config.fraud_counts()
        for fraud_type in FRAUD_TYPES:  # every type present at the default mix
            assert expected[fraud_type] > 0
            assert report.fraud_rate_by_type[fraud_type] == pytest.approx(expected[fraud_type] / transactions)


def test_same_seed_gives_byte_identical_output(tmp_path: Path) -> None:
    config = GenerateConfig(users=120, transactions=4_000, seed=5)
    generate(config, tmp_path / "a", progress=False)
    generate(config, tmp_path / "b", progress=False)
    generate(GenerateConfig(users=120, transactions=4_000, seed=6), tmp_path / "c", progress=False)
    a, b, c = (_digests(tmp_path / d) for d in "abc")
    assert a == b
    assert len(a) == len(SCHEMAS) + 1  # the tables and manifest.json
    assert a["transactions.parquet"] != c["transactions.parquet"]


def test_multi_block_output_is_continuous(tmp_path: Path) -> None:
    from training.generate import USERS_PER_BLOCK

    config = GenerateConfig(users=USERS_PER_BLOCK + 300, transactions=40_000, seed=1)
    generate(config, tmp_path, progress=False)
    tx = pq.read_table(tmp_path / "transactions.parquet", columns=["transaction_id", "user_id"])
    assert pq.ParquetFile(tmp_path / "transactions.parquet").num_row_groups == 2
    ids = tx.column("transaction_id").to_numpy()
    assert np.array_equal(ids, np.arange(1, len(ids) + 1))
    hist = pq.read_table(tmp_path / "device_ip_history.parquet", columns=["id"]).column("id").to_numpy()
    assert np.array_equal(hist, np.arange(1, len(hist) + 1))


def test_seasonality_and_habits(tmp_path: Path) -> None:
    start = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday
    generate(
        GenerateConfig(users=400, transactions=40_000, seed=2, start=start, days=28), tmp_path, progress=False
    )
    tx = pd.read_parquet(
        tmp_path / "transactions.parquet", columns=["user_id", "merchant_id", "created_at", "amount"]
    )
    hours = tx.created_at.dt.hour.value_counts(normalize=True)
    assert hours.loc[[3, 4]].sum() < hours.loc[[18, 19]].sum() / 5  # quiet nights, busy evenings
    weekday = tx.created_at.dt.day_of_week.value_counts()
    assert weekday[5] > weekday[6]  # Saturdays busier than Sundays
    # heavy-tailed amounts, and each user sticks to a few merchants
    assert tx.amount.quantile(0.99) > 10 * tx.amount.median()
    top_share = tx.groupby("user_id").merchant_id.agg(lambda s: s.value_counts(normalize=True).iloc[:5].sum())
    assert top_share.median() > 0.5


def test_households_share_devices(small: tuple[GenerateSummary, Path]) -> None:
    _, out = small
    hist = pd.read_parquet(out / "device_ip_history.parquet")
    users_per_device = hist.groupby("device_id").user_id.nunique()
    assert (users_per_device > 1).any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fraud_rate": 0.06}, "outside the configured band"),
        ({"fraud_rate": 0.02}, "outside the configured band"),
        ({"fraud_mix": {"nope": 1.0}}, "unknown fraud types"),
        ({"days": 7}, "days must be"),
        ({"start": datetime(2025, 1, 1)}, "timezone-aware"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GenerateConfig(**kwargs)  # type: ignore[arg-type]


def test_configurable_band_and_mix() -> None:
    config = GenerateConfig(fraud_rate=0.08, fraud_rate_band=(0.05, 0.1), fraud_mix={"structuring": 1.0})
    counts = config.fraud_counts()
    assert counts["structuring"] == config.fraud_transactions == 8_000
    assert sum(counts.values()) == 8_000
    assert sum(GenerateConfig(transactions=12_345).fraud_counts().values()) == round(12_345 * 0.04)
