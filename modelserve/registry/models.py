"""Registry tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from modelserve.core.clock import utcnow
from modelserve.core.db import Base, JSONType, UTCDateTime


class Model(Base):
    """A named model; its versions are numbered 1, 2, 3..."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The server default stays what migration 0004 made it: models registered before onnx
    # became the default keep scikit-learn; new ones get the server's DEFAULT_RUNTIME.
    runtime: Mapped[str] = mapped_column(String(16), default="onnx", server_default="sklearn")
    """sklearn, or onnx: versions with a verified ONNX twin are served by ONNX Runtime."""
    batch_max_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """Adaptive batching: most rows merged into one model call (null: batching off)."""
    batch_max_wait_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Adaptive batching: longest a request waits for others to join its batch."""

    versions: Mapped[list[ModelVersion]] = relationship(
        back_populates="model", lazy="raise", order_by="ModelVersion.number"
    )
    aliases: Mapped[list[ModelAlias]] = relationship(back_populates="model", lazy="raise")


class ModelVersion(Base):
    """One immutable registered version of a model, with its schema and provenance."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    input_schema: Mapped[dict[str, Any]] = mapped_column(JSONType)
    output: Mapped[dict[str, Any]] = mapped_column(JSONType)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    environment: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    model: Mapped[Model] = relationship(back_populates="versions", lazy="raise")


class ModelArtifact(Base):
    """The artifact bytes, apart from the version row so listings never load them."""

    __tablename__ = "model_artifacts"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    content: Mapped[bytes] = mapped_column(LargeBinary)


class OnnxTwin(Base):
    """An ONNX conversion of a version, kept only if it matched scikit-learn at registration."""

    __tablename__ = "model_onnx_twins"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    content: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    max_abs_diff: Mapped[float] = mapped_column(Float)
    """Largest difference from scikit-learn's outputs on the verification sample."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ServingForm(Base):
    """A skops version re-serialised for the restricted unpickler at registration, from the
    object skops loaded safely: it loads without importing skops, whose import (every
    scikit-learn estimator module) costs more than the rest of a server's start."""

    __tablename__ = "model_serving_forms"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    content: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))


class ModelAlias(Base):
    """A movable name (``production``, ``staging``...) pointing at one version of a model."""

    __tablename__ = "model_aliases"
    __table_args__ = (
        UniqueConstraint("model_id", "name"),
        Index("ix_model_aliases_version_id", "version_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    model: Mapped[Model] = relationship(back_populates="aliases", lazy="raise")
    version: Mapped[ModelVersion] = relationship(lazy="raise")
