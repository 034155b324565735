"""Base types, projects and roles, reference counters and the audit log."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only aliases INTEGER PRIMARY KEY to the rowid (autoincrement) for plain INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType}


class Project(Base):
    """A channel's project, created the first time a command is used there."""

    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("team_id", "channel_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Gate settings (`/quorum settings …`): may a requester approve their own gate, and how long
    # sign-offs wait before their holders are reminded (then daily).
    allow_self_approval: Mapped[bool] = mapped_column(Boolean, default=False,
                                                      server_default=false())
    gate_reminder_hours: Mapped[int] = mapped_column(Integer, default=24,
                                                     server_default=text("24"))
    # `/quorum settings new-versions on|off`: announce MLflow's new model versions (not only
    # promotions) in the channel.
    announce_new_versions: Mapped[bool] = mapped_column(Boolean, default=False,
                                                        server_default=false())
    # Whether the channel is private, as Slack last said (`conversations.info`, looked up at the
    # runtime edge and stored by `bot.services.access.set_privacy`); None until known, which the
    # access rules treat as private (fail closed).
    is_private: Mapped[bool | None] = mapped_column(Boolean, default=None)
    privacy_checked_at: Mapped[datetime | None] = mapped_column(default=None)
    # The members of a private channel as Slack last listed them (`conversations.members`, with
    # the privacy): whose Home and DMs may show its records. None for public or unknown ones.
    member_ids: Mapped[list[str] | None] = mapped_column(JSONType, default=None)

    @property
    def ref(self) -> str:
        """How the audit log names a project (role and setting changes): by its channel."""
        return f"#{self.channel_id}"


class RefCounter(Base):
    """The last number handed out for each short-reference prefix (D, H, G, …) in a workspace."""

    __tablename__ = "ref_counters"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(8), primary_key=True)
    last_value: Mapped[int] = mapped_column(Integer, default=0)


# Marks the placeholder reference of a record whose number is not taken yet (see
# `bot.services.refs`); random per process, so no text a person types can pass for one.
PENDING_MARK = "q" + secrets.token_hex(4)


def pending_ref(prefix: str, provisional: int) -> str:
    """The placeholder that stands for a record's reference until its number is taken."""
    return f"{prefix}-{PENDING_MARK}{-provisional}x"


class Referenced:
    """Mixin of records with a per-workspace short reference such as `D-12`."""

    ref_prefix: ClassVar[str]
    team_id: Mapped[str]
    number: Mapped[int]

    @property
    def ref(self) -> str:
        if self.number < 0:  # provisional: the reference is put in place at commit
            return pending_ref(self.ref_prefix, self.number)
        return f"{self.ref_prefix}-{self.number}"


class AuditEvent(Base):
    """One change to one register. Append-only: the database refuses updates and deletes."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_entity", "entity_type", "entity_id"),
                      # A project's audit log in the portal, newest first (migration 0018).
                      Index("ix_audit_events_project_at", "project_id", "at", "id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32), index=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[int] = mapped_column(BigInteger)
    entity_ref: Mapped[str] = mapped_column(String(32))
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]


class ProjectOwner(Base):
    """Someone who administers one project (its roles, settings and model bindings) besides the
    workspace admins (`QUORUM_ADMINS`); the first person to configure a project becomes one."""

    __tablename__ = "project_owners"
    __table_args__ = (UniqueConstraint("project_id", "user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    user_id: Mapped[str] = mapped_column(String(32))
    added_by: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class RoleAssignment(Base):
    """Someone holding a role (`ds`, `eng`, `pm` or any word) in a project."""

    __tablename__ = "role_assignments"
    __table_args__ = (UniqueConstraint("project_id", "user_id", "role"),
                      Index("ix_role_assignments_user", "user_id", "project_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    user_id: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(32))
    assigned_by: Mapped[str] = mapped_column(String(64))
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)
