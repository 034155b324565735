"""The hypothesis log, and which decisions cite which hypotheses."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.models.core import Base, BigId, Referenced, utcnow

if TYPE_CHECKING:
    from bot.models.core import Project
    from bot.models.decisions import Decision


class HypothesisStatus(enum.StrEnum):
    PROPOSED = "proposed"
    RUNNING = "running"
    SUPPORTED = "supported"
    REFUTED = "refuted"
    INCONCLUSIVE = "inconclusive"


class Hypothesis(Referenced, Base):
    """An entry of the hypothesis log: what we expect, how we measure it, and what it showed."""

    __tablename__ = "hypotheses"
    __table_args__ = (
        UniqueConstraint("team_id", "number"),
        # The Home finds a person's hypotheses (and projects) by owner or author. The workspace
        # leads, so that even without ANALYZE statistics SQLite prefers these two-column matches
        # to the (team_id, number) index, which would read the whole workspace.
        Index("ix_hypotheses_owner", "team_id", "owner", "project_id"),
        Index("ix_hypotheses_created_by", "team_id", "created_by", "project_id"),
        # `/quorum trace <model> v<version>` finds the records about a model version.
        Index("ix_hypotheses_model_version", "team_id", "model", "version"),
        # A project's hypotheses of one status, newest first: the portal's board and
        # `/hypothesis list` (migration 0018).
        Index("ix_hypotheses_project_status", "project_id", "status", "created_at", "id"),
    )
    ref_prefix = "H"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    number: Mapped[int] = mapped_column(Integer)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    statement: Mapped[str] = mapped_column(String(300))
    metric: Mapped[str] = mapped_column(Text, default="")
    expected_effect: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str | None] = mapped_column(String(64))
    experiment_url: Mapped[str] = mapped_column(Text, default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=HypothesisStatus.PROPOSED)
    evidence: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime | None]
    concluded_at: Mapped[datetime | None]
    concluded_by: Mapped[str | None] = mapped_column(String(64))
    # A concluded hypothesis is reopened only by a new one that cites it.
    cites_id: Mapped[int | None] = mapped_column(ForeignKey("hypotheses.id"), index=True)
    # The model version this record is about (both or neither), for `/quorum trace`.
    model: Mapped[str | None] = mapped_column(String(100))
    version: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship(lazy="joined")
    cites: Mapped[Hypothesis | None] = relationship(
        remote_side=[id], back_populates="reopened_by", foreign_keys=[cites_id]
    )
    reopened_by: Mapped[list[Hypothesis]] = relationship(
        back_populates="cites", foreign_keys=[cites_id], order_by="Hypothesis.number"
    )
    decisions: Mapped[list[Decision]] = relationship(
        secondary="decision_hypotheses", back_populates="hypotheses", order_by="Decision.number"
    )


decision_hypotheses = Table(
    "decision_hypotheses",
    Base.metadata,
    Column("decision_id", BigId, ForeignKey("decisions.id"), primary_key=True),
    Column("hypothesis_id", BigId, ForeignKey("hypotheses.id"), primary_key=True, index=True),
)


# Hypothesis.decisions is mapped to Decision: import its module with this one.
from bot.models import decisions as _decisions  # noqa: E402,F401
