"""Data-quality checks for a generated (or exported) dataset of Parquet tables.

``validate_dataset(path)`` checks schema, nullability, keys, allowed values and ranges,
referential integrity, timestamp consistency and fraud rates, and returns a
:class:`QualityReport` listing every check with a message that says what failed and where.
It reads ``manifest.json`` (written by :func:`training.generate.generate`) when present for the
time window, the fraud-rate band and the expected fraud mix; without it the defaults apply.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from training.generate.config import FRAUD_TYPES, GenerateConfig
from training.generate.schema import ALLOWED, SCHEMAS, string_type_ok

_DEFAULT_BAND: tuple[float, float] = GenerateConfig().fraud_rate_band


@dataclass(frozen=True)
class Check:
    """One check: ``name`` like ``foreign_key:transactions.user_id``; ``message`` explains."""

    name: str
    passed: bool
    message: str


@dataclass
class QualityReport:
    """Every check run on a dataset, with fraud rates (share of all transactions) per type."""

    path: Path
    checks: list[Check] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    fraud_rate: float = 0.0
    fraud_rate_by_type: dict[str, float] = field(default_factory=dict)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def ok(self) -> bool:
        return not self.failures

    def add(self, name: str, passed: bool, message: str = "ok") -> None:
        self.checks.append(Check(name, bool(passed), message if not passed else "ok"))

    def format(self) -> str:
        """Human-readable summary: failures first (or "all N checks passed"), then fraud rates."""
        lines = [f"{c.name}: {c.message}" for c in self.failures]
        if not lines:
            lines.append(f"all {len(self.checks)} checks passed")
        rates = ", ".join(f"{t}={r:.4%}" for t, r in self.fraud_rate_by_type.items())
        lines.append(f"fraud rate {self.fraud_rate:.4%} ({rates})")
        return "\n".join(lines)


def _examples(values: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(v) for v in values[:limit].tolist())
    return shown + (", ..." if len(values) > limit else "")


def _int(col: pa.ChunkedArray, null: int = -1) -> np.ndarray:
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    return np.asarray(col.fill_null(null).to_numpy())


def _float(col: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(col.fill_null(np.nan).to_numpy(), dtype=np.float64)


def _strings(col: pa.ChunkedArray) -> pa.ChunkedArray:
    return col.cast(pa.string()) if pa.types.is_dictionary(col.type) else col


class _Index:
    """Row positions by integer key: a dense table for compact ids, binary search otherwise."""

    def __init__(self, keys: np.ndarray) -> None:
        self.keys = keys
        n = len(keys)
        self.dense: np.ndarray | None = None
        if n and keys.min() >= 0 and keys.max() <= 4 * n + 1024:
            self.dense = np.full(int(keys.max()) + 1, -1, dtype=np.int64)
            self.dense[keys] = np.arange(n)
        else:
            self.order = np.argsort(keys, kind="stable")
            self.sorted = keys[self.order]

    def duplicates(self) -> np.ndarray:
        if self.dense is not None:
            counts = np.bincount(self.keys)
            return np.flatnonzero(counts > 1)
        same = self.sorted[1:] == self.sorted[:-1]
        return np.unique(self.sorted[1:][same])

    def find(self, query: np.ndarray) -> np.ndarray:
        """Position of each query key in ``keys`` (``-1`` when absent)."""
        if len(self.keys) == 0:
            return np.full(len(query), -1, dtype=np.int64)
        if self.dense is not None:
            inside = (query >= 0) & (query < len(self.dense))
            return np.where(inside, self.dense[np.clip(query, 0, len(self.dense) - 1)], -1)
        pos = np.minimum(np.searchsorted(self.sorted, query), len(self.sorted) - 1)
        return np.where(self.sorted[pos] == query, self.order[pos], -1)


def _codes(col: pa.ChunkedArray, values: list[str]) -> np.ndarray:
    """Codes of a string column in ``values`` (``-1`` for null or other), without materialising it."""
    value_set = pa.array(values, pa.string())
    parts = []
    for chunk in col.chunks:
        if pa.types.is_dictionary(chunk.type):
            mapping = np.asarray(
                pc.index_in(chunk.dictionary.cast(pa.string()), value_set=value_set).fill_null(-1)
            )
            idx = np.asarray(chunk.indices.fill_null(0).to_numpy(), dtype=np.int64)
            code = mapping[idx] if len(mapping) else np.full(len(idx), -1)
            parts.append(np.where(np.asarray(chunk.is_null()), -1, code))
        else:
            parts.append(np.asarray(pc.index_in(chunk, value_set=value_set).fill_null(-1)))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def _distinct(col: pa.ChunkedArray) -> set[str]:
    """Distinct non-null strings of a (possibly dictionary-encoded) column."""
    out: set[str] = set()
    for chunk in col.chunks:
        if pa.types.is_dictionary(chunk.type):
            used = pc.unique(chunk.indices.drop_null())
            out.update(chunk.dictionary.cast(pa.string()).take(used).to_pylist())
        else:
            out.update(v for v in pc.unique(chunk).to_pylist() if v is not None)
    return out


def validate_dataset(
    path: Path | str,
    *,
    fraud_rate_band: tuple[float, float] | None = None,
) -> QualityReport:
    """Check the Parquet tables under ``path`` and return a report (never raises on bad data).

    ``fraud_rate_band`` (inclusive shares of all transactions) defaults to the manifest's, else
    3-5%. A missing or unreadable table fails its checks and skips those that need it.
    """
    path = Path(path)
    report = QualityReport(path=path)
    manifest = _read_manifest(path)
    raw_cfg = manifest.get("config")
    cfg: dict[str, object] = raw_cfg if isinstance(raw_cfg, dict) else {}
    band = fraud_rate_band or _band(cfg.get("fraud_rate_band")) or _DEFAULT_BAND

    tables: dict[str, pa.Table] = {}
    for name, schema in SCHEMAS.items():
        file = path / f"{name}.parquet"
        if not file.exists():
            report.add(f"exists:{name}", False, f"missing file {file}")
            continue
        try:
            table = pq.read_table(file)
        except (OSError, pa.ArrowInvalid) as exc:
            report.add(f"exists:{name}", False, f"unreadable {file}: {exc}")
            continue
        report.add(f"exists:{name}", True)
        report.rows[name] = table.num_rows
        if _check_schema(report, name, table, schema):
            tables[name] = table

    index = {name: _Index(_int(tables[name].column(key))) for name, key in _KEYS.items() if name in tables}
    _check_keys_and_values(report, tables, index)
    _check_references(report, tables, index)
    _check_times(report, tables, index, cfg)
    _check_fraud(report, tables, band, manifest)
    return report


def _band(value: object) -> tuple[float, float] | None:
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
        return float(value[0]), float(value[1])
    return None


def _read_manifest(path: Path) -> dict[str, object]:
    file = path / "manifest.json"
    if not file.exists():
        return {}
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _check_schema(report: QualityReport, name: str, table: pa.Table, schema: pa.Schema) -> bool:
    expected = [f.name for f in schema]
    if table.column_names != expected:
        missing = sorted(set(expected) - set(table.column_names))
        extra = sorted(set(table.column_names) - set(expected))
        report.add(
            f"schema:{name}",
            False,
            f"columns differ: missing {missing}, unexpected {extra}, order {table.column_names}",
        )
        return False
    wrong = [
        f"{f.name} is {table.schema.field(f.name).type}, expected {f.type}"
        for f in schema
        if not string_type_ok(table.schema.field(f.name).type, f.type)
    ]
    report.add(f"schema:{name}", not wrong, "; ".join(wrong))
    nulls = [
        f"{f.name} ({table.column(f.name).null_count})"
        for f in schema
        if not f.nullable and table.column(f.name).null_count
    ]
    report.add(f"not_null:{name}", not nulls, "nulls in non-nullable columns: " + ", ".join(nulls))
    return not wrong


def _string_hashes(col: pa.ChunkedArray, batch: int = 1 << 20) -> np.ndarray:
    """A 64-bit polynomial hash of every string, computed on the Arrow buffers (no Python objects)."""
    flat = _strings(col).fill_null("").combine_chunks().cast(pa.large_string())
    return np.concatenate(
        [_hash_batch(flat.slice(i, batch)) for i in range(0, len(flat), batch)] or [np.zeros(0, np.uint64)]
    )


def _hash_batch(arr: pa.Array) -> np.ndarray:
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = (
        np.frombuffer(arr.buffers()[2], dtype=np.uint8)
        if arr.buffers()[2] is not None
        else np.zeros(0, np.uint8)
    )
    data = data[offsets[0] : offsets[-1]].astype(np.uint64)
    rel = offsets[:-1] - offsets[0]
    lengths = np.diff(offsets)
    if len(data) == 0:
        return lengths.astype(np.uint64)
    powers = [1]
    for _ in range(int(lengths.max())):
        powers.append(powers[-1] * 1_099_511_628_211 % 2**64)
    pos = np.arange(len(data)) - np.repeat(rel, lengths)
    terms = data * np.array(powers, dtype=np.uint64)[pos]
    sums = np.add.reduceat(terms, np.minimum(rel, len(data) - 1))
    sums[lengths == 0] = 0
    return sums ^ (lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))


def _disjoint_spans(report: QualityReport, bl: pa.Table) -> None:
    """A (kind, value) may be blacklisted in several spans ``[added_at, expires_at)``, never two at
    once (an ended entry stays on record; the next one starts after it)."""
    spans = pa.table(
        {
            "key": pc.binary_join_element_wise(_strings(bl.column("kind")), bl.column("value"), "\x1f"),
            "added": _int(bl.column("added_at")),
            "expires": _int(bl.column("expires_at"), null=np.iinfo(np.int64).max),
        }
    ).sort_by([("key", "ascending"), ("added", "ascending")])
    key = np.asarray(spans.column("key").to_numpy(zero_copy_only=False))
    added, expires = spans.column("added").to_numpy(), spans.column("expires").to_numpy()
    overlap = np.flatnonzero((key[1:] == key[:-1]) & (added[1:] < expires[:-1]))
    examples = [str(k).replace("\x1f", " ") for k in key[overlap[:3]]]
    report.add(
        "spans:blacklist_entries(kind,value)",
        len(overlap) == 0,
        f"{len(overlap)} entries overlap an earlier span of the same kind and value, e.g. {examples}",
    )


def _unique(report: QualityReport, name: str, values: _Index | pa.ChunkedArray, n: int) -> None:
    if isinstance(values, _Index):
        dup_keys = values.duplicates()
        report.add(name, len(dup_keys) == 0, f"{len(dup_keys)} duplicated values, e.g. {_examples(dup_keys)}")
        return
    hashes = _string_hashes(values)
    order = np.argsort(hashes)
    same = np.flatnonzero(hashes[order][1:] == hashes[order][:-1])
    dup: list[str] = []
    if len(same):  # confirm hash collisions on the strings themselves
        rows = np.unique(np.concatenate([order[same], order[same + 1]]))
        strings = _strings(values).take(pa.array(rows)).to_pylist()
        counts: dict[object, int] = {}
        for value in strings:
            counts[value] = counts.get(value, 0) + 1
        dup = sorted(str(v) for v, c in counts.items() if c > 1)
    report.add(name, not dup, f"{len(dup)} duplicated values, e.g. {dup[:5]}")


_KEYS = {
    "users": "user_id",
    "accounts": "account_id",
    "merchants": "merchant_id",
    "devices": "device_id",
    "device_ip_history": "id",
    "transactions": "transaction_id",
    "fraud_labels": "transaction_id",
    "blacklist_entries": "id",
}


def _check_keys_and_values(
    report: QualityReport, tables: dict[str, pa.Table], index: dict[str, _Index]
) -> None:
    for name, key in _KEYS.items():
        if name in index:
            _unique(report, f"primary_key:{name}.{key}", index[name], tables[name].num_rows)
    if "devices" in tables:
        _unique(
            report,
            "unique:devices.fingerprint",
            tables["devices"].column("fingerprint"),
            tables["devices"].num_rows,
        )
    if "transactions" in tables:
        tx = tables["transactions"]
        key = tx.column("idempotency_key")
        generated = pc.binary_join_element_wise("gen-", tx.column("transaction_id").cast(pa.string()), "")
        if (
            tx.num_rows
            and "primary_key:transactions.transaction_id" not in {c.name for c in report.failures}
            and (pc.all(pc.equal(key, generated)).as_py())
        ):
            # 'gen-<transaction_id>' for every row: unique because the ids are.
            report.add("unique:transactions.idempotency_key", True)
        else:
            _unique(report, "unique:transactions.idempotency_key", key, tx.num_rows)
        amount = _float(tx.column("amount"))
        bad = ~np.isfinite(amount) | (amount <= 0)
        report.add("range:transactions.amount", not bad.any(), f"{int(bad.sum())} amounts not > 0 and finite")
        cents = np.abs(amount * 100 - np.rint(amount * 100)) > 1e-6
        report.add(
            "range:transactions.amount_cents",
            not cents.any(),
            f"{int(cents.sum())} amounts not in whole cents",
        )
    if "blacklist_entries" in tables:
        bl = tables["blacklist_entries"]
        _disjoint_spans(report, bl)
    for (name, column), allowed in ALLOWED.items():
        if name in tables:
            values = _distinct(tables[name].column(column))
            unknown = sorted(values - allowed)
            report.add(
                f"allowed_values:{name}.{column}",
                not unknown,
                f"unexpected values {unknown}; allowed {sorted(allowed)}",
            )
    if "fraud_labels" in tables:
        types = _distinct(tables["fraud_labels"].column("fraud_type"))
        unknown = sorted(types - set(FRAUD_TYPES))
        report.add("allowed_values:fraud_labels.fraud_type", not unknown, f"unexpected fraud types {unknown}")
    for name, column, width in (
        ("users", "country", 2), ("merchants", "country", 2), ("transactions", "country", 2),
        ("device_ip_history", "country", 2), ("transactions", "currency", 3), ("accounts", "currency", 3),
    ):  # fmt: skip
        if name in tables:
            found = sorted(_distinct(tables[name].column(column)))
            bad = [v for v in found if len(v) != width or not v.isupper() or not v.isalpha()]
            report.add(f"format:{name}.{column}", not bad, f"not {width} upper-case letters: {bad[:5]}")
    for name, lat, lon in (
        ("users", "home_lat", "home_lon"),
        ("merchants", "lat", "lon"),
        ("transactions", "lat", "lon"),
    ):
        if name in tables:
            la, lo = _float(tables[name].column(lat)), _float(tables[name].column(lon))
            bad = (np.abs(la) > 90) | (np.abs(lo) > 180)
            report.add(
                f"range:{name}.{lat},{lon}", not bad.any(), f"{int(bad.sum())} coordinates out of range"
            )


def _check_references(report: QualityReport, tables: dict[str, pa.Table], index: dict[str, _Index]) -> None:
    links = (
        ("accounts", "user_id", "users"),
        ("device_ip_history", "device_id", "devices"),
        ("device_ip_history", "user_id", "users"),
        ("transactions", "user_id", "users"),
        ("transactions", "account_id", "accounts"),
        ("transactions", "merchant_id", "merchants"),
        ("transactions", "device_id", "devices"),
        ("fraud_labels", "transaction_id", "transactions"),
    )
    for child, column, parent in links:
        if child in tables and parent in index:
            ref = _int(tables[child].column(column))
            missing = ref[(ref != -1) & (index[parent].find(ref) < 0)]
            report.add(
                f"foreign_key:{child}.{column}",
                len(missing) == 0,
                f"{len(missing)} rows reference no {parent} row, e.g. {_examples(np.unique(missing))}",
            )
    if "transactions" in tables and "accounts" in index:
        tx, acc = tables["transactions"], tables["accounts"]
        pos = index["accounts"].find(_int(tx.column("account_id")))
        ids = _int(tx.column("transaction_id"))
        owner = _int(acc.column("user_id"))[np.maximum(pos, 0)]
        wrong = np.flatnonzero((pos >= 0) & (owner != _int(tx.column("user_id"))))
        report.add(
            "consistency:transactions.account_owner",
            len(wrong) == 0,
            f"{len(wrong)} transactions on an account of another user, e.g. transaction_id {_examples(ids[wrong])}",
        )
        values = sorted(_distinct(acc.column("currency")) | _distinct(tx.column("currency")))
        expected = _codes(acc.column("currency"), values)[np.maximum(pos, 0)]
        wrong = np.flatnonzero((pos >= 0) & (_codes(tx.column("currency"), values) != expected))
        report.add(
            "consistency:transactions.currency",
            len(wrong) == 0,
            f"{len(wrong)} transactions not in their account's currency, e.g. transaction_id {_examples(ids[wrong])}",
        )


def _not_before(
    report: QualityReport, name: str, later: np.ndarray, earlier: np.ndarray, ids: np.ndarray, what: str
) -> None:
    bad = np.flatnonzero(later < earlier)
    report.add(name, len(bad) == 0, f"{len(bad)} rows {what}, e.g. {_examples(ids[bad])}")


def _check_times(
    report: QualityReport, tables: dict[str, pa.Table], index: dict[str, _Index], cfg: dict[str, object]
) -> None:
    if "transactions" not in tables:
        return
    tx = tables["transactions"]
    ids = _int(tx.column("transaction_id"))
    ts = _int(tx.column("created_at"))
    user = _int(tx.column("user_id"))
    start = cfg.get("start")
    days = cfg.get("days")
    if isinstance(start, str) and isinstance(days, int):
        lo = int(datetime.fromisoformat(start).timestamp() * 1_000_000)
        hi = lo + days * 86_400 * 1_000_000
        bad = np.flatnonzero((ts < lo) | (ts >= hi))
        report.add(
            "timestamps:transactions.window",
            len(bad) == 0,
            f"{len(bad)} transactions outside [{start}, +{days} days), e.g. {_examples(ids[bad])}",
        )
    order = np.argsort(user, kind="stable")
    u, t = user[order], ts[order]
    back = np.flatnonzero((u[1:] == u[:-1]) & (t[1:] < t[:-1]))
    report.add(
        "timestamps:transactions.ordered_per_user",
        len(back) == 0,
        f"{len(back)} transactions earlier than the previous one of the same user (file order), "
        f"e.g. {_examples(ids[order][back + 1])}",
    )
    for parent, column, child_key in (
        ("users", "created_at", "user_id"),
        ("accounts", "opened_at", "account_id"),
        ("merchants", "created_at", "merchant_id"),
        ("devices", "first_seen_at", "device_id"),
    ):
        if parent not in index:
            continue
        pos = index[parent].find(_int(tx.column(child_key)))
        has = pos >= 0
        when = _int(tables[parent].column(column))[pos[has]]
        _not_before(
            report, f"timestamps:transactions.after_{parent}.{column}", ts[has], when, ids[has],
            f"dated before their {parent[:-1]}'s {column}",
        )  # fmt: skip
    if "fraud_labels" in tables:
        fl = tables["fraud_labels"]
        fid = _int(fl.column("transaction_id"))
        pos = index["transactions"].find(fid)
        when = np.where(pos >= 0, ts[np.maximum(pos, 0)], np.iinfo(np.int64).min)
        _not_before(
            report, "timestamps:fraud_labels.after_transaction", _int(fl.column("labeled_at")), when + 1, fid,
            "labelled no later than the transaction itself",
        )  # fmt: skip
    if "device_ip_history" in tables and "devices" in tables:
        h, d = tables["device_ip_history"], tables["devices"]
        pos = index["devices"].find(_int(h.column("device_id")))
        first = np.where(
            pos >= 0, _int(d.column("first_seen_at"))[np.maximum(pos, 0)], np.iinfo(np.int64).min
        )
        _not_before(
            report, "timestamps:device_ip_history.after_device_first_seen", _int(h.column("seen_at")), first,
            _int(h.column("id")), "seen before the device was first seen",
        )  # fmt: skip
    if "blacklist_entries" in tables:
        bl = tables["blacklist_entries"]
        expires = _int(bl.column("expires_at"), null=np.iinfo(np.int64).max)
        _not_before(
            report, "timestamps:blacklist_entries.expiry_after_added", expires, _int(bl.column("added_at")) + 1,
            _int(bl.column("id")), "expiring no later than they were added",
        )  # fmt: skip


def _check_fraud(
    report: QualityReport, tables: dict[str, pa.Table], band: Iterable[float], manifest: dict[str, object]
) -> None:
    if "transactions" not in tables or "fraud_labels" not in tables:
        return
    n_tx = max(tables["transactions"].num_rows, 1)
    fl = tables["fraud_labels"]
    is_fraud = np.asarray(fl.column("is_fraud").fill_null(False).to_numpy())
    types = _strings(fl.column("fraud_type")).fill_null("").to_numpy(zero_copy_only=False)
    report.add(
        "labels:fraud_labels.fraud_type",
        bool(np.all(types[is_fraud] != "")),
        f"{int(np.sum(types[is_fraud] == ''))} fraud labels without a fraud_type",
    )
    fraud_types = types[is_fraud]
    report.fraud_rate = float(is_fraud.sum()) / n_tx
    report.fraud_rate_by_type = {t: float(np.sum(fraud_types == t)) / n_tx for t in FRAUD_TYPES}
    low, high = band
    report.add(
        "fraud_rate:overall",
        low <= report.fraud_rate <= high,
        f"fraud rate {report.fraud_rate:.4%} outside the band [{low:.2%}, {high:.2%}]",
    )
    cfg = manifest.get("config")
    mix = cfg.get("fraud_mix") if isinstance(cfg, dict) else None
    # Without a manifest every type is expected; with one, every type of non-zero weight.
    expected = [t for t in FRAUD_TYPES if not isinstance(mix, dict) or float(mix.get(t, 0.0)) > 0]
    absent = [t for t in expected if report.fraud_rate_by_type[t] == 0]
    report.add("fraud_rate:types_present", not absent, f"no fraud rows of type {absent}")
    wanted = manifest.get("fraud_by_type")
    if isinstance(wanted, dict):
        got = {t: int(np.sum(fraud_types == t)) for t in FRAUD_TYPES}
        diff = {t: (got[t], wanted.get(t, 0)) for t in FRAUD_TYPES if got[t] != wanted.get(t, 0)}
        report.add("fraud_rate:by_type_matches_manifest", not diff, f"(found, manifest) per type: {diff}")
