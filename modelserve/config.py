"""Settings, read from ``MODELSERVE_*`` environment variables (or passed explicitly)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_BYTES = 32


class Settings(BaseSettings):
    """Everything the server, the CLI and the tests can configure.

    Nothing reads the environment at import time: build a ``Settings()`` where it is needed.
    """

    model_config = SettingsConfigDict(env_prefix="MODELSERVE_", extra="ignore")

    data_dir: Path = Field(default=Path(".modelserve"), description="Where local state lives.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; defaults to a SQLite file in the data dir. "
        "Use postgresql+psycopg://... for PostgreSQL.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        default=None,
        description="Server processes: 1 runs Uvicorn in one process, more run a Gunicorn master "
        "with that many Uvicorn workers, 'auto' one worker per CPU available. Unset: 1 for "
        "'modelserve serve', 'auto' for the packaged Gunicorn config "
        "(modelserve.server.gunicorn_conf).",
    )
    max_body_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, description="Largest JSON request body accepted."
    )
    max_upload_bytes: int = Field(
        default=512 * 1024 * 1024, ge=1024, description="Largest model artifact accepted."
    )
    sandbox_memory_bytes: int = Field(
        default=2 * 1024**3,
        ge=16 * 1024**2,
        description="Memory an uploaded artifact may take while the registration sandbox (a "
        "child process) opens and probes it, on top of the loader's own imports "
        "(RLIMIT_AS); beyond it the upload answers 422 artifact_limit_exceeded.",
    )
    sandbox_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Wall-clock time the registration sandbox may take to open and probe an "
        "artifact before it is killed (422 artifact_limit_exceeded).",
    )
    sandbox_cpu_seconds: int = Field(
        default=60,
        ge=1,
        description="CPU time the registration sandbox may use (RLIMIT_CPU).",
    )
    artifact_max_inflated_bytes: int = Field(
        default=1024**3,
        ge=1024,
        description="Most bytes a skops (zip) archive's members may declare in total; checked "
        "before anything is inflated (413 artifact_too_large).",
    )
    artifact_max_compression_ratio: float = Field(
        default=200.0,
        ge=1,
        description="Highest inflated/compressed ratio a skops archive may declare once it "
        "inflates to more than 16 MiB (413 artifact_too_large).",
    )
    max_batch_size: int = Field(
        default=1000, ge=1, description="Most instances accepted in one prediction request."
    )
    model_cache_size: int = Field(
        default=16, ge=1, description="Loaded model versions kept in memory per process."
    )
    inference_threads: int = Field(
        default=4, ge=1, description="Threads running model code, off the event loop."
    )
    docs_enabled: bool = True
    secret_key: SecretStr | None = Field(
        default=None,
        description="JWT signing key (32+ bytes). Unset: generated once into the data dir.",
    )
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_days: int = Field(default=30, ge=1, le=365)
    jwt_issuer: str = "modelserve"
    jwt_audience: str = "modelserve-api"
    open_registration: bool = False
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; none by default."
    )
    auth_cache_seconds: float = Field(
        default=2.0,
        ge=0.0,
        le=30.0,
        description="How long a process trusts what it read about a user or key (the bound on "
        "how fast disabling, revoking or a role change takes effect everywhere).",
    )
    registry_poll_seconds: float = Field(
        default=0.25,
        gt=0,
        le=5,
        description="How often a process checks the registry for changes (PostgreSQL also "
        "pushes them with NOTIFY; this is then only the fallback).",
    )
    warmup_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long an alias move or traffic change waits for every live server "
        "process to load and probe the version before giving up (nothing moves then).",
    )
    heartbeat_seconds: float = Field(
        default=1.0, gt=0, le=30, description="How often a server process says it is alive."
    )
    instance_ttl_seconds: float = Field(
        default=5.0,
        gt=0,
        description="A server process silent this long is presumed gone: moves stop waiting "
        "for it.",
    )
    prediction_log: bool = Field(
        default=True,
        description="Log every prediction. WARNING: false serves predictions unlogged; it exists "
        "only as the 'logging off' baseline of the throughput benchmark. Never turn it off in "
        "production.",
    )
    shadow_backlog: int = Field(
        default=256,
        ge=1,
        description="Shadow runs waiting per process; beyond it shadow runs are skipped (and "
        "counted), so a slow shadow version never holds or fails the callers.",
    )
    log_queue_size: int = Field(
        default=10_000,
        ge=1,
        description="Prediction-log records held in memory per process, waiting to be written; "
        "beyond it records go straight to the spill file.",
    )
    log_batch_size: int = Field(
        default=500, ge=1, le=10_000, description="Most records written in one transaction."
    )
    log_flush_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long a graceful shutdown spends writing queued records to the database "
        "before it spills the rest to the local file (replayed at the next start).",
    )
    log_replay_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How soon spilled records are retried after the database failed (doubling, "
        "up to 10 s, while it stays down).",
    )
    login_limit_per_user: int = Field(default=10, ge=1, description="Attempts per window.")
    login_limit_per_address: int = Field(default=30, ge=1, description="Attempts per window.")
    login_window_seconds: int = Field(default=60, ge=1)

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"secret_key must be at least {MIN_SECRET_BYTES} bytes")
        return value

    @field_validator("database_url")
    @classmethod
    def _normalise_postgres_driver(cls, value: str | None) -> str | None:
        # Users paste libpq-style URLs; we only ship the psycopg 3 driver.
        if value is not None and value.startswith(("postgresql://", "postgres://")):
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @property
    def resolved_database_url(self) -> str:
        """The database URL in force: the configured one, or SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'modelserve.db').resolve()}"

    def ensure_data_dir(self) -> Path:
        """Create the data dir if needed and return it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir
