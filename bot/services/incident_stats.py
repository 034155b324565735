"""A project's incidents at a glance (`/incident list`): the open ones, the recently resolved,
and the 30-day mean times to acknowledge (MTTA, acknowledged incidents only) and to resolve."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.models import Incident, IncidentStatus, Project, utcnow
from bot.services.incidents import OPEN_STATUSES, duration, time_to_acknowledge

STATS_DAYS = 30
RECENT_LIMIT = 10


@dataclass(frozen=True)
class Overview:
    """A project's incidents: the open ones, the recently resolved, and the 30-day averages."""

    open: list[Incident]
    recent: list[Incident]
    mtta: timedelta | None
    mttr: timedelta | None
    acknowledged: int
    resolved: int
    days: int = STATS_DAYS


def _mean(deltas: list[timedelta]) -> timedelta | None:
    return sum(deltas, timedelta(0)) / len(deltas) if deltas else None


def overview(session: Session, project: Project, now: datetime | None = None) -> Overview:
    """Open incidents first (most severe, then oldest), then those resolved in the last 30 days;
    MTTA over incidents started in that window, MTTR over those resolved in it."""
    now = now or utcnow()
    since = now - timedelta(days=STATS_DAYS)
    mine = Incident.project_id == project.id
    open_ = list(session.scalars(
        select(Incident).where(mine, Incident.status.in_(OPEN_STATUSES))
        .order_by(Incident.severity, Incident.started_at, Incident.id)).unique())
    resolved = list(session.scalars(
        select(Incident).where(mine, Incident.status == IncidentStatus.RESOLVED,
                               Incident.resolved_at >= since)
        .order_by(Incident.resolved_at.desc(), Incident.id.desc())).unique())
    started = session.scalars(
        select(Incident).where(mine, Incident.started_at >= since,
                               Incident.acknowledged_at.is_not(None))).unique()
    acknowledged = [tta for i in started if (tta := time_to_acknowledge(i)) is not None]
    durations = [d for i in resolved if (d := duration(i)) is not None]
    return Overview(open_, resolved[:RECENT_LIMIT], _mean(acknowledged), _mean(durations),
                    len(acknowledged), len(durations))
