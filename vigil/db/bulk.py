"""Bulk-load Parquet tables (as written by ``vigil generate``) into the configured database.

PostgreSQL: each Parquet record batch is streamed as CSV into ``COPY … FROM STDIN`` over the
asyncpg connection, the fastest path PostgreSQL offers. SQLite: chunked ``executemany``.
Tables load in foreign-key order in ONE database transaction, so a failure loads nothing.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel
from tqdm import tqdm

import vigil.db.models  # noqa: F401  (registers the tables)
from vigil.db.engine import create_engine, is_sqlite
from vigil.db.models import TABLE_ORDER
from vigil.errors import InvalidRequest

BATCH_ROWS = 200_000

#: Errors that mean "the data is wrong" (constraint or type violations), as opposed to bugs.
_REJECTED: tuple[type[BaseException], ...] = (
    sa.exc.IntegrityError,
    sa.exc.DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError,
    asyncpg.exceptions.DataError,
)


def _parquet_path(data_dir: Path, table: str) -> Path | None:
    for candidate in (data_dir / f"{table}.parquet", data_dir / table):
        if candidate.exists():
            return candidate
    return None


def _columns(table: sa.Table, schema: pa.Schema) -> list[str]:
    known = set(table.columns.keys())
    unknown = [name for name in schema.names if name not in known]
    if unknown:
        raise InvalidRequest(f"{table.name}: columns {unknown} are not in the data model")
    return list(schema.names)


async def _copy_postgres(pg: asyncpg.Connection, table: sa.Table, dataset: pq.ParquetFile, bar: tqdm) -> None:
    columns = _columns(table, dataset.schema_arrow)
    for batch in dataset.iter_batches(batch_size=BATCH_ROWS):
        buffer = io.BytesIO()
        pacsv.write_csv(pa.Table.from_batches([batch]), buffer, pacsv.WriteOptions(include_header=False))
        buffer.seek(0)
        await pg.copy_to_table(table.name, source=buffer, columns=columns, format="csv")
        bar.update(batch.num_rows)


async def _insert_sqlite(conn: AsyncConnection, table: sa.Table, dataset: pq.ParquetFile, bar: tqdm) -> None:
    columns = _columns(table, dataset.schema_arrow)
    for batch in dataset.iter_batches(batch_size=50_000, columns=columns):
        await conn.execute(table.insert(), batch.to_pylist())
        bar.update(batch.num_rows)


async def _move_sequences(pg: asyncpg.Connection, tables: Iterable[sa.Table]) -> None:
    """Make PostgreSQL's serial sequences continue after the loaded ids."""
    for table in tables:
        for column in table.primary_key.columns:
            if column.autoincrement is True:
                await pg.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                    f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"
                )


async def bulk_load(url: str, data_dir: Path, *, progress: bool = True) -> dict[str, int]:
    """Load every ``<table>.parquet`` found in ``data_dir``; returns rows loaded per table.

    The target tables must exist (run the migrations first) and should be empty: a row whose key
    exists already fails the whole load, which then leaves the database unchanged.
    """
    found = {name: path for name in TABLE_ORDER if (path := _parquet_path(data_dir, name))}
    if not found:
        raise InvalidRequest(f"no <table>.parquet files from the data model in {data_dir}")
    metadata = SQLModel.metadata
    files = {name: pq.ParquetFile(path) for name, path in found.items()}
    total = sum(f.metadata.num_rows for f in files.values())
    loaded: dict[str, int] = {}
    engine = create_engine(url)
    sqlite = is_sqlite(url)
    try:
        # One transaction around everything. On PostgreSQL it is asyncpg's own: COPY goes
        # through the driver connection, under SQLAlchemy's lazily started transaction.
        async with engine.connect() as conn:
            pg: asyncpg.Connection | None = None
            if not sqlite:
                pg = (await conn.get_raw_connection()).driver_connection
            async with _transaction(conn, pg):
                with tqdm(total=total, unit="row", unit_scale=True, disable=not progress, desc="load") as bar:
                    for name, dataset in files.items():
                        bar.set_postfix_str(name)
                        table = metadata.tables[name]
                        try:
                            if pg is None:
                                await _insert_sqlite(conn, table, dataset, bar)
                            else:
                                await _copy_postgres(pg, table, dataset, bar)
                        except _REJECTED as exc:
                            detail = " ".join(str(getattr(exc, "orig", None) or exc).split())
                            raise InvalidRequest(f"{name}: {detail} (nothing was loaded)") from exc
                        loaded[name] = dataset.metadata.num_rows
                if pg is not None:
                    await _move_sequences(pg, (metadata.tables[name] for name in files))
    finally:
        await engine.dispose()
    return loaded


@asynccontextmanager
async def _transaction(conn: AsyncConnection, pg: asyncpg.Connection | None) -> AsyncIterator[None]:
    if pg is not None:
        async with pg.transaction():
            yield
    else:
        async with conn.begin():
            yield
