"""Lifecycle tables: the registry's change counter, live server processes, what each has warmed,
pending warm-ups, and per-alias traffic policies."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from modelserve.core.clock import utcnow
from modelserve.core.db import Base, UTCDateTime


class RegistryState(Base):
    """One row whose ``generation`` grows with every change to what serves traffic, so a
    process learns it is stale with one cheap read (or a NOTIFY on PostgreSQL)."""

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


class ServerInstance(Base):
    """A running server process, kept alive by its heartbeat."""

    __tablename__ = "server_instances"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class VersionReadiness(Base):
    """Whether a server process has loaded a version and had it answer a probe."""

    __tablename__ = "version_readiness"

    instance_id: Mapped[str] = mapped_column(
        ForeignKey("server_instances.id", ondelete="CASCADE"), primary_key=True
    )
    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WarmupRequest(Base):
    """A version every server process should load and probe now (an alias or traffic policy
    is about to send it traffic)."""

    __tablename__ = "warmup_requests"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TrafficPolicy(Base):
    """How traffic for one alias of a model is split: a sticky canary share and a shadow."""

    __tablename__ = "traffic_policies"
    __table_args__ = (UniqueConstraint("model_id", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(64))
    canary_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=True
    )
    canary_percent: Mapped[float] = mapped_column(Float, default=0.0)
    shadow_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=True
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
