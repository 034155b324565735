"""The risk register and each risk's assessments over time."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    CheckConstraint,
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


class RiskStatus(enum.StrEnum):
    OPEN = "open"
    MITIGATING = "mitigating"
    MONITORING = "monitoring"
    CLOSED = "closed"
    ACCEPTED = "accepted"


class Risk(Referenced, Base):
    """An entry of the risk register: what could go wrong, how likely, how bad, who owns it."""

    __tablename__ = "risks"
    __table_args__ = (
        UniqueConstraint("team_id", "number"),
        Index("ix_risks_project_status", "project_id", "status"),
        Index("ix_risks_owner", "team_id", "owner", "project_id"),
        CheckConstraint("likelihood BETWEEN 1 AND 5", name="ck_risks_likelihood"),
        CheckConstraint("impact BETWEEN 1 AND 5", name="ck_risks_impact"),
    )
    ref_prefix = "R"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    number: Mapped[int] = mapped_column(Integer)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    title: Mapped[str] = mapped_column(String(150))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(16), default="other")
    likelihood: Mapped[int] = mapped_column(Integer)
    impact: Mapped[int] = mapped_column(Integer)
    # Derived from likelihood x impact (see `bot.services.risks.band_for`); stored to sort by.
    score: Mapped[int] = mapped_column(Integer)
    band: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str | None] = mapped_column(String(64))
    treatment: Mapped[str] = mapped_column(String(16), default="mitigate")
    mitigation: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=RiskStatus.OPEN)
    next_review: Mapped[date]
    closed_reason: Mapped[str | None] = mapped_column(Text)
    closed_by: Mapped[str | None] = mapped_column(String(64))
    closed_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship(lazy="joined")
    assessments: Mapped[list[RiskAssessment]] = relationship(
        back_populates="risk", order_by="RiskAssessment.id", cascade="all, delete-orphan"
    )


class RiskAssessment(Base):
    """One scoring of a risk (the first when it is logged, then every re-assessment)."""

    __tablename__ = "risk_assessments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    risk_id: Mapped[int] = mapped_column(ForeignKey("risks.id"), index=True)
    likelihood: Mapped[int] = mapped_column(Integer)
    impact: Mapped[int] = mapped_column(Integer)
    score: Mapped[int] = mapped_column(Integer)
    band: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    assessed_by: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)

    risk: Mapped[Risk] = relationship(back_populates="assessments")
