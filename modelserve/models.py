"""Every ORM model, imported once so ``metadata`` is complete (for Alembic and tests)."""

from modelserve.audit.models import AuditEvent
from modelserve.auth.models import ApiKey, LoginSession, RateCounter, RefreshToken
from modelserve.core.db import Base
from modelserve.lifecycle.models import (
    RegistryState,
    ServerInstance,
    TrafficPolicy,
    VersionReadiness,
    WarmupRequest,
)
from modelserve.predictions.models import Prediction
from modelserve.registry.models import (
    Model,
    ModelAlias,
    ModelArtifact,
    ModelVersion,
    OnnxTwin,
    ServingForm,
)
from modelserve.users.models import User

metadata = Base.metadata

__all__ = [
    "ApiKey",
    "AuditEvent",
    "LoginSession",
    "Model",
    "ModelAlias",
    "ModelArtifact",
    "ModelVersion",
    "OnnxTwin",
    "Prediction",
    "RateCounter",
    "RefreshToken",
    "RegistryState",
    "ServerInstance",
    "ServingForm",
    "TrafficPolicy",
    "User",
    "VersionReadiness",
    "WarmupRequest",
    "metadata",
]
