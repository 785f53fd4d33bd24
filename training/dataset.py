"""From raw tables to a feature matrix: a generated dataset directory, or any transactions table.

The features are computed by :func:`vigil.features.compute_features`, the offline execution of
the same definitions the velocity actors run online.

Bring your own data: a CSV or Parquet transactions table with at least user, merchant, amount,
timestamp and label columns, renamed through ``mapping`` (``{"user_id": "customer", ...}``: our
name -> your column). Optional columns (device_id, ip, lat/lon, country, channel, fraud_type,
labeled_at) may be absent: the features that need them come out NaN. Without a label-arrival
column, ``label_delay`` says how late labels become known.

One path: :func:`load_table` (a user's table) and :func:`dataset_table` (a generated directory)
are what both ``vigil train`` and ``vigil score`` call, so a model is scored on features computed
from the same inputs, label history included, as it was trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from training.models.data import FeatureMatrix
from vigil.features import FEATURE_NAMES, FEATURE_SPEC, FEATURE_VERSION, compute_features

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


class MissingLabelTimes(ValueError):
    """The table has labels but no way to tell when each became known (no labeled_at, no delay)."""


@dataclass(frozen=True, eq=False)
class LabelledTable:
    """A transactions table turned into features, with what they were computed from.

    ``transaction_ids`` are the table's own ids (its dtype: integers or strings), one per row of
    ``matrix`` in the same order. ``label_source`` says how the label arrival times that the
    label-based features count were set: ``"labeled_at"`` (the data's own arrival times),
    ``"label_delay"`` (event time + ``label_delay``) or ``"none"`` (no labels: those features are
    NaN).
    """

    matrix: FeatureMatrix
    transaction_ids: np.ndarray
    label_source: str
    label_delay: timedelta | None

    @property
    def has_labels(self) -> bool:
        return self.label_source != "none"


def label_based_features(feature_names: Sequence[str]) -> list[str]:
    """The features in ``feature_names`` that count fraud labels known at the transaction's time."""
    needs_labels = {spec.name for spec in FEATURE_SPEC if "labels" in spec.requires}
    return [name for name in feature_names if name in needs_labels]


def _internal_ids(ids: pd.Series) -> np.ndarray:
    """int64 ids for :func:`compute_features`: the ids themselves when they are integers, else
    their rank in sorted order (1-based), so any subset of a table orders its ties the same way."""
    if ids.isna().any():
        raise ValueError("transaction_id has empty values")
    if not ids.is_unique:
        raise ValueError("transaction_id must be unique (map the table's id column)")
    if pd.api.types.is_integer_dtype(ids):
        return ids.to_numpy(dtype=np.int64)
    try:
        codes, _ = pd.factorize(ids, sort=True)
    except TypeError:  # mixed types that do not sort: first-seen order
        codes, _ = pd.factorize(ids.astype(str), sort=True)
    return np.asarray(codes, dtype=np.int64) + 1


def load_table(
    path: Path,
    *,
    mapping: Mapping[str, str] | None = None,
    label_delay: timedelta | None = None,
    labeled_at: bool | None = None,
    until: pd.Timestamp | str | None = None,
    require_label: bool = True,
) -> LabelledTable:
    """Read a user's CSV/Parquet transactions table and compute its point-in-time features.

    What ``vigil train --transactions`` and ``vigil score --transactions`` both run, so that a
    model is scored on the features it was trained on. ``mapping`` renames columns (our name ->
    yours). Label arrival times: the table's ``labeled_at`` column when present (``labeled_at``
    None) or required (True); else, or with ``labeled_at=False``, event time + ``label_delay``.
    ``until`` keeps only rows before that time (UTC). Without ``require_label`` a table without
    an ``is_fraud`` column is read as unlabelled (label-based features NaN).

    Raises ``ValueError`` naming missing columns, and :class:`MissingLabelTimes` when labels have
    no arrival time.
    """
    raw = _read_table(path)
    mapping = dict(mapping or {})
    rename = {theirs: ours for ours, theirs in mapping.items()}
    unknown = [theirs for theirs in rename if theirs not in raw.columns]
    if unknown:
        raise ValueError(f"--map names columns that {path.name} does not have: {unknown}")
    frame = raw.rename(columns=rename)
    needed = REQUIRED if require_label else tuple(c for c in REQUIRED if c != "is_fraud")
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{path.name} lacks required columns {missing} (map yours with --map ours=theirs)")
    if "transaction_id" in frame.columns:
        own_ids = frame["transaction_id"].reset_index(drop=True)
    else:
        own_ids = pd.Series(np.arange(1, len(frame) + 1, dtype=np.int64))
    frame = frame.reset_index(drop=True)
    frame["transaction_id"] = _internal_ids(own_ids)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    if frame["created_at"].isna().any():
        raise ValueError("created_at has empty or unparseable values")
    if until is not None:
        cut = pd.Timestamp(until)
        cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut.tz_convert("UTC")
        keep_rows = (frame["created_at"] < cut).to_numpy()
        frame = frame[keep_rows].reset_index(drop=True)
        own_ids = own_ids[keep_rows].reset_index(drop=True)

    labels: pd.DataFrame | None = None
    source, delay = "none", None
    if "is_fraud" in frame.columns:
        label = _as_bool(frame["is_fraud"])
        has_column = "labeled_at" in frame.columns
        if labeled_at and not has_column:
            raise MissingLabelTimes(
                f"{path.name} has no labeled_at column (map yours with --map labeled_at=COL)"
            )
        if has_column and labeled_at is not False:
            arrival = pd.to_datetime(frame["labeled_at"], utc=True)
            source = "labeled_at"
        elif label_delay is not None:
            arrival = frame["created_at"] + label_delay
            source, delay = "label_delay", label_delay
        else:
            raise MissingLabelTimes("the table has no labeled_at column: pass --label-delay (e.g. 7d)")
        labels = pd.DataFrame(
            {
                "transaction_id": frame["transaction_id"][label].to_numpy(),
                "is_fraud": True,
                "labeled_at": arrival[label].to_numpy(),
                "fraud_type": frame["fraud_type"][label].to_numpy() if "fraud_type" in frame else None,
            }
        )
    keep = [c for c in ("transaction_id", *REQUIRED, *OPTIONAL) if c in frame.columns and c != "is_fraud"]
    matrix = build_matrix(frame[list(dict.fromkeys(keep))], labels=labels)
    return LabelledTable(
        matrix=matrix, transaction_ids=own_ids.to_numpy(), label_source=source, label_delay=delay
    )


def _as_bool(values: pd.Series) -> pd.Series:
    if values.isna().any():
        raise ValueError("is_fraud has empty values")
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values.astype(bool).reset_index(drop=True)
    text = values.astype(str).str.strip().str.lower()
    truth = {
        "1": True,
        "true": True,
        "yes": True,
        "t": True,
        "0": False,
        "false": False,
        "no": False,
        "f": False,
    }
    parsed = text.map(truth)
    if parsed.isna().any():
        bad = sorted(set(text[parsed.isna()]))[:5]
        raise ValueError(f"is_fraud must be 0/1 or true/false, got {bad}")
    return parsed.astype(bool).reset_index(drop=True)


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


def dataset_table(data_dir: Path, *, label_delay: timedelta | None = None) -> LabelledTable:
    """The features of a ``vigil generate`` directory, as ``vigil train --data`` computes them.

    Labels arrive at their ``fraud_labels.labeled_at``; with ``label_delay`` at event time +
    ``label_delay`` instead (to score like a model trained with a fixed delay).
    """
    tables = load_dataset(data_dir)
    transactions = tables.pop("transactions")
    assert transactions is not None
    labels = tables.pop("labels")
    source = "none" if labels is None else "labeled_at"
    if labels is not None and label_delay is not None:
        created = pd.Series(
            pd.to_datetime(transactions["created_at"], utc=True).to_numpy(),
            index=transactions["transaction_id"].to_numpy(),
        )
        labels = labels.assign(
            labeled_at=created.reindex(labels["transaction_id"].to_numpy()).to_numpy() + label_delay
        )
        source = "label_delay"
    matrix = build_matrix(transactions, labels=labels, **tables)
    return LabelledTable(
        matrix=matrix,
        transaction_ids=transactions["transaction_id"].to_numpy(),
        label_source=source,
        label_delay=label_delay if source == "label_delay" else None,
    )


def matrix_from_dataset(data_dir: Path) -> FeatureMatrix:
    """The feature matrix of a ``vigil generate`` directory (see :func:`dataset_table`)."""
    return dataset_table(data_dir).matrix
