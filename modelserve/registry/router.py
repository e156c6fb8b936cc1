"""Registry HTTP routes: thin wrappers over RegistryService."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, File, Form, Path, UploadFile
from pydantic import ValidationError

from modelserve.core.db import MAX_ID
from modelserve.core.errors import (
    ERROR_RESPONSES,
    BadRequest,
    ValidationFailed,
    validation_problems,
)
from modelserve.deps import (
    ActorDep,
    AliasPath,
    CallerDep,
    MaintainerDep,
    ModelNamePath,
    SessionDep,
    StateDep,
)
from modelserve.registry.sandbox import SandboxLimits
from modelserve.registry.schemas import (
    AliasPublic,
    AliasUpdate,
    ModelPublic,
    ModelsPublic,
    RegistrationMetadata,
    ServingSettings,
    VersionPublic,
)
from modelserve.registry.service import RegistryService

router = APIRouter(prefix="/v1/models", tags=["models"], responses=ERROR_RESPONSES)


@router.get(
    "",
    response_model=ModelsPublic,
    # The list carries each model's latest version and aliases, not its versions: an empty
    # "versions" there read as "no versions". GET /v1/models/{name} lists them.
    response_model_exclude={"data": {"__all__": {"versions"}}},
    summary="List models",
)
def list_models(caller: CallerDep, session: SessionDep) -> ModelsPublic:
    """Every model (a restricted API key sees its models) with latest version and aliases; its
    versions are listed by ``GET /v1/models/{name}``."""
    return RegistryService(session).list_models(caller.may_use_model)


@router.post("", response_model=VersionPublic, status_code=201, summary="Register a version")
def register_model(
    caller: MaintainerDep,
    actor: ActorDep,
    state: StateDep,
    file: Annotated[UploadFile, File(description="The artifact: skops, joblib or pickle.")],
    metadata: Annotated[str, Form(description="RegistrationMetadata as a JSON string.")],
) -> VersionPublic:
    """Register a new version from an uploaded artifact and its JSON metadata. With an
    ``alias``, the alias moves once the version is warm in every server process; if that fails
    the version stays registered and the error says why the alias did not move."""
    try:
        meta = RegistrationMetadata.model_validate(orjson.loads(metadata))
    except orjson.JSONDecodeError as exc:
        raise BadRequest("'metadata' is not valid JSON.", details={"error": str(exc)}) from exc
    except ValidationError as exc:
        details = validation_problems(exc, prefix=["metadata"])
        raise ValidationFailed("Invalid registration metadata.", details=details) from exc
    caller.require_model(meta.name)
    data = file.file.read()
    # Committed before the alias moves: other processes can only warm a stored version.
    with state.db.transaction() as session:
        version = RegistryService(session).register(
            data,
            meta,
            actor=actor,
            filename=file.filename,
            limits=SandboxLimits.of(state.settings),
            default_runtime=state.settings.default_runtime,
        )
    if meta.alias is None:
        return version
    state.lifecycle.move_alias(meta.name, meta.alias, version.version, actor)
    with state.db.sessions() as session:
        return RegistryService(session).get_version(meta.name, version.version)


@router.get("/{name}", response_model=ModelPublic, summary="Show a model")
def get_model(name: ModelNamePath, caller: CallerDep, session: SessionDep) -> ModelPublic:
    """A model and all its versions."""
    caller.require_model(name)
    return RegistryService(session).get_model(name)


@router.get("/{name}/versions/{version}", response_model=VersionPublic, summary="Show a version")
def get_version(
    name: ModelNamePath,
    version: Annotated[int, Path(ge=1, le=MAX_ID)],
    caller: CallerDep,
    session: SessionDep,
) -> VersionPublic:
    """One version: schema, output, metrics, environment."""
    caller.require_model(name)
    return RegistryService(session).get_version(name, version)


@router.put("/{name}/aliases/{alias}", response_model=AliasPublic, summary="Move an alias")
def set_alias(
    name: ModelNamePath,
    alias: AliasPath,
    body: AliasUpdate,
    caller: MaintainerDep,
    actor: ActorDep,
    state: StateDep,
) -> AliasPublic:
    """Point an alias at a version (creating the alias if needed). Answers once the version
    is loaded and has answered a probe in every live server process; if it fails anywhere the
    alias stays where it was (409 ``warmup_failed``)."""
    caller.require_model(name)
    return state.lifecycle.move_alias(name, alias, body.version, actor)


@router.put("/{name}/serving", response_model=ServingSettings, summary="Set serving settings")
def set_serving(
    name: ModelNamePath,
    body: ServingSettings,
    caller: MaintainerDep,
    actor: ActorDep,
    session: SessionDep,
) -> ServingSettings:
    """Choose the runtime (scikit-learn, or ONNX Runtime for versions with a verified ONNX
    twin) and adaptive batching (off when ``batching`` is null) for every version of a model."""
    caller.require_model(name)
    return RegistryService(session).set_serving(name, body, actor)
