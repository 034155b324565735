"""What the portal's pages read, a page at a time.

Every listing is read by keyset (a cursor names the last row shown; the next page seeks the
index from it), so the thousandth page costs what the first does and no page loads a register
whole. Counts are capped (`capped_count`): "1,000+" is as useful on a page as an exact figure
that would cost a scan of a million rows. The registers' own services are used wherever they
already answer the question (search, heat map, hypothesis board, trace, incident figures).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.orm import Session

from bot.models import (
    AuditEvent,
    Decision,
    Gate,
    Hypothesis,
    Incident,
    ModelBinding,
    Project,
    Promotion,
    PromotionKind,
    RetroItem,
    Risk,
    RiskAssessment,
    RitualOccurrence,
    utcnow,
)
from bot.services import incidents as incident_service

T = TypeVar("T")
PAGE_SIZE = 25
# Counts on a page stop here ("250+"): past it an exact figure tells a reader nothing more and
# would cost a read of every row.
COUNT_CAP = 250
CURSOR = re.compile(r"\d{1,18}")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; `older`/`newer` are the cursors of the links (None: no more)."""

    items: list[T]
    older: str | None = None
    newer: str | None = None


@dataclass(frozen=True)
class Count:
    """A count that stops at `COUNT_CAP` (shown as "1000+")."""

    value: int

    @property
    def capped(self) -> bool:
        return self.value > COUNT_CAP

    def __str__(self) -> str:
        return f"{COUNT_CAP:,}+" if self.capped else f"{self.value:,}"


def capped_count(session: Session, query: Select[Any]) -> Count:
    """How many rows `query` (a select of one column) gives, reading at most COUNT_CAP + 1."""
    limited = query.limit(COUNT_CAP + 1).subquery()
    return Count(session.scalar(select(func.count()).select_from(limited)) or 0)


def read_cursor(raw: str | None) -> int | None:
    return int(raw) if raw and CURSOR.fullmatch(raw) else None


def keyset(session: Session, model: Any, where: list[Any], key: list[Any],
           anchor_key: Any, before: int | None, after: int | None,
           size: int = PAGE_SIZE) -> Page[Any]:
    """Rows of `model` matching `where`, newest first by `key` (columns ending with the id),
    `size` at a time: those older than row `before`, or newer than row `after`, or the newest.

    `anchor_key(row)` gives a row's key values; a cursor naming a row outside `where` (another
    project's, a made-up id) shows the newest page.
    """
    def anchor(row_id: int | None) -> Any:
        if row_id is None:
            return None
        row = session.scalars(select(model).where(model.id == row_id, *where)).one_or_none()
        return anchor_key(row) if row is not None else None

    columns = tuple_(*key)
    newest_first = [column.desc() for column in key]
    if after is not None and (values := anchor(after)) is not None:
        rows = list(session.scalars(select(model).where(*where, columns > tuple_(*values))
                                    .order_by(*key).limit(size + 1)).unique())
        more_newer = len(rows) > size
        rows = rows[:size][::-1]
        if rows:
            return Page(rows, older=str(rows[-1].id),
                        newer=str(rows[0].id) if more_newer else None)
    values = anchor(before)
    query = select(model).where(*where)
    if values is not None:
        query = query.where(columns < tuple_(*values))
    rows = list(session.scalars(query.order_by(*newest_first).limit(size + 1)).unique())
    more_older = len(rows) > size
    rows = rows[:size]
    return Page(rows, older=str(rows[-1].id) if more_older and rows else None,
                newer=str(rows[0].id) if values is not None and rows else None)


# ---------------------------------------------------------------------------------- projects

@dataclass(frozen=True)
class ProjectSummary:
    project: Project
    counts: dict[str, Count]
    changed_this_week: Count


COUNTED = (("decisions", Decision), ("hypotheses", Hypothesis), ("gates", Gate),
           ("risks", Risk), ("incidents", Incident))


def _capped_column(model: Any, *conditions: Any) -> Any:
    """A correlated column: the project's rows of `model`, counted up to COUNT_CAP + 1."""
    rows = (select(model.id).where(model.project_id == Project.id, *conditions)
            .correlate(Project).limit(COUNT_CAP + 1).subquery())
    return select(func.count()).select_from(rows).scalar_subquery()


def summaries(session: Session, projects: list[Project],
              now: datetime | None = None) -> list[ProjectSummary]:
    """Each project's capped counts and its changes of the last 7 days, in one query."""
    if not projects:
        return []
    week_ago = (now or utcnow()) - timedelta(days=7)
    columns = [_capped_column(model).label(name) for name, model in COUNTED]
    columns.append(_capped_column(AuditEvent, AuditEvent.at >= week_ago).label("week"))
    rows = {row.id: row for row in session.execute(
        select(Project.id, *columns).where(Project.id.in_([p.id for p in projects])))}
    return [ProjectSummary(p, {name: Count(getattr(rows[p.id], name)) for name, _ in COUNTED},
                           Count(rows[p.id].week)) for p in projects]


def project_counts(session: Session, project: Project) -> dict[str, Count]:
    return summaries(session, [project])[0].counts


PROJECTS_PAGE_SIZE = 20


def projects_page(session: Session, team_id: str, visible: Any, after_name: str | None,
                  size: int = PROJECTS_PAGE_SIZE) -> tuple[list[ProjectSummary], str | None]:
    """The workspace's projects `visible(project)` lets the person see, by name, a page at a
    time after `after_name`; with their counts and what changed in the last 7 days."""
    shown: list[Project] = []
    cursor = after_name
    while len(shown) <= size:
        query = select(Project).where(Project.team_id == team_id)
        if cursor is not None:
            query = query.where(Project.name > cursor)
        batch = list(session.scalars(query.order_by(Project.name).limit(size * 2)))
        shown += [project for project in batch if visible(project)]
        if len(batch) < size * 2:
            break
        cursor = batch[-1].name
    more = len(shown) > size
    shown = shown[:size]
    return summaries(session, shown), shown[-1].name if more and shown else None


# --------------------------------------------------------------------------------- registers

DECISION_KEY = [Decision.created_at, Decision.id]


def decisions_page(session: Session, project: Project, status: str | None,
                   before: int | None, after: int | None) -> Page[Decision]:
    where = [Decision.project_id == project.id]
    if status:
        where.append(Decision.status == status)
    return keyset(session, Decision, where, DECISION_KEY, lambda d: (d.created_at, d.id),
                  before, after)


def risks_page(session: Session, project: Project, status: str | None, before: int | None,
               after: int | None) -> Page[Risk]:
    where = [Risk.project_id == project.id]
    if status:
        where.append(Risk.status == status)
    return keyset(session, Risk, where, [Risk.created_at, Risk.id],
                  lambda r: (r.created_at, r.id), before, after)


def gates_page(session: Session, project: Project, before: int | None,
               after: int | None) -> Page[Gate]:
    return keyset(session, Gate, [Gate.project_id == project.id], [Gate.created_at, Gate.id],
                  lambda g: (g.created_at, g.id), before, after)


def incidents_page(session: Session, project: Project, before: int | None,
                   after: int | None) -> Page[Incident]:
    return keyset(session, Incident, [Incident.project_id == project.id],
                  [Incident.started_at, Incident.id], lambda i: (i.started_at, i.id),
                  before, after)


def audit_page(session: Session, project: Project, before: int | None,
               after: int | None) -> Page[AuditEvent]:
    return keyset(session, AuditEvent, [AuditEvent.project_id == project.id],
                  [AuditEvent.at, AuditEvent.id], lambda e: (e.at, e.id), before, after)


def assessments(session: Session, risk: Risk, limit: int = 200) -> list[RiskAssessment]:
    """A risk's scorings, oldest first (the newest `limit`)."""
    rows = session.scalars(select(RiskAssessment).where(RiskAssessment.risk_id == risk.id)
                           .order_by(RiskAssessment.at.desc(), RiskAssessment.id.desc())
                           .limit(limit))
    return list(rows)[::-1]


# -------------------------------------------------------------------------------- incidents

@dataclass(frozen=True)
class MonthFigures:
    month: str  # "2026-11"
    incidents: int
    mtta_minutes: float | None
    mttr_minutes: float | None


def incident_months(session: Session, project: Project, months: int = 12,
                    now: datetime | None = None) -> list[MonthFigures]:
    """Mean time to acknowledge and to resolve per month (of the start) over the last `months`,
    from the incident service's own definitions of both."""
    now = now or utcnow()
    index = now.year * 12 + now.month - 1 - (months - 1)  # the first month, counted from year 0
    starts = [datetime(i // 12, i % 12 + 1, 1, tzinfo=UTC) for i in range(index, index + months)]
    first = starts[0]
    rows = session.scalars(select(Incident).where(Incident.project_id == project.id,
                                                  Incident.started_at >= first)
                           .order_by(Incident.started_at).limit(5000)).unique()
    acks: dict[str, list[float]] = defaultdict(list)
    fixes: dict[str, list[float]] = defaultdict(list)
    seen: dict[str, int] = defaultdict(int)
    for incident in rows:
        month = incident.started_at.strftime("%Y-%m")
        seen[month] += 1
        if (tta := incident_service.time_to_acknowledge(incident)) is not None:
            acks[month].append(tta.total_seconds() / 60)
        if (ttr := incident_service.duration(incident)) is not None:
            fixes[month].append(ttr.total_seconds() / 60)
    labels = [start.strftime("%Y-%m") for start in starts]

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    return [MonthFigures(m, seen[m], mean(acks[m]), mean(fixes[m])) for m in labels]


# ------------------------------------------------------------------------------------ rituals

def recent_occurrences(session: Session, project: Project, kind: str,
                       limit: int = 5) -> list[RitualOccurrence]:
    return list(session.scalars(
        select(RitualOccurrence).where(RitualOccurrence.project_id == project.id,
                                       RitualOccurrence.kind == kind)
        .order_by(RitualOccurrence.scheduled_for.desc(), RitualOccurrence.id.desc())
        .limit(limit)).unique())


def open_action_items(session: Session, project: Project, limit: int = 50) -> list[RetroItem]:
    return list(session.scalars(
        select(RetroItem).where(RetroItem.project_id == project.id, RetroItem.kind == "action",
                                RetroItem.state == "open")
        .order_by(RetroItem.due_date, RetroItem.id).limit(limit)))


# ------------------------------------------------------------------------------------- models

@dataclass(frozen=True)
class ModelSummary:
    name: str
    project: Project | None


def models_of(session: Session, team_id: str, project_ids: list[int],
              limit: int = 200) -> list[ModelSummary]:
    """Models bound to the given projects, and models promoted in them, by name."""
    bound = {b.model: b.project for b in session.scalars(
        select(ModelBinding).where(ModelBinding.team_id == team_id,
                                   ModelBinding.project_id.in_(project_ids))
        .order_by(ModelBinding.model).limit(limit))}
    promoted = session.scalars(
        select(Promotion.model).where(Promotion.team_id == team_id,
                                      Promotion.project_id.in_(project_ids))
        .group_by(Promotion.model).order_by(Promotion.model).limit(limit))
    names = sorted(set(bound) | set(promoted))[:limit]
    return [ModelSummary(name, bound.get(name)) for name in names]


def projects_of_version(session: Session, team_id: str, model: str,
                        version: str) -> set[int]:
    """The projects holding a hypothesis, decision, gate, promotion or incident of the model
    version."""
    found: set[int] = set()
    for table, model_column, version_column, versions in (
            (Hypothesis, Hypothesis.model, Hypothesis.version, (version,)),
            (Decision, Decision.model, Decision.version, (version,)),
            (Gate, Gate.model, Gate.version, (version,)),
            (Promotion, Promotion.model, Promotion.version, (version,)),
            (Incident, Incident.model, Incident.model_version, (version, f"v{version}"))):
        found.update(pid for pid in session.scalars(
            select(table.project_id).where(table.team_id == team_id, model_column == model,
                                           version_column.in_(versions))
            .group_by(table.project_id).limit(100)) if pid is not None)
    return found


def binding_of(session: Session, team_id: str, model: str) -> ModelBinding | None:
    return session.scalars(select(ModelBinding).where(ModelBinding.team_id == team_id,
                                                      ModelBinding.model == model)).one_or_none()


@dataclass
class VersionRow:
    version: str
    promotions: list[Promotion] = field(default_factory=list)
    gates: list[Gate] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)


@dataclass(frozen=True)
class ModelHistory:
    versions: list[VersionRow]
    # Deployment history per alias/stage: each environment's promotions, newest first.
    environments: dict[str, list[Promotion]]


def _version_sort(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


MODEL_HISTORY_LIMIT = 60


def model_history(session: Session, team_id: str, model: str, visible_project: Any,
                  limit: int = MODEL_HISTORY_LIMIT) -> ModelHistory:
    """Every version of a model (newest first) with its promotions, gates and incidents, and the
    deployment history of each environment; records of projects the person may not see are
    left out. The newest `limit` of each register."""
    def shown(record: Any) -> bool:
        return record.project is None or visible_project(record.project)

    promotions = [p for p in session.scalars(
        select(Promotion).where(Promotion.team_id == team_id, Promotion.model == model)
        .order_by(Promotion.occurred_at.desc(), Promotion.id.desc()).limit(limit)).unique()
        if shown(p)]
    gates = [g for g in session.scalars(
        select(Gate).where(Gate.team_id == team_id, Gate.model == model)
        .order_by(Gate.created_at.desc(), Gate.id.desc()).limit(limit)).unique() if shown(g)]
    incidents = [i for i in session.scalars(
        select(Incident).where(Incident.team_id == team_id, Incident.model == model)
        .order_by(Incident.started_at.desc(), Incident.id.desc()).limit(limit)).unique()
        if shown(i)]
    rows: dict[str, VersionRow] = {}

    def row(version: str | None) -> VersionRow:
        key = (version or "?").removeprefix("v")
        return rows.setdefault(key, VersionRow(key))

    environments: dict[str, list[Promotion]] = defaultdict(list)
    for promotion in promotions:
        row(promotion.version).promotions.append(promotion)
        if promotion.kind == PromotionKind.PROMOTION and promotion.to_stage:
            environments[promotion.to_stage].append(promotion)
    for gate in gates:
        if gate.version:
            row(gate.version).gates.append(gate)
    for incident in incidents:
        if incident.model_version:
            row(incident.model_version).incidents.append(incident)
    versions = sorted(rows.values(), key=lambda r: _version_sort(r.version), reverse=True)
    return ModelHistory(versions, dict(sorted(environments.items())))


def search_filter_ok(status: str | None, allowed: tuple[str, ...]) -> str | None:
    """A status filter from the query string, or None when absent or not a status."""
    return status if status in allowed else None
