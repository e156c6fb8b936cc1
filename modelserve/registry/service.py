"""Registry logic shared by the HTTP API and the CLI; knows nothing of HTTP."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelserve.audit.service import CLI_ACTOR, Actor, record
from modelserve.core.errors import InvalidArtifact, NotFound
from modelserve.lifecycle.changes import announce
from modelserve.registry.environment import current_environment, sklearn_mismatch
from modelserve.registry.formats import native_format
from modelserve.registry.formats.schema import model_libraries
from modelserve.registry.loaders import ArtifactFormat, detect_format, load_artifact
from modelserve.registry.models import Model, ModelVersion, OnnxTwin, ServingForm
from modelserve.registry.onnx import attempt_twin
from modelserve.registry.repository import RegistryRepository
from modelserve.registry.sandbox import SandboxLimits, vet
from modelserve.registry.schemas import (
    DEFAULT_RUNTIME,
    AliasPublic,
    BatchingSettings,
    InputSchema,
    ModelPublic,
    ModelsPublic,
    OnnxTwinPublic,
    OutputSpec,
    RegistrationMetadata,
    Runtime,
    ServingSettings,
    VersionPublic,
)

logger = logging.getLogger(__name__)

DEFAULT_ALIAS = "production"
EXTENSION_FORMATS: dict[str, ArtifactFormat] = {
    ".skops": "skops",
    ".joblib": "joblib",
    ".jbl": "joblib",
    ".pkl": "pickle",
    ".pickle": "pickle",
}


def artifact_format(data: bytes, filename: str | None) -> ArtifactFormat:
    """The format named by the file's extension, else the one its leading bytes announce
    (an uncompressed joblib file is a plain pickle stream, so only its name tells them apart)."""
    suffix = PurePath(filename).suffix.lower() if filename else ""
    return EXTENSION_FORMATS.get(suffix) or native_format(data, filename) or detect_format(data)


@dataclass(frozen=True)
class ResolvedVersion:
    """Which stored version a request is served by."""

    model_id: int
    model_name: str
    version_id: int
    number: int
    format: str
    sha256: str
    input_schema: InputSchema
    output: OutputSpec
    serving: ServingSettings = field(default_factory=ServingSettings)
    """The model's serving settings when this was resolved."""


def serving_settings(model: Model) -> ServingSettings:
    """A model's serving settings from its row."""
    batching = None
    if model.batch_max_size is not None and model.batch_max_wait_ms is not None:
        batching = BatchingSettings(
            max_batch_size=model.batch_max_size, max_wait_ms=model.batch_max_wait_ms
        )
    return ServingSettings(runtime=cast(Runtime, model.runtime), batching=batching)


def _resolved(model: Model, row: ModelVersion) -> ResolvedVersion:
    return ResolvedVersion(
        model_id=model.id,
        model_name=model.name,
        version_id=row.id,
        number=row.number,
        format=row.format,
        sha256=row.sha256,
        input_schema=InputSchema.model_validate(row.input_schema),
        output=OutputSpec.model_validate(row.output),
        serving=serving_settings(model),
    )


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


class RegistryService:
    """Models, versions and aliases, within one session (the caller commits)."""

    def __init__(self, session: Session) -> None:
        self.repo = RegistryRepository(session)
        self.session = session

    def register(
        self,
        data: bytes,
        meta: RegistrationMetadata,
        *,
        actor: Actor = CLI_ACTOR,
        filename: str | None = None,
        environment: dict[str, str] | None = None,
        limits: SandboxLimits | None = None,
        default_runtime: Runtime = DEFAULT_RUNTIME,
    ) -> VersionPublic:
        """Check an artifact loads safely and honours its schema, then store it as a new version.

        The upload is first opened and probed in a child process within ``limits`` (see
        ``sandbox``); only then does this process load it, with the same restricted loaders (a
        skops upload from the serving form the child wrote). ``environment`` is what training
        knows; otherwise the metadata's, else what the artifact reveals (a pickle names the
        scikit-learn version it was made with). A new model starts with the metadata's
        runtime, else ``default_runtime``.
        """
        fmt = meta.format or artifact_format(data, filename)
        vetted = vet(data, fmt, meta.input_schema, limits or SandboxLimits())
        for warning in vetted.warnings:
            logger.info("registering %s: %s", meta.name, warning)
        form = vetted.serving_form
        estimator = load_artifact(
            data if form is None else form, fmt if form is None else "joblib"
        ).estimator
        schema, schema_source, output = vetted.schema, vetted.schema_source, vetted.output
        # Before any row is locked: converting and verifying takes from milliseconds to a second.
        onnx = attempt_twin(estimator, schema, output)
        env = self._environment(environment, meta, vetted.trained_sklearn_version)
        env.update(model_libraries(estimator, fmt))
        model = self._get_or_create_model(meta.name, meta.runtime or default_runtime)
        version = ModelVersion(
            model_id=model.id,
            number=self.repo.next_number(model.id),
            format=fmt,
            sha256=sha256_hex(data),
            size_bytes=len(data),
            input_schema=schema.model_dump(mode="json", exclude_defaults=False),
            output=output.model_dump(mode="json"),
            metrics=meta.metrics,
            environment=env,
            description=meta.description,
        )
        self.repo.add_version(version, data)
        if form is not None:
            self.session.add(
                ServingForm(version_id=version.id, content=form, sha256=sha256_hex(form))
            )
        if onnx.twin is not None:
            twin = onnx.twin
            self.session.add(
                OnnxTwin(
                    version_id=version.id,
                    content=twin.content,
                    sha256=twin.sha256,
                    max_abs_diff=twin.max_abs_diff,
                )
            )
            self.session.flush()
        announce(self.session)  # the new version may now be a model's default
        record(
            self.session,
            "model.registered",
            actor,
            f"model:{model.name}",
            version=version.number,
            sha256=version.sha256,
            format=fmt,
        )
        public = self._version_public(model, version)
        return public.model_copy(
            update={"onnx_unavailable_reason": onnx.reason, "input_schema_source": schema_source}
        )

    @staticmethod
    def _environment(
        given: dict[str, str] | None, meta: RegistrationMetadata, trained_sklearn: str | None
    ) -> dict[str, Any]:
        if given:
            return {**given, "source": "training"}
        if meta.environment:
            return {**meta.environment, "source": "declared"}
        env: dict[str, Any] = {**current_environment(), "source": "registration"}
        if trained_sklearn:
            env = {"scikit-learn": trained_sklearn, "source": "artifact"}
        return env

    def _get_or_create_model(self, name: str, runtime: Runtime) -> Model:
        model = self.repo.get_model(name, for_update=True)
        if model is not None:
            return model
        try:
            with self.session.begin_nested():
                return self.repo.add_model(name, runtime)
        except IntegrityError:
            # Another process created it between our read and our insert.
            model = self.repo.get_model(name, for_update=True)
            if model is None:
                raise
            return model

    def list_models(self, visible: Callable[[str], bool] = lambda _: True) -> ModelsPublic:
        """Every model (that ``visible`` admits) with its latest version and aliases."""
        latest = self.repo.latest_numbers()
        aliases = self.repo.all_aliases()
        data = [
            ModelPublic(
                name=m.name,
                created_at=m.created_at,
                serving=serving_settings(m),
                latest_version=latest.get(m.id),
                aliases=aliases.get(m.id, {}),
            )
            for m in self.repo.list_models()
            if visible(m.name)
        ]
        return ModelsPublic(data=data, count=len(data))

    def get_model(self, name: str) -> ModelPublic:
        """One model with all its versions."""
        model = self._model(name)
        aliases = dict(self.repo.aliases(model.id))
        rows = self.repo.versions(model.id)
        twins = self._twins([v.id for v in rows])
        versions = [self._version_public(model, v, aliases, twins) for v in rows]
        return ModelPublic(
            name=model.name,
            created_at=model.created_at,
            serving=serving_settings(model),
            latest_version=versions[-1].version if versions else None,
            aliases=aliases,
            versions=versions,
        )

    def get_version(self, name: str, number: int) -> VersionPublic:
        """One version of a model."""
        model = self._model(name)
        return self._version_public(model, self._version(model, number))

    def set_alias(
        self, name: str, alias: str, number: int, actor: Actor = CLI_ACTOR
    ) -> AliasPublic:
        """Point ``alias`` at version ``number``; returns where it pointed before too."""
        model = self._model(name)
        version = self._version(model, number)
        previous_id = self.repo.set_alias(model.id, alias, version.id)
        announce(self.session)
        previous = self._audit_alias(actor, model, alias, version.id, previous_id)
        return AliasPublic(model=name, alias=alias, version=number, previous_version=previous)

    def set_serving(
        self, name: str, serving: ServingSettings, actor: Actor = CLI_ACTOR
    ) -> ServingSettings:
        """Change how a model's versions run (runtime, batching); every process follows."""
        model = self._model(name)
        model.runtime = serving.runtime
        model.batch_max_size = serving.batching.max_batch_size if serving.batching else None
        model.batch_max_wait_ms = serving.batching.max_wait_ms if serving.batching else None
        self.session.flush()
        announce(self.session)
        record(
            self.session,
            "model.serving_set",
            actor,
            f"model:{model.name}",
            **serving.model_dump(mode="json"),
        )
        return serving_settings(model)

    def _audit_alias(
        self, actor: Actor, model: Model, alias: str, version_id: int, previous_id: int | None
    ) -> int | None:
        numbers = {v.id: v.number for v in self.repo.versions(model.id)}
        previous = numbers.get(previous_id) if previous_id is not None else None
        record(
            self.session,
            "model.alias_moved",
            actor,
            f"model:{model.name}",
            alias=alias,
            version=numbers[version_id],
            previous_version=previous,
        )
        return previous

    def resolve(
        self, name: str, *, version: int | None = None, alias: str | None = None
    ) -> ResolvedVersion:
        """The version serving a request: explicit number, alias, or production-else-latest."""
        model = self._model(name)
        if version is not None:
            row = self._version(model, version)
        elif alias is not None:
            found = self.repo.aliased_version(model.id, alias)
            if found is None:
                raise NotFound(f"Model {name!r} has no alias {alias!r}.")
            row = found
        else:
            found = self.repo.aliased_version(model.id, DEFAULT_ALIAS)
            found = found or self.repo.latest_version(model.id)
            if found is None:
                raise NotFound(f"Model {name!r} has no versions.")
            row = found
        return _resolved(model, row)

    def resolve_id(self, version_id: int) -> ResolvedVersion:
        """A version by its id."""
        row = self.repo.version_by_id(version_id)
        if row is None:
            raise NotFound(f"Version id {version_id} not found.")
        model = self.repo.model_by_id(row.model_id)
        assert model is not None  # the foreign key guarantees it
        return _resolved(model, row)

    def onnx_twin(self, version_id: int) -> tuple[bytes, str] | None:
        """A version's ONNX twin bytes and their recorded sha256, if it has one."""
        row = self.session.get(OnnxTwin, version_id)
        return None if row is None else (row.content, row.sha256)

    def serving_form(self, version_id: int) -> tuple[bytes, str] | None:
        """A skops version's serving form (restricted-unpickler bytes) and its sha256, if any."""
        row = self.session.get(ServingForm, version_id)
        return None if row is None else (row.content, row.sha256)

    def _twins(self, version_ids: list[int]) -> dict[int, OnnxTwinPublic]:
        """What the API shows of these versions' twins (without reading their bytes)."""
        rows = self.session.execute(
            select(
                OnnxTwin.version_id,
                OnnxTwin.max_abs_diff,
                OnnxTwin.sha256,
                func.length(OnnxTwin.content),
            ).where(OnnxTwin.version_id.in_(version_ids))
        )
        return {
            version_id: OnnxTwinPublic(max_abs_diff=diff, sha256=sha256, size_bytes=int(size))
            for version_id, diff, sha256, size in rows
        }

    def artifact(self, version_id: int) -> bytes:
        """The stored bytes of a version."""
        data = self.repo.artifact(version_id)
        if data is None:
            raise InvalidArtifact(f"Version {version_id} has no stored artifact.")
        return data

    def _model(self, name: str) -> Model:
        model = self.repo.get_model(name)
        if model is None:
            raise NotFound(f"Model {name!r} not found.")
        return model

    def _version(self, model: Model, number: int) -> ModelVersion:
        row = self.repo.get_version(model.id, number)
        if row is None:
            raise NotFound(f"Model {model.name!r} has no version {number}.")
        return row

    def _version_public(
        self,
        model: Model,
        version: ModelVersion,
        aliases: dict[str, int] | None = None,
        twins: dict[int, OnnxTwinPublic] | None = None,
    ) -> VersionPublic:
        if aliases is None:
            aliases = dict(self.repo.aliases(model.id))
        if twins is None:
            twins = self._twins([version.id])
        return VersionPublic(
            model=model.name,
            version=version.number,
            format=version.format,
            sha256=version.sha256,
            size_bytes=version.size_bytes,
            input_schema=InputSchema.model_validate(version.input_schema),
            output=OutputSpec.model_validate(version.output),
            metrics=version.metrics,
            environment=version.environment,
            sklearn_version_mismatch=sklearn_mismatch(version.environment),
            description=version.description,
            aliases=sorted(a for a, n in aliases.items() if n == version.number),
            created_at=version.created_at,
            onnx=twins.get(version.id),
        )
