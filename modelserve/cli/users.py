"""``modelserve users`` and ``modelserve api-keys``: local administration (direct database
access counts as admin; actions are audited as ``cli``)."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Annotated, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.table import Table

from modelserve.audit.service import CLI_ACTOR
from modelserve.auth.keys import ApiKeyService
from modelserve.auth.schemas import ApiKeyCreate
from modelserve.cli.common import out, transaction
from modelserve.core.clock import utcnow
from modelserve.core.errors import ValidationFailed, validation_problems
from modelserve.users.models import Role
from modelserve.users.schemas import UserCreate, UserUpdate
from modelserve.users.service import UserService

M = TypeVar("M", bound=BaseModel)
app = typer.Typer(help="User accounts.", no_args_is_help=True, rich_markup_mode=None)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True, rich_markup_mode=None)


def _read_password() -> str:
    if sys.stdin.isatty():
        password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        return password
    return sys.stdin.readline().rstrip("\n")


def _validated(model: type[M], **values: object) -> M:
    try:
        return model(**values)
    except ValidationError as exc:
        raise ValidationFailed("Invalid input.", details=validation_problems(exc)) from exc


@app.command("create")
def create(
    username: str,
    role: Annotated[Role, typer.Option(help="user, maintainer or admin.")] = Role.USER,
    email: Annotated[str | None, typer.Option(help="Email address.")] = None,
) -> None:
    """Create a user; the password is read from a prompt, or from stdin when piped."""
    data = _validated(
        UserCreate, username=username, email=email, password=_read_password(), role=role
    )
    with transaction() as session:
        user = UserService(session).create(data, CLI_ACTOR)
    out().print(f"[green]created user {user.username} (id {user.id}, {user.role.value})[/]")


@app.command("list")
def list_users() -> None:
    """List users."""
    with transaction(create=False) as session:
        users = UserService(session).list()
    table = Table("id", "username", "email", "role", "enabled", "created")
    for user in users.data:
        table.add_row(
            str(user.id),
            user.username,
            user.email or "",
            user.role.value,
            "yes" if user.enabled else "[red]no[/]",
            user.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    out().print(table)


def _update(username: str, change: UserUpdate, done: str) -> None:
    with transaction() as session:
        service = UserService(session)
        user = service.update(service.find(username).id, change, CLI_ACTOR)
    out().print(f"[green]{user.username}: {done}[/]")


@app.command("disable")
def disable(username: str) -> None:
    """Disable a user (their tokens and keys stop working within seconds)."""
    _update(username, UserUpdate(enabled=False), "disabled")


@app.command("enable")
def enable(username: str) -> None:
    """Enable a user."""
    _update(username, UserUpdate(enabled=True), "enabled")


@app.command("set-role")
def set_role(username: str, role: Role) -> None:
    """Change a user's role."""
    _update(username, UserUpdate(role=role), f"role {role.value}")


@app.command("delete")
def delete(
    username: str,
    yes: Annotated[bool, typer.Option("--yes", help="Delete without asking to confirm.")] = False,
) -> None:
    """Delete a user (their predictions stay, attributed to a deleted user)."""
    if not yes:
        typer.confirm(f"Delete {username}?", abort=True)
    with transaction() as session:
        service = UserService(session)
        service.delete(service.find(username).id, CLI_ACTOR)
    out().print(f"[green]deleted {username}[/]")


@keys_app.command("create")
def create_key(
    username: str,
    name: Annotated[str, typer.Option(help="What the key is for.")] = "cli",
    expires_days: Annotated[int | None, typer.Option(min=1, help="Expire after N days.")] = None,
    model: Annotated[
        list[str] | None, typer.Option(help="Restrict to this model (repeat).")
    ] = None,
    quota: Annotated[int | None, typer.Option(min=1, help="Predictions per minute.")] = None,
) -> None:
    """Create an API key for USERNAME and print it (shown once)."""
    expires = utcnow() + timedelta(days=expires_days) if expires_days else None
    data = _validated(
        ApiKeyCreate, name=name, expires_at=expires, models=model, quota_per_minute=quota
    )
    with transaction() as session:
        user = UserService(session).find(username)
        created = ApiKeyService(session).create(data, user.id, CLI_ACTOR)
    out().print(f"API key {created.prefix} (id {created.id}) for {user.username}; shown once:")
    print(created.key)


@keys_app.command("list")
def list_keys(username: Annotated[str | None, typer.Argument()] = None) -> None:
    """List API keys (of USERNAME, or everyone's)."""
    with transaction(create=False) as session:
        owner = UserService(session).find(username).id if username else None
        keys = ApiKeyService(session).list(owner)
    table = Table("id", "user", "name", "prefix", "models", "quota/min", "expires", "revoked")
    for key in keys.data:
        table.add_row(
            str(key.id),
            str(key.user_id),
            key.name,
            key.prefix,
            ", ".join(key.models) if key.models is not None else "all",
            str(key.quota_per_minute or "-"),
            key.expires_at.strftime("%Y-%m-%d") if key.expires_at else "never",
            key.revoked_at.strftime("%Y-%m-%d %H:%M") if key.revoked_at else "",
        )
    out().print(table)


@keys_app.command("revoke")
def revoke_key(key_id: int) -> None:
    """Revoke an API key by id."""
    with transaction() as session:
        key = ApiKeyService(session).revoke(key_id, None, CLI_ACTOR)
    out().print(f"[green]revoked {key.prefix}[/]")
