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
    """Bulk-load Parquet tables into the configured database (COPY on PostgreSQL), all or nothing."""
    from vigil.db.bulk import bulk_load
    from vigil.errors import VigilError

    settings = _settings()
    try:
        loaded = asyncio.run(bulk_load(settings.effective_database_url, path))
    except VigilError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    for table, rows in loaded.items():
        typer.echo(f"{table:>20}: {rows:,} rows")


@app.command("up")
def up() -> None:
    """Start Vigil in the foreground: migrate the database, start a local Ray bound to 127.0.0.1
    (or join VIGIL_RAY_ADDRESS) and deploy ray_config.yaml. Ctrl-C stops everything."""
    from deployments.launch import run_foreground
    from vigil.db.migrate import upgrade

    settings = _settings()
    upgrade(settings.effective_database_url)
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
