"""GitHub deployment protection rules: which repository environment belongs to which project,
and each deployment Quorum holds until its gate passes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bot.models.core import Base, BigId, JSONType, utcnow

if TYPE_CHECKING:
    from bot.models.core import Project


class GithubMapping(Base):
    """`/quorum github map <owner/repo> <environment> [model <name>]`: deployments of that
    repository to that environment wait for this project's gates."""

    __tablename__ = "github_mappings"
    __table_args__ = (UniqueConstraint("repo", "environment"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    repo: Mapped[str] = mapped_column(String(140))  # owner/name, lower case
    environment: Mapped[str] = mapped_column(String(255))
    model: Mapped[str | None] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship(lazy="joined")


class DeploymentState:
    WAITING = "waiting"  # held: the gates have not decided yet
    APPROVE = "approve"  # decided; the callback to GitHub is still to be made
    REJECT = "reject"
    APPROVED = "approved"  # GitHub took the answer (204): final
    REJECTED = "rejected"
    FAILED = "failed"  # GitHub refused the answer for good (say, the run is gone)


class GithubDeployment(Base):
    """One `deployment_protection_rule` request from GitHub (its delivery GUID acts once) and
    the one answer Quorum gives it through `deployment_callback_url`."""

    __tablename__ = "github_deployments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(64), unique=True)
    team_id: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    repo: Mapped[str] = mapped_column(String(140))
    environment: Mapped[str] = mapped_column(String(255))
    installation_id: Mapped[int] = mapped_column(BigInteger)
    callback_url: Mapped[str] = mapped_column(String(500))
    sha: Mapped[str | None] = mapped_column(String(64))
    ref: Mapped[str | None] = mapped_column(String(255))
    model: Mapped[str | None] = mapped_column(String(100))
    version: Mapped[str | None] = mapped_column(String(64))
    gate_ids: Mapped[list[int]] = mapped_column(JSONType, default=list)
    state: Mapped[str] = mapped_column(String(16), default=DeploymentState.WAITING, index=True)
    comment: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship(lazy="joined")
