"""Offline execution of the feature definitions: vectorised over a whole transactions table.

Every feature is the one :mod:`vigil.features.online` computes event by event (the parity
property test holds the two together). No per-row Python: the table is put in its total order
``(created_at, transaction_id)``; per-key state becomes a stable sort by key, windows become
``searchsorted`` on a combined key ``code * M + time_rank`` (exact, no overflow: both parts are
below the row count), sums become integer cumulative sums, "distinct users in a window" becomes
a difference array over the interval in which each prior event still represents its user.
Day-bucketed windows start at a per-row day boundary (one more ``searchsorted``); a fraud label
counts in a row's window exactly for the rows of its entity from the moment it is known until
its transaction's day leaves the window, an interval of the group's rows, so the windowed fraud
counts are again a difference array; "latest known fraud" is a running maximum over the labels
sorted by the time they become known.

Inputs that a "bring your own data" table may lack, and what they cost (the column is still
there, all NaN, so the schema and :data:`FEATURE_VERSION` never change):

=====================  =========================================================================
missing                features that become NaN
=====================  =========================================================================
``device_id``          device_new_90d, users_distinct_*_by_device, *_by_device label risk and
                       windows, blacklist_hit_by_device
``ip``                 ip_new_90d, users_distinct_*_by_ip, *_by_ip windows, blacklist_hit_by_ip
``country``            country_new_90d_by_user
``lat``/``lon``        distance_km_prev, speed_kmh_prev, distance_km_home
``merchant_id``        *_by_merchant
``channel``            channel_code
``users`` table        age_days_by_user, kyc_risk_level_by_user, distance_km_home_by_user
``merchants`` table    age_days_by_merchant
``labels`` table       fraud_count/labeled_count/fraud_rate (all and windowed), seconds_since_fraud
``blacklist`` table    blacklist_hit_by_*
=====================  =========================================================================

Required: ``transaction_id`` (unique), ``user_id``, ``created_at`` (timezone-aware), ``amount``.
Null keys (a NULL device) give NaN for that row's features of that key.
Labels whose transaction is not in ``transactions`` cannot be attributed and are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa

from vigil.features import definitions as d
from vigil.features.spec import (
    BLACKLIST_KINDS,
    BUCKET_DAYS,
    CHANNEL_CODES,
    DAY_NS,
    FEATURE_DTYPES,
    FEATURE_NAMES,
    FRAUD_RECENCY_KEYS,
    KYC_RISK_CODES,
    NOVELTY_WINDOW_NS,
    RISK_KEYS,
    WINDOWS_NS,
)

Array = np.ndarray[Any, Any]
Frame: TypeAlias = pd.DataFrame | pa.Table

_REQUIRED = ("transaction_id", "user_id", "created_at", "amount")
_OPTIONAL = ("merchant_id", "device_id", "ip", "channel", "country", "lat", "lon")
_S2_EXACT_LIMIT = float(2**62)


def compute_features(
    transactions: Frame,
    *,
    users: Frame | None = None,
    labels: Frame | None = None,
    blacklist: Frame | None = None,
    merchants: Frame | None = None,
) -> pd.DataFrame:
    """Point-in-time features of every transaction, one row each, in the input's row order.

    The result is indexed by ``transaction_id`` with the columns of :data:`FEATURE_NAMES` and
    their spec dtypes. ``users`` needs ``user_id`` plus any of ``created_at``, ``home_lat``,
    ``home_lon``, ``kyc_risk_level``; ``labels`` needs ``transaction_id``, ``is_fraud``,
    ``labeled_at``; ``blacklist`` needs ``kind``, ``value``, ``added_at`` (``expires_at``
    optional); ``merchants`` needs ``merchant_id``, ``created_at``. See the module docstring
    for what a missing input costs.
    """
    tx = _frame(transactions, (*_REQUIRED, *_OPTIONAL))
    missing = [c for c in _REQUIRED if c not in tx.columns]
    if missing:
        raise ValueError(f"transactions lack required columns {missing}")
    n = len(tx)
    txid = tx["transaction_id"].to_numpy(dtype=np.int64)
    txid_index = pd.Index(txid)
    if not txid_index.is_unique:
        raise ValueError("transaction_id must be unique")
    t_in = _ns(tx["created_at"], "transactions.created_at")
    if (t_in == np.iinfo(np.int64).min).any():
        raise ValueError("transactions.created_at has nulls")
    amount = tx["amount"].to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isnan(amount).any():
        raise ValueError("transactions.amount has nulls")

    ctx = _Context(n, np.lexsort((txid, t_in)), t_in)
    g = ctx.order
    cents_g = d.to_cents(amount)[g]
    user_codes, user_keys = _codes(tx["user_id"])
    if (user_codes < 0).any():
        raise ValueError("transactions.user_id has nulls")
    keys: dict[str, tuple[Array, pd.Index]] = {"user_id": (user_codes[g], user_keys)}
    for col in ("merchant_id", "device_id", "ip", "country", "channel"):
        if col in tx.columns:
            codes, uniq = _codes(tx[col])
            keys[col] = (codes[g], uniq)
    lat_g = lon_g = None
    if "lat" in tx.columns and "lon" in tx.columns:
        lat_g = tx["lat"].to_numpy(dtype=np.float64, na_value=np.nan)[g]
        lon_g = tx["lon"].to_numpy(dtype=np.float64, na_value=np.nan)[g]

    out = _Sink(n, g)
    out["amount"] = cents_g / 100.0
    out["hour_utc"] = d.hour_utc(ctx.t)
    out["weekday_utc"] = d.weekday_utc(ctx.t)
    out["is_night_utc"] = d.is_night_utc(ctx.t)
    out["is_weekend_utc"] = d.is_weekend_utc(ctx.t)
    if "channel" in keys:
        codes, uniq = keys["channel"]
        out["channel_code"] = _lookup(codes, _map_values(uniq, CHANNEL_CODES))
    _user_features(out, ctx, keys, cents_g, lat_g, lon_g)
    del cents_g
    if users is not None:
        _profile_features(out, ctx, keys["user_id"], _frame(users), lat_g, lon_g)
    if merchants is not None and "merchant_id" in keys:
        _merchant_profile(out, ctx, keys["merchant_id"], _frame(merchants))
    for col, kind in (("device_id", "device"), ("ip", "ip")):
        if col in keys:
            for wname in ("24h", "7d"):
                out[f"users_distinct_{wname}_by_{kind}"] = _distinct_users(
                    ctx, col, keys[col][0], keys["user_id"][0], WINDOWS_NS[wname]
                )
    window_counts = _entity_windows(out, ctx, keys)
    if labels is not None:
        _label_features(out, ctx, keys, txid_index, _frame(labels), window_counts)
    if blacklist is not None:
        _blacklist_features(out, ctx, keys, _frame(blacklist))

    return out.frame(pd.Index(txid, name="transaction_id"))


# --- plumbing ----------------------------------------------------------------------------------


@dataclass
class _Context:
    """The total order and the time ranks every windowed search uses."""

    n: int
    order: Array  # input row of each position in (created_at, transaction_id) order
    t: Array  # created_at ns, in that order
    rank: Array  # rows strictly earlier in time than this row (equal times share a rank)
    m: int  # combined-key multiplier: every rank and sentinel is < m

    def __init__(self, n: int, order: Array, t_in: Array) -> None:
        self.n, self.order = n, order
        self.t = t_in[order]
        first = np.ones(n, dtype=bool)
        first[1:] = self.t[1:] != self.t[:-1]
        self.rank = np.maximum.accumulate(np.where(first, np.arange(n), 0)) if n else np.zeros(0, np.int64)
        self.m = n + 2
        self._shifted: dict[tuple[int, str], Array] = {}
        self._groups: dict[str, _Groups] = {}

    def rank_of(self, times: Array, side: Literal["left", "right"] = "left") -> Array:
        """``left``: rows with t < time (so ``time <= t_i`` iff result <= rank_i);
        ``right``: rows with t <= time (so ``t_i > time`` iff rank_i >= result)."""
        # numpy's binary search is fast only for sorted needles (it reuses the last bound):
        # random needles take many times longer than sorted ones.
        if len(times) < 2 or bool(np.all(times[1:] >= times[:-1])):
            return np.searchsorted(self.t, times, side=side)
        srt = np.argsort(times)
        out = np.empty(len(times), dtype=np.int64)
        out[srt] = np.searchsorted(self.t, times[srt], side=side)
        return out

    def shifted_rank(self, offset: int, side: Literal["left", "right"]) -> Array:
        """``rank_of(t + offset)`` for every row, in total order (memoised)."""
        key = (offset, side)
        if key not in self._shifted:
            self._shifted[key] = np.searchsorted(self.t, self.t + offset, side=side)
        return self._shifted[key]

    def day_start_rank(self, days: int) -> Array:
        """``rank_of(bucket_start_ns(t, days))`` for every row, in total order (memoised)."""
        key = (-days, "day")
        if key not in self._shifted:
            starts: Array = d.bucket_start_ns(self.t, days)
            self._shifted[key] = np.searchsorted(self.t, starts, side="left")
        return self._shifted[key]

    def groups(self, name: str, codes_g: Array) -> _Groups:
        """The rows of each key of column ``name`` (memoised: several families share them)."""
        if name not in self._groups:
            self._groups[name] = _Groups.of(self, codes_g)
        return self._groups[name]


class _Sink:
    """Receives each feature as soon as it is computed and stores it in input row order.

    Holding one final column per feature (and building the DataFrame from them without
    consolidation) keeps peak memory at about one copy of the output.
    """

    def __init__(self, n: int, order: Array) -> None:
        self.n, self.order = n, order
        self.columns: dict[str, Array] = {}

    def __setitem__(self, name: str, values: Array) -> None:
        """``values`` for every row, in total order."""
        column = np.empty(self.n, dtype=FEATURE_DTYPES[name])
        column[self.order] = values
        self.columns[name] = column

    def put(self, name: str, values: Array, at: Array) -> None:
        """``values`` for the rows at total-order positions ``at``; other rows NaN."""
        dtype = FEATURE_DTYPES[name]
        column = np.empty(self.n, dtype=dtype) if dtype == "int64" else np.full(self.n, np.nan)
        column[self.order[at]] = values
        self.columns[name] = column

    def frame(self, index: pd.Index) -> pd.DataFrame:
        columns = {
            name: self.columns.pop(name, None) if name in self.columns else np.full(self.n, np.nan)
            for name in FEATURE_NAMES
        }
        return pd.DataFrame(columns, index=index, columns=list(FEATURE_NAMES), copy=False)


@dataclass
class _Groups:
    """Positions (in total order) of rows with a non-null key, stably sorted by key."""

    pos: Array
    code: Array
    start: Array  # index (into pos) of the first row of each row's group
    key: Array  # code * m + rank: sorted, so windows are searchsorted

    @classmethod
    def of(cls, ctx: _Context, codes_g: Array) -> _Groups:
        valid = np.flatnonzero(codes_g >= 0)
        pos = valid[_argsort_stable(codes_g[valid])]
        code = codes_g[pos]
        first = np.ones(len(pos), dtype=bool)
        first[1:] = code[1:] != code[:-1]
        start = np.maximum.accumulate(np.where(first, np.arange(len(pos)), 0)) if len(pos) else pos
        return cls(pos, code, start, code * ctx.m + ctx.rank[pos])

    def first_after(self, ctx: _Context, offset: int) -> Array:
        """Per row, the index of the first row of its group with t > t_row + offset."""
        # Needles are sorted: by code, then by time within a code.
        needles = self.code * ctx.m + ctx.shifted_rank(offset, "right")[self.pos]
        return np.searchsorted(self.key, needles, side="left")

    def first_since_day(self, ctx: _Context, days: int) -> Array:
        """Per row, the index of the first row of its group in its day-bucketed window of ``days``."""
        needles = self.code * ctx.m + ctx.day_start_rank(days)[self.pos]
        return np.searchsorted(self.key, needles, side="left")

    def first_at_or_after(self, ctx: _Context, offset: int) -> Array:
        """Per row, the index of the first row of its group with t >= t_row + offset."""
        needles = self.code * ctx.m + ctx.shifted_rank(offset, "left")[self.pos]
        return np.searchsorted(self.key, needles, side="left")


def _frame(data: Frame, wanted: tuple[str, ...] | None = None) -> pd.DataFrame:
    if isinstance(data, pa.Table):
        if wanted is not None:
            data = data.select([c for c in wanted if c in data.column_names])
        return data.to_pandas()
    return data


def _ns(col: pd.Series, what: str) -> Array:
    """UTC epoch nanoseconds (NaT -> int64 min). Naive timestamps are refused."""
    s = col
    if not isinstance(s.dtype, pd.DatetimeTZDtype):
        if pd.api.types.is_datetime64_dtype(s.dtype):
            raise ValueError(f"{what} is timezone-naive: pass timezone-aware UTC timestamps")
        s = pd.to_datetime(s)
        if not isinstance(s.dtype, pd.DatetimeTZDtype):
            raise ValueError(f"{what} is not a timezone-aware timestamp column")
    naive = s.dt.tz_convert("UTC").dt.tz_localize(None).dt.as_unit("ns")
    return naive.to_numpy(dtype="datetime64[ns]").view(np.int64)


def _codes(col: pd.Series) -> tuple[Array, pd.Index]:
    """Dense int64 codes (-1 for null) and the normalised keys they stand for."""
    codes, uniq = pd.factorize(col, use_na_sentinel=True)
    keys = pd.Index(uniq)
    if keys.dtype.kind == "f" and len(keys) and bool(np.all(np.mod(keys.to_numpy(), 1) == 0)):
        keys = pd.Index(keys.to_numpy().astype(np.int64))
    elif keys.dtype.kind not in "iuf":
        keys = pd.Index([str(k) for k in keys], dtype=object)
    return codes.astype(np.int64, copy=False), keys


def _map_values(keys: pd.Index, mapping: dict[str, float]) -> Array:
    return np.array([mapping.get(str(k), np.nan) for k in keys], dtype=np.float64)


def _lookup(codes: Array, per_code: Array) -> Array:
    """per_code[codes], NaN where the code is -1."""
    padded = np.append(per_code.astype(np.float64), np.nan)
    return padded[codes]


def _argsort_stable(keys: Array) -> Array:
    """Stable argsort of non-negative int64 keys; LSD radix passes of 16 bits when keys are small.

    numpy sorts uint16 stably with a radix sort, several times faster than its int64 timsort.
    """
    if len(keys) == 0 or int(keys.max()) >= 2**32 or int(keys.min()) < 0:
        return np.argsort(keys, kind="stable")
    perm = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    if int(keys.max()) < 2**16:
        return perm
    high = (keys[perm] >> 16).astype(np.uint16)
    return perm[np.argsort(high, kind="stable")]


def _prev_same(ctx: _Context, key_g: Array) -> Array:
    """Position of the previous row (in total order) with the same key; -1 if none or null."""
    valid = np.flatnonzero(key_g >= 0)
    pos = valid[_argsort_stable(key_g[valid])]
    k = key_g[pos]
    prev = np.full(ctx.n, -1, dtype=np.int64)
    prev[pos[1:]] = np.where(k[1:] == k[:-1], pos[:-1], -1)
    return prev


# --- feature families --------------------------------------------------------------------------


def _user_features(
    out: _Sink,
    ctx: _Context,
    keys: dict[str, tuple[Array, pd.Index]],
    cents_g: Array,
    lat_g: Array | None,
    lon_g: Array | None,
) -> None:
    user_g = keys["user_id"][0]
    grp = ctx.groups("user_id", user_g)
    pos, n = grp.pos, ctx.n
    tt, cents = ctx.t[pos], cents_g[pos]
    idx = np.arange(n)

    cs = np.concatenate(([0], np.cumsum(cents)))  # int64; wrap-around cancels in differences
    for wname, width in WINDOWS_NS.items():
        st = grp.first_after(ctx, -width)
        out.put(f"txn_count_{wname}_by_user", idx - st, pos)
        out.put(f"amount_sum_{wname}_by_user", (cs[idx] - cs[st]) / 100.0, pos)
        if wname != "1h":
            mean_w, _ = d.window_mean(cents, idx - st, cs[idx] - cs[st])
            out.put(f"amount_mean_{wname}_by_user", mean_w, pos)
    st = grp.first_since_day(ctx, BUCKET_DAYS["30d"])
    mean30, ratio30 = d.window_mean(cents, idx - st, cs[idx] - cs[st])
    out.put("txn_count_30d_by_user", idx - st, pos)
    out.put("amount_sum_30d_by_user", (cs[idx] - cs[st]) / 100.0, pos)
    out.put("amount_mean_30d_by_user", mean30, pos)
    out.put("amount_ratio_mean_30d_by_user", ratio30, pos)
    n_prev = idx - grp.start
    s1 = cs[idx] - cs[grp.start]
    sq_total = np.bincount(grp.code, weights=cents.astype(np.float64) ** 2) if n else np.zeros(1)
    if n and (np.abs(cents).max() >= 2**31 or sq_total.max() >= _S2_EXACT_LIMIT):
        # Some user's sum of squared cents would leave int64: use Python ints (exact) instead.
        sq_obj = np.cumsum(np.concatenate(([0], cents.astype(object) ** 2)))
        s2 = (sq_obj[idx] - sq_obj[grp.start]).astype(np.float64)
    else:
        cs2 = np.concatenate(([0], np.cumsum(cents * cents)))
        s2 = (cs2[idx] - cs2[grp.start]).astype(np.float64)
    mean, ratio, z = d.amount_moments(cents, n_prev.astype(np.float64), s1.astype(np.float64), s2)
    out.put("txn_count_all_by_user", n_prev, pos)
    out.put("amount_mean_all_by_user", mean, pos)
    out.put("amount_ratio_mean_all_by_user", ratio, pos)
    out.put("amount_zscore_all_by_user", z, pos)
    has_prev = n_prev > 0
    prev = np.maximum(idx - 1, 0)
    out.put("seconds_since_prev_by_user", np.where(has_prev, d.seconds_between(tt, tt[prev]), np.nan), pos)

    for col, name in (("device_id", "device"), ("ip", "ip"), ("country", "country")):
        if col not in keys:
            continue
        codes, uniq = keys[col]
        pair = np.where(codes >= 0, user_g * (len(uniq) + 1) + codes, -1)
        before = _prev_same(ctx, pair)
        old = (before >= 0) & (ctx.t[np.maximum(before, 0)] > ctx.t - NOVELTY_WINDOW_NS)
        out[f"{name}_new_90d_by_user"] = np.where(codes >= 0, np.where(old, 0.0, 1.0), np.nan)

    if lat_g is not None and lon_g is not None:
        lat, lon = lat_g[pos], lon_g[pos]
        located = np.isfinite(lat) & np.isfinite(lon)
        last = np.maximum.accumulate(np.where(located, idx, -1)) if n else idx
        before_loc = np.concatenate(([-1], last[:-1])) if n else idx
        ok = located & (before_loc >= grp.start)
        b = np.maximum(before_loc, 0)
        dist = np.where(ok, d.haversine_km(lat[b], lon[b], lat, lon), np.nan)
        out.put("distance_km_prev_by_user", dist, pos)
        out.put("speed_kmh_prev_by_user", np.where(ok, d.speed_kmh(dist, tt - tt[b]), np.nan), pos)


def _table_rows(table: pd.DataFrame, id_col: str, keys: pd.Index) -> Array:
    """For each key (code), the row of ``table`` whose ``id_col`` equals it, or -1."""
    ids = table[id_col].to_numpy()
    if ids.dtype.kind == "f":
        ids = ids.astype(np.int64)
    lookup = pd.Index(ids)
    if not lookup.is_unique:
        raise ValueError(f"{id_col} must be unique in its table")
    return lookup.get_indexer(keys.to_numpy())


def _profile_features(
    out: _Sink,
    ctx: _Context,
    user: tuple[Array, pd.Index],
    users: pd.DataFrame,
    lat_g: Array | None,
    lon_g: Array | None,
) -> None:
    if not len(users):
        return
    row = _table_rows(users, "user_id", user[1])[user[0]]
    has = row >= 0
    r = np.maximum(row, 0)
    if "created_at" in users.columns:
        created = _ns(users["created_at"], "users.created_at")[r]
        ok = has & (created != np.iinfo(np.int64).min)
        out["age_days_by_user"] = np.where(ok, d.age_days(ctx.t, np.where(ok, created, 0)), np.nan)
    if "kyc_risk_level" in users.columns:
        codes, uniq = _codes(users["kyc_risk_level"])
        per_row = _lookup(codes, _map_values(uniq, KYC_RISK_CODES))
        out["kyc_risk_level_by_user"] = np.where(has, per_row[r], np.nan)
    if {"home_lat", "home_lon"} <= set(users.columns) and lat_g is not None and lon_g is not None:
        hlat = users["home_lat"].to_numpy(dtype=np.float64, na_value=np.nan)
        hlon = users["home_lon"].to_numpy(dtype=np.float64, na_value=np.nan)
        dist = d.haversine_km(hlat[r], hlon[r], lat_g, lon_g)
        out["distance_km_home_by_user"] = np.where(has, dist, np.nan)


def _merchant_profile(
    out: _Sink, ctx: _Context, merchant: tuple[Array, pd.Index], merchants: pd.DataFrame
) -> None:
    if "created_at" not in merchants.columns or not len(merchants):
        return
    codes = merchant[0]
    row = _table_rows(merchants, "merchant_id", merchant[1])
    row = np.where(codes >= 0, np.append(row, -1)[codes], -1)
    created = _ns(merchants["created_at"], "merchants.created_at")[np.maximum(row, 0)]
    ok = (row >= 0) & (created != np.iinfo(np.int64).min)
    out["age_days_by_merchant"] = np.where(ok, d.age_days(ctx.t, np.where(ok, created, 0)), np.nan)


def _distinct_users(ctx: _Context, name: str, entity_g: Array, user_g: Array, width: int) -> Array:
    """Distinct users of each row's entity among prior rows in ``(t - width, t]``.

    Prior row j represents its user for the rows i of its group with j < i <= next_j (the
    user's next row on the entity, which takes over) and t_i < t_j + width. Adding +1 over that
    index interval for every j and taking a cumulative sum counts each user once.
    """
    grp = ctx.groups(name, entity_g)
    m = len(grp.pos)
    res = np.full(ctx.n, np.nan)
    if m == 0:
        return res
    users = user_g[grp.pos]
    pair = grp.code * (int(users.max()) + 1) + users
    order = _argsort_stable(pair)
    nxt = np.full(m, m, dtype=np.int64)
    same = pair[order[1:]] == pair[order[:-1]]
    nxt[order[:-1][same]] = order[1:][same]
    end = grp.first_at_or_after(ctx, width) - 1
    hi = np.minimum(nxt, end)
    lo = np.arange(1, m + 1)
    live = hi >= lo
    diff = np.bincount(lo[live], minlength=m + 1) - np.bincount(hi[live] + 1, minlength=m + 2)[: m + 1]
    res[grp.pos] = np.cumsum(diff)[:m]
    return res


def _entity_windows(
    out: _Sink, ctx: _Context, keys: dict[str, tuple[Array, pd.Index]]
) -> dict[tuple[str, str], Array]:
    """Day-bucketed transaction counts per merchant, device and IP; returns them (in group order)
    by ``(key, window)`` for the windowed fraud rates."""
    counts: dict[tuple[str, str], Array] = {}
    for kind, col in RISK_KEYS.items():
        if col not in keys:
            continue
        grp = ctx.groups(col, keys[col][0])
        idx = np.arange(len(grp.pos))
        for wname, days in BUCKET_DAYS.items():
            counts[kind, wname] = idx - grp.first_since_day(ctx, days)
            out.put(f"txn_count_{wname}_by_{kind}", counts[kind, wname].astype(np.float64), grp.pos)
    return counts


def _label_features(
    out: _Sink,
    ctx: _Context,
    keys: dict[str, tuple[Array, pd.Index]],
    txid_index: pd.Index,
    labels: pd.DataFrame,
    window_counts: dict[tuple[str, str], Array],
) -> None:
    row_in = txid_index.get_indexer(labels["transaction_id"].to_numpy(dtype=np.int64))
    labeled_ns = _ns(labels["labeled_at"], "fraud_labels.labeled_at")
    fraud_col = labels["is_fraud"]
    ok = (row_in >= 0) & (labeled_ns != np.iinfo(np.int64).min) & fraud_col.notna().to_numpy()
    row_in, labeled_ns = row_in[ok], labeled_ns[ok]
    fraud = fraud_col.to_numpy()[ok].astype(np.int64)
    # Position of each labelled transaction in total order, to read its keys and time.
    inv = np.empty(ctx.n, dtype=np.int64)
    inv[ctx.order] = np.arange(ctx.n)
    lab_pos = inv[row_in]
    known_rank = ctx.rank_of(d.label_known_ns(labeled_ns, ctx.t[lab_pos]), "left")
    for col, kind in (("merchant_id", "merchant"), ("device_id", "device")):
        if col not in keys:
            continue
        codes = keys[col][0]
        lab_code = codes[lab_pos]
        keep = lab_code >= 0
        lkey = lab_code[keep] * ctx.m + known_rank[keep]
        srt = np.argsort(lkey, kind="stable")
        lkey = lkey[srt]
        cum_fraud = np.concatenate(([0], np.cumsum(fraud[keep][srt])))
        grp = ctx.groups(col, codes)  # needles in group order are sorted
        hi = np.searchsorted(lkey, grp.key, side="right")
        lo = np.searchsorted(lkey, grp.code * ctx.m, side="left")
        n_fraud = (cum_fraud[hi] - cum_fraud[lo]).astype(np.float64)
        n_lab = (hi - lo).astype(np.float64)
        for what, values in (
            ("fraud_count", n_fraud),
            ("labeled_count", n_lab),
            ("fraud_rate", d.fraud_rate(n_fraud, n_lab)),
        ):
            out.put(f"{what}_all_by_{kind}", values, grp.pos)
    is_fraud = fraud == 1
    f_pos, f_known = lab_pos[is_fraud], known_rank[is_fraud]
    for kind, col in RISK_KEYS.items():
        if col in keys:
            _windowed_fraud(out, ctx, kind, col, keys[col][0], f_pos, f_known, window_counts)
    for kind, col in FRAUD_RECENCY_KEYS.items():
        if col in keys:
            _fraud_recency(out, ctx, kind, col, keys[col][0], f_pos, f_known)


def _windowed_fraud(
    out: _Sink,
    ctx: _Context,
    kind: str,
    col: str,
    codes: Array,
    f_pos: Array,
    f_known: Array,
    window_counts: dict[tuple[str, str], Array],
) -> None:
    """Known frauds among each row's day-bucketed window. Fraud label j counts for the rows of its
    entity from its known rank on, until its transaction's day leaves the window:
    ``t_i < (day_j + days + 1) * DAY``; those rows are one interval of the group."""
    grp = ctx.groups(col, codes)
    m = len(grp.pos)
    code = codes[f_pos]
    keep = code >= 0
    code, pos, known = code[keep], f_pos[keep], f_known[keep]
    lo = np.searchsorted(grp.key, code * ctx.m + known, side="left")
    day = d.utc_day(ctx.t[pos])
    for wname, days in BUCKET_DAYS.items():
        end_rank = ctx.rank_of((day + days + 1) * DAY_NS, "left")
        hi = np.searchsorted(grp.key, code * ctx.m + end_rank, side="left")
        live = hi > lo
        diff = np.bincount(lo[live], minlength=m + 1) - np.bincount(hi[live], minlength=m + 1)
        n_fraud = np.cumsum(diff[:m])
        count = window_counts[kind, wname]
        out.put(f"fraud_rate_{wname}_by_{kind}", d.fraud_rate(n_fraud, count), grp.pos)


def _fraud_recency(
    out: _Sink, ctx: _Context, kind: str, col: str, codes: Array, f_pos: Array, f_known: Array
) -> None:
    """Seconds since the latest transaction of the row's entity whose fraud label is known: a
    running maximum of transaction time ranks over the labels in (entity, known rank) order."""
    grp = ctx.groups(col, codes)
    code = codes[f_pos]
    keep = code >= 0
    code, pos, known = code[keep], f_pos[keep], f_known[keep]
    if not len(code):
        out.put(f"seconds_since_fraud_by_{kind}", np.full(len(grp.pos), np.nan), grp.pos)
        return
    lkey = code * ctx.m + known
    srt = np.argsort(lkey, kind="stable")
    lkey = lkey[srt]
    # code * m + rank grows with the code, so one running max never crosses into another group.
    best = np.maximum.accumulate((code * ctx.m + ctx.rank[pos])[srt])
    hi = np.searchsorted(lkey, grp.key, side="right")
    lo = np.searchsorted(lkey, grp.code * ctx.m, side="left")
    has = hi > lo
    last_rank = np.where(has, best[np.maximum(hi - 1, 0)] - grp.code * ctx.m, 0)
    secs = np.where(has, d.seconds_between(ctx.t[grp.pos], ctx.t[last_rank]), np.nan)
    out.put(f"seconds_since_fraud_by_{kind}", secs, grp.pos)


def _blacklist_features(
    out: _Sink, ctx: _Context, keys: dict[str, tuple[Array, pd.Index]], blacklist: pd.DataFrame
) -> None:
    kind = blacklist["kind"].astype(str).to_numpy()
    added = _ns(blacklist["added_at"], "blacklist_entries.added_at")
    nat = np.iinfo(np.int64).min
    if "expires_at" in blacklist.columns:
        expires = _ns(blacklist["expires_at"], "blacklist_entries.expires_at")
    else:
        expires = np.full(len(blacklist), nat, dtype=np.int64)
    values = blacklist["value"].to_numpy()
    targets = (("user_id", "user"), ("device_id", "device"), ("ip", "ip"), ("merchant_id", "merchant"))
    for col, name in targets:
        if col not in keys:
            continue
        codes, uniq = keys[col]
        kinds = [k for k, c in BLACKLIST_KINDS.items() if c == col]
        sel = np.flatnonzero(np.isin(kind, kinds) & (added != nat))
        norm = [d.normalise_entity_value(col, v) for v in values[sel]]
        if uniq.dtype.kind in "iu":
            mask = np.array([isinstance(v, int) for v in norm], dtype=bool)
        else:
            mask = np.array([isinstance(v, str) for v in norm], dtype=bool)
        sel = sel[mask] if len(sel) else sel
        entry_code = (
            uniq.get_indexer(pd.Index([v for v, k in zip(norm, mask, strict=True) if k], dtype=uniq.dtype))
            if len(sel)
            else np.zeros(0, dtype=np.int64)
        )
        a, e = added[sel], expires[sel]
        live = (entry_code >= 0) & ((e == nat) | (e > a))
        entry_code, a, e = entry_code[live], a[live], e[live]
        add_key = np.sort(entry_code * ctx.m + ctx.rank_of(a, "left"))
        has_exp = e != nat
        exp_key = np.sort(entry_code[has_exp] * ctx.m + ctx.rank_of(e[has_exp], "left"))
        hit = np.where(codes >= 0, 0.0, np.nan)
        rows = np.flatnonzero(np.isin(codes, entry_code))  # only listed keys can hit
        base = codes[rows] * ctx.m
        q = base + ctx.rank[rows]
        active = (np.searchsorted(add_key, q, "right") - np.searchsorted(add_key, base, "left")) - (
            np.searchsorted(exp_key, q, "right") - np.searchsorted(exp_key, base, "left")
        )
        hit[rows] = (active > 0).astype(np.float64)
        out[f"blacklist_hit_by_{name}"] = hit
