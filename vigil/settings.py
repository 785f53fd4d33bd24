"""Settings from the environment (``VIGIL_*``), with embedded defaults that work on a fresh machine.

Nothing here is built at import time: call :func:`get_settings` (or construct :class:`Settings`)
where it is needed, e.g. in a Serve replica's ``__init__``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Vigil's configuration. Every field reads ``VIGIL_<NAME>``; the two URLs also read the
    conventional ``DATABASE_URL`` and ``REDIS_URL``."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore", frozen=True)

    home: Path = Field(
        default=Path("var"),
        description="Directory for the embedded database, models, logs and generated data.",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("VIGIL_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy async URL; default sqlite+aiosqlite:///<home>/vigil.db. "
        "postgresql://… is rewritten to postgresql+asyncpg://….",
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("VIGIL_REDIS_URL", "REDIS_URL"),
        description="Redis for event streams and rate limits; unset = in-process event bus.",
    )
    http_host: str = Field(default="127.0.0.1", description="Address the API's HTTP server binds.")
    http_port: int = Field(default=8000, ge=1, le=65535, description="Port the API answers on.")
    serve_direct_ingress: bool = Field(
        default=True,
        description="Local Ray only: the Ingress replica serves `http_port` itself (Serve's direct "
        "ingress, throughput-optimised mode: one process hop less per request) and Serve's "
        "HTTP proxy moves to `http_port + 1`; false = the proxy serves `http_port`.",
    )
    ray_address: str | None = Field(
        default=None,
        description="Ray cluster to join (e.g. ray://head:10001 or auto); unset = start a local Ray "
        "bound to 127.0.0.1.",
    )
    ray_num_cpus: int | None = Field(
        default=None, ge=1, description="CPUs a local Ray may use; unset = all of the machine's."
    )
    serve_config: Path = Field(
        default=Path("ray_config.yaml"), description="The Serve config that `vigil up` deploys."
    )
    log_level: str = Field(default="INFO", description="Log level of Vigil's own loggers.")
    demo_users: int = Field(
        default=2_000,
        ge=10,
        description="Users of the demo dataset that `vigil up` generates and loads into an empty "
        "database (kept in <home>/demo-data; another size needs another home).",
    )
    demo_transactions: int = Field(
        default=100_000, ge=1_000, description="Transactions of that demo dataset (90 simulated days)."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("VIGIL_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="Model registry; default sqlite:///<home>/mlflow.db with artifacts in <home>/mlruns.",
    )
    token_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Key that signs customer access tokens (HS256), at least 32 characters; every "
        "Ingress replica needs the same one. Unset = a random one generated once into "
        "<home>/token-secret (mode 0600), like the development API key.",
    )

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str | None) -> str | None:
        if url is None:
            return None
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+asyncpg://" + url[len(plain) :]
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
        return url

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force: the configured one, or a SQLite file under home."""
        return self.mlflow_tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def effective_database_url(self) -> str:
        """The database URL in force: the configured one, or the embedded SQLite file."""
        return self.database_url or f"sqlite+aiosqlite:///{(self.home / 'vigil.db').resolve()}"


def get_settings() -> Settings:
    """Read the settings from the environment now (a fresh object on every call)."""
    return Settings()
