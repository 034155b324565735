"""Decision records (ADR/MADR)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.models.core import Base, BigId, JSONType, Referenced, utcnow

if TYPE_CHECKING:
    from bot.models.core import Project
    from bot.models.hypotheses import Hypothesis


class DecisionStatus(enum.StrEnum):
    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"


class Decision(Referenced, Base):
    """An architecture/model decision record in the ADR/MADR shape."""

    __tablename__ = "decisions"
    __table_args__ = (
        UniqueConstraint("team_id", "number"),
        Index("ix_decisions_project_created", "project_id", "created_at", "id"),
        # Partial: with every row's NULL in it, SQLite's ANALYZE statistics call the index
        # useless and a successor lookup (`superseded_by`) would scan the table.
        Index("ix_decisions_supersedes_id", "supersedes_id",
              sqlite_where=text("supersedes_id IS NOT NULL"),
              postgresql_where=text("supersedes_id IS NOT NULL")),
        Index("ix_decisions_created_by", "team_id", "created_by", "project_id"),
        # `/quorum trace <model> v<version>` finds the records about a model version.
        Index("ix_decisions_model_version", "team_id", "model", "version"),
    )
    ref_prefix = "D"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    number: Mapped[int] = mapped_column(Integer)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    title: Mapped[str] = mapped_column(String(150))
    context: Mapped[str] = mapped_column(Text, default="")
    options: Mapped[str] = mapped_column(Text, default="")
    decision: Mapped[str] = mapped_column(Text, default="")
    consequences: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=DecisionStatus.PROPOSED)
    deciders: Mapped[list[str]] = mapped_column(JSONType, default=list)
    source_permalink: Mapped[str | None] = mapped_column(String(500))
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("decisions.id"))
    # The model version this record is about (both or neither), for `/quorum trace`.
    model: Mapped[str | None] = mapped_column(String(100))
    version: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship(lazy="joined")
    supersedes: Mapped[Decision | None] = relationship(
        remote_side=[id], back_populates="superseded_by", foreign_keys=[supersedes_id]
    )
    superseded_by: Mapped[Decision | None] = relationship(
        back_populates="supersedes", foreign_keys=[supersedes_id], uselist=False
    )
    # The hypotheses this decision is based on ("Based on hypotheses" in the decision form).
    hypotheses: Mapped[list[Hypothesis]] = relationship(
        secondary="decision_hypotheses", back_populates="decisions",
        order_by="Hypothesis.number",
    )


# Decision.hypotheses maps through the hypotheses module's table: import it with this one.
from bot.models import hypotheses as _hypotheses  # noqa: E402,F401
