"""Data-quality checks: a clean dataset passes; each kind of corruption fails with a clear message."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from training.generate import FRAUD_TYPES, GenerateConfig, generate
from training.quality import QualityReport, validate_dataset


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    generate(GenerateConfig(users=100, transactions=4_000, seed=9, validate=False), out, progress=False)
    return out


@pytest.fixture
def dataset(clean: Path, tmp_path: Path) -> Path:
    out = tmp_path / "data"
    shutil.copytree(clean, out)
    return out


def _edit(path: Path, table: str, change: Callable[[pa.Table], pa.Table]) -> None:
    file = path / f"{table}.parquet"
    pq.write_table(change(pq.read_table(file)), file)


def _set(table: pa.Table, column: str, values: pa.Array | np.ndarray) -> pa.Table:
    i = table.schema.get_field_index(column)
    field = table.schema.field(i)
    arr = values if isinstance(values, pa.Array) else pa.array(values, type=field.type)
    return table.set_column(i, field.with_type(arr.type), arr)


def _failed(report: QualityReport) -> dict[str, str]:
    return {c.name: c.message for c in report.failures}


def test_clean_dataset_passes_with_per_type_rates(clean: Path) -> None:
    report = validate_dataset(clean)
    assert report.ok, report.format()
    assert len(report.checks) > 50
    assert set(report.fraud_rate_by_type) == set(FRAUD_TYPES)
    assert all(rate > 0 for rate in report.fraud_rate_by_type.values())
    assert report.fraud_rate == pytest.approx(sum(report.fraud_rate_by_type.values()))
    assert report.rows["transactions"] == 4_000
    assert "checks passed" in report.format()


def test_missing_table(dataset: Path) -> None:
    (dataset / "devices.parquet").unlink()
    failed = _failed(validate_dataset(dataset))
    assert "missing file" in failed["exists:devices"]


def test_wrong_column_type(dataset: Path) -> None:
    _edit(
        dataset,
        "transactions",
        lambda t: _set(t, "amount", pc.cast(t.column("amount"), pa.float32()).combine_chunks()),
    )
    failed = _failed(validate_dataset(dataset))
    assert "amount is float" in failed["schema:transactions"]


def test_missing_column(dataset: Path) -> None:
    _edit(dataset, "users", lambda t: t.drop_columns(["segment"]))
    assert "missing ['segment']" in _failed(validate_dataset(dataset))["schema:users"]


def test_dangling_foreign_key(dataset: Path) -> None:
    def break_fk(t: pa.Table) -> pa.Table:
        merchant = t.column("merchant_id").to_numpy().copy()
        merchant[:3] = 10**12
        return _set(t, "merchant_id", merchant)

    _edit(dataset, "transactions", break_fk)
    failed = _failed(validate_dataset(dataset))
    assert failed["foreign_key:transactions.merchant_id"].startswith("3 rows reference no merchants row")


def test_account_of_another_user(dataset: Path) -> None:
    def swap(t: pa.Table) -> pa.Table:
        users = t.column("user_id").to_numpy().copy()
        users[0] = users[-1] if users[-1] != users[0] else users[0] + 1
        return _set(t, "user_id", users)

    _edit(dataset, "transactions", swap)
    failed = _failed(validate_dataset(dataset))
    assert "on an account of another user" in failed["consistency:transactions.account_owner"]


def test_duplicate_keys(dataset: Path) -> None:
    def dup(t: pa.Table) -> pa.Table:
        ids = t.column("transaction_id").to_numpy().copy()
        ids[1] = ids[0]
        return _set(t, "transaction_id", ids)

    _edit(dataset, "transactions", dup)
    failed = _failed(validate_dataset(dataset))
    assert "1 duplicated values" in failed["primary_key:transactions.transaction_id"]


def test_duplicate_idempotency_keys(dataset: Path) -> None:
    def dup(t: pa.Table) -> pa.Table:
        keys = t.column("idempotency_key").to_pylist()
        keys[5] = keys[4]
        return _set(t, "idempotency_key", pa.array(keys))

    _edit(dataset, "transactions", dup)
    failed = _failed(validate_dataset(dataset))
    assert "1 duplicated values" in failed["unique:transactions.idempotency_key"]


def test_blacklist_spans_of_one_entity_may_follow_each_other_but_not_overlap(dataset: Path) -> None:
    def second_span(t: pa.Table, *, starts_inside: bool) -> pa.Table:
        first = t.slice(0, 1)
        added = first.column("added_at")[0].value
        expires = first.column("expires_at")[0].value if first.column("expires_at")[0].is_valid else None
        end = expires if expires is not None else added + 10**12
        fields = {
            name: first.column(name)
            for name in t.column_names
            if name not in ("id", "added_at", "expires_at")
        }
        row = {
            **fields,
            "id": pa.array([t.column("id").to_numpy().max() + 1]),
            "added_at": pa.array([end - 1 if starts_inside else end], type=t.schema.field("added_at").type),
            "expires_at": pa.array([None], type=t.schema.field("expires_at").type),
        }
        if expires is None:  # give the first span an end, so a span can follow it
            t = _set(
                t,
                "expires_at",
                pc.fill_null(t.column("expires_at"), pa.scalar(end, t.schema.field("expires_at").type)),
            )
        return pa.concat_tables([t, pa.table({n: row[n] for n in t.column_names}).cast(t.schema)])

    _edit(dataset, "blacklist_entries", lambda t: second_span(t, starts_inside=False))
    assert "spans:blacklist_entries(kind,value)" not in _failed(validate_dataset(dataset))
    _edit(dataset, "blacklist_entries", lambda t: second_span(t.slice(0, t.num_rows - 1), starts_inside=True))
    failed = _failed(validate_dataset(dataset))
    assert "1 entries overlap an earlier span" in failed["spans:blacklist_entries(kind,value)"]


def test_bad_amounts(dataset: Path) -> None:
    def bad(t: pa.Table) -> pa.Table:
        amount = t.column("amount").to_numpy().copy()
        amount[0], amount[1] = -5.0, 1.234
        return _set(t, "amount", amount)

    _edit(dataset, "transactions", bad)
    failed = _failed(validate_dataset(dataset))
    assert "1 amounts not > 0" in failed["range:transactions.amount"]
    assert "1 amounts not in whole cents" in failed["range:transactions.amount_cents"]


def test_unknown_category_and_bad_country(dataset: Path) -> None:
    def bad(t: pa.Table) -> pa.Table:
        channel = t.column("channel").cast(pa.string()).to_pylist()
        channel[0] = "carrier_pigeon"
        country = t.column("country").cast(pa.string()).to_pylist()
        country[0] = "gbr"
        t = _set(t, "channel", pa.array(channel).dictionary_encode())
        return _set(t, "country", pa.array(country).dictionary_encode())

    _edit(dataset, "transactions", bad)
    failed = _failed(validate_dataset(dataset))
    assert "carrier_pigeon" in failed["allowed_values:transactions.channel"]
    assert "gbr" in failed["format:transactions.country"]


def test_timestamps_out_of_order_and_before_user(dataset: Path) -> None:
    def shuffle(t: pa.Table) -> pa.Table:
        ts = t.column("created_at").cast(pa.int64()).to_numpy().copy()
        ts[0], ts[1] = ts[1], ts[0] - 10 * 365 * 86_400 * 10**6
        return _set(t, "created_at", pa.array(ts).cast(t.schema.field("created_at").type))

    _edit(dataset, "transactions", shuffle)
    failed = _failed(validate_dataset(dataset))
    assert "timestamps:transactions.ordered_per_user" in failed
    assert "outside" in failed["timestamps:transactions.window"]
    assert "dated before their user's created_at" in failed["timestamps:transactions.after_users.created_at"]


def test_label_before_transaction(dataset: Path) -> None:
    def early(t: pa.Table) -> pa.Table:
        at = t.column("labeled_at").cast(pa.int64()).to_numpy() - 400 * 86_400 * 10**6
        return _set(t, "labeled_at", pa.array(at).cast(t.schema.field("labeled_at").type))

    _edit(dataset, "fraud_labels", early)
    assert "timestamps:fraud_labels.after_transaction" in _failed(validate_dataset(dataset))


def test_fraud_rate_outside_band_and_missing_type(dataset: Path) -> None:
    _edit(
        dataset,
        "fraud_labels",
        lambda t: t.filter(pc.not_equal(t.column("fraud_type").cast(pa.string()), "structuring")),
    )
    failed = _failed(validate_dataset(dataset, fraud_rate_band=(0.039, 0.05)))
    assert "outside the band" in failed["fraud_rate:overall"]
    assert "structuring" in failed["fraud_rate:types_present"]
    assert "structuring" in failed["fraud_rate:by_type_matches_manifest"]


def test_without_manifest_defaults_apply(dataset: Path) -> None:
    (dataset / "manifest.json").unlink()
    report = validate_dataset(dataset)
    assert report.ok, report.format()
    assert "timestamps:transactions.window" not in {c.name for c in report.checks}
