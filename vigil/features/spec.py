"""The feature registry: every fraud feature's name, dtype, inputs and meaning, and its version.

A model records :data:`FEATURE_NAMES` and :data:`FEATURE_VERSION` when it is trained; serving
calls :func:`check_feature_version` and refuses a model built on other definitions.

Conventions shared by every feature (online and offline compute exactly these):

- **Time** is the event's ``created_at`` in UTC, handled as integer nanoseconds since the epoch.
  Feature code never reads a clock.
- **Order and ties.** Transactions are totally ordered by ``(created_at, transaction_id)``. A row's
  features use only transactions that come strictly before it in that order: an earlier
  transaction at the *same* timestamp with a smaller id counts, the row itself never does.
- **Windows** are half-open ``(t - W, t]`` over that order: a prior transaction at exactly
  ``t - W`` has left the window. These exact sliding windows are the ones of
  :data:`WINDOWS_NS` (the user's 1h / 24h / 7d velocity) and the distinct-user counts.
- **Day-bucketed windows** (:data:`BUCKET_DAYS`: the user's 30d window and every per-merchant,
  per-device and per-IP 1d / 7d / 30d window) keep bounded online state, one bucket per UTC day:
  ``Nd`` covers the UTC day of ``t`` so far plus the ``N`` previous whole UTC days, i.e. prior
  transactions with ``created_at >= floor_day(t) - N days`` (between N and N + 1 days long).
- **Windowed fraud rates** count a window transaction as fraud once its fraud label is known
  (rule below), whenever that label arrives; the denominator is every prior transaction in the
  window, labelled or not. Recent transactions whose labels are not known yet therefore dilute
  the rate: it is a lower bound of the window's true fraud rate that the model reads together
  with the window's count (the fraud literature instead shifts the window back by a fixed label
  delay; per-label arrival times make that shift unnecessary here).
- **Money** is quantised to cents (``round(amount * 100)``, half to even) before any sum, so sums
  and moments are exact integers on both paths; outputs are back in currency units.
  Amounts of different currencies are summed as they are (no FX conversion).
- **Labels** (label delay): a fraud label of transaction ``j`` becomes known at
  ``max(labeled_at, created_at_j + 1 ns)`` and counts for a row at time ``t`` iff that is ``<= t``.
  A label is never known before its transaction, so a row never sees its own label.
- **Missing inputs** give NaN (never 0): a flag or count that cannot be computed is unknown.
- ``dtype`` ``int64`` features are always defined; every other feature is ``float64`` with NaN
  for "unknown".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Final

HOUR_NS: Final = 3_600 * 1_000_000_000
DAY_NS: Final = 24 * HOUR_NS
WINDOWS_NS: Final[dict[str, int]] = {"1h": HOUR_NS, "24h": DAY_NS, "7d": 7 * DAY_NS}
#: Day-bucketed windows: name -> whole UTC days before the current one (see the module docstring).
BUCKET_DAYS: Final[dict[str, int]] = {"1d": 1, "7d": 7, "30d": 30}
#: Day buckets the online state keeps per entity: the longest window plus the current day.
RING_DAYS: Final = max(BUCKET_DAYS.values()) + 1
#: Hours (UTC, no local time zone is known) that count as night: 00:00 to 05:59.
NIGHT_HOURS_UTC: Final = range(0, 6)
#: Keys whose per-entity risk windows exist, and the transaction column each is read from.
RISK_KEYS: Final[dict[str, str]] = {"merchant": "merchant_id", "device": "device_id", "ip": "ip"}
#: Keys with a "time since last known fraud" feature.
FRAUD_RECENCY_KEYS: Final[dict[str, str]] = {
    "user": "user_id",
    "merchant": "merchant_id",
    "device": "device_id",
}
#: How long a device/IP/country stays "known" to a user after it was last used.
NOVELTY_WINDOW_NS: Final = 90 * DAY_NS
#: Below this gap the implied travel speed uses one minute, so same-second hops are not infinite.
MIN_SPEED_GAP_NS: Final = 60 * 1_000_000_000

#: Ordinal codes of ``users.kyc_risk_level``; any other value is NaN.
KYC_RISK_CODES: Final[dict[str, float]] = {"unknown": 0.0, "low": 1.0, "medium": 2.0, "high": 3.0}
#: Codes of ``transactions.channel``; any other value is NaN.
CHANNEL_CODES: Final[dict[str, float]] = {"pos": 0.0, "ecommerce": 1.0, "transfer": 2.0, "atm": 3.0}
#: Blacklist ``kind`` -> the transaction column it is matched against.
BLACKLIST_KINDS: Final[dict[str, str]] = {
    "user": "user_id",
    "device": "device_id",
    "ip": "ip",
    "merchant": "merchant_id",
    "beneficiary": "merchant_id",
}


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One feature: ``name`` follows ``{what}_{how}_{window}_by_{key}``.

    ``requires`` names what must be present for the feature to be computable: transaction
    columns, or the optional tables ``users``, ``merchants``, ``labels``, ``blacklist``.
    ``rev`` is bumped when the definition changes meaning; it is part of the version hash, the
    description is not (rewording a description must not invalidate every trained model).
    """

    name: str
    dtype: str
    description: str
    requires: tuple[str, ...] = ()
    rev: int = 1


_BLACKLIST_TARGETS = (("user", "user_id"), ("device", "device_id"), ("ip", "ip"), ("merchant", "merchant_id"))


def _f(name: str, description: str, *requires: str, dtype: str = "float64") -> FeatureSpec:
    return FeatureSpec(name=name, dtype=dtype, description=description, requires=requires)


FEATURE_SPEC: Final[tuple[FeatureSpec, ...]] = (
    _f("amount", "This transaction's amount in its currency units (cents-rounded)."),
    # --- per-user velocity -------------------------------------------------------------------
    *(
        _f(f"txn_count_{w}_by_user", f"The user's prior transactions in the last {w}.", dtype="int64")
        for w in WINDOWS_NS
    ),
    *(
        _f(f"amount_sum_{w}_by_user", f"Sum of the user's prior amounts in the last {w} (currency units).")
        for w in WINDOWS_NS
    ),
    _f("txn_count_all_by_user", "The user's prior transactions, all history.", dtype="int64"),
    _f("amount_mean_all_by_user", "Mean of the user's prior amounts; NaN with no history."),
    _f("amount_ratio_mean_all_by_user", "amount / amount_mean_all_by_user; NaN with no history."),
    _f(
        "amount_zscore_all_by_user",
        "(amount - mean) / std of the user's prior amounts (population std); NaN with fewer than"
        " two prior amounts or when they are (numerically) all equal.",
    ),
    _f("seconds_since_prev_by_user", "Seconds since the user's previous transaction; NaN if none."),
    *(
        _f(f"amount_mean_{w}_by_user", f"amount_sum_{w}_by_user / txn_count_{w}_by_user; NaN with none.")
        for w in ("24h", "7d")
    ),
    _f(
        "txn_count_30d_by_user",
        "The user's prior transactions since 00:00 UTC 30 days before this one's day (day buckets).",
        dtype="int64",
    ),
    _f("amount_sum_30d_by_user", "Sum of the same transactions' amounts (currency units)."),
    _f("amount_mean_30d_by_user", "amount_sum_30d_by_user / txn_count_30d_by_user; NaN with none."),
    _f(
        "amount_ratio_mean_30d_by_user",
        "amount / amount_mean_30d_by_user; NaN with no transaction in the window or a zero mean.",
    ),
    # --- novelty (90 days) ---------------------------------------------------------------------
    _f("device_new_90d_by_user", "1 if the user did not use this device in 90 days, else 0.", "device_id"),
    _f("ip_new_90d_by_user", "1 if the user did not use this IP in the last 90 days, else 0.", "ip"),
    _f("country_new_90d_by_user", "1 if the user did not transact from this country in 90 days.", "country"),
    # --- geography -----------------------------------------------------------------------------
    _f(
        "distance_km_prev_by_user",
        "Great-circle (haversine, R=6371.0088 km) distance from the user's last prior transaction"
        " that had coordinates; NaN if this or no prior one has coordinates.",
        "lat",
        "lon",
    ),
    _f(
        "speed_kmh_prev_by_user",
        "distance_km_prev_by_user / hours since that transaction (gap floored at one minute).",
        "lat",
        "lon",
    ),
    _f("distance_km_home_by_user", "Haversine km from the user's home coordinates.", "lat", "lon", "users"),
    # --- profile -------------------------------------------------------------------------------
    _f("age_days_by_user", "Account age: days from users.created_at to this transaction.", "users"),
    _f("kyc_risk_level_by_user", "users.kyc_risk_level: unknown 0, low 1, medium 2, high 3.", "users"),
    _f("age_days_by_merchant", "Days from merchants.created_at to now.", "merchant_id", "merchants"),
    # --- shared entities -----------------------------------------------------------------------
    *(
        _f(
            f"users_distinct_{w}_by_{key}",
            f"Distinct users seen on this {key} in the last {w} (prior transactions; the current"
            f" user counts only if seen there before).",
            col,
        )
        for key, col in (("device", "device_id"), ("ip", "ip"))
        for w in ("24h", "7d")
    ),
    *(
        spec
        for key, col in (("merchant", "merchant_id"), ("device", "device_id"))
        for spec in (
            _f(f"fraud_count_all_by_{key}", f"Known fraud labels on this {key}.", col, "labels"),
            _f(f"labeled_count_all_by_{key}", f"Known labels (fraud or not) on this {key}.", col, "labels"),
            _f(f"fraud_rate_all_by_{key}", "fraud / labeled; NaN with no labels.", col, "labels"),
        )
    ),
    # --- per-entity risk windows (day buckets; fraud counted once its label is known) ------------
    *(
        spec
        for key, col in RISK_KEYS.items()
        for w, days in BUCKET_DAYS.items()
        for spec in (
            _f(
                f"txn_count_{w}_by_{key}",
                f"Prior transactions on this {key} since 00:00 UTC {days} days before this one's day.",
                col,
            ),
            _f(
                f"fraud_rate_{w}_by_{key}",
                f"Known-fraud transactions among those of txn_count_{w}_by_{key}, divided by that count"
                " (labelled or not); NaN when the window is empty.",
                col,
                "labels",
            ),
        )
    ),
    *(
        _f(
            f"seconds_since_fraud_by_{key}",
            f"Seconds from the created_at of this {key}'s latest transaction whose fraud label is known"
            " at t; NaN if none.",
            *((col,) if key != "user" else ()),
            "labels",
        )
        for key, col in FRAUD_RECENCY_KEYS.items()
    ),
    # --- blacklists (entry active when added_at <= t < expires_at) -------------------------------
    *(
        _f(f"blacklist_hit_by_{key}", f"1 if an active blacklist entry names this {key}.", col, "blacklist")
        for key, col in _BLACKLIST_TARGETS
    ),
    # --- calendar and channel ------------------------------------------------------------------
    _f("hour_utc", "Hour of day of created_at, UTC (0-23).", dtype="int64"),
    _f("weekday_utc", "Day of week of created_at, UTC (0 = Monday).", dtype="int64"),
    _f(
        "is_night_utc", "1 if hour_utc is 0-5 (UTC: the local time zone is not known), else 0.", dtype="int64"
    ),
    _f("is_weekend_utc", "1 if weekday_utc is Saturday or Sunday (UTC), else 0.", dtype="int64"),
    _f("channel_code", "channel: pos 0, ecommerce 1, transfer 2, atm 3.", "channel"),
)

FEATURE_NAMES: Final[tuple[str, ...]] = tuple(s.name for s in FEATURE_SPEC)
FEATURE_DTYPES: Final[dict[str, str]] = {s.name: s.dtype for s in FEATURE_SPEC}


def _version(specs: tuple[FeatureSpec, ...]) -> str:
    canon = [[s.name, s.dtype, list(s.requires), s.rev] for s in specs]
    digest = hashlib.sha256(json.dumps(canon, separators=(",", ":")).encode()).hexdigest()
    return f"features-{digest[:16]}"


#: ``features-<16 hex>``: the hash of names, dtypes, inputs and revisions, in order.
FEATURE_VERSION: Final[str] = _version(FEATURE_SPEC)


class FeatureVersionMismatch(ValueError):
    """A model was trained on feature definitions other than the ones this code computes."""


def check_feature_version(version: str, names: tuple[str, ...] | list[str] | None = None) -> None:
    """Raise :class:`FeatureVersionMismatch` unless ``version`` (and ``names``, when given) match."""
    if version != FEATURE_VERSION:
        raise FeatureVersionMismatch(f"model features {version!r} != serving features {FEATURE_VERSION!r}")
    if names is not None and tuple(names) != FEATURE_NAMES:
        raise FeatureVersionMismatch("model feature list differs from FEATURE_NAMES")
