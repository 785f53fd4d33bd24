"""The generation pipeline: build the world, plan fraud, stream transactions block by block."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from . import reference as ref
from .activity import LEGIT, Rows, day_cdf, habit_rows, habit_times, mark_regular
from .config import FRAUD_TYPES, USERS_PER_BLOCK, GenerateConfig
from .fraud import FraudPlan, expand, plan_fraud, visit_rows
from .schema import SCHEMAS, TS
from .world import DAY_US, World, build_world

if TYPE_CHECKING:
    from training.quality import QualityReport

MANIFEST = "manifest.json"
KYC_STATUS = ("none", "pending", "verified", "rejected")
KYC_RISK = ("unknown", "low", "medium", "high")
ACCOUNT_KINDS = ("checking", "savings", "card")
ACCOUNT_STATUS = ("active", "frozen", "closed")
BL_KINDS = ("device", "ip", "merchant", "beneficiary")
BL_REASONS = (
    "device linked to confirmed account takeovers",
    "IP address of a known fraud proxy",
    "merchant terminated after confirmed fraud",
    "beneficiary confirmed as a money mule",
)
BL_ADDED_BY = ("fraud-ops", "consortium-feed", "analyst")
#: Columns not worth a Parquet dictionary page (unique or continuous values).
_NO_DICT = {"transaction_id", "idempotency_key", "amount", "lat", "lon", "created_at", "home_lat",
            "home_lon", "full_name", "name", "fingerprint", "id", "labeled_at", "seen_at"}  # fmt: skip


class DataQualityError(RuntimeError):
    """The generator's own output failed the data-quality checks (a generator bug)."""


@dataclass(frozen=True)
class GenerateSummary:
    """What :func:`generate` wrote. ``rows`` maps table name to row count; ``seconds`` is wall time."""

    out_dir: Path
    rows: dict[str, int]
    fraud_by_type: dict[str, int]
    seconds: float
    quality: QualityReport | None = field(default=None, compare=False)

    @property
    def fraud_rate(self) -> float:
        return sum(self.fraud_by_type.values()) / max(self.rows["transactions"], 1)


def _cat(codes: np.ndarray, values: tuple[str, ...]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(values, pa.string()))


def _ts(us: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(us, type=pa.int64(), mask=null).cast(TS)


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _ip_strings(ip_int: np.ndarray) -> pa.Array:
    octets = [pa.array((ip_int >> s) & 255).cast(pa.string()) for s in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*octets, ".")


class _Writer:
    """One Parquet file per table, appended to in row groups, then closed."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.rows: dict[str, int] = {}

    def write(self, name: str, columns: dict[str, pa.Array]) -> None:
        schema = SCHEMAS[name]
        table = pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)
        if name not in self.writers:
            self.writers[name] = pq.ParquetWriter(
                self.out_dir / f"{name}.parquet",
                schema,
                compression="zstd",
                compression_level=1,
                use_dictionary=[f.name for f in schema if f.name not in _NO_DICT],
                write_statistics=True,
            )
            self.rows[name] = 0
        self.writers[name].write_table(table, row_group_size=1 << 20)
        self.rows[name] += table.num_rows

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


def _static_tables(world: World, plan: FraudPlan, writer: _Writer) -> pa.Array:
    n = world.n_users
    user_id = np.arange(1, n + 1, dtype=np.int64)
    names = _join(
        pa.array(ref.FIRST_NAMES).take(pa.array(world.u_first_name)),
        " ",
        pa.array(ref.LAST_NAMES).take(pa.array(world.u_last_name)),
    )
    writer.write(
        "users",
        {
            "user_id": pa.array(user_id),
            "created_at": _ts(world.u_created),
            "full_name": names,
            "birth_date": pa.array(world.u_birth_days.astype(np.int32), pa.int32()).cast(pa.date32()),
            "country": _cat(world.u_country, ref.COUNTRIES),
            "home_lat": pa.array(np.round(world.u_lat, 5)),
            "home_lon": pa.array(np.round(world.u_lon, 5)),
            "segment": _cat(world.u_segment, ref.SEGMENTS),
            "kyc_status": _cat(world.u_kyc_status, KYC_STATUS),
            "kyc_risk_level": _cat(world.u_kyc_risk, KYC_RISK),
        },
    )
    n_acc = len(world.acc_user)
    writer.write(
        "accounts",
        {
            "account_id": pa.array(np.arange(1, n_acc + 1, dtype=np.int64)),
            "user_id": pa.array(world.acc_user + 1),
            "opened_at": _ts(world.acc_opened),
            "kind": _cat(world.acc_kind, ACCOUNT_KINDS),
            "currency": _cat(ref.CURRENCY_OF_COUNTRY[world.u_country[world.acc_user]], ref.CURRENCIES),
            "status": _cat(world.acc_status, ACCOUNT_STATUS),
        },
    )
    order = np.argsort(world.m_id)  # write merchants in id order
    n_m = len(order)
    words = pa.array(ref.MERCHANT_WORDS)
    rng = np.random.default_rng([world.cfg.seed, 5])
    m_names = _join(
        words.take(pa.array(rng.integers(0, len(ref.MERCHANT_WORDS), n_m))),
        " ",
        pa.array(ref.CATEGORIES).take(pa.array(world.m_cat[order])),
        " ",
        pa.array(world.m_id[order]).cast(pa.string()),
    )
    writer.write(
        "merchants",
        {
            "merchant_id": pa.array(world.m_id[order]),
            "kind": _cat(world.m_kind[order], ("merchant", "beneficiary")),
            "name": m_names,
            "category": _cat(world.m_cat[order], ref.CATEGORIES),
            "country": _cat(world.m_country[order], ref.COUNTRIES),
            "lat": pa.array(np.round(world.m_lat[order], 5)),
            "lon": pa.array(np.round(world.m_lon[order], 5)),
            "created_at": _ts(world.m_created[order]),
        },
    )
    order = np.argsort(world.d_id)
    # A bijective mix of the id: unique, stable, and unrelated to the device's role.
    x = world.d_id[order].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(world.cfg.seed)
    x ^= x >> np.uint64(29)
    fingerprint = _join("fp-", pa.array([f"{v:016x}" for v in x.tolist()]))
    writer.write(
        "devices",
        {
            "device_id": pa.array(world.d_id[order]),
            "fingerprint": fingerprint,
            "os": _cat(world.d_os[order], ref.OSES),
            "first_seen_at": _ts(world.d_first_seen[order]),
        },
    )
    ip_str = _ip_strings(world.ip_int)
    values = pa.concat_arrays(
        [
            pa.array(world.d_id[plan.bl_entity[plan.bl_kind == 0]]).cast(pa.string()),
            ip_str.take(pa.array(plan.bl_entity[plan.bl_kind == 1])),
            pa.array(world.m_id[plan.bl_entity[plan.bl_kind == 2]]).cast(pa.string()),
            pa.array(world.m_id[plan.bl_entity[plan.bl_kind == 3]]).cast(pa.string()),
        ]
    )
    kind = np.sort(plan.bl_kind, kind="stable")
    order = np.argsort(plan.bl_kind, kind="stable")
    writer.write(
        "blacklist_entries",
        {
            "id": pa.array(np.arange(1, len(kind) + 1, dtype=np.int64)),
            "kind": _cat(kind, BL_KINDS),
            "value": values,
            "reason": pa.array(BL_REASONS).take(pa.array(kind)),
            "added_by": _cat(rng.integers(0, len(BL_ADDED_BY), len(kind)), BL_ADDED_BY),
            "added_at": _ts(plan.bl_added[order]),
            "expires_at": _ts(plan.bl_expires[order], null=plan.bl_expires[order] < 0),
            "removed_by": pa.nulls(len(kind), pa.string()),  # generated entries expire, none is ended
        },
    )
    return ip_str


def _block_rows(world: World, plan: FraudPlan, lo: int, hi: int, n_tx: np.ndarray, cdf: np.ndarray) -> Rows:
    rng = np.random.default_rng([world.cfg.seed, 2, lo])
    users = np.repeat(np.arange(lo, hi), n_tx[lo:hi])
    parts = [habit_rows(world, users, habit_times(world, users, cdf, rng), rng)]
    visits = np.flatnonzero((plan.visit_user >= lo) & (plan.visit_user < hi))
    if len(visits):
        parts.append(visit_rows(world, plan, visits, rng))
    episodes = np.flatnonzero((plan.ep_user >= lo) & (plan.ep_user < hi))
    if len(episodes):
        parts.append(expand(world, plan, episodes, rng))
    rows = Rows.concat(parts)
    span = world.cfg.end_us - world.cfg.start_us + 1
    order = np.argsort((rows.user - lo) * span + (rows.ts - world.cfg.start_us), kind="stable")
    rows = rows.take(order)
    mark_regular(world, rows)
    return rows


def _write_block(
    world: World, rows: Rows, first_id: int, first_hist_id: int, ip_str: pa.Array, writer: _Writer
) -> int:
    n = len(rows)
    tx_id = np.arange(first_id, first_id + n, dtype=np.int64)
    tx_id_arr = pa.array(tx_id)
    no_device = rows.device < 0
    no_ip = rows.ip < 0
    writer.write(
        "transactions",
        {
            "transaction_id": tx_id_arr,
            "idempotency_key": _join("gen-", tx_id_arr.cast(pa.string())),
            "user_id": pa.array(rows.user + 1),
            "account_id": pa.array(rows.account),
            "merchant_id": pa.array(world.m_id[rows.merchant]),
            "device_id": pa.array(world.d_id[np.maximum(rows.device, 0)], mask=no_device),
            "ip": ip_str.take(pa.array(np.maximum(rows.ip, 0), mask=no_ip)),
            "amount": pa.array(rows.amount),
            "currency": _cat(ref.CURRENCY_OF_COUNTRY[world.u_country[rows.user]], ref.CURRENCIES),
            "channel": _cat(rows.channel, ref.CHANNELS),
            "country": _cat(rows.country, ref.COUNTRIES),
            "lat": pa.array(np.round(rows.lat, 5)),
            "lon": pa.array(np.round(rows.lon, 5)),
            "created_at": _ts(rows.ts),
        },
    )
    fraud = np.flatnonzero(rows.fraud != LEGIT)
    rng = np.random.default_rng([world.cfg.seed, 4, first_id])
    kind = rows.fraud[fraud]
    # Chargebacks and confirmations arrive days to weeks later; card testing is noticed sooner.
    delay_days = np.clip(rng.lognormal(np.log(12.0), 0.7, len(fraud)), 1.0, 120.0)
    delay_days[kind == 0] *= 0.4
    delay = (np.maximum(delay_days, 1.0) * DAY_US).astype(np.int64)
    writer.write(
        "fraud_labels",
        {
            "transaction_id": pa.array(tx_id[fraud]),
            "is_fraud": pa.array(np.ones(len(fraud), dtype=bool)),
            "fraud_type": _cat(kind, FRAUD_TYPES),
            "labeled_at": _ts(rows.ts[fraud] + delay),
            "source": _cat(np.full(len(fraud), 2), ("chargeback", "analyst", "generator")),
        },
    )
    # device_ip_history: first sighting of each (user, device, IP); pairs the user already had
    # before the window are dated from when the device (or the user) first appeared.
    seen = np.flatnonzero(~no_device & ~no_ip)
    u, d, ip = rows.user[seen], rows.device[seen], rows.ip[seen]
    when = np.where(rows.regular[seen], np.maximum(world.d_first_seen[d], world.u_created[u]), rows.ts[seen])
    order = np.lexsort((when, ip, d, u))
    u, d, ip, when = u[order], d[order], ip[order], when[order]
    first = np.ones(len(u), dtype=bool)
    first[1:] = (u[1:] != u[:-1]) | (d[1:] != d[:-1]) | (ip[1:] != ip[:-1])
    u, d, ip, when = u[first], d[first], ip[first], when[first]
    order = np.lexsort((d, when, u))
    u, d, ip, when = u[order], d[order], ip[order], when[order]
    writer.write(
        "device_ip_history",
        {
            "id": pa.array(np.arange(first_hist_id, first_hist_id + len(u), dtype=np.int64)),
            "device_id": pa.array(world.d_id[d]),
            "user_id": pa.array(u + 1),
            "ip": ip_str.take(pa.array(ip)),
            "country": _cat(world.ip_country[ip], ref.COUNTRIES),
            "seen_at": _ts(when),
        },
    )
    return len(u)


def _legit_counts(world: World, n_legit: int) -> np.ndarray:
    """Honest transactions per user: heavy-tailed activity, scaled by segment and time active."""
    rng = np.random.default_rng([world.cfg.seed, 6])
    active = (world.cfg.days - world.u_first_day) / world.cfg.days
    weight = (
        rng.lognormal(0.0, 0.8, world.n_users) * ref.SEGMENT_RATE[world.u_segment] * np.maximum(active, 0)
    )
    weight[world.u_first_day >= world.cfg.days] = 0.0
    return rng.multinomial(n_legit, weight / weight.sum()).astype(np.int64)


def generate(config: GenerateConfig, out_dir: Path, progress: bool = True) -> GenerateSummary:
    """Write the synthetic dataset for ``config`` as Parquet tables under ``out_dir``.

    Tables (one ``<table>.parquet`` each, names and columns of :mod:`vigil.db.models`): users,
    accounts, merchants, devices, device_ip_history, transactions, fraud_labels, blacklist_entries;
    plus ``manifest.json`` (the config and row counts). Output is byte-identical for the same
    config. Unless ``config.validate`` is false the output is checked with
    :func:`training.quality.validate_dataset`; a failed check raises :class:`DataQualityError`.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = config.fraud_counts()
    world = build_world(config)
    plan = plan_fraud(world, counts)
    n_legit = config.transactions - config.fraud_transactions - len(plan.visit_user)
    if n_legit < 0:
        raise ValueError("too few transactions for the requested fraud volume")
    n_tx = _legit_counts(world, n_legit)
    cdf = day_cdf(world)
    writer = _Writer(out_dir)
    try:
        ip_str = _static_tables(world, plan, writer)
        next_id, next_hist = 1, 1
        with tqdm(
            total=config.transactions, unit="tx", unit_scale=True, disable=not progress, desc="generate"
        ) as bar:
            for lo in range(0, world.n_users, USERS_PER_BLOCK):
                hi = min(lo + USERS_PER_BLOCK, world.n_users)
                rows = _block_rows(world, plan, lo, hi, n_tx, cdf)
                next_hist += _write_block(world, rows, next_id, next_hist, ip_str, writer)
                next_id += len(rows)
                bar.update(len(rows))
    finally:
        writer.close()
    fraud_by_type = {t: counts[t] for t in FRAUD_TYPES}
    manifest = {
        "generator": "training.generate",
        "config": {
            "users": config.users,
            "transactions": config.transactions,
            "seed": config.seed,
            "fraud_rate": config.fraud_rate,
            "fraud_rate_band": list(config.fraud_rate_band),
            "start": config.start.isoformat(),
            "days": config.days,
            "fraud_mix": {t: float(config.fraud_mix.get(t, 0.0)) for t in FRAUD_TYPES},
            "structuring_threshold": config.structuring_threshold,
        },
        "rows": dict(writer.rows),
        "fraud_by_type": fraud_by_type,
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    report = None
    if config.validate:
        from training.quality import validate_dataset

        report = validate_dataset(out_dir)
        if not report.ok:
            raise DataQualityError(f"generated data failed quality checks:\n{report.format()}")
    return GenerateSummary(
        out_dir=out_dir,
        rows=dict(writer.rows),
        fraud_by_type=fraud_by_type,
        seconds=time.perf_counter() - started,
        quality=report,
    )


def split_at(source: Path, target: Path, cutoff: Any) -> int:
    """Copy a generated dataset into ``target`` keeping only the transactions before ``cutoff``
    (and the labels known before it); every other table is copied whole. Returns the number of
    transactions held back: what a replay can then send as new traffic."""
    target.mkdir(parents=True, exist_ok=True)
    tx_table = pq.read_table(source / "transactions.parquet")
    tx = tx_table.to_pandas()
    early = (tx["created_at"] < cutoff).to_numpy()
    pq.write_table(
        pa.Table.from_pandas(tx[early], schema=tx_table.schema, preserve_index=False),
        target / "transactions.parquet",
    )
    labels_table = pq.read_table(source / "fraud_labels.parquet")
    labels = labels_table.to_pandas()
    known = labels["transaction_id"].isin(tx.loc[early, "transaction_id"]) & (labels["labeled_at"] < cutoff)
    pq.write_table(
        pa.Table.from_pandas(labels[known.to_numpy()], schema=labels_table.schema, preserve_index=False),
        target / "fraud_labels.parquet",
    )
    for path in source.glob("*.parquet"):
        if path.name not in {"transactions.parquet", "fraud_labels.parquet"}:
            (target / path.name).write_bytes(path.read_bytes())
    return int((~early).sum())
