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
    WITHDRAWN = "withdrawn"


class PromotionState(enum.StrEnum):
    """Where a gate's `promote to <alias>` stands once the gate passed."""

    PENDING = "pending"  # passed; Quorum has not moved the alias yet (or MLflow refused so far)
    MOVED = "moved"  # the alias points at the gate's version: done, never again


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
    milestone: Mapped[str] = mapped_column(String(80))
    model: Mapped[str | None] = mapped_column(String(100))
    version: Mapped[str | None] = mapped_column(String(64))
    required_roles: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Approvals each role needs (`roles ds:2,eng`); a role missing here needs one.
    role_counts: Mapped[dict[str, int] | None] = mapped_column(JSONType)
    criteria: Mapped[list[str]] = mapped_column(JSONType, default=list)
    status: Mapped[str] = mapped_column(String(24), default=GateStatus.OPEN, index=True)
    due_date: Mapped[date | None] = mapped_column(Date)
    # The end of the due date in the project's time zone: the gate expires then.
    expires_at: Mapped[datetime | None]
    passed_at: Mapped[datetime | None]
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("gates.id"))
    # `wait 2h`: the gate passes this long after its last required approval (`ready_at`).
    wait_seconds: Mapped[int | None] = mapped_column(Integer)
    ready_at: Mapped[datetime | None] = mapped_column(index=True)
    # `promote to <alias>`: the MLflow alias Quorum sets on the version when the gate passes.
    promote_alias: Mapped[str | None] = mapped_column(String(64))
    promotion_state: Mapped[str | None] = mapped_column(String(16), index=True)
    promotion_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    promotion_next_at: Mapped[datetime | None]
    promotion_error: Mapped[str | None] = mapped_column(Text)
    promoted_at: Mapped[datetime | None]
    withdrawn_by: Mapped[str | None] = mapped_column(String(64))
    withdrawn_reason: Mapped[str | None] = mapped_column(Text)
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
    """One person's sign-off on a gate for one role: an approval, or a request for changes.

    One per person per gate (nobody signs two roles of one gate), and approvals of a role take
    numbered slots (`ds:2` has slots 1 and 2), so double and simultaneous clicks can never sign
    a role more often than the gate asks.
    """

    __tablename__ = "gate_signoffs"
    __table_args__ = (
        UniqueConstraint("gate_id", "user_id", name="uq_gate_signoffs_gate_id_user_id"),
        UniqueConstraint("gate_id", "role", "slot", name="uq_gate_signoffs_gate_id_role_slot"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gate_id: Mapped[int] = mapped_column(ForeignKey("gates.id"))
    role: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))
    # The approval's number within its role (1..N); None for a request for changes.
    slot: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    gate: Mapped[Gate] = relationship(back_populates="signoffs")
