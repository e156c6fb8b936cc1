"""Settings, read from ``MODELSERVE_*`` environment variables (or passed explicitly)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelserve.registry.schemas import DEFAULT_RUNTIME, Runtime

MIN_SECRET_BYTES = 32
MIN_DATABASE_URL_CHARS = 10
"""Shorter than ``sqlite:///`` cannot be a database URL: a truncated or empty secret file."""


def read_secret_file(path: Path, what: str, min_length: int) -> str:
    """The stripped content of a mounted secret file (Docker and Kubernetes secrets are files).

    Refuses an unreadable file or one holding fewer than ``min_length`` characters; the
    message names the file, never its content.
    """
    try:
        value = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValueError(f"MODELSERVE_{what}_FILE {path} cannot be read: {reason}") from None
    if len(value.encode()) < min_length:
        raise ValueError(
            f"MODELSERVE_{what}_FILE {path} holds fewer than {min_length} bytes; refusing it"
        )
    return value


class Settings(BaseSettings):
    """Everything the server, the CLI and the tests can configure.

    Nothing reads the environment at import time: build a ``Settings()`` where it is needed.
    """

    # Validation errors never echo what was given: it may be a secret.
    model_config = SettingsConfigDict(
        env_prefix="MODELSERVE_", extra="ignore", hide_input_in_errors=True
    )

    data_dir: Path = Field(default=Path(".modelserve"), description="Where local state lives.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; defaults to a SQLite file in the data dir. "
        "Use postgresql+psycopg://... for PostgreSQL.",
    )
    database_url_file: Path | None = Field(
        default=None,
        description="A file holding the database URL (a mounted secret); instead of DATABASE_URL.",
    )
    listen_database_url: str | None = Field(
        default=None,
        description="A direct PostgreSQL URL for the registry change listener (LISTEN needs a "
        "session; PgBouncer in transaction mode cannot give one). Unset: DATABASE_URL.",
    )
    listen_database_url_file: Path | None = Field(
        default=None, description="A file holding LISTEN_DATABASE_URL (a mounted secret)."
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
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A connection must send a request's whole header block within this long of "
        "opening (or of starting the request), else it is closed (408).",
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A request body must arrive within this long of the first read, each chunk "
        "within this long of the last (the model upload: only the per-chunk bound), else 408.",
    )
    keepalive_seconds: int = Field(
        default=5, ge=1, description="An idle keep-alive connection is closed after this long."
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
    default_runtime: Runtime = Field(
        default=DEFAULT_RUNTIME,
        description="The runtime a newly registered model starts with. onnx: its versions with "
        "a verified ONNX twin run on ONNX Runtime (faster; probabilities within the twin's "
        "checked bound), the others on scikit-learn; sklearn: scikit-learn always. Each model "
        "can change it (PUT /v1/models/{name}/serving).",
    )
    inline_max_ms: float = Field(
        default=1.0,
        ge=0,
        le=50,
        description="A small request (at most 1024 values) for a model whose recent predictions "
        "took less than this many milliseconds is served on the event loop, skipping the "
        "hand-over to a worker thread and back; 0 sends every request to a worker thread.",
    )
    docs_enabled: bool = True
    opentelemetry: bool = Field(
        default=False,
        description="FastAPI's OpenTelemetry instrumentation: a span, metrics and logs for "
        "every request, sent to the providers an OpenTelemetry SDK has set up (for example "
        "under opentelemetry-instrument). Off: no request is traced.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="JWT signing key (32+ bytes). Unset: generated once into the data dir.",
    )
    secret_key_file: Path | None = Field(
        default=None,
        description="A file holding the JWT signing key (a mounted secret); instead of SECRET_KEY.",
    )
    api_key_file: Path | None = Field(
        default=None,
        description="A file holding an API key (msk_<8 hex>_<secret>) that the model-dir mode "
        "seeds at start, for a user allowed to predict: how callers of a mounted model "
        "authenticate.",
    )
    auth_disabled: bool = Field(
        default=False,
        description="WARNING: true answers requests without credentials as an anonymous "
        "prediction-only user. Only for a service mesh that authenticates callers itself; "
        "warned about at start.",
    )
    model_dir: Path | None = Field(
        default=None,
        description="Serve the model in this directory (model.<ext> and schema.json, as "
        "KServe's storage initializer lays them out), registered at start.",
    )
    model_name: str | None = Field(
        default=None, description="The name the model-dir model is served under."
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
    log_journal: bool = Field(
        default=True,
        description="Append every prediction-log record to a per-process journal file in the "
        "data dir before its response leaves, so a killed process loses no answered prediction "
        "(the next process replays it). false only for benchmarks.",
    )
    log_journal_fsync_ms: int = Field(
        default=0,
        ge=0,
        description="fsync the journal every this many milliseconds, bounding what a machine "
        "crash (not a killed process: the kernel keeps what was written) can lose; 0 never.",
    )
    login_limit_per_user: int = Field(
        default=10,
        ge=1,
        description="Login attempts per window for one username from one client address (a "
        "successful login resets it); other addresses are not affected, so wrong passwords "
        "cannot lock the owner out.",
    )
    login_limit_per_address: int = Field(
        default=30, ge=1, description="Login attempts per window from one client address."
    )
    login_window_seconds: int = Field(default=60, ge=1)
    key_failures_per_address: int = Field(
        default=20,
        ge=1,
        description="Attempts with unknown API keys per window from one client address; from it on "
        "that address gets 429 for API keys until the window ends.",
    )
    key_failure_window_seconds: int = Field(default=60, ge=1, le=3600)
    auth_grace_seconds: float = Field(
        default=300.0,
        ge=0.0,
        le=86_400.0,
        description="While the database is unreachable, how long after a credential was last "
        "verified against it a process still accepts it from its cache (so loaded models keep "
        "serving). Revocations made during that time take effect when the database is back. "
        "0 fails closed: no database, no caller.",
    )

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"secret_key must be at least {MIN_SECRET_BYTES} bytes")
        return value

    @field_validator("database_url", "listen_database_url")
    @classmethod
    def _normalise_postgres_driver(cls, value: str | None) -> str | None:
        return _psycopg_url(value)

    @model_validator(mode="after")
    def _read_secret_files(self) -> Settings:
        if self.secret_key_file is not None:
            _only_one(self.secret_key, "SECRET_KEY")
            key = read_secret_file(self.secret_key_file, "SECRET_KEY", MIN_SECRET_BYTES)
            self.secret_key = SecretStr(key)
        if self.database_url_file is not None:
            _only_one(self.database_url, "DATABASE_URL")
            url = read_secret_file(self.database_url_file, "DATABASE_URL", MIN_DATABASE_URL_CHARS)
            self.database_url = _psycopg_url(url)
        if self.listen_database_url_file is not None:
            _only_one(self.listen_database_url, "LISTEN_DATABASE_URL")
            url = read_secret_file(
                self.listen_database_url_file, "LISTEN_DATABASE_URL", MIN_DATABASE_URL_CHARS
            )
            self.listen_database_url = _psycopg_url(url)
        return self

    @property
    def resolved_database_url(self) -> str:
        """The database URL in force: the configured one, or SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'modelserve.db').resolve()}"

    @property
    def resolved_listen_url(self) -> str:
        """The URL the registry change listener connects to: its own, else the database's."""
        return self.listen_database_url or self.resolved_database_url

    def ensure_data_dir(self) -> Path:
        """Create the data dir if needed and return it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir


def _psycopg_url(value: str | None) -> str | None:
    # Users paste libpq-style URLs; we only ship the psycopg 3 driver.
    if value is not None and value.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + value.split("://", 1)[1]
    return value


def _only_one(value: object, name: str) -> None:
    if value is not None:
        raise ValueError(f"set MODELSERVE_{name} or MODELSERVE_{name}_FILE, not both")
