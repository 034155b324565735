"""The registers as SQLAlchemy 2 typed models, plus the runtime tables (outbox, Slack messages)."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


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


class Referenced:
    """Mixin of records with a per-workspace short reference such as `D-12`."""

    ref_prefix: ClassVar[str]
    team_id: Mapped[str]
    number: Mapped[int]

    @property
    def ref(self) -> str:
        return f"{self.ref_prefix}-{self.number}"


class AuditEvent(Base):
    """One change to one register. Append-only: the database refuses updates and deletes."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_entity", "entity_type", "entity_id"),)

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


class IncidentStatus(enum.StrEnum):
    DECLARED = "declared"
    ACKNOWLEDGED = "acknowledged"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"


class Incident(Referenced, Base):
    """A production incident `INC-n`, declared in Slack, by the CLI or by Alertmanager."""

    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("team_id", "number"),
        # One open incident per Alertmanager group: a group that fires again after its incident
        # was resolved opens a new one, and concurrent notifications of a new group make one.
        Index("uq_incidents_open_alert_group", "team_id", "alert_group_key", unique=True,
              sqlite_where=text("status <> 'resolved'"),
              postgresql_where=text("status <> 'resolved'")),
        Index("ix_incidents_alert_group", "alert_group_key"),
    )
    ref_prefix = "INC"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    number: Mapped[int] = mapped_column(Integer)
    # None while unrouted: an alert that named no known project and found no default channel.
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), index=True)
    title: Mapped[str] = mapped_column(String(150))
    severity: Mapped[str] = mapped_column(String(8), default="sev3")
    status: Mapped[str] = mapped_column(String(16), default=IncidentStatus.DECLARED)
    commander: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(200))
    model_version: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    channel_id: Mapped[str | None] = mapped_column(String(32))  # the dedicated channel
    source: Mapped[str] = mapped_column(String(16), default="slack")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None]
    mitigated_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    # The last status update by a person (or the declaration): update reminders count from it.
    last_update_at: Mapped[datetime] = mapped_column(default=utcnow)
    summary: Mapped[str] = mapped_column(Text, default="")
    root_cause: Mapped[str] = mapped_column(Text, default="")
    follow_ups: Mapped[str] = mapped_column(Text, default="")
    alert_group_key: Mapped[str | None] = mapped_column(String(1000))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    project: Mapped[Project | None] = relationship(lazy="joined")
    # Chronological: an alert's entry carries the time Alertmanager says it started firing.
    events: Mapped[list[IncidentEvent]] = relationship(
        back_populates="incident", order_by="(IncidentEvent.at, IncidentEvent.id)",
        cascade="all, delete-orphan",
    )


class IncidentEvent(Base):
    """One entry of an incident's timeline: who did or said what, when."""

    __tablename__ = "incident_events"
    __table_args__ = (
        # A repeated Alertmanager notification can never add the same alert twice.
        UniqueConstraint("incident_id", "kind", "alert_fingerprint"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    alert_fingerprint: Mapped[str | None] = mapped_column(String(64))

    incident: Mapped[Incident] = relationship(back_populates="events")


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
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    project: Mapped[Project | None] = relationship(lazy="joined")


class RitualKind(enum.StrEnum):
    STANDUP = "standup"
    RETRO = "retro"


class OccurrenceStatus(enum.StrEnum):
    OPEN = "open"  # posted, collecting updates or retro items
    CLOSED = "closed"  # the summary is posted
    SKIPPED = "skipped"  # not posted: a holiday, or missed beyond the grace period


class RitualSchedule(Base):
    """When a project's standup or retrospective is posted: one schedule per project and kind."""

    __tablename__ = "ritual_schedules"
    __table_args__ = (UniqueConstraint("project_id", "kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    kind: Mapped[str] = mapped_column(String(16))
    # A five-field cron expression with day names (`30 9 * * mon-fri`), read in `timezone`.
    cron: Mapped[str] = mapped_column(String(120))
    # Fire only every n-th week, counted from the ISO week of `anchor_week` (a Monday).
    every_weeks: Mapped[int] = mapped_column(Integer, default=1)
    anchor_week: Mapped[date] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    answer_window_minutes: Mapped[int] = mapped_column(Integer, default=180)
    # The text people typed (`weekdays 09:30`), shown back to them.
    description: Mapped[str] = mapped_column(String(200))
    # Channel members when the schedule was set: participants when nobody holds a role.
    members: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Every occurrence up to this instant has been looked at (posted, skipped or found missed).
    checked_until: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship(lazy="joined")

    @property
    def ref(self) -> str:
        return f"{self.kind.upper()}-SCHEDULE-{self.id}"


class RitualOccurrence(Base):
    """One standup or retrospective. The unique (project, kind, time) row is the claim that makes
    it happen exactly once, whatever the number of replicas."""

    __tablename__ = "ritual_occurrences"
    __table_args__ = (
        UniqueConstraint("project_id", "kind", "scheduled_for"),
        Index("ix_ritual_occurrences_status", "status", "closes_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("ritual_schedules.id"))
    kind: Mapped[str] = mapped_column(String(16))
    scheduled_for: Mapped[datetime]
    local_date: Mapped[date] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=OccurrenceStatus.OPEN)
    skip_reason: Mapped[str | None] = mapped_column(String(200))
    participants: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # What the retro digest covered: from the previous retro to this one.
    period_start: Mapped[datetime | None]
    posted_at: Mapped[datetime | None]
    remind_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    closes_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship(lazy="joined")
    updates: Mapped[list[RitualUpdate]] = relationship(
        back_populates="occurrence", order_by="RitualUpdate.id")
    items: Mapped[list[RetroItem]] = relationship(
        back_populates="occurrence", order_by="RetroItem.id")

    @property
    def ref(self) -> str:
        return f"{self.kind.upper()}-{self.id}"

    def local(self, moment: datetime | None) -> datetime | None:
        """`moment` on the wall clock of the occurrence's time zone (for templates)."""
        return moment.astimezone(ZoneInfo(self.timezone)) if moment else None


class RitualUpdate(Base):
    """One person's standup update, from a thread reply or the "Add my update" modal.

    A thread reply is unique by its message ts, so a retried Slack event stores it once.
    """

    __tablename__ = "ritual_updates"
    __table_args__ = (UniqueConstraint("occurrence_id", "message_ts"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    occurrence_id: Mapped[int] = mapped_column(ForeignKey("ritual_occurrences.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # thread | modal
    yesterday: Mapped[str] = mapped_column(Text, default="")
    today: Mapped[str] = mapped_column(Text, default="")
    blockers: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    message_ts: Mapped[str | None] = mapped_column(String(32))
    event_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    occurrence: Mapped[RitualOccurrence] = relationship(back_populates="updates")


class RetroItem(Base):
    """A retrospective item: went well, to improve, or an action item with owner and due date."""

    __tablename__ = "retro_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    occurrence_id: Mapped[int] = mapped_column(ForeignKey("ritual_occurrences.id"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # went_well | to_improve | action
    text: Mapped[str] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(64))
    due_date: Mapped[date | None] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16), default="open")  # action items: open | done
    done_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    occurrence: Mapped[RitualOccurrence] = relationship(back_populates="items")


class RitualSkip(Base):
    """A local date on which a project's ritual is not held (`/standup skip <date>`)."""

    __tablename__ = "ritual_skips"
    __table_args__ = (UniqueConstraint("project_id", "kind", "on_date"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    kind: Mapped[str] = mapped_column(String(16))
    on_date: Mapped[date] = mapped_column(Date)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RitualAway(Base):
    """Someone out of office until a date (inclusive): not expected at the project's standups."""

    __tablename__ = "ritual_away"
    __table_args__ = (UniqueConstraint("project_id", "user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    user_id: Mapped[str] = mapped_column(String(64))
    until: Mapped[date] = mapped_column(Date)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPERSEDED = "superseded"


class OutboxMessage(Base):
    """A Slack Web API call to make, written in the same transaction as the change behind it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_key", "message_key", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    # Calls that share a key are delivered in order; `chat.update` finds its `ts` through it.
    message_key: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class JobClaim(Base):
    """A unit of scheduled work that one process has taken on (see `bot.scheduler`)."""

    __tablename__ = "job_claims"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)


class PostPace(Base):
    """When a workspace's next `chat.postMessage` may go out (`bot.pacing`): one row per team,
    shared by every replica so that together they keep to Slack's workspace-wide rate."""

    __tablename__ = "post_pace"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Seconds since the epoch (a plain number, so both databases add and compare it alike).
    next_slot: Mapped[float] = mapped_column(Float)


class ProcessedRequest(Base):
    """A Slack event or modal submission already acted on, remembered in the same transaction as
    its effect: Slack's retry of the event (same `event_id`) or a second press of Submit (same
    view id) then changes nothing, while a retry of an attempt that failed still goes through.
    Swept once no retry can come any more (`bot.services.idempotency`)."""

    __tablename__ = "processed_requests"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class SlackMessage(Base):
    """Where a keyed message (a record's card) lives in Slack, so later changes edit it."""

    __tablename__ = "slack_messages"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class HomeTab(Base):
    """A person who has opened Quorum's App Home, and the project they filter it to.

    Only people with a row get their Home re-published after changes (the others see a fresh
    one when they first open it); `project_id` None shows every project of theirs.
    """

    __tablename__ = "home_tabs"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
