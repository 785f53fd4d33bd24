"""From raw tables to a feature matrix: a generated dataset directory, or any transactions table.

The features are computed by :func:`vigil.features.compute_features`, the offline execution of
the same definitions the velocity actors run online.

Bring your own data: a CSV or Parquet transactions table with at least user, merchant, amount,
timestamp and label columns, renamed through ``mapping`` (``{"user_id": "customer", ...}``: our
name -> your column). Optional columns (device_id, ip, lat/lon, country, channel, fraud_type,
labeled_at) may be absent: the features that need them come out NaN. Without a label-arrival
column, ``label_delay`` says how late labels become known.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from training.models.data import FeatureMatrix
from vigil.features import FEATURE_NAMES, FEATURE_VERSION, compute_features

log = logging.getLogger("training.dataset")

REQUIRED = ("user_id", "merchant_id", "amount", "created_at", "is_fraud")
OPTIONAL = (
    "transaction_id",
    "device_id",
    "ip",
    "lat",
    "lon",
    "country",
    "channel",
    "fraud_type",
    "labeled_at",
)


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix.lower() in {".csv", ".txt"}:
        return pd.read_csv(path)
    return pq.read_table(path).to_pandas()


def _optional(data_dir: Path, table: str) -> pd.DataFrame | None:
    path = data_dir / f"{table}.parquet"
    return pq.read_table(path).to_pandas() if path.exists() else None


def parse_mapping(text: str | None) -> dict[str, str]:
    """``"user_id=cust,merchant_id=shop"`` -> ``{"user_id": "cust", "merchant_id": "shop"}``."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        ours, sep, theirs = part.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise ValueError(f"--map expects name=COLUMN pairs, got {part!r}")
        if ours.strip() not in (*REQUIRED, *OPTIONAL):
            raise ValueError(
                f"--map: unknown column {ours.strip()!r}; known: {', '.join((*REQUIRED, *OPTIONAL))}"
            )
        mapping[ours.strip()] = theirs.strip()
    return mapping


def load_transactions_file(
    path: Path, *, mapping: Mapping[str, str] | None = None, label_delay: timedelta | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a user's table; return ``(transactions, labels)`` in our column names.

    Raises ``ValueError`` naming every missing required column.
    """
    raw = _read_table(path)
    mapping = dict(mapping or {})
    rename = {theirs: ours for ours, theirs in mapping.items()}
    unknown = [theirs for theirs in rename if theirs not in raw.columns]
    if unknown:
        raise ValueError(f"--map names columns that {path.name} does not have: {unknown}")
    frame = raw.rename(columns=rename)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"{path.name} lacks required columns {missing} (map yours with --map ours=theirs)")
    if "transaction_id" not in frame.columns:
        frame["transaction_id"] = np.arange(1, len(frame) + 1, dtype=np.int64)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    if frame["created_at"].isna().any():
        raise ValueError("created_at has empty or unparseable values")
    label = frame["is_fraud"].astype(bool)
    if "labeled_at" in frame.columns:
        labeled_at = pd.to_datetime(frame["labeled_at"], utc=True)
    elif label_delay is not None:
        labeled_at = frame["created_at"] + label_delay
    else:
        raise ValueError("the table has no labeled_at column: pass --label-delay (e.g. 7d)")
    labels = pd.DataFrame(
        {
            "transaction_id": frame["transaction_id"][label].to_numpy(),
            "is_fraud": True,
            "labeled_at": labeled_at[label].to_numpy(),
            "fraud_type": frame["fraud_type"][label].to_numpy() if "fraud_type" in frame else None,
        }
    )
    keep = [
        c for c in ("transaction_id", *REQUIRED, *OPTIONAL) if c in frame.columns and c not in {"is_fraud"}
    ]
    return frame[list(dict.fromkeys(keep))], labels


def load_dataset(data_dir: Path) -> dict[str, pd.DataFrame | None]:
    """The tables of a ``vigil generate`` directory that the features and labels need."""
    if not (data_dir / "transactions.parquet").exists():
        raise FileNotFoundError(f"{data_dir} has no transactions.parquet (run vigil generate first)")
    return {
        "transactions": pq.read_table(data_dir / "transactions.parquet").to_pandas(),
        "labels": _optional(data_dir, "fraud_labels"),
        "users": _optional(data_dir, "users"),
        "merchants": _optional(data_dir, "merchants"),
        "blacklist": _optional(data_dir, "blacklist_entries"),
    }


def build_matrix(
    transactions: pd.DataFrame,
    *,
    labels: pd.DataFrame | None,
    users: pd.DataFrame | None = None,
    merchants: pd.DataFrame | None = None,
    blacklist: pd.DataFrame | None = None,
) -> FeatureMatrix:
    """Features (point-in-time, labels only once known) plus label, event and label times."""
    X = compute_features(transactions, users=users, labels=labels, blacklist=blacklist, merchants=merchants)
    tx_ids = transactions["transaction_id"].to_numpy(dtype=np.int64)
    y = np.zeros(len(tx_ids), dtype=np.int8)
    label_time = pd.Series(pd.NaT, index=range(len(tx_ids)), dtype="datetime64[ns, UTC]")
    fraud_type = pd.Series([None] * len(tx_ids), dtype=object)
    if labels is not None and len(labels):
        fraud = labels[labels["is_fraud"].astype(bool)]
        position = pd.Series(np.arange(len(tx_ids)), index=tx_ids)
        rows = position.reindex(fraud["transaction_id"].to_numpy()).dropna().astype(np.int64).to_numpy()
        known = fraud["transaction_id"].isin(position.index).to_numpy()
        y[rows] = 1
        label_time.iloc[rows] = pd.to_datetime(fraud["labeled_at"], utc=True).to_numpy()[known]
        if "fraud_type" in fraud:
            fraud_type.iloc[rows] = fraud["fraud_type"].to_numpy()[known]
    X = X.reset_index(drop=True)[list(FEATURE_NAMES)].astype(np.float32)  # half the memory at 5M rows
    return FeatureMatrix.build(
        X,
        y,
        pd.to_datetime(transactions["created_at"], utc=True).reset_index(drop=True),
        label_time,
        fraud_type,
        feature_names=list(FEATURE_NAMES),
        feature_version=FEATURE_VERSION,
    )


def matrix_from_dataset(data_dir: Path) -> FeatureMatrix:
    tables = load_dataset(data_dir)
    transactions = tables.pop("transactions")
    assert transactions is not None
    return build_matrix(transactions, **tables)
