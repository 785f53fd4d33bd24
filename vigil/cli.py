"""The ``vigil`` command line. Heavy imports (Ray, models) happen inside the commands."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from vigil.settings import Settings, get_settings

app = typer.Typer(
    help="Vigil: real-time fraud detection and prevention on Ray. "
    "Settings come from VIGIL_* environment variables (see README).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema and data: migrate, inspect, bulk-load.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _settings() -> Settings:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings.home.mkdir(parents=True, exist_ok=True)
    return settings


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Create or migrate the configured database up to REVISION (default: the newest)."""
    from vigil.db.migrate import upgrade

    settings = _settings()
    upgrade(settings.effective_database_url, revision)
    typer.echo(f"database at {revision}: {_redacted(settings.effective_database_url)}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision; 'base' drops all.")]) -> None:
    """Migrate the configured database down to REVISION."""
    from vigil.db.migrate import downgrade

    settings = _settings()
    downgrade(settings.effective_database_url, revision)
    typer.echo(f"database at {revision}")


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the configured database."""
    from vigil.db.migrate import current

    current(_settings().effective_database_url)


@db_app.command("load")
def db_load(
    path: Annotated[Path, typer.Argument(help="Directory of <table>.parquet files (vigil generate --out).")],
) -> None:
    """Bulk-load Parquet tables into the configured database (COPY on PostgreSQL), all or nothing.
    The schema is migrated first; the tables should be empty."""
    _load(path, _settings())


def _load(path: Path, settings: Settings) -> None:
    from vigil.db.bulk import bulk_load
    from vigil.db.migrate import upgrade
    from vigil.errors import VigilError

    upgrade(settings.effective_database_url)
    try:
        loaded = asyncio.run(bulk_load(settings.effective_database_url, path))
    except VigilError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    for table, rows in loaded.items():
        typer.echo(f"{table:>20}: {rows:,} rows")


@app.command("generate")
def generate_cmd(
    out: Annotated[Path, typer.Option(help="Directory for the Parquet tables (created).")] = Path("data"),
    users: Annotated[int, typer.Option(min=1, help="Number of users.")] = 50_000,
    transactions: Annotated[
        int, typer.Option(min=1, help="Number of transactions, fraud included.")
    ] = 5_000_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives byte-identical files.")] = 7,
    fraud_rate: Annotated[float, typer.Option(help="Share of fraudulent transactions (0.03-0.05).")] = 0.04,
    days: Annotated[int, typer.Option(min=1, help="Days of history.")] = 90,
    start: Annotated[str | None, typer.Option(help="First day, ISO date/time in UTC.")] = None,
    fraud_mix: Annotated[
        str | None, typer.Option(help="Relative weights per fraud type, e.g. high_velocity=2,structuring=0.")
    ] = None,
    structuring_threshold: Annotated[
        float, typer.Option(help="Reporting threshold that structuring stays under.")
    ] = 10_000,
    validate: Annotated[bool, typer.Option(help="Run the data-quality check on the output.")] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    load_db: Annotated[
        bool, typer.Option("--load-db", help="Then bulk-load the tables into the configured database.")
    ] = False,
) -> None:
    """Write a synthetic, labelled dataset (users, accounts, merchants, devices, IP history,
    transactions with 3-5% fraud of six types, late-arriving labels, blacklist) as Parquet."""
    from datetime import UTC, datetime

    from training.generate import DataQualityError, GenerateConfig, generate

    settings = _settings()
    options: dict[str, object] = {
        "users": users, "transactions": transactions, "seed": seed, "fraud_rate": fraud_rate, "days": days,
        "structuring_threshold": structuring_threshold, "validate": validate,
    }  # fmt: skip
    if start is not None:
        parsed = datetime.fromisoformat(start)
        options["start"] = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if fraud_mix is not None:
        options["fraud_mix"] = _parse_pairs(fraud_mix, float)
    try:
        config = GenerateConfig(**options)  # type: ignore[arg-type]
        summary = generate(config, out, progress=progress)
    except (ValueError, DataQualityError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"wrote {summary.rows.get('transactions', 0):,} transactions to {out} in {summary.seconds:.1f} s; "
        f"fraud rate {summary.fraud_rate:.2%}"
    )
    if summary.quality is not None:
        typer.echo(summary.quality.format())
    if load_db:
        _load(out, settings)


@app.command("validate")
def validate_cmd(path: Annotated[Path, typer.Argument(help="Directory of Parquet tables.")]) -> None:
    """Run the data-quality checks (schema, ranges, referential integrity, time order, fraud rates)."""
    from training.quality import validate_dataset

    if not path.is_dir():
        typer.echo(f"error: {path} is not a directory", err=True)
        raise typer.Exit(2)
    report = validate_dataset(path)
    typer.echo(report.format())
    raise typer.Exit(0 if report.ok else 1)


def _parse_pairs(text: str, kind: type) -> dict[str, object]:
    pairs: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected key=value, got {part!r}")
        try:
            pairs[key.strip()] = kind(value.strip())
        except ValueError:
            raise typer.BadParameter(f"{key.strip()}: {value.strip()!r} is not a {kind.__name__}") from None
    return pairs


DEMO_USERS, DEMO_TRANSACTIONS = 2_000, 100_000


def _ensure_demo_data(settings: Settings) -> None:
    """Load the small demo dataset when the database has no users yet (a fresh `make run`)."""
    from vigil.db.engine import create_engine, session_factory
    from vigil.db.models import User
    from vigil.db.repository import count_rows

    async def users() -> int:
        engine = create_engine(settings.effective_database_url)
        try:
            async with session_factory(engine)() as session:
                return await count_rows(session, User)
        finally:
            await engine.dispose()

    if asyncio.run(users()) > 0:
        return
    from training.generate import GenerateConfig, generate

    out = settings.home / "demo-data"
    typer.echo(
        f"empty database: generating the demo dataset ({DEMO_USERS:,} users, {DEMO_TRANSACTIONS:,} transactions)"
    )
    generate(GenerateConfig(users=DEMO_USERS, transactions=DEMO_TRANSACTIONS, seed=7), out, progress=True)
    _load(out, settings)


@app.command("up")
def up(
    demo: Annotated[bool, typer.Option(help="Load the demo dataset into an empty database first.")] = True,
) -> None:
    """Start Vigil in the foreground: migrate the database (loading the demo dataset into an empty
    one), start a local Ray bound to 127.0.0.1 (or join VIGIL_RAY_ADDRESS) and deploy
    ray_config.yaml. Ctrl-C stops everything."""
    from deployments.launch import run_foreground
    from vigil.db.migrate import upgrade

    settings = _settings()
    upgrade(settings.effective_database_url)
    if demo:
        _ensure_demo_data(settings)
    base = f"http://{settings.http_host}:{settings.http_port}"

    def ready() -> None:
        typer.echo(
            f"\nVigil is up.\n  API:    {base}/v1\n  Docs:   {base}/docs\n  Health: {base}/healthz\n"
            f"  Database: {_redacted(settings.effective_database_url)}\nPress Ctrl-C to stop.\n",
        )
        sys.stdout.flush()

    run_foreground(settings, on_ready=ready)
    typer.echo("Vigil stopped.")


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    app()
