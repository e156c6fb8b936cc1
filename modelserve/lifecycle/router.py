"""Lifecycle HTTP routes: rollback, traffic policies and version comparison."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from modelserve.core.db import MAX_ID
from modelserve.core.errors import ERROR_RESPONSES
from modelserve.deps import (
    ActorDep,
    AliasPath,
    CallerDep,
    MaintainerDep,
    ModelNamePath,
    SessionDep,
    StateDep,
)
from modelserve.lifecycle.schemas import (
    ComparisonPublic,
    TrafficList,
    TrafficPublic,
    TrafficUpdate,
)
from modelserve.predictions.compare import paired_outputs, summarise
from modelserve.registry.schemas import AliasPublic
from modelserve.registry.service import RegistryService

router = APIRouter(prefix="/v1/models", tags=["lifecycle"], responses=ERROR_RESPONSES)

VersionQuery = Annotated[int, Query(ge=1, le=MAX_ID)]


@router.post(
    "/{name}/aliases/{alias}/rollback", response_model=AliasPublic, summary="Roll an alias back"
)
def rollback(
    name: ModelNamePath,
    alias: AliasPath,
    state: StateDep,
    caller: MaintainerDep,
    actor: ActorDep,
) -> AliasPublic:
    """Move an alias back to the version it pointed at before its last move (audit trail),
    once that version is warm in every server process."""
    caller.require_model(name)
    return state.lifecycle.rollback(name, alias, actor)


@router.get("/{name}/traffic", response_model=TrafficList, summary="Show traffic policies")
def list_traffic(name: ModelNamePath, state: StateDep, caller: CallerDep) -> TrafficList:
    """Every alias's canary and shadow."""
    caller.require_model(name)
    return state.lifecycle.list_traffic(name)


@router.put("/{name}/traffic", response_model=TrafficPublic, summary="Set a traffic policy")
def set_traffic(
    name: ModelNamePath,
    body: TrafficUpdate,
    state: StateDep,
    caller: MaintainerDep,
    actor: ActorDep,
) -> TrafficPublic:
    """Send a sticky share of an alias's callers to a canary version and/or run a shadow
    version on a copy of every request; send neither to clear the policy. Takes effect once the
    versions are warm in every server process."""
    caller.require_model(name)
    return state.lifecycle.set_traffic(name, body, actor)


@router.get("/{name}/compare", response_model=ComparisonPublic, summary="Compare two versions")
def compare(
    name: ModelNamePath,
    a: VersionQuery,
    b: VersionQuery,
    caller: MaintainerDep,
    session: SessionDep,
    state: StateDep,
) -> ComparisonPublic:
    """How versions ``a`` and ``b`` differ on the logged requests both answered (a shadow run
    answers the same request as the version it shadows): agreement rate and mean absolute
    difference of probabilities, over the newest 10,000 such requests."""
    caller.require_model(name)
    state.log_writer.flush(timeout=5)  # include what this process has queued
    registry = RegistryService(session)
    first = registry.resolve(name, version=a)
    second = registry.resolve(name, version=b)
    pairs = paired_outputs(session, first.model_id, first.version_id, second.version_id)
    return summarise(name, a, b, pairs)
