"""Milestone gates and their sign-offs."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.models.core import Base, BigId, JSONType, Referenced, utcnow

if TYPE_CHECKING:
    from bot.models.core import Project


class GateStatus(enum.StrEnum):
    OPEN = "open"
    CHANGES_REQUESTED = "changes_requested"
    PASSED = "passed"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"


class SignoffDecision(enum.StrEnum):
    APPROVE = "approve"
    CHANGES = "changes"


class Gate(Referenced, Base):
    """A milestone gate: every required role must approve before the model moves on."""

    __tablename__ = "gates"
    __table_args__ = (
        UniqueConstraint("team_id", "number"),
        Index("ix_gates_model_version", "model", "version"),
    )
    ref_prefix = "G"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    number: Mapped[int] = mapped_column(Integer)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    milestone: Mapped[str] = mapped_column(String(40))
    model: Mapped[str | None] = mapped_column(String(100))
    version: Mapped[str | None] = mapped_column(String(64))
    required_roles: Mapped[list[str]] = mapped_column(JSONType, default=list)
    criteria: Mapped[list[str]] = mapped_column(JSONType, default=list)
    status: Mapped[str] = mapped_column(String(24), default=GateStatus.OPEN, index=True)
    due_date: Mapped[date | None] = mapped_column(Date)
    # The end of the due date in the project's time zone: the gate expires then.
    expires_at: Mapped[datetime | None]
    passed_at: Mapped[datetime | None]
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("gates.id"))
    requested_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship(lazy="joined")
    signoffs: Mapped[list[GateSignoff]] = relationship(
        back_populates="gate", order_by="GateSignoff.id", lazy="selectin"
    )
    supersedes: Mapped[Gate | None] = relationship(
        remote_side=[id], back_populates="superseded_by", foreign_keys=[supersedes_id]
    )
    superseded_by: Mapped[Gate | None] = relationship(
        back_populates="supersedes", foreign_keys=[supersedes_id], uselist=False
    )


class GateSignoff(Base):
    """One role's sign-off on a gate: an approval, or a request for changes with its reason.

    Unique per gate and role, so double and simultaneous clicks can never sign a role twice.
    """

    __tablename__ = "gate_signoffs"
    __table_args__ = (UniqueConstraint("gate_id", "role"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gate_id: Mapped[int] = mapped_column(ForeignKey("gates.id"))
    role: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    gate: Mapped[Gate] = relationship(back_populates="signoffs")
