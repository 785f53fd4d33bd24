"""Exact TreeSHAP for XGBoost trees from per-leaf lookup tables (the "v2" scheme of FastTreeSHAP,
Yang 2021, arXiv:2109.09847), vectorised over rows and leaves with numpy.

Why: reason codes need each flagged transaction's top feature contributions, and XGBoost's own
``pred_contribs`` (path-dependent TreeSHAP, O(leaves x depth^2) per row, one thread) was the
largest cost of a scoring batch (``make bench-explain`` compares the two).
The values are the same (path-dependent TreeSHAP, cover-weighted); only the work is arranged
differently: what depends on the model alone is computed once per model, so a row costs
O(leaves x depth).

The algebra. For one leaf ``l`` with value ``v`` and the distinct features ``P`` on its path
(``d = |P|``), let ``z_j`` be the cover fraction of the path's branches on feature ``j`` (the
product over its splits on the path) and ``o_j(x)`` 1 if ``x`` follows every one of them, else 0.
The tree's expected value given the features in ``S`` is a sum over leaves of
``v * prod_{j in P} (o_j if j in S else z_j)``, so each leaf is a product game over its own ``d``
players, and the Shapley value of ``i`` from that leaf depends on ``x`` only through the set
``A = {j : o_j(x) = 1}``::

    phi_i = v * (1[i in A] - z_i) * sum_{S subset of A - {i}} w(|S|, d) * prod_{j in P - S - {i}} z_j

with ``w(k, d) = k! (d-k-1)! / d!``. The table holds that for every ``A`` (``2^d`` of them) and
``i``; scoring a row finds ``A`` for every leaf (comparisons against the path's splits) and sums the
looked-up values per feature. The bias column (the trees' expected value plus the base margin)
is the same for every row and is read from XGBoost once.

A model this does not cover (categorical splits, dart, several outputs, or tables above
``max_table_entries``) gets ``None`` from :meth:`TreeShap.from_booster`: callers fall back to
XGBoost's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from math import factorial
from typing import Any

import numpy as np

#: Table size cap (float64 entries; 8M = 64 MB). Deeper trees than this allows keep XGBoost's own.
MAX_TABLE_ENTRIES = 8_000_000
#: Rows per pass: small enough that the working arrays (pairs x rows) stay in cache.
CHUNK_ROWS = 32


@dataclass(frozen=True)
class _Leaf:
    value: float
    features: list[int]  # distinct path features, in first-seen order (bit position = index)
    zero: list[float]  # cover fraction per feature
    splits: list[tuple[int, float, bool, bool]]  # (bit, threshold, path goes to yes, missing goes yes)


def _leaves(tree: dict[str, Any]) -> list[_Leaf]:
    left, right = tree["left_children"], tree["right_children"]
    cond, feat, default_left = tree["split_conditions"], tree["split_indices"], tree["default_left"]
    cover = tree["sum_hessian"]
    out: list[_Leaf] = []
    # (node, path as [(feature, threshold, goes yes, missing yes, cover fraction)])
    stack: list[tuple[int, list[tuple[int, float, bool, bool, float]]]] = [(0, [])]
    while stack:
        node, path = stack.pop()
        if left[node] == -1:
            features: list[int] = []
            zero: list[float] = []
            splits: list[tuple[int, float, bool, bool]] = []
            for f, threshold, yes, missing_yes, fraction in path:
                if f not in features:
                    features.append(f)
                    zero.append(1.0)
                bit = features.index(f)
                zero[bit] *= fraction
                splits.append((bit, threshold, yes, missing_yes))
            out.append(_Leaf(float(cond[node]), features, zero, splits))
            continue
        f, threshold, missing_yes = int(feat[node]), float(cond[node]), bool(default_left[node])
        for child, yes in ((left[node], True), (right[node], False)):
            fraction = cover[child] / cover[node] if cover[node] > 0 else 0.0
            stack.append((child, [*path, (f, threshold, yes, missing_yes, fraction)]))
    return out


def _tables(d: int, zero: np.ndarray, value: np.ndarray) -> np.ndarray:
    """(leaves, 2^d, d) Shapley values for ``leaves`` leaves of ``d`` path features each.

    ``zero``: (leaves, d) cover fractions; ``value``: (leaves,) leaf values."""
    n = zero.shape[0]
    masks = ((np.arange(2**d)[:, None] >> np.arange(d)[None, :]) & 1).astype(bool)  # (2^d, d): A
    weights = np.array([factorial(k) * factorial(d - k - 1) / factorial(d) for k in range(d)])
    out = np.empty((n, 2**d, d))
    for i in range(d):
        others = np.arange(d) != i
        in_b = masks & others  # B = A - {i}
        # prod of z over P - {i} - B (features that must take their cover fraction) ...
        outside = np.where(~in_b[None, :, :] & others[None, None, :], zero[:, None, :], 1.0).prod(axis=2)
        # ... times sum_k w(k) e_{|B|-k}(z_B): e the elementary symmetric polynomials of z over B
        e = np.zeros((n, 2**d, d + 1))
        e[:, :, 0] = 1.0
        for j in range(d):
            zj = np.where(in_b[None, :, j], zero[:, None, j], 0.0)  # (n, 2^d)
            e[:, :, 1:] = e[:, :, 1:] + zj[:, :, None] * e[:, :, :-1]
        size = in_b.sum(axis=1)  # |B| per A
        total = np.zeros((n, 2**d))
        for k in range(d):
            m = size - k  # e index
            valid = m >= 0
            picked = np.take_along_axis(e, np.clip(m, 0, d)[None, :, None].repeat(n, axis=0), axis=2)[..., 0]
            total += np.where(valid[None, :], weights[k] * picked, 0.0)
        out[:, :, i] = value[:, None] * (masks[None, :, i] - zero[:, None, i]) * outside * total
    return out


class TreeShap:
    """Exact path-dependent TreeSHAP for one XGBoost booster (see the module docstring)."""

    def __init__(self, leaves: list[_Leaf], n_features: int, bias: float) -> None:
        self.n_features = n_features
        self.bias = bias
        # one flat table: per leaf (grouped by d, so each group is computed at once) 2^d x d values
        by_d: dict[int, list[int]] = {}
        for index, leaf in enumerate(leaves):
            by_d.setdefault(len(leaf.features), []).append(index)
        offsets = np.zeros(len(leaves), dtype=np.int64)
        chunks: list[np.ndarray] = []
        cursor = 0
        for d, indices in sorted(by_d.items()):
            if d == 0:  # a stump: no split, no contribution (its value is in the bias)
                for index in indices:
                    offsets[index] = -1
                continue
            zero = np.array([leaves[i].zero for i in indices])
            value = np.array([leaves[i].value for i in indices])
            table = _tables(d, zero, value)  # (len, 2^d, d)
            for position, index in enumerate(indices):
                offsets[index] = cursor + position * (2**d) * d
            chunks.append(table.ravel())
            cursor += table.size
        self.table = np.concatenate(chunks) if chunks else np.zeros(0)
        kept = [i for i in range(len(leaves)) if offsets[i] >= 0]
        # every (leaf, path feature) pair, leaf-contiguous. A feature's splits on one path make an
        # interval [lo, hi) (NaN: no bound) that x must lie in; a missing x follows the path only
        # if every one of those splits sends missing values the path's way.
        lo, hi, missing_ok, bit, feature, leaf_of = [], [], [], [], [], []
        for slot, index in enumerate(kept):
            leaf = leaves[index]
            for position, f in enumerate(leaf.features):
                yes_at = [t for b, t, yes, _ in leaf.splits if b == position and yes]
                no_at = [t for b, t, yes, _ in leaf.splits if b == position and not yes]
                lo.append(max(no_at) if no_at else np.nan)
                hi.append(min(yes_at) if yes_at else np.nan)
                missing_ok.append(all(yes == miss for b, _, yes, miss in leaf.splits if b == position))
                bit.append(position)
                feature.append(f)
                leaf_of.append(slot)
        self._lo = np.array(lo, dtype=np.float32)[:, None]
        self._hi = np.array(hi, dtype=np.float32)[:, None]
        self._missing_ok = np.array(missing_ok, dtype=bool)[:, None]
        pair_leaf = np.array(leaf_of, dtype=np.int64)
        self._pair_feature = np.array(feature, dtype=np.int64)
        self._pair_leaf = pair_leaf
        self._pair_base = (offsets[kept][pair_leaf] + np.array(bit, dtype=np.int64))[:, None]
        self._pair_width = np.array([len(leaves[kept[s]].features) for s in leaf_of], dtype=np.int64)[:, None]
        # the two sums as sparse matrices: a leaf's bits (leaves x pairs), a feature's values
        # (features x pairs)
        from scipy import sparse

        columns = np.arange(len(pair_leaf))
        self._leaf_bits = sparse.csr_matrix(
            ((1 << np.array(bit, dtype=np.int64)).astype(np.float64), (pair_leaf, columns)),
            shape=(len(kept), len(pair_leaf)),
        )
        self._feature_sum = sparse.csr_matrix(
            (np.ones(len(pair_leaf)), (self._pair_feature, columns)), shape=(n_features, len(pair_leaf))
        )

    @classmethod
    def from_booster(cls, booster: Any, max_table_entries: int = MAX_TABLE_ENTRIES) -> TreeShap | None:
        """The explainer for ``booster`` (an ``xgboost.Booster``), or None where it does not apply."""
        import xgboost as xgb

        model = json.loads(booster.save_raw("json"))
        learner = model["learner"]
        if learner["gradient_booster"].get("name") != "gbtree":
            return None
        if int(learner["learner_model_param"].get("num_target", "1")) != 1:
            return None
        gbtree = learner["gradient_booster"]["model"]
        if any(int(group) != 0 for group in gbtree.get("tree_info", [])):
            return None  # several output groups (multi-class)
        leaves: list[_Leaf] = []
        for tree in gbtree["trees"]:
            if any(int(kind) != 0 for kind in tree.get("split_type", [])):
                return None  # categorical splits
            leaves += _leaves(tree)
        if sum((2 ** len(leaf.features)) * len(leaf.features) for leaf in leaves) > max_table_entries:
            return None
        n_features = int(learner["learner_model_param"]["num_feature"])
        # the bias column is the same for every row: read it from XGBoost itself
        probe = xgb.DMatrix(np.full((1, n_features), np.nan, dtype=np.float32), nthread=1)
        bias = float(booster.predict(probe, pred_contribs=True, validate_features=False)[0, -1])
        return cls(leaves, n_features, bias)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """(n, n_features + 1) contributions in log-odds, the last column the bias; as XGBoost's
        ``predict(..., pred_contribs=True)`` (to float32 rounding)."""
        values = np.asarray(X, dtype=np.float32)
        if values.ndim != 2 or values.shape[1] != self.n_features:
            raise ValueError(f"expected (n, {self.n_features}) features, got {values.shape}")
        n = values.shape[0]
        out = np.zeros((n, self.n_features + 1))
        out[:, -1] = self.bias
        if n == 0 or not len(self._pair_leaf):
            return out
        for start in range(0, n, CHUNK_ROWS):
            out[start : start + CHUNK_ROWS, : self.n_features] = self._chunk(
                values[start : start + CHUNK_ROWS]
            )
        return out

    def _chunk(self, values: np.ndarray) -> np.ndarray:
        # (pairs, rows) throughout: each pair's checks run over contiguous rows; the two sums
        # (bits per leaf, values per feature) are sparse matrix products
        x = np.ascontiguousarray(values.T)[self._pair_feature]
        missing = np.isnan(x)
        with np.errstate(invalid="ignore"):
            outside = (x < self._lo) | (x >= self._hi)
        follows = np.where(missing, self._missing_ok, ~outside)  # o_j(x) per pair
        satisfied = (self._leaf_bits @ follows).astype(np.int64)  # A per leaf: sum of its bits
        looked_up = self.table[self._pair_base + satisfied[self._pair_leaf] * self._pair_width]
        return np.asarray((self._feature_sum @ looked_up).T)
