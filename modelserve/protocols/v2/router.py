"""Open Inference Protocol (V2) REST routes over the same inference service, callers and log."""

from __future__ import annotations

import time
from typing import Annotated, Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Path, Request
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response

from modelserve import __version__
from modelserve.auth.caller import Caller
from modelserve.core import migrate
from modelserve.core.db import MAX_ID
from modelserve.core.errors import ERROR_RESPONSES, AppError
from modelserve.core.http import read_body
from modelserve.core.ids import new_request_id
from modelserve.core.responses import ORJSONResponse
from modelserve.deps import (
    SECURITY_OPENAPI,
    CallerDep,
    MaintainerDep,
    ModelNamePath,
    StateDep,
)
from modelserve.inference.cache import cache_key
from modelserve.inference.router import PredictCaller, serve
from modelserve.inference.service import PredictCall
from modelserve.lifecycle.routing import Target
from modelserve.protocols.v2 import binary
from modelserve.protocols.v2.decode import read
from modelserve.protocols.v2.outputs import (
    input_metadata,
    output_metadata,
    response_parameters,
    to_outputs,
)
from modelserve.protocols.v2.schemas import (
    InferenceRequest,
    InferenceResponse,
    Live,
    ModelMetadata,
    ModelReady,
    Ready,
    RepositoryIndexRequest,
    RepositoryModel,
    ServerMetadata,
)
from modelserve.registry.service import ResolvedVersion
from modelserve.state import AppState

router = APIRouter(prefix="/v2", tags=["v2"], responses=ERROR_RESPONSES)
infer_router = APIRouter(prefix="/v2", tags=["v2"], responses=ERROR_RESPONSES)
"""The infer routes: the hot path, included before every other router (Starlette tries routes
in order, and matching each costs)."""
VersionPath = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata(_: CallerDep) -> ServerMetadata:
    """Name, version and protocol extensions."""
    return ServerMetadata(
        name="modelserve",
        version=__version__,
        extensions=["binary_tensor_data", "model_repository"],
    )


@router.get("/health/live", response_model=Live, summary="Server live")
async def live() -> Live:
    """The process is up. Public, like ``/healthz``: orchestrators probe without credentials."""
    return Live(live=True)


@router.get(
    "/health/ready", response_model=Ready, summary="Server ready", responses={503: {"model": Ready}}
)
async def ready(state: StateDep) -> Response:
    """Ready when the database answers at the newest migration (the lifespan has warmed the
    aliased versions before the server accepts requests). Public, like ``/readyz``."""
    ok = await anyio.to_thread.run_sync(_database_ready, state)
    return ORJSONResponse({"ready": ok}, status_code=200 if ok else 503)


def _database_ready(state: AppState) -> bool:
    try:
        return migrate.is_at_head(state.db.engine)
    except SQLAlchemyError:
        return False


async def _resolve(state: StateDep, caller: Caller, target: Target) -> ResolvedVersion:
    caller.require_model(target.name)
    return await anyio.to_thread.run_sync(state.inference.resolve, target)


def _metadata(version: ResolvedVersion) -> ModelMetadata:
    return ModelMetadata(
        name=version.model_name,
        versions=[str(version.number)],
        platform="scikit-learn",
        inputs=input_metadata(version.input_schema),
        outputs=output_metadata(version.output),
    )


@router.get("/models/{name}", response_model=ModelMetadata, summary="Model metadata")
async def model_metadata(name: ModelNamePath, state: StateDep, caller: CallerDep) -> ModelMetadata:
    """Inputs (one per feature) and outputs of the version /v1 would serve."""
    return _metadata(await _resolve(state, caller, Target(name)))


@router.get(
    "/models/{name}/versions/{version}",
    response_model=ModelMetadata,
    summary="Model version metadata",
)
async def version_metadata(
    name: ModelNamePath, version: VersionPath, state: StateDep, caller: CallerDep
) -> ModelMetadata:
    """Inputs and outputs of one version."""
    return _metadata(await _resolve(state, caller, Target(name, version=version)))


async def _ready(state: StateDep, caller: Caller, target: Target) -> Response:
    version = await _resolve(state, caller, target)
    try:
        await anyio.to_thread.run_sync(state.inference.load, version, limiter=state.model_threads)
    except AppError:
        return ORJSONResponse({"name": version.model_name, "ready": False}, status_code=503)
    return ORJSONResponse({"name": version.model_name, "ready": True})


@router.get(
    "/models/{name}/ready",
    response_model=ModelReady,
    summary="Model ready",
    responses={503: {"model": ModelReady}},
)
async def model_ready(name: ModelNamePath, state: StateDep, caller: CallerDep) -> Response:
    """Whether the version /v1 would serve is loaded (loading it if needed)."""
    return await _ready(state, caller, Target(name))


@router.get(
    "/models/{name}/versions/{version}/ready",
    response_model=ModelReady,
    summary="Model version ready",
    responses={503: {"model": ModelReady}},
)
async def version_ready(
    name: ModelNamePath, version: VersionPath, state: StateDep, caller: CallerDep
) -> Response:
    """Whether one version is loaded (loading it if needed)."""
    return await _ready(state, caller, Target(name, version=version))


async def infer_path(request: Request, caller: Caller, target: Target) -> Response:
    """Answer one V2 infer request for ``target`` (what both infer routes do; also called
    directly by ``server.predict_routes``)."""
    state: AppState = request.app.state.modelserve
    started = time.perf_counter()
    caller.require_model(target.name)
    choice = state.inference.choose_cached(target, caller)
    if choice is None:
        choice = await anyio.to_thread.run_sync(state.inference.choose, target, caller)
    version = choice.version
    decoded: InferenceRequest | None = None
    payload: Any = None
    payload_error: AppError | None = None
    try:
        content = await read_body(request, state.settings.max_body_bytes)
    except AppError as exc:
        payload_error = exc
    else:
        decoded, payload, payload_error = read(content, request.headers.get(binary.HEADER), version)
    request_id = new_request_id()
    call = PredictCall(
        target, payload, payload_error, request_id, started, caller, "v2", choice=choice
    )
    served = await serve(state, call)  # a batched request waits for its batch on no thread
    assert decoded is not None  # a payload error was raised by predict
    body = {  # an InferenceResponse, made as a dict (see ``to_outputs``)
        "model_name": served.version.model_name,
        "model_version": str(served.version.number),
        "id": decoded.id or str(request_id),
        "parameters": response_parameters(served.warnings, served.runtime),
        "outputs": to_outputs(decoded, served.version.output, served.result),
    }
    return _render(body, decoded, {"X-Request-ID": str(request_id)})


def _wants_binary(decoded: InferenceRequest, name: str) -> bool:
    for requested in decoded.outputs or []:
        if requested.name == name and "binary_data" in (requested.parameters or {}):
            return bool((requested.parameters or {})["binary_data"])
    return bool((decoded.parameters or {}).get("binary_data_output", False))


def _render(body: dict[str, Any], decoded: InferenceRequest, headers: dict[str, str]) -> Response:
    blobs = []
    for tensor in body["outputs"]:
        if _wants_binary(decoded, tensor["name"]):
            blob = binary.encode(tensor["datatype"], tensor.pop("data"))
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
    content = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return Response(content, media_type="application/json", headers=headers)
    headers = headers | {"Inference-Header-Content-Length": str(len(content))}
    return Response(
        content + b"".join(blobs), media_type="application/octet-stream", headers=headers
    )


_INFER: dict[str, Any] = {
    "response_model": InferenceResponse,
    "responses": {
        200: {
            "content": {"application/octet-stream": {}},
            "description": "JSON, or JSON followed by binary tensors (binary extension)",
        }
    },
    "openapi_extra": {
        "security": SECURITY_OPENAPI,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": InferenceRequest.model_json_schema()}},
        },
    },
}


@infer_router.post("/models/{name}/infer", summary="Infer", **_INFER)
async def infer(name: ModelNamePath, request: Request, caller: PredictCaller) -> Response:
    """Predict with the version /v1 would serve."""
    return await infer_path(request, caller, Target(name))


@infer_router.post(
    "/models/{name}/versions/{version}/infer", summary="Infer with a version", **_INFER
)
async def infer_version(
    name: ModelNamePath, version: VersionPath, request: Request, caller: PredictCaller
) -> Response:
    """Predict with one version."""
    return await infer_path(request, caller, Target(name, version=version))


@router.post("/repository/index", response_model=list[RepositoryModel], summary="Repository index")
async def repository_index(
    state: StateDep, caller: CallerDep, body: RepositoryIndexRequest | None = None
) -> list[RepositoryModel]:
    """Every model's default version and whether this process has it loaded; for one that is
    not, why: the error of this process's last attempt to warm it, else "not loaded"."""
    models = await anyio.to_thread.run_sync(_default_versions, state)
    index = [
        RepositoryModel(
            name=v.model_name,
            version=str(v.number),
            state="READY" if cache_key(v) in state.cache else "UNAVAILABLE",
            reason=""
            if cache_key(v) in state.cache
            else state.watcher.warm_errors.get(v.version_id, "not loaded"),
        )
        for v in models
        if caller.may_use_model(v.model_name)
    ]
    if body is not None and body.ready is not None:
        index = [m for m in index if (m.state == "READY") == body.ready]
    return index


def _default_versions(state: AppState) -> list[ResolvedVersion]:
    names = [m.name for m in state.inference.registry_listing().data]
    found = []
    for name in names:
        try:
            found.append(state.inference.resolve(Target(name)))
        except AppError:
            continue  # a model without versions has nothing to serve
    return found


@router.post("/repository/models/{name}/load", summary="Load a model")
async def repository_load(
    name: ModelNamePath, state: StateDep, caller: MaintainerDep
) -> dict[str, str]:
    """Load the default version into this process (a no-op when loaded)."""
    version = await _resolve(state, caller, Target(name))
    await anyio.to_thread.run_sync(state.inference.load, version, limiter=state.model_threads)
    return {}


@router.post("/repository/models/{name}/unload", summary="Unload a model")
async def repository_unload(
    name: ModelNamePath, state: StateDep, caller: MaintainerDep
) -> dict[str, str]:
    """Drop the default version from this process's cache (the next request reloads it)."""
    version = await _resolve(state, caller, Target(name))
    state.cache.evict(version.version_id)
    return {}
