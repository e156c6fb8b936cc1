"""Open Inference Protocol request and response bodies."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, PrivateAttr

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]


class TensorInput(BaseModel):
    """One input tensor."""

    name: str = Field(min_length=1, max_length=128)
    shape: list[int] = Field(min_length=1, max_length=8)
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any]
    _array: np.ndarray[Any, Any] | None = PrivateAttr(default=None)

    def attach(self, array: np.ndarray[Any, Any]) -> None:
        """Give the tensor its values as an array (the binary extension's data, which ``data``
        then leaves empty)."""
        self._array = array

    @property
    def array(self) -> np.ndarray[Any, Any] | None:
        """The values as sent in binary, flat; None for JSON data."""
        return self._array

    def values(self) -> list[Any]:
        """``data``, or the binary values as a list."""
        return self.data if self._array is None else list(self._array.tolist())


class RequestedOutput(BaseModel):
    """An output the caller wants back."""

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """``POST .../infer`` body."""

    id: str | None = Field(default=None, max_length=256)
    parameters: dict[str, Any] | None = None
    inputs: list[TensorInput] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


class TensorOutput(BaseModel):
    """One output tensor (its data in ``data``, or after the JSON with the binary extension)."""

    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    """``POST .../infer`` answer."""

    model_name: str
    model_version: str
    id: str
    parameters: dict[str, Any] | None = None
    outputs: list[TensorOutput]


class TensorMetadata(BaseModel):
    """Name, datatype and shape of a tensor (-1: any size)."""

    name: str
    datatype: Datatype
    shape: list[int]


class ModelMetadata(BaseModel):
    """``GET /v2/models/{m}`` answer."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    """``GET /v2`` answer."""

    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    """Liveness."""

    live: bool


class Ready(BaseModel):
    """Readiness."""

    ready: bool


class RepositoryIndexRequest(BaseModel):
    """``POST /v2/repository/index`` body."""

    ready: bool | None = Field(default=None, description="Only models (not) loaded here.")


class RepositoryModel(BaseModel):
    """A model in the repository index, as this process sees it."""

    name: str
    version: str
    state: Literal["READY", "UNAVAILABLE"]
    reason: str = ""


class ModelReady(BaseModel):
    """Readiness of a model."""

    name: str
    ready: bool
