"""Every ORM model, imported once so ``metadata`` is complete (for Alembic and tests)."""

from modelserve.core.db import Base
from modelserve.predictions.models import Prediction
from modelserve.registry.models import Model, ModelAlias, ModelArtifact, ModelVersion

metadata = Base.metadata

__all__ = ["Model", "ModelAlias", "ModelArtifact", "ModelVersion", "Prediction", "metadata"]
