"""The ``vigil`` command line. Heavy imports (Ray, models) happen inside the commands."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

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


models_app = typer.Typer(help="The model registry: list versions, promote a champion.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _duration(text: str) -> timedelta:
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise typer.BadParameter(f"expected a duration like 7d, 12h or 30m, got {text!r}")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


@app.command("train")
def train_cmd(
    data: Annotated[Path, typer.Option(help="A `vigil generate` directory.")] = Path("data"),
    transactions: Annotated[
        Path | None, typer.Option(help="Or: any transactions table (CSV/Parquet) with a label column.")
    ] = None,
    map_: Annotated[
        str | None,
        typer.Option("--map", help="Column mapping for --transactions: user_id=COL,merchant_id=COL,..."),
    ] = None,
    label_delay: Annotated[
        str, typer.Option(help="How late labels become known, e.g. 7d (also the split gap).")
    ] = "14d",
    train_until: Annotated[
        str | None, typer.Option(help="Use only rows before this date (ISO, UTC).")
    ] = None,
    algorithm: Annotated[str, typer.Option(help="xgboost | lightgbm | random_forest.")] = "xgboost",
    detector: Annotated[
        str, typer.Option(help="isolation_forest | one_class_svm | autoencoder | none.")
    ] = "isolation_forest",
    ray: Annotated[
        bool, typer.Option(help="Fit XGBoost on Ray Train (XGBoostTrainer) instead of in-process.")
    ] = False,
    promote_champion: Annotated[
        bool, typer.Option("--promote/--no-promote", help="Make the new models the champion.")
    ] = True,
    zero_day_type: Annotated[
        str | None, typer.Option(help="Also run the zero-day check holding out this fraud type.")
    ] = None,
) -> None:
    """Features → train → evaluate (time split with a label-delay gap) → register in MLflow →
    promote to champion. Writes a Markdown + PNG report and the test window's scores
    (test_scores.parquet) per model under <home>/runs/. The models record the label delay they
    were trained with, which `vigil score` then uses."""
    from training.dataset import dataset_table, load_table, parse_mapping
    from training.pipeline import train_and_promote

    settings = _settings()
    delay = _duration(label_delay)
    try:
        if transactions is not None:
            table = load_table(
                transactions, mapping=parse_mapping(map_), label_delay=delay, until=train_until
            )
        else:
            if train_until is not None:
                raise typer.BadParameter("--train-until works with --transactions")
            table = dataset_table(data)
        result = train_and_promote(
            table,
            tracking_uri=settings.tracking_uri,
            run_dir=settings.home / "runs",
            algorithm=algorithm,
            detector=None if detector == "none" else detector,
            label_delay=delay,
            use_ray=ray,
            promote_champion=promote_champion,
            zero_day_type=zero_day_type,
        )
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for outcome in (result.supervised, result.anomaly):
        if outcome is None:
            continue
        m = outcome.evaluation.metrics
        reg = outcome.registered
        typer.echo(
            f"{outcome.model.algorithm:>16}: PR-AUC {m.get('pr_auc', float('nan')):.3f}  "
            f"ROC-AUC {m.get('roc_auc', float('nan')):.3f}  recall@1%FPR {m.get('recall_at_1pct_fpr', float('nan')):.3f}"
            f"  -> {reg.name} v{reg.version}  report: {outcome.report_path}"
        )


@app.command("features")
def features_cmd(
    data: Annotated[Path, typer.Option(help="A `vigil generate` directory.")] = Path("data"),
    out: Annotated[Path, typer.Option(help="Feature Parquet to write (what `vigil tune` reads).")] = Path(
        "data/features.parquet"
    ),
) -> None:
    """Compute the point-in-time features of a dataset (offline execution of the online
    definitions) with labels, event and label times, as one Parquet file."""
    from training.dataset import matrix_from_dataset
    from training.models.data import save_feature_matrix

    _settings()
    try:
        matrix = matrix_from_dataset(data)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    save_feature_matrix(matrix, out)
    typer.echo(
        f"{len(matrix):,} rows x {len(matrix.feature_names)} features ({matrix.feature_version}) -> {out}"
    )


@app.command(
    "tune",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def tune_cmd(
    ctx: typer.Context,
    data: Annotated[
        Path, typer.Option(help="A `vigil generate` directory or a feature Parquet file.")
    ] = Path("data"),
) -> None:
    """Ray Tune (ASHA) search over XGBoost / LightGBM / Random Forest, then train, evaluate and
    register the best. Extra options go to `python -m training.tune` (see its --help), e.g.
    `vigil tune --data data -- --num-samples 8 --promote`. Joins RAY_ADDRESS when set."""
    from training.tune import main as tune_main

    settings = _settings()
    features = data
    if data.is_dir():
        features = settings.home / "features" / f"{data.name}.parquet"
        features_cmd(data=data, out=features)
    argv = [
        "--data",
        str(features),
        "--run-dir",
        str(settings.home / "runs"),
        "--tracking-uri",
        settings.tracking_uri,
    ]
    raise typer.Exit(tune_main([*argv, *ctx.args]))


@app.command("score")
def score_cmd(
    out: Annotated[Path, typer.Option(help="Output Parquet: transaction_id and score.")],
    transactions: Annotated[
        Path | None,
        typer.Option(help="Transactions table (CSV/Parquet) to score, read as vigil train reads it."),
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Or: a `vigil generate` directory.")] = None,
    model: Annotated[
        str, typer.Option(help="'champion' or a version number of fraud-supervised.")
    ] = "champion",
    map_: Annotated[str | None, typer.Option("--map", help="Column mapping, as for vigil train.")] = None,
    label_delay: Annotated[
        str | None,
        typer.Option(
            help="How late labels become known, e.g. 7d. Default: the delay the model was trained with; "
            "required for models registered without that record."
        ),
    ] = None,
    label_delay_override: Annotated[
        bool,
        typer.Option(
            "--label-delay-override",
            help="Score with a --label-delay other than the model's (its label-based features are then skewed).",
        ),
    ] = False,
) -> None:
    """Batch-score every row (backtesting) on the features the model was trained on: the table is
    read as `vigil train` reads it (same --map, same label history: the label column with the
    model's label delay, or a labeled_at column). The table needs its label column when the model
    uses label-based features; labels count only once known, so scoring later weeks is honest.
    The output keeps the table's id column as transaction_id and adds score (higher = riskier)."""
    from mlflow.exceptions import MlflowException

    from training.dataset import parse_mapping
    from training.scoring import load_for_scoring, score_table
    from vigil.models.registry import load_champion, load_version

    settings = _settings()
    name = "fraud-supervised"
    try:
        if (transactions is None) == (data is None):
            raise ValueError("pass exactly one of --transactions and --data")
        if data is not None and map_ is not None:
            raise ValueError("--map works with --transactions")
        mapping = parse_mapping(map_)
        delay = _duration(label_delay) if label_delay is not None else None
        loaded = (
            load_champion(name, tracking_uri=settings.tracking_uri)
            if model == "champion"
            else load_version(name, model, tracking_uri=settings.tracking_uri)
        )
        table, warnings = load_for_scoring(
            loaded,
            transactions=transactions,
            data=data,
            mapping=mapping,
            label_delay=delay,
            override=label_delay_override,
        )
        for warning in warnings:
            typer.echo(f"warning: {warning}", err=True)
        scores = score_table(loaded, table)
    except (FileNotFoundError, ValueError, LookupError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except MlflowException as exc:
        typer.echo(f"error: no model {name} {model} in the registry ({exc.message})", err=True)
        raise typer.Exit(2) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(out, index=False)
    typer.echo(f"scored {len(scores):,} rows with {name} v{loaded.version} -> {out}")


@models_app.command("list")
def models_list() -> None:
    """Every registered model version with its aliases and key metrics."""
    from vigil.models.registry import list_models

    for info in list_models(tracking_uri=_settings().tracking_uri):
        typer.echo(str(info))


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="Registered model name, e.g. fraud-supervised.")],
    version: Annotated[str, typer.Argument(help="Version to make the champion.")],
) -> None:
    """Point the `champion` alias at NAME VERSION (serving reloads it on reconfigure)."""
    from vigil.models.registry import promote

    promote(name, version, tracking_uri=_settings().tracking_uri)
    typer.echo(f"{name} v{version} is now the champion")


@app.command("replay")
def replay_cmd(
    data: Annotated[
        Path | None, typer.Option(help="A `vigil generate` directory (default: the demo data).")
    ] = None,
    rate: Annotated[
        float, typer.Option(min=0, help="Transactions per second; 0 = as fast as possible.")
    ] = 50,
    limit: Annotated[int, typer.Option(min=1, help="How many transactions to send.")] = 2_000,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Requests in flight.")] = 16,
    after: Annotated[
        str | None,
        typer.Option(
            help="Only transactions from this time on (ISO); default: the last day, which `vigil up` holds back."
        ),
    ] = None,
    url: Annotated[str | None, typer.Option(help="Base URL; default: the local `vigil up`.")] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="VIGIL_API_KEY", help="API key; default: the dev key.")
    ] = None,
) -> None:
    """Stream generated transactions through the live service and print decision counts as they
    come in. Retries use the same idempotency keys, so a replay can be repeated safely."""
    import pandas as pd

    from vigil.gateway.auth import load_key_store
    from vigil.replay import dataset_requests, replay

    settings = _settings()
    source = data or settings.home / "demo-data"
    if not (source / "transactions.parquet").exists():
        typer.echo(f"error: no dataset in {source} (run `vigil generate` or `vigil up` first)", err=True)
        raise typer.Exit(2)
    if after is None:
        start = _demo_cutoff(source)
    else:
        start = pd.Timestamp(after, tz="UTC") if pd.Timestamp(after).tzinfo is None else pd.Timestamp(after)
    key = api_key or load_key_store(settings.home).dev_key
    if not key:
        typer.echo("error: pass --api-key (VIGIL_API_KEYS is set, so there is no dev key)", err=True)
        raise typer.Exit(2)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    bodies = dataset_requests(source, after=start, limit=limit)
    base = url or f"http://{settings.http_host}:{settings.http_port}"
    typer.echo(f"replaying {len(bodies):,} transactions after {start} to {base} at {rate or 'max'}/s")
    summary = asyncio.run(
        replay(
            base,
            key,
            bodies,
            concurrency=concurrency,
            rate=rate or None,
            on_progress=lambda s: typer.echo(s.line()),
        )
    )
    typer.echo("done: " + summary.line())
    if summary.latencies_ms:
        lat = pd.Series(summary.latencies_ms)
        typer.echo(
            f"latency ms: p50 {lat.quantile(0.5):.1f}  p95 {lat.quantile(0.95):.1f}  p99 {lat.quantile(0.99):.1f}"
        )


#: The demo's last day is not loaded: `vigil replay` sends it as new traffic.
DEMO_HOLDOUT_DAYS = 1


def _ensure_demo_data(settings: Settings) -> None:
    """Load the demo history when the database has no users yet (a fresh `make run`)."""
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
    _load(_demo_history(settings), settings)


def _demo_dataset(settings: Settings) -> Path:
    out = settings.home / "demo-data"
    users, transactions = settings.demo_users, settings.demo_transactions
    manifest = out / "manifest.json"
    if not manifest.exists():
        from training.generate import GenerateConfig, generate

        typer.echo(f"generating the demo dataset ({users:,} users, {transactions:,} transactions)")
        generate(GenerateConfig(users=users, transactions=transactions, seed=7), out, progress=True)
        return out
    config = json.loads(manifest.read_text()).get("config", {})
    held = (config.get("users"), config.get("transactions"))
    if held != (users, transactions):
        size = " and ".join(f"{n:,}" if isinstance(n, int) else "?" for n in held)
        raise typer.BadParameter(
            f"{out} holds a demo dataset of {size} users and transactions, not the {users:,} and "
            f"{transactions:,} configured (VIGIL_DEMO_USERS, VIGIL_DEMO_TRANSACTIONS): use another VIGIL_HOME"
        )
    return out


def _demo_cutoff(data: Path) -> Any:
    import pandas as pd

    return pd.read_parquet(data / "transactions.parquet", columns=["created_at"])[
        "created_at"
    ].max() - pd.Timedelta(days=DEMO_HOLDOUT_DAYS)


def _demo_history(settings: Settings) -> Path:
    """The demo dataset without its last day: what the database and the models start from. The
    held-back day is what `vigil replay` sends as new traffic."""
    history = settings.home / "demo-history"
    if not (history / "transactions.parquet").exists():
        from training.generate import split_at

        data = _demo_dataset(settings)
        split_at(data, history, _demo_cutoff(data))
    return history


def _ensure_champion(settings: Settings) -> None:
    """Train and promote small default models on the demo history when the registry has no
    champion trained on this code's features (serving refuses a model built on another
    FEATURE_VERSION, so an old champion would stop the scorers from starting)."""
    from vigil.features import FEATURE_VERSION
    from vigil.models.registry import list_models

    wanted = {"fraud-supervised", "fraud-anomaly"}
    champions = [m for m in list_models(tracking_uri=settings.tracking_uri) if "champion" in m.aliases]
    if wanted <= {m.name for m in champions if m.feature_version == FEATURE_VERSION}:
        return
    from training.dataset import matrix_from_dataset
    from training.pipeline import train_and_promote

    stale = sorted(f"{m.name} v{m.version}" for m in champions if m.feature_version != FEATURE_VERSION)
    if stale:
        typer.echo(
            f"champion {', '.join(stale)} was trained on other feature definitions than {FEATURE_VERSION}:"
            " retraining the default models on the demo dataset"
        )
    else:
        typer.echo("no champion model in the registry: training the default models on the demo dataset")
    result = train_and_promote(
        matrix_from_dataset(_demo_history(settings)),
        tracking_uri=settings.tracking_uri,
        run_dir=settings.home / "runs",
    )
    pr_auc = result.supervised.evaluation.metrics.get("pr_auc", float("nan"))
    typer.echo(f"champion: fraud-supervised, PR-AUC {pr_auc:.3f} on the held-out weeks")


@app.command("up")
def up(
    demo: Annotated[bool, typer.Option(help="Load the demo dataset into an empty database first.")] = True,
) -> None:
    """Start Vigil in the foreground: migrate the database (loading the demo dataset into an empty
    one), start a local Ray bound to 127.0.0.1 (or join VIGIL_RAY_ADDRESS) and deploy
    ray_config.yaml. Ctrl-C stops everything."""
    from deployments.launch import ServeConfigError, run_foreground
    from vigil.db.migrate import upgrade

    settings = _settings()
    # Ray's workers inherit the environment: give them an absolute home, whatever their cwd.
    os.environ["VIGIL_HOME"] = str(settings.home.resolve())
    settings = _settings()
    upgrade(settings.effective_database_url)
    if demo:
        _ensure_demo_data(settings)
    _ensure_champion(settings)
    base = f"http://{settings.http_host}:{settings.http_port}"

    from vigil.gateway.auth import load_key_store

    dev_key = load_key_store(settings.home).dev_key

    def ready() -> None:
        if dev_key:
            typer.echo(f"\nDevelopment API key (role admin; set VIGIL_API_KEYS for real keys):\n  {dev_key}")
        typer.echo(
            f"\nVigil is up.\n  API:    {base}/v1\n  Docs:   {base}/docs\n  Health: {base}/healthz\n"
            f"  Database: {_redacted(settings.effective_database_url)}\nPress Ctrl-C to stop.\n",
        )
        sys.stdout.flush()

    try:
        run_foreground(settings, on_ready=ready)
    except ServeConfigError as exc:
        typer.echo(f"error: {settings.serve_config}: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo("Vigil stopped.")


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    app()
