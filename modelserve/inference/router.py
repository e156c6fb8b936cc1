"""v1 predict routes: read the body, hand over to InferenceService off the event loop."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import Response

from modelserve.auth.caller import Caller
from modelserve.core.db import MAX_ID
from modelserve.core.errors import ERROR_RESPONSES, AppError
from modelserve.core.http import read_body
from modelserve.core.ids import new_request_id
from modelserve.core.responses import ORJSONResponse
from modelserve.deps import ALIAS_MAX_LENGTH, SECURITY_OPENAPI, ModelNamePath, request_caller
from modelserve.inference.body_matrix import read_v1_payload
from modelserve.inference.probabilities import probabilities_json
from modelserve.inference.schemas import PredictResponse, predict_request_schema
from modelserve.inference.service import PredictCall, Served
from modelserve.lifecycle.routing import Target
from modelserve.state import AppState

router = APIRouter(prefix="/v1/models", tags=["predict"], responses=ERROR_RESPONSES)

_ROUTE: dict[str, Any] = {
    "response_model": PredictResponse,
    "openapi_extra": {
        "security": SECURITY_OPENAPI,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": predict_request_schema()}},
        },
    },
}


async def quota_caller(request: Request) -> Caller:
    """The caller (``request_caller``), after counting the request against their API key's
    quota, if it has one. One dependency, not two: FastAPI resolves each per request."""
    caller = await request_caller(request)
    state: AppState = request.app.state.modelserve
    if caller.key_quota is not None:
        await anyio.to_thread.run_sync(
            partial(
                state.limiter.hit,
                f"quota:key:{caller.api_key_id}",
                limit=caller.key_quota,
                window_seconds=60,
                message="This API key's prediction quota is used up for this minute.",
            )
        )
    return caller


PredictCaller = Annotated[Caller, Depends(quota_caller)]


async def serve(state: AppState, call: PredictCall) -> Served:
    """Run ``call`` through the inference service: validation and unbatched predictions on a
    worker thread (``INFERENCE_THREADS`` of them). A batched request then waits for its batch
    here, holding no thread, so the requests that can join one batch are not limited by the
    worker threads. A small request whose route and version are already in memory is validated
    and queued right here for a batching model, or served right here by a model whose small
    predictions take less than ``INLINE_MAX_MS``: that costs less than the hand-over to a worker
    thread and back, and blocks the event loop no longer than that."""
    pending = state.inference.start_inline(call)
    if isinstance(pending, Served):
        return pending
    if pending is None:
        # The event loop's own executor: 93 us of CPU per hop here, anyio's thread hop 109.
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(state.model_executor, state.inference.start, call)
        if isinstance(outcome, Served):
            return outcome
        pending = outcome
    return await asyncio.wrap_future(pending)


async def predict_path(request: Request, caller: Caller, target: Target) -> Response:
    """Answer one v1 predict request for ``target`` (what every predict route does; also called
    directly by ``server.predict_routes``)."""
    state: AppState = request.app.state.modelserve
    caller.require_model(target.name)
    started = time.perf_counter()
    request_id = new_request_id()
    payload: Any = None
    text: bytes | None = None
    payload_error: AppError | None = None
    try:
        payload, text = read_v1_payload(await read_body(request, state.settings.max_body_bytes))
    except AppError as exc:
        payload_error = exc
    call = PredictCall(target, payload, payload_error, request_id, started, caller, text=text)
    served = await serve(state, call)
    body: dict[str, Any] = {
        "model": served.version.model_name,
        "version": served.version.number,
        "request_id": str(request_id),
        "predictions": served.result.predictions,
        "runtime": served.runtime,
    }
    if served.result.probabilities is not None:
        body["probabilities"] = probabilities_json(served.result.probabilities)
    if served.warnings is not None:
        body["warnings"] = served.warnings
    return ORJSONResponse(body, headers={"X-Request-ID": str(request_id)})


@router.post("/{name}/predict", summary="Predict with the default version", **_ROUTE)
async def predict_default(name: ModelNamePath, request: Request, caller: PredictCaller) -> Response:
    """Predict with the ``production`` alias if set, else the latest version."""
    return await predict_path(request, caller, Target(name))


@router.post("/{name}/versions/{version}/predict", summary="Predict with a version", **_ROUTE)
async def predict_version(
    name: ModelNamePath,
    version: Annotated[int, Path(ge=1, le=MAX_ID)],
    request: Request,
    caller: PredictCaller,
) -> Response:
    """Predict with one numbered version."""
    return await predict_path(request, caller, Target(name, version=version))


@router.post("/{name}/aliases/{alias}/predict", summary="Predict with an alias", **_ROUTE)
async def predict_alias(
    name: ModelNamePath,
    alias: Annotated[str, Path(min_length=1, max_length=ALIAS_MAX_LENGTH)],
    request: Request,
    caller: PredictCaller,
) -> Response:
    """Predict with the version an alias points at."""
    return await predict_path(request, caller, Target(name, alias=alias))
