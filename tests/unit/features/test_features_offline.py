"""Offline compute_features: schema, alignment, inputs it accepts and refuses, missing data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from vigil.features import FEATURE_DTYPES, FEATURE_NAMES, FEATURE_SPEC, compute_features

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def table(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": np.arange(100, 100 + n)[::-1],
            "user_id": [1, 2] * (n // 2),
            "created_at": pd.to_datetime([T0 + timedelta(minutes=m) for m in range(n)], utc=True),
            "amount": np.linspace(5.0, 50.0, n),
            "merchant_id": [7] * n,
            "device_id": pd.array([3, None] * (n // 2), dtype="Int64"),
            "ip": ["10.0.0.1"] * n,
            "channel": ["pos"] * n,
            "country": ["GB"] * n,
            "lat": [51.5] * n,
            "lon": [-0.1] * n,
        }
    )


def test_schema_dtypes_and_alignment() -> None:
    tx = table()
    out = compute_features(tx)
    assert list(out.columns) == list(FEATURE_NAMES)
    assert out.index.name == "transaction_id"
    assert list(out.index) == list(tx["transaction_id"])
    assert {c: str(out[c].dtype) for c in out.columns} == FEATURE_DTYPES
    # user 1's third transaction sees its two earlier ones
    assert out.loc[101, "txn_count_1h_by_user"] == 2


def test_pyarrow_input_gives_the_same_result() -> None:
    tx = table()
    pd.testing.assert_frame_equal(compute_features(tx), compute_features(pa.Table.from_pandas(tx)))


def test_missing_optional_inputs_give_nan_only_where_needed() -> None:
    tx = table()[["transaction_id", "user_id", "created_at", "amount"]]
    out = compute_features(tx)
    for spec in FEATURE_SPEC:
        if spec.requires:
            assert out[spec.name].isna().all(), spec.name
        else:
            assert out[spec.name].notna().any(), spec.name


def test_null_keys_give_nan_for_that_row_only() -> None:
    out = compute_features(table())
    null_device = out["device_new_90d_by_user"].isna()
    assert null_device.tolist() == [False, True] * 3


def test_input_order_does_not_matter() -> None:
    tx = table(8)
    shuffled = tx.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(compute_features(tx).sort_index(), compute_features(shuffled).sort_index())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.assign(created_at=df["created_at"].dt.tz_localize(None)), "timezone-naive"),
        (lambda df: df.assign(transaction_id=1), "unique"),
        (lambda df: df.drop(columns=["amount"]), "required"),
    ],
)
def test_bad_input_is_refused(mutate: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_features(mutate(table()))  # type: ignore[operator]


def test_empty_table() -> None:
    out = compute_features(table().iloc[:0])
    assert list(out.columns) == list(FEATURE_NAMES) and len(out) == 0
