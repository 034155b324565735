"""Silences of an alert incident's group, made in Alertmanager from the incident's card.

The domain half: which matchers and which window a silence gets, and recording it once
Alertmanager has made it (timeline, audit, card). The HTTP calls are made by the runtime edge
(`bot.silencing`), never inside a transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.errors import Conflict, InvalidInput
from bot.models import Incident, IncidentSilence, IncidentStatus, utcnow
from bot.services.incidents import (
    Kind,
    add_timeline_entry,
    audit,
    incident_snapshot,
    refresh_cards,
    require_open,
)

# "until resolved" is a long silence that Quorum expires when the incident resolves.
UNTIL_RESOLVED = timedelta(days=30)
WINDOWS = {"1h": timedelta(hours=1), "4h": timedelta(hours=4), "resolved": UNTIL_RESOLVED}
WINDOW_WORDS = {"1h": "for 1 hour", "4h": "for 4 hours", "resolved": "until it is resolved"}


@dataclass(frozen=True)
class SilenceRequest:
    """What to ask Alertmanager for: the group's matchers over a window."""

    incident_id: int
    ref: str
    matchers: list[dict[str, Any]]
    starts_at: datetime
    ends_at: datetime
    until_resolved: bool
    comment: str


def request_silence(incident: Incident, window: str, actor: str,
                    now: datetime | None = None) -> SilenceRequest:
    """Check the incident can be silenced and say how; raises before anything is asked."""
    if window not in WINDOWS:
        raise InvalidInput(f"`{window}` is not a silence window: use 1h, 4h or resolved.",
                           field="window")
    require_open(incident)
    if not incident.alert_labels:
        raise Conflict(f"{incident.ref} did not come from Alertmanager: there is no alert "
                       f"group to silence.")
    now = now or utcnow()
    matchers = [{"name": name, "value": str(value), "isRegex": False, "isEqual": True}
                for name, value in sorted(incident.alert_labels.items())]
    return SilenceRequest(
        incident_id=incident.id, ref=incident.ref, matchers=matchers, starts_at=now,
        ends_at=now + WINDOWS[window], until_resolved=window == "resolved",
        comment=f"{incident.ref}: {incident.title} (silenced from Slack by {actor} "
                f"{WINDOW_WORDS[window]})"[:1000])


def record_silence(session: Session, incident: Incident, actor: str, request: SilenceRequest,
                   silence_id: str, now: datetime | None = None) -> IncidentSilence:
    """Remember a silence Alertmanager made, on the timeline and the card."""
    now = now or utcnow()
    before = incident_snapshot(incident)
    silence = IncidentSilence(
        incident=incident, silence_id=silence_id, matchers={"matchers": request.matchers},
        starts_at=request.starts_at, ends_at=request.ends_at,
        until_resolved=request.until_resolved, created_by=actor, created_at=now)
    session.add(silence)
    session.flush()
    window = "until it is resolved" if request.until_resolved else \
        f"until {request.ends_at:%Y-%m-%d %H:%M} UTC"
    labels = ", ".join(f"{m['name']}={m['value']}" for m in request.matchers)
    add_timeline_entry(session, incident, Kind.SILENCED, actor, f"{window} ({labels})", at=now)
    audit(session, incident, actor, "silenced", before,
          {"silence_id": silence_id, "ends_at": request.ends_at.isoformat()})
    refresh_cards(session, incident)
    return silence


def active_silence(session: Session, incident: Incident, now: datetime) -> IncidentSilence | None:
    """A silence of the incident still running in Alertmanager, if any."""
    return session.scalars(
        select(IncidentSilence).where(IncidentSilence.incident_id == incident.id,
                                      IncidentSilence.expired_at.is_(None),
                                      IncidentSilence.ends_at > now)
        .order_by(IncidentSilence.ends_at.desc()).limit(1)).first()


def to_expire(session: Session, limit: int = 50) -> list[tuple[int, str]]:
    """(row id, Alertmanager silence id) of silences whose incident is resolved and which were
    not confirmed expired yet."""
    return [(row_id, silence_id) for row_id, silence_id in session.execute(
        select(IncidentSilence.id, IncidentSilence.silence_id).join(Incident)
        .where(Incident.status == IncidentStatus.RESOLVED, IncidentSilence.expired_at.is_(None))
        .order_by(IncidentSilence.id).limit(limit))]


def mark_expired(session: Session, row_id: int, actor: str,
                 now: datetime | None = None) -> None:
    silence = session.get(IncidentSilence, row_id)
    if silence is None or silence.expired_at is not None:
        return
    silence.expired_at = now or utcnow()
    audit(session, silence.incident, actor, "silence_expired", None,
          {"silence_id": silence.silence_id})
