"""The feature matrix the model side trains on, and a synthetic one for tests and benchmarks.

The pipeline glue builds a :class:`FeatureMatrix` from the offline features (``vigil/features``) and
hands it to training; nothing here knows how the features were computed. Times are UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "FeatureMatrix",
    "load_feature_matrix",
    "make_synthetic_matrix",
]

# Columns of a feature Parquet file that are not features. Everything else numeric is a feature.
LABEL_COLUMN = "is_fraud"
EVENT_TIME_COLUMN = "event_time"
LABEL_TIME_COLUMN = "label_time"
FRAUD_TYPE_COLUMN = "fraud_type"
# Parquet schema metadata key carrying the feature version (falls back to a CLI argument).
FEATURE_VERSION_METADATA_KEY = b"vigil.feature_version"


def _as_utc(values: object, n: int) -> pd.Series:
    series = pd.Series(pd.to_datetime(values, utc=True))
    if len(series) != n:
        raise ValueError(f"expected {n} timestamps, got {len(series)}")
    return series.reset_index(drop=True)


@dataclass(frozen=True, eq=False)
class FeatureMatrix:
    """Rows of features with labels and the times that make a fraud evaluation honest.

    ``X`` holds float features (NaN allowed) in ``feature_names`` order; ``y`` is the final label
    (1 = fraud); ``event_time`` is when the transaction happened and ``label_time`` when its fraud
    label became known (NaT for legit rows); ``fraud_type`` names the fraud pattern (None for legit).
    All times are tz-aware UTC. Build it with :meth:`build`, which normalises the inputs.
    """

    X: pd.DataFrame
    y: np.ndarray
    event_time: pd.Series
    label_time: pd.Series
    fraud_type: pd.Series
    feature_names: tuple[str, ...]
    feature_version: str

    @classmethod
    def build(
        cls,
        X: pd.DataFrame,
        y: Sequence[int] | np.ndarray | pd.Series,
        event_time: object,
        label_time: object,
        fraud_type: Sequence[str | None] | pd.Series | np.ndarray | None = None,
        *,
        feature_names: Sequence[str] | None = None,
        feature_version: str = "unversioned",
    ) -> FeatureMatrix:
        """Validate and normalise the inputs (column order, dtypes, UTC times, index reset)."""
        names = tuple(feature_names) if feature_names is not None else tuple(str(c) for c in X.columns)
        missing = [n for n in names if n not in X.columns]
        if missing:
            raise ValueError(f"feature columns missing from X: {missing[:5]}")
        features = X.loc[:, list(names)].reset_index(drop=True)
        non_float = [c for c in names if not pd.api.types.is_float_dtype(features[c])]
        if non_float:
            features = features.astype({c: np.float32 for c in non_float})
        n = len(features)
        labels = np.asarray(y, dtype=np.int8).reshape(-1)
        if labels.shape[0] != n:
            raise ValueError(f"y has {labels.shape[0]} rows, X has {n}")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("y must be 0/1")
        raw_types: list[object] = [None] * n if fraud_type is None else list(fraud_type)
        if len(raw_types) != n:
            raise ValueError(f"fraud_type has {len(raw_types)} rows, X has {n}")
        # object dtype with real None: pandas 3 would otherwise infer a string dtype with NaN.
        types = pd.Series([None if pd.isna(t) else str(t) for t in raw_types], dtype=object)
        return cls(
            X=features,
            y=labels,
            event_time=_as_utc(event_time, n),
            label_time=_as_utc(label_time, n),
            fraud_type=types,
            feature_names=names,
            feature_version=feature_version,
        )

    def __len__(self) -> int:
        return len(self.X)

    def subset(self, rows: np.ndarray | pd.Series) -> FeatureMatrix:
        """Rows selected by a boolean mask or an integer index array, re-indexed from 0."""
        idx = np.asarray(rows)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return FeatureMatrix(
            X=self.X.iloc[idx].reset_index(drop=True),
            y=self.y[idx],
            event_time=self.event_time.iloc[idx].reset_index(drop=True),
            label_time=self.label_time.iloc[idx].reset_index(drop=True),
            fraud_type=self.fraud_type.iloc[idx].reset_index(drop=True),
            feature_names=self.feature_names,
            feature_version=self.feature_version,
        )

    def with_labels(self, y: np.ndarray) -> FeatureMatrix:
        """The same rows with other labels (e.g. the labels known at a cut-off)."""
        return FeatureMatrix(
            X=self.X,
            y=np.asarray(y, dtype=np.int8),
            event_time=self.event_time,
            label_time=self.label_time,
            fraud_type=self.fraud_type,
            feature_names=self.feature_names,
            feature_version=self.feature_version,
        )

    @property
    def window(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last event time (UTC)."""
        return self.event_time.min(), self.event_time.max()

    @property
    def fraud_types(self) -> list[str]:
        """Distinct fraud types present, sorted."""
        return sorted({str(t) for t in self.fraud_type if t is not None and not pd.isna(t)})


def load_feature_matrix(
    path: str | Path,
    *,
    feature_version: str | None = None,
    label_column: str = LABEL_COLUMN,
    event_time_column: str = EVENT_TIME_COLUMN,
    label_time_column: str = LABEL_TIME_COLUMN,
    fraud_type_column: str = FRAUD_TYPE_COLUMN,
    exclude: Sequence[str] = (),
) -> FeatureMatrix:
    """Read a feature Parquet file (or directory) into a :class:`FeatureMatrix`.

    Every numeric column other than the label/time/type columns and ``exclude`` is a feature. The
    feature version comes from ``feature_version`` or else the Parquet metadata key
    ``vigil.feature_version``.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    version = feature_version or meta.get(FEATURE_VERSION_METADATA_KEY, b"unversioned").decode()
    df = table.to_pandas()
    reserved = {label_column, event_time_column, label_time_column, fraud_type_column, *exclude}
    names = [
        c
        for c in df.columns
        if c not in reserved
        and (pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]))
    ]
    label_times = df[label_time_column] if label_time_column in df else pd.Series(pd.NaT, index=df.index)
    types = df.get(fraud_type_column, None)
    return FeatureMatrix.build(
        df[names],
        df[label_column].astype(np.int8).to_numpy(),
        df[event_time_column],
        label_times,
        types,
        feature_names=names,
        feature_version=version,
    )


SYNTHETIC_FRAUD_TYPES = ("card_testing", "account_takeover", "bust_out")


def make_synthetic_matrix(
    n_rows: int = 20_000,
    n_features: int = 30,
    *,
    fraud_rate: float = 0.02,
    days: int = 60,
    mean_label_delay_days: float = 7.0,
    nan_fraction: float = 0.01,
    seed: int = 0,
    start: str = "2025-01-01",
    feature_version: str = "synthetic-1",
) -> FeatureMatrix:
    """A fast synthetic fraud matrix: legit rows ~ N(0, 1), three fraud types with distinct shapes.

    ``card_testing`` and ``account_takeover`` shift their own blocks of features (the supervised model
    learns them); ``bust_out`` inflates the scale of a third block, so it is also far from the legit
    bulk (the anomaly detectors can catch it without labels). 5M x 30 takes a few seconds, float32.
    Fraud labels arrive after an exponential delay; legit rows have ``label_time`` NaT.
    """
    if n_features < 9:
        raise ValueError("need at least 9 features (three blocks of three)")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, n_features), dtype=np.float32)
    # A little correlation so the features are not all independent noise.
    X[:, n_features // 2 :] += 0.5 * X[:, : n_features - n_features // 2]
    y = (rng.random(n_rows) < fraud_rate).astype(np.int8)
    fraud_rows = np.flatnonzero(y)
    types = np.full(n_rows, None, dtype=object)
    kind = rng.integers(0, len(SYNTHETIC_FRAUD_TYPES), size=fraud_rows.size)
    types[fraud_rows] = np.asarray(SYNTHETIC_FRAUD_TYPES, dtype=object)[kind]
    for k in range(len(SYNTHETIC_FRAUD_TYPES)):
        rows = fraud_rows[kind == k]
        block = slice(3 * k, 3 * k + 3)
        if k < 2:
            X[rows, block] += rng.normal(1.8, 0.8, size=(rows.size, 3)).astype(np.float32)
        else:
            X[rows, block] *= np.float32(5.0)
            X[rows, block] += np.float32(3.0) * np.sign(X[rows, block])
    # Some missing values, as real features have (first-seen users, no device, ...).
    if nan_fraction > 0:
        mask = rng.random((n_rows, 2)) < nan_fraction
        X[:, -2:][mask] = np.nan
    start_ts = pd.Timestamp(start, tz="UTC")
    offsets = np.sort(rng.random(n_rows)) * days * 86_400.0
    event_time = start_ts + pd.to_timedelta(offsets, unit="s")
    delay = rng.exponential(mean_label_delay_days * 86_400.0, size=n_rows)
    label_time = pd.Series(event_time + pd.to_timedelta(delay, unit="s"))
    label_time[y == 0] = pd.NaT
    names = [f"f{i:02d}" for i in range(n_features)]
    return FeatureMatrix.build(
        pd.DataFrame(X, columns=names, copy=False),
        y,
        event_time,
        label_time,
        types,
        feature_names=names,
        feature_version=feature_version,
    )


def save_feature_matrix(matrix: FeatureMatrix, path: str | Path) -> Path:
    """Write ``matrix`` as the Parquet file :func:`load_feature_matrix` reads (features, label,
    event/label times, fraud type; the feature version in the schema metadata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = matrix.X.copy()
    frame[LABEL_COLUMN] = matrix.y
    frame[EVENT_TIME_COLUMN] = matrix.event_time.to_numpy()
    frame[LABEL_TIME_COLUMN] = matrix.label_time.to_numpy()
    frame[FRAUD_TYPE_COLUMN] = matrix.fraud_type.astype(object).to_numpy()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[FEATURE_VERSION_METADATA_KEY] = matrix.feature_version.encode()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(meta), out)
    return out
