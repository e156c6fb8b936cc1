"""Registry queries, in one place."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelserve.registry.models import Model, ModelAlias, ModelArtifact, ModelVersion
from modelserve.registry.schemas import DEFAULT_RUNTIME, Runtime


class RegistryRepository:
    """Reads and writes registry rows within the caller's session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get_model(self, name: str, *, for_update: bool = False) -> Model | None:
        """A model by name."""
        statement = select(Model).where(Model.name == name)
        if for_update:
            statement = statement.with_for_update()
        return self.session.scalars(statement).one_or_none()

    def list_models(self) -> Sequence[Model]:
        """Every model, by name."""
        return self.session.scalars(select(Model).order_by(Model.name)).all()

    def add_model(self, name: str, runtime: Runtime = DEFAULT_RUNTIME) -> Model:
        """Create a model (flushes, so a concurrent duplicate fails here)."""
        model = Model(name=name, runtime=runtime)
        self.session.add(model)
        self.session.flush()
        return model

    def versions(self, model_id: int) -> Sequence[ModelVersion]:
        """A model's versions, oldest first."""
        statement = select(ModelVersion).where(ModelVersion.model_id == model_id)
        return self.session.scalars(statement.order_by(ModelVersion.number)).all()

    def latest_numbers(self) -> dict[int, int]:
        """model id -> its highest version number."""
        statement = select(ModelVersion.model_id, func.max(ModelVersion.number)).group_by(
            ModelVersion.model_id
        )
        return {row[0]: row[1] for row in self.session.execute(statement).all()}

    def next_number(self, model_id: int) -> int:
        """The number the next version of a model gets."""
        statement = select(func.max(ModelVersion.number)).where(ModelVersion.model_id == model_id)
        return (self.session.scalar(statement) or 0) + 1

    def get_version(self, model_id: int, number: int) -> ModelVersion | None:
        """A version by its number."""
        statement = select(ModelVersion).where(
            ModelVersion.model_id == model_id, ModelVersion.number == number
        )
        return self.session.scalars(statement).one_or_none()

    def latest_version(self, model_id: int) -> ModelVersion | None:
        """The newest version of a model."""
        statement = (
            select(ModelVersion)
            .where(ModelVersion.model_id == model_id)
            .order_by(ModelVersion.number.desc())
            .limit(1)
        )
        return self.session.scalars(statement).one_or_none()

    def version_by_id(self, version_id: int) -> ModelVersion | None:
        """A version by its id."""
        return self.session.get(ModelVersion, version_id)

    def model_by_id(self, model_id: int) -> Model | None:
        """A model by its id."""
        return self.session.get(Model, model_id)

    def add_version(self, version: ModelVersion, content: bytes) -> ModelVersion:
        """Store a version and its artifact bytes."""
        self.session.add(version)
        self.session.flush()
        self.session.add(ModelArtifact(version_id=version.id, content=content))
        self.session.flush()
        return version

    def artifact(self, version_id: int) -> bytes | None:
        """The stored artifact bytes of a version."""
        statement = select(ModelArtifact.content).where(ModelArtifact.version_id == version_id)
        return self.session.scalar(statement)

    def aliases(self, model_id: int) -> Sequence[tuple[str, int]]:
        """(alias, version number) pairs of a model."""
        statement = (
            select(ModelAlias.name, ModelVersion.number)
            .join(ModelVersion, ModelAlias.version_id == ModelVersion.id)
            .where(ModelAlias.model_id == model_id)
            .order_by(ModelAlias.name)
        )
        return [(name, number) for name, number in self.session.execute(statement).all()]

    def all_aliases(self) -> dict[int, dict[str, int]]:
        """model id -> {alias: version number}."""
        statement = select(ModelAlias.model_id, ModelAlias.name, ModelVersion.number).join(
            ModelVersion, ModelAlias.version_id == ModelVersion.id
        )
        result: dict[int, dict[str, int]] = {}
        for model_id, name, number in self.session.execute(statement).all():
            result.setdefault(model_id, {})[name] = number
        return result

    def get_alias(self, model_id: int, name: str, *, for_update: bool = False) -> ModelAlias | None:
        """An alias row."""
        statement = select(ModelAlias).where(
            ModelAlias.model_id == model_id, ModelAlias.name == name
        )
        if for_update:
            statement = statement.with_for_update()
        return self.session.scalars(statement).one_or_none()

    def aliased_version(self, model_id: int, alias: str) -> ModelVersion | None:
        """The version an alias points at."""
        statement = (
            select(ModelVersion)
            .join(ModelAlias, ModelAlias.version_id == ModelVersion.id)
            .where(ModelAlias.model_id == model_id, ModelAlias.name == alias)
        )
        return self.session.scalars(statement).one_or_none()

    def set_alias(self, model_id: int, name: str, version_id: int) -> int | None:
        """Point an alias at a version; returns the version id it pointed at before."""
        alias = self.get_alias(model_id, name, for_update=True)
        if alias is None:
            self.session.add(ModelAlias(model_id=model_id, name=name, version_id=version_id))
            self.session.flush()
            return None
        previous = alias.version_id
        alias.version_id = version_id
        self.session.flush()
        return previous
