"""Arrow schemas of the Parquet tables: exactly the names and columns of :mod:`vigil.db.models`.

Type mapping: BIGINT -> int64, float -> float64, str -> string (low-cardinality columns are
dictionary-encoded: ``dictionary<int32, string>``), timestamps -> ``timestamp[us, tz=UTC]``,
date -> date32, NUMERIC money -> float64 rounded to cents, bool -> bool.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
CAT = pa.dictionary(pa.int32(), pa.string())


def _schema(*fields: tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema([pa.field(name, typ, nullable=nullable) for name, typ, nullable in fields])


SCHEMAS: dict[str, pa.Schema] = {
    "users": _schema(
        ("user_id", pa.int64(), False),
        ("created_at", TS, False),
        ("full_name", pa.string(), False),
        ("birth_date", pa.date32(), True),
        ("country", CAT, False),
        ("home_lat", pa.float64(), False),
        ("home_lon", pa.float64(), False),
        ("segment", CAT, False),
        ("kyc_status", CAT, False),
        ("kyc_risk_level", CAT, False),
    ),
    "accounts": _schema(
        ("account_id", pa.int64(), False),
        ("user_id", pa.int64(), False),
        ("opened_at", TS, False),
        ("kind", CAT, False),
        ("currency", CAT, False),
        ("status", CAT, False),
    ),
    "merchants": _schema(
        ("merchant_id", pa.int64(), False),
        ("kind", CAT, False),
        ("name", pa.string(), False),
        ("category", CAT, False),
        ("country", CAT, False),
        ("lat", pa.float64(), False),
        ("lon", pa.float64(), False),
        ("created_at", TS, False),
    ),
    "devices": _schema(
        ("device_id", pa.int64(), False),
        ("fingerprint", pa.string(), False),
        ("os", CAT, False),
        ("first_seen_at", TS, False),
    ),
    "device_ip_history": _schema(
        ("id", pa.int64(), False),
        ("device_id", pa.int64(), False),
        ("user_id", pa.int64(), False),
        ("ip", pa.string(), False),
        ("country", CAT, False),
        ("seen_at", TS, False),
    ),
    "transactions": _schema(
        ("transaction_id", pa.int64(), False),
        ("idempotency_key", pa.string(), False),
        ("user_id", pa.int64(), False),
        ("account_id", pa.int64(), False),
        ("merchant_id", pa.int64(), False),
        ("device_id", pa.int64(), True),
        ("ip", pa.string(), True),
        ("amount", pa.float64(), False),
        ("currency", CAT, False),
        ("channel", CAT, False),
        ("country", CAT, False),
        ("lat", pa.float64(), True),
        ("lon", pa.float64(), True),
        ("created_at", TS, False),
    ),
    "fraud_labels": _schema(
        ("transaction_id", pa.int64(), False),
        ("is_fraud", pa.bool_(), False),
        ("fraud_type", CAT, True),
        ("labeled_at", TS, False),
        ("source", CAT, False),
    ),
    "blacklist_entries": _schema(
        ("id", pa.int64(), False),
        ("kind", CAT, False),
        ("value", pa.string(), False),
        ("reason", pa.string(), False),
        ("added_by", CAT, False),
        ("added_at", TS, False),
        ("expires_at", TS, True),
        ("removed_by", pa.string(), True),
    ),
}

#: Write/load order (foreign keys first), a sub-sequence of ``vigil.db.models.TABLE_ORDER``.
TABLES: tuple[str, ...] = tuple(SCHEMAS)

#: Allowed values of the categorical columns, per (table, column).
ALLOWED: dict[tuple[str, str], frozenset[str]] = {
    ("users", "segment"): frozenset({"retail", "premium", "student", "senior", "business"}),
    ("users", "kyc_status"): frozenset({"none", "pending", "verified", "rejected"}),
    ("users", "kyc_risk_level"): frozenset({"unknown", "low", "medium", "high"}),
    ("accounts", "kind"): frozenset({"checking", "savings", "card"}),
    ("accounts", "status"): frozenset({"active", "frozen", "closed"}),
    ("merchants", "kind"): frozenset({"merchant", "beneficiary"}),
    ("transactions", "channel"): frozenset({"pos", "ecommerce", "transfer", "atm"}),
    ("fraud_labels", "source"): frozenset({"chargeback", "analyst", "generator"}),
    ("blacklist_entries", "kind"): frozenset({"user", "device", "ip", "merchant", "beneficiary"}),
}


def string_type_ok(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Whether ``actual`` is an acceptable physical type for a column declared ``expected``.

    A string column may come back plain or dictionary-encoded (both are ``str`` in the model).
    """
    if actual == expected:
        return True
    is_str = expected == pa.string() or expected == CAT
    if not is_str:
        return False
    if pa.types.is_dictionary(actual):
        return pa.types.is_string(actual.value_type) or pa.types.is_large_string(actual.value_type)
    return pa.types.is_string(actual) or pa.types.is_large_string(actual)
