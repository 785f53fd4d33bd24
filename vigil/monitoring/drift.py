"""Data drift: reference bins, the population stability index (PSI) and a binned KS statistic.

A feature's reference is a set of bins and the share of the reference data in each. Numeric
features get quantile bins (right-closed: a value on an edge goes to the bin below it, plus one
open bin on each side, so live values outside the reference range still land somewhere);
categorical ones get one bin per reference category plus one ``other`` bin. References are plain
JSON (:meth:`ReferenceProfile.to_json`) so they can be stored with a model in the registry.

PSI = sum over bins of (live - reference) * ln(live / reference), each share floored at
:data:`PSI_FLOOR` so an empty bin gives a large but finite value. The usual reading: under 0.1
no shift, 0.1 to 0.25 a moderate one, over 0.25 a significant one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

#: Smallest share a bin counts with in :func:`psi` (an empty bin would make the log infinite).
PSI_FLOOR = 1e-4
OTHER = "__other__"
REFERENCE_FORMAT = "vigil-reference-bins/1"


@dataclass(frozen=True)
class FeatureBins:
    """One feature's reference bins and the reference share (0-1) of each.

    numeric: ``edges`` are the interior cut points, ascending; bin ``i`` holds
    ``edges[i-1] < x <= edges[i]`` (``len(edges) + 1`` bins). categorical: ``categories`` are the
    reference's categories; the last bin holds every other value. Missing values are not counted.
    """

    feature: str
    kind: Literal["numeric", "categorical"]
    reference: tuple[float, ...]
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    def counts(self, values: Iterable[Any]) -> np.ndarray:
        """How many of ``values`` fall in each bin."""
        if self.kind == "numeric":
            x = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(float)
            x = x[~np.isnan(x)]
            index = np.searchsorted(np.asarray(self.edges, dtype=float), x, side="left")
            return np.bincount(index, minlength=len(self.edges) + 1).astype(float)
        position = {c: i for i, c in enumerate(self.categories)}
        out = np.zeros(len(self.categories) + 1)
        for value in values:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            out[position.get(_category(value), len(self.categories))] += 1
        return out

    def shares(self, values: Iterable[Any]) -> np.ndarray:
        """The share (0-1) of the non-missing ``values`` in each bin (all zeros when none)."""
        counts = self.counts(values)
        total = counts.sum()
        return counts / total if total else counts

    def psi(self, values: Iterable[Any]) -> float:
        return psi(np.asarray(self.reference), self.shares(values))

    def ks(self, values: Iterable[Any]) -> float:
        """Largest gap between the reference's and the values' cumulative shares at the bin edges:
        the Kolmogorov-Smirnov statistic on the binned distributions (numeric features only)."""
        if self.kind != "numeric":
            raise ValueError(f"{self.feature}: KS needs a numeric feature")
        gap = np.cumsum(np.asarray(self.reference)) - np.cumsum(self.shares(values))
        return float(np.max(np.abs(gap[:-1]))) if len(gap) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "reference": list(self.reference)}
        if self.kind == "numeric":
            out["edges"] = list(self.edges)
        else:
            out["categories"] = list(self.categories)
        return out

    @classmethod
    def from_dict(cls, feature: str, data: Mapping[str, Any]) -> FeatureBins:
        kind = data["kind"]
        if kind not in ("numeric", "categorical"):
            raise ValueError(f"{feature}: unknown bin kind {kind!r}")
        bins = cls(
            feature=feature,
            kind=kind,
            reference=tuple(float(v) for v in data["reference"]),
            edges=tuple(float(v) for v in data.get("edges", ())),
            categories=tuple(str(v) for v in data.get("categories", ())),
        )
        expected = len(bins.edges) + 1 if kind == "numeric" else len(bins.categories) + 1
        if len(bins.reference) != expected:
            raise ValueError(f"{feature}: {len(bins.reference)} reference shares for {expected} bins")
        return bins


def _category(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 1.0 and 1 are one category (channel codes come as floats)
    return str(value)


def psi(reference: Sequence[float] | np.ndarray, live: Sequence[float] | np.ndarray) -> float:
    """Population stability index of ``live`` shares against ``reference`` shares (same bins)."""
    e = np.maximum(np.asarray(reference, dtype=float), PSI_FLOOR)
    a = np.maximum(np.asarray(live, dtype=float), PSI_FLOOR)
    if e.shape != a.shape:
        raise ValueError(f"{e.shape[0]} reference bins, {a.shape[0]} live bins")
    return float(np.sum((a - e) * np.log(a / e)))


def fit_numeric(feature: str, values: Iterable[Any], *, n_bins: int = 10) -> FeatureBins:
    """Quantile bins of ``values`` (at most ``n_bins``; fewer when values repeat) and their shares."""
    x = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").dropna().to_numpy(float)
    if x.size == 0:
        raise ValueError(f"{feature}: no values to fit reference bins on")
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))
    bins = FeatureBins(feature, "numeric", (), edges=tuple(float(e) for e in edges))
    return FeatureBins(feature, "numeric", tuple(float(s) for s in bins.shares(x)), edges=bins.edges)


def fit_categorical(feature: str, values: Iterable[Any]) -> FeatureBins:
    """One bin per category seen in ``values`` (sorted), plus the ``other`` bin (share 0)."""
    items = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not items:
        raise ValueError(f"{feature}: no values to fit reference bins on")
    categories = tuple(sorted({_category(v) for v in items}))
    bins = FeatureBins(feature, "categorical", (), categories=categories)
    return FeatureBins(
        feature, "categorical", tuple(float(s) for s in bins.shares(items)), categories=categories
    )


@dataclass(frozen=True)
class ReferenceProfile:
    """Reference bins per feature (and of the model's score, under :data:`SCORE`)."""

    bins: dict[str, FeatureBins] = field(default_factory=dict)
    source: str = ""

    SCORE = "fraud_score"

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": REFERENCE_FORMAT,
                "source": self.source,
                "features": {name: b.to_dict() for name, b in self.bins.items()},
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> ReferenceProfile:
        data = json.loads(text)
        if data.get("format") != REFERENCE_FORMAT:
            raise ValueError(f"not a reference profile: format {data.get('format')!r}")
        return cls(
            {name: FeatureBins.from_dict(name, spec) for name, spec in data["features"].items()},
            source=str(data.get("source", "")),
        )


def reference_profile(
    frame: pd.DataFrame,
    *,
    numeric: Sequence[str] = (),
    categorical: Sequence[str] = (),
    n_bins: int = 10,
    source: str = "",
) -> ReferenceProfile:
    """Bins of the given columns of ``frame`` (a training matrix, or stored rows); a column with
    no values is left out."""
    bins: dict[str, FeatureBins] = {}
    for name in numeric:
        if name in frame and frame[name].notna().any():
            bins[name] = fit_numeric(name, frame[name], n_bins=n_bins)
    for name in categorical:
        if name in frame and frame[name].notna().any():
            bins[name] = fit_categorical(name, frame[name])
    return ReferenceProfile(bins, source=source)
