"""``modelserve serve`` and ``modelserve demo``."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from modelserve.app import create_app
from modelserve.audit.service import CLI_ACTOR
from modelserve.auth.keys import ApiKeyService
from modelserve.auth.schemas import ApiKeyCreate
from modelserve.cli.common import err, load_settings, open_database, out, transaction
from modelserve.cli.models import move_alias
from modelserve.cli.train import run_training
from modelserve.config import Settings
from modelserve.core.errors import NotFound
from modelserve.registry.service import RegistryService
from modelserve.server import startup
from modelserve.server.listen import bind_listener
from modelserve.server.protocol import protocol_class
from modelserve.server.workers import run_gunicorn, worker_count
from modelserve.training.service import TrainingJob, register_trained
from modelserve.users.models import Role
from modelserve.users.schemas import UserCreate
from modelserve.users.service import UserService

DEMO_MODEL = "iris"
HostOption = Annotated[
    str | None,
    typer.Option(help="Interface to bind. Default: MODELSERVE_HOST, else 127.0.0.1."),
]
PortOption = Annotated[
    int | None, typer.Option(help="Port to listen on. Default: MODELSERVE_PORT, else 8000.")
]


def _check_workers(value: str | None) -> str | None:
    if value is None or value == "auto" or (value.isdigit() and int(value) >= 1):
        return value
    raise typer.BadParameter("a number of processes (1 or more), or 'auto'")


WorkersOption = Annotated[
    str | None,
    typer.Option(
        metavar="N|auto",
        callback=_check_workers,
        help="Server processes: 1 runs Uvicorn in this process; more run this process as a "
        "Gunicorn master with N Uvicorn workers; auto: one per CPU available. "
        "Default: MODELSERVE_WORKERS, else 1.",
    ),
]


def run_server(settings: Settings) -> None:
    """Apply pending migrations once, bind the port, then serve until stopped: Uvicorn in this
    process for one worker, else this process becomes the Gunicorn master of
    ``settings.workers`` workers (which binds again itself; the first bind is the check)."""
    workers = worker_count(settings.workers)
    open_database(settings).dispose()
    listener = bind_listener(settings.host, settings.port)
    out().print(
        f"serving on [bold]http://{settings.host}:{settings.port}[/] "
        f"(docs at /docs) with {settings.resolved_database_url.split('://')[0]}"
        + (f", {workers} worker processes" if workers > 1 else "")
    )
    if workers > 1:
        listener.close()
        run_gunicorn(settings, workers)
        return
    config = uvicorn.Config(
        create_app(settings),
        log_level="info",
        access_log=False,
        timeout_keep_alive=settings.keepalive_seconds,
        http=protocol_class(settings.header_timeout_seconds),
    )
    uvicorn.Server(config).run(sockets=[listener])


ModelDirOption = Annotated[
    Path | None,
    typer.Option(
        "--model-dir",
        "--model_dir",
        file_okay=False,
        help="Serve the model in DIR (model.<ext> and schema.json, as KServe lays them out in "
        "/mnt/models): registered at start, aliased production.",
    ),
]
ModelNameOption = Annotated[
    str | None,
    typer.Option("--model-name", "--model_name", help="Name for --model-dir's model."),
]
HttpPortOption = Annotated[
    int | None, typer.Option("--http_port", hidden=True, help="KServe's name for --port.")
]


def serve(
    host: HostOption = None,
    port: PortOption = None,
    workers: WorkersOption = None,
    model_dir: ModelDirOption = None,
    model_name: ModelNameOption = None,
    http_port: HttpPortOption = None,
) -> None:
    """Serve the API on the configured database (or the model in --model-dir)."""
    settings = load_settings(
        host=host,
        port=port or http_port,
        workers=workers,
        model_dir=model_dir,
        model_name=model_name,
    )
    for note in startup.prepare(settings):
        err().print(note)
    run_server(settings)


def write_demo_csv(data_dir: Path) -> Path:
    """The iris data set that ships with scikit-learn, as a CSV with readable column names."""
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True)
    frame = iris.frame.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    frame["species"] = [str(iris.target_names[i]) for i in iris.target]
    frame = frame.drop(columns=["target"])
    path = data_dir / "demo" / "iris.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def demo_job(data: Path) -> TrainingJob:
    """How the demo model is trained from ``data`` (``write_demo_csv``'s file); the side-by-side
    benchmark trains the same model with it."""
    return TrainingJob(
        data=data,
        target="species",
        name=DEMO_MODEL,
        algorithm="logistic",
        alias="production",
        description="Logistic regression on scikit-learn's iris data set",
    )


def ensure_demo_model(settings: Settings) -> None:
    """Train and register the demo model once; later runs reuse it."""
    db = open_database(settings)
    try:
        with db.transaction() as session:
            try:
                RegistryService(session).resolve(DEMO_MODEL)
                out().print(f"demo model [bold]{DEMO_MODEL}[/] already registered")
                return
            except NotFound:
                pass
        job = demo_job(write_demo_csv(settings.ensure_data_dir()))
        trained = run_training(job)
        with db.transaction() as session:
            version = register_trained(session, job, trained, settings.default_runtime)
        move_alias(version.model, "production", version.version)
        out().print(f"[green]registered {version.model} v{version.version} as production[/]")
    finally:
        db.dispose()


DEMO_ADMIN = "demo-admin"
DEMO_KEY_FILE = "demo-api-key"


def ensure_demo_key(settings: Settings) -> str:
    """A fresh admin API key for the demo user (created once, with a random password nobody
    sees), printed and written to the data dir with mode 0600."""
    with transaction(settings) as session:
        users = UserService(session)
        try:
            user_id = users.find(DEMO_ADMIN).id
        except NotFound:
            data = UserCreate(
                username=DEMO_ADMIN, password=secrets.token_urlsafe(24), role=Role.ADMIN
            )
            user_id = users.create(data, CLI_ACTOR).id
        created = ApiKeyService(session).create(ApiKeyCreate(name="demo"), user_id, CLI_ACTOR)
    path = settings.ensure_data_dir() / DEMO_KEY_FILE
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(created.key + "\n")
    out().print(f"admin API key for {DEMO_ADMIN} (also in {path}):\n[bold]{created.key}[/]")
    return created.key


def demo(
    host: HostOption = None,
    port: PortOption = None,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve afterwards.")
    ] = True,
    workers: WorkersOption = None,
) -> None:
    """Train a demo model on scikit-learn's iris data (nothing downloaded) and serve it."""
    settings = load_settings(host=host, port=port, workers=workers)
    ensure_demo_model(settings)
    ensure_demo_key(settings)
    if serve_after:
        run_server(settings)
