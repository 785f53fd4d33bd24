"""The arithmetic of each feature, written once for scalars and arrays alike.

Online code calls these with Python scalars, offline code with numpy arrays; both paths get the
same IEEE operations in the same order, which is what lets the parity test demand 1e-9.
Inputs that are sums are exact integers converted to float64 by the caller (correctly rounded
on both paths), so float results are identical, not merely close.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vigil.features.spec import DAY_NS, HOUR_NS, MIN_SPEED_GAP_NS, NIGHT_HOURS_UTC

EARTH_RADIUS_KM = 6371.0088
#: 1970-01-01 was a Thursday; weekday 0 is Monday.
_EPOCH_WEEKDAY = 3

Num = Any  # a Python number or a numpy array of them


def to_cents(amount: Num) -> Num:
    """Amount in currency units -> integer cents, rounding half to even (numpy.rint)."""
    return np.rint(np.asarray(amount, dtype=np.float64) * 100.0).astype(np.int64)


def amount_moments(x_cents: Num, n: Num, s1: Num, s2: Num) -> tuple[Num, Num, Num]:
    """(mean amount, amount / mean, z-score) from the user's prior count and cent moments.

    ``n``, ``s1`` (sum of cents) and ``s2`` (sum of squared cents) are floats converted from
    exact integers. The variance uses ddof=0; it counts as zero (z = NaN) below 1e-12 of the
    squared mean, so a run of equal amounts never yields a huge z from rounding noise.
    """
    x = np.asarray(x_cents, dtype=np.float64)
    nf = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_c = np.asarray(s1, dtype=np.float64) / nf
        var_c = np.asarray(s2, dtype=np.float64) / nf - mean_c * mean_c
        ok_mean = nf > 0
        mean = np.where(ok_mean, mean_c / 100.0, np.nan)
        ratio = np.where(ok_mean & (mean_c != 0), x / mean_c, np.nan)
        ok_z = (nf >= 2) & (var_c > 1e-12 * mean_c * mean_c)
        z = np.where(ok_z, (x - mean_c) / np.sqrt(np.where(ok_z, var_c, 1.0)), np.nan)
    return mean, ratio, z


def window_mean(x_cents: Num, n: Num, sum_cents: Num) -> tuple[Num, Num]:
    """(mean amount in currency units, amount / mean) of a window holding ``n`` prior amounts
    summing to ``sum_cents``; NaN with an empty window (and the ratio NaN for a zero mean)."""
    x = np.asarray(x_cents, dtype=np.float64)
    nf = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_c = np.asarray(sum_cents, dtype=np.float64) / nf
        ok = nf > 0
        mean = np.where(ok, mean_c / 100.0, np.nan)
        ratio = np.where(ok & (mean_c != 0), x / mean_c, np.nan)
    return mean, ratio


def utc_day(t_ns: Num) -> Num:
    """Days since the epoch of ``t_ns`` (floor): the index of its UTC day bucket."""
    return np.asarray(t_ns, dtype=np.int64) // DAY_NS


def bucket_start_ns(t_ns: Num, days: int) -> Num:
    """Start of a day-bucketed window: 00:00 UTC ``days`` whole days before the day of ``t_ns``."""
    return (utc_day(t_ns) - days) * DAY_NS


def haversine_km(lat1: Num, lon1: Num, lat2: Num, lon2: Num) -> Num:
    """Great-circle distance in km between points in degrees; NaN in, NaN out."""
    p1 = np.radians(np.asarray(lat1, dtype=np.float64))
    p2 = np.radians(np.asarray(lat2, dtype=np.float64))
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2, dtype=np.float64)) - np.radians(np.asarray(lon1, dtype=np.float64))
    a = np.sin(dphi / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def speed_kmh(distance_km: Num, gap_ns: Num) -> Num:
    """Implied travel speed; the time gap is floored at one minute."""
    gap = np.maximum(np.asarray(gap_ns, dtype=np.int64), MIN_SPEED_GAP_NS)
    return np.asarray(distance_km, dtype=np.float64) / (gap / float(HOUR_NS))


def seconds_between(t_ns: Num, prev_ns: Num) -> Num:
    return (np.asarray(t_ns, dtype=np.int64) - np.asarray(prev_ns, dtype=np.int64)) / 1e9


def age_days(t_ns: Num, created_ns: Num) -> Num:
    return (np.asarray(t_ns, dtype=np.int64) - np.asarray(created_ns, dtype=np.int64)) / float(DAY_NS)


def hour_utc(t_ns: Num) -> Num:
    return (np.asarray(t_ns, dtype=np.int64) // HOUR_NS) % 24


def weekday_utc(t_ns: Num) -> Num:
    return (np.asarray(t_ns, dtype=np.int64) // DAY_NS + _EPOCH_WEEKDAY) % 7


def is_night_utc(t_ns: Num) -> Num:
    h = hour_utc(t_ns)
    return ((h >= NIGHT_HOURS_UTC.start) & (h < NIGHT_HOURS_UTC.stop)).astype(np.int64)


def is_weekend_utc(t_ns: Num) -> Num:
    return (weekday_utc(t_ns) >= 5).astype(np.int64)


def label_known_ns(labeled_ns: Num, txn_created_ns: Num) -> Num:
    """When a label becomes usable: ``labeled_at``, but never before just after its transaction."""
    return np.maximum(np.asarray(labeled_ns, dtype=np.int64), np.asarray(txn_created_ns, dtype=np.int64) + 1)


def fraud_rate(fraud: Num, labeled: Num) -> Num:
    lab = np.asarray(labeled, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lab > 0, np.asarray(fraud, dtype=np.float64) / lab, np.nan)


def normalise_entity_value(column: str, value: object) -> object:
    """The key a blacklist value or an id is matched by: ids as int when they are integers."""
    if column == "ip":
        return str(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        return text
