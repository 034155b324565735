"""Model bindings (a registered model's project) and promotions."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.models.core import Base, BigId, Referenced, utcnow

if TYPE_CHECKING:
    from bot.models.core import Project


class ModelBinding(Base):
    """A registered model name bound to a project: its promotions and alerts go there."""

    __tablename__ = "model_bindings"
    __table_args__ = (UniqueConstraint("team_id", "model"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    model: Mapped[str] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship(lazy="joined")


class PromotionKind(enum.StrEnum):
    PROMOTION = "promotion"  # an alias or stage moved to a version
    NEW_VERSION = "new_version"  # MLflow registered a version (announced only on opt-in)
    ALIAS_DELETED = "alias_deleted"  # an alias was removed in MLflow: announced as a rollback


class Promotion(Referenced, Base):
    """A model version promoted (`P-n`) from MLflow, a webhook or the CLI; or a new version
    MLflow registered. Stored even when unrouted, with the gate record it was promoted with."""

    __tablename__ = "promotions"
    __table_args__ = (
        UniqueConstraint("team_id", "number"),
        Index("ix_promotions_model_version", "model", "version"),
    )
    ref_prefix = "P"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    number: Mapped[int] = mapped_column(Integer)
    # None while unrouted: no binding, no project named and no default channel.
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default=PromotionKind.PROMOTION)
    model: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(64))
    to_stage: Mapped[str | None] = mapped_column(String(64))
    from_stage: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str | None] = mapped_column(String(500))
    note: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(16))  # "mlflow", "webhook" or "cli"
    # "announced", "recorded" (a new version nobody asked to hear about) or "unrouted".
    status: Mapped[str] = mapped_column(String(16))
    # MLflow's X-MLflow-Delivery-Id: a redelivery of the same event is recognised by it.
    delivery_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    # The gate record of the version when it was promoted (`GateCheck.as_record()` and the
    # gates still waiting), as it was announced.
    gate_record: Mapped[dict[str, Any] | None]
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The same model, version and target announced again within the repeat window: counted
    # here (and on the card's thread) rather than stored and announced as a new promotion.
    repeats: Mapped[int] = mapped_column(Integer, default=0)
    repeated_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    project: Mapped[Project | None] = relationship(lazy="joined")
