"""Incidents: declare, acknowledge, update, mitigate and resolve `INC-n`; Alertmanager's webhook
notifications; update reminders; the incident summary.

Every change is one timeline entry (`IncidentEvent`), posted in the thread of the incident's card
in the project channel, and one audit event; the card (and its copy in the dedicated channel, if
any) is edited in place. Incidents that come from outside Slack find their project through
`route`, the one place that decides where they go.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import outbox
from bot.config import INCIDENT_SEVERITIES
from bot.errors import Conflict, InvalidInput, NotFound
from bot.models import Incident, IncidentEvent, IncidentStatus, Project, utcnow
from bot.render import CHANNEL_ID, renderer
from bot.scheduler import claim_once, sweep
from bot.services.audit import record_event
from bot.services.projects import project_for_channel
from bot.services.refs import next_number, parse_ref

SEVERITIES = INCIDENT_SEVERITIES
DEFAULT_SEVERITY = "sev3"
# How long an open incident may go without a status update before its commander is reminded.
REMINDER_INTERVALS = {
    "sev1": timedelta(minutes=30),
    "sev2": timedelta(hours=1),
    "sev3": timedelta(hours=4),
    "sev4": timedelta(hours=24),
}
OPEN_STATUSES = (IncidentStatus.DECLARED, IncidentStatus.ACKNOWLEDGED, IncidentStatus.MITIGATED)
TITLE_LIMIT = 150
TEXT_LIMIT = 3000
MODEL_LIMIT = 200
VERSION_LIMIT = 64
STATS_DAYS = 30
RECENT_LIMIT = 10
CHANNEL_NAME_LIMIT = 80
# Actors of changes made outside Slack (never Slack user ids).
ALERTMANAGER = "alertmanager"
CLI = "quorum-cli"
SEVERITY_WORD = re.compile(r"(?i)^sev-?\d+$")


class Kind:
    """The kinds of timeline entries."""

    DECLARED = "declared"
    ACKNOWLEDGED = "acknowledged"
    UPDATE = "update"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"
    CHANNEL = "channel"
    ALERT = "alert"
    ALERT_RESOLVED = "alert_resolved"


# ---------------------------------------------------------------------------------------- input

def _clean_text(value: str | None, name: str, limit: int = TEXT_LIMIT) -> str:
    value = (value or "").strip()
    if len(value) > limit:
        raise InvalidInput(f"The {name.replace('_', ' ')} is {len(value)} characters long; "
                           f"keep it within {limit}.", field=name)
    return value


def check_severity(value: str | None) -> str:
    severity = (value or DEFAULT_SEVERITY).strip().lower()
    if severity not in SEVERITIES:
        raise InvalidInput(f"`{value}` is not a severity: use sev1, sev2, sev3 or sev4.",
                           field="severity")
    return severity


@dataclass
class IncidentDraft:
    """What a declaration says; validated before anything is written."""

    title: str
    severity: str = DEFAULT_SEVERITY
    commander: str | None = None
    model: str | None = None
    model_version: str | None = None
    description: str = ""

    def validated(self) -> IncidentDraft:
        title = " ".join((self.title or "").split())
        if not title:
            raise InvalidInput("The title is empty: say what is broken.", field="title")
        if len(title) > TITLE_LIMIT:
            raise InvalidInput(f"The title is {len(title)} characters long; keep it within "
                               f"{TITLE_LIMIT}.", field="title")
        return IncidentDraft(
            title=title,
            severity=check_severity(self.severity),
            commander=(self.commander or "").strip() or None,
            model=_clean_text(self.model, "model", MODEL_LIMIT) or None,
            model_version=_clean_text(self.model_version, "model_version", VERSION_LIMIT) or None,
            description=_clean_text(self.description, "description"),
        )


def draft_from_command(severity: str | None, title: str, actor: str) -> IncidentDraft:
    """`/incident declare [sevN] <title>`, the declarer in command. A title that starts with
    another spelling of a severity (`SEV-1 …`) sets it; an unknown one (`sev5 …`) is refused
    rather than taken as part of the title."""
    words = title.split(maxsplit=1)
    if severity is None and words and SEVERITY_WORD.match(words[0]):
        spelled = words[0]
        if spelled.lower().replace("-", "") not in SEVERITIES:
            raise InvalidInput(f"`{spelled}` is not a severity: use sev1, sev2, sev3 or sev4.",
                               field="severity")
        severity, title = spelled.lower().replace("-", ""), words[1] if len(words) > 1 else ""
    return IncidentDraft(title=title, severity=severity or DEFAULT_SEVERITY, commander=actor)


# ------------------------------------------------------------------------------- presentation

def card_key(incident: Incident) -> str:
    return f"incident:{incident.id}:card"


def room_card_key(incident: Incident) -> str:
    """The copy of the card in the incident's dedicated channel."""
    return f"incident:{incident.id}:room-card"


def summary_key(incident: Incident) -> str:
    return f"incident:{incident.id}:summary"


def _seconds(delta: timedelta | None) -> int | None:
    return int(delta.total_seconds()) if delta is not None else None


def time_to_acknowledge(incident: Incident) -> timedelta | None:
    if incident.acknowledged_at is None:
        return None
    return max(timedelta(0), incident.acknowledged_at - incident.started_at)


def duration(incident: Incident) -> timedelta | None:
    """From the start of the impact to the resolution; None while open."""
    if incident.resolved_at is None:
        return None
    return max(timedelta(0), incident.resolved_at - incident.started_at)


def as_record(incident: Incident) -> dict[str, Any]:
    """The incident as plain values: the shape of exports (with its timeline)."""
    return {
        "ref": incident.ref,
        "project": incident.project.name if incident.project else None,
        "channel": incident.project.channel_id if incident.project else None,
        "status": incident.status,
        "severity": incident.severity,
        "title": incident.title,
        "description": incident.description,
        "commander": incident.commander,
        "model": incident.model,
        "version": incident.model_version,
        "dedicated_channel": incident.channel_id,
        "source": incident.source,
        "started_at": incident.started_at.isoformat(),
        "acknowledged_at": _iso(incident.acknowledged_at),
        "mitigated_at": _iso(incident.mitigated_at),
        "resolved_at": _iso(incident.resolved_at),
        "time_to_acknowledge_seconds": _seconds(time_to_acknowledge(incident)),
        "duration_seconds": _seconds(duration(incident)),
        "summary": incident.summary,
        "root_cause": incident.root_cause,
        "follow_ups": incident.follow_ups,
        "alert_group_key": incident.alert_group_key,
        "created_by": incident.created_by,
        "created_at": incident.created_at.isoformat(),
        "updated_at": _iso(incident.updated_at),
        "timeline": [
            {"at": event.at.isoformat(), "kind": event.kind, "actor": event.actor,
             "text": event.text, "alert_fingerprint": event.alert_fingerprint}
            for event in incident.events
        ],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _snapshot(incident: Incident) -> dict[str, Any]:
    record = as_record(incident)
    for volatile in ("project", "channel", "created_at", "updated_at", "created_by", "timeline",
                     "time_to_acknowledge_seconds", "duration_seconds"):
        record.pop(volatile)
    return record


def render_card(incident: Incident) -> dict[str, Any]:
    return renderer.message("incident/card", i=incident)


def render_summary(incident: Incident) -> dict[str, Any]:
    return renderer.message("incident/summary", i=incident, duration=duration(incident),
                            tta=time_to_acknowledge(incident), timeline=list(incident.events))


def decision_context(incident: Incident) -> str:
    """The context of a decision logged from the incident summary."""
    return renderer.text("incident/decision_context.txt.j2", i=incident,
                         duration=duration(incident), tta=time_to_acknowledge(incident))


# ---------------------------------------------------------------------------------- lookups

def get_incident(session: Session, team_id: str, ref: str, *, lock: bool = False) -> Incident:
    """The incident named by `ref` in the workspace, or a NotFound that says so."""
    number = parse_ref(ref, Incident.ref_prefix, "incident")
    query = select(Incident).where(Incident.team_id == team_id, Incident.number == number)
    incident = session.scalars(_locked(query) if lock else query).unique().one_or_none()
    if incident is None:
        raise NotFound(f"There is no incident {Incident.ref_prefix}-{number} in this workspace.")
    return incident


def get_by_id(session: Session, incident_id: int, *, lock: bool = False) -> Incident:
    query = select(Incident).where(Incident.id == incident_id)
    incident = session.scalars(_locked(query) if lock else query).unique().one_or_none()
    if incident is None:
        raise NotFound("That incident no longer exists.")
    return incident


def _locked(query: Any) -> Any:
    # Two clicks of the same button wait for each other instead of both acting (PostgreSQL;
    # SQLite writers are serialized by BEGIN IMMEDIATE). Only the incident row is locked: the
    # project is outer-joined and PostgreSQL refuses to lock the nullable side of a join.
    return query.with_for_update(of=Incident)


# ------------------------------------------------------------------------------- the lifecycle

def _record(session: Session, incident: Incident, kind: str, actor: str, text: str = "",
            *, at: datetime | None = None, fingerprint: str | None = None,
            post: bool = True) -> IncidentEvent:
    """Append a timeline entry and post it in the card's thread."""
    event = IncidentEvent(incident=incident, kind=kind, actor=actor, text=text,
                          at=at or utcnow(), alert_fingerprint=fingerprint)
    session.add(event)
    session.flush()
    if post and incident.project is not None:
        outbox.post_message(session, incident.team_id, incident.project.channel_id,
                            renderer.message("incident/entry", i=incident, e=event),
                            thread_key=card_key(incident))
    return event


def _refresh_cards(session: Session, incident: Incident) -> None:
    if incident.project is not None:
        outbox.update_message(session, incident.team_id, card_key(incident),
                              render_card(incident))
    if incident.channel_id:
        outbox.update_message(session, incident.team_id, room_card_key(incident),
                              render_card(incident))


def _audit(session: Session, incident: Incident, actor: str, action: str,
           before: dict[str, Any] | None, extra: dict[str, Any] | None = None) -> None:
    after = {**_snapshot(incident), **(extra or {})}
    record_event(session, actor=actor, action=f"incident.{action}", entity=incident,
                 project_id=incident.project_id, before=before, after=after)


def _require_open(incident: Incident) -> None:
    if incident.status == IncidentStatus.RESOLVED:
        when = incident.resolved_at.strftime("%Y-%m-%d %H:%M UTC") if incident.resolved_at \
            else "earlier"
        raise Conflict(f"{incident.ref} is already resolved (since {when}).")


def _engage(incident: Incident, actor: str, now: datetime) -> None:
    """A person acting on an incident has acknowledged it, and commands it if no one does."""
    if actor in (ALERTMANAGER, CLI):
        return
    if incident.acknowledged_at is None:
        incident.acknowledged_at = now
    if incident.status == IncidentStatus.DECLARED:
        incident.status = IncidentStatus.ACKNOWLEDGED
    if not incident.commander:
        incident.commander = actor


def declare(session: Session, project: Project | None, actor: str, draft: IncidentDraft, *,
            team_id: str | None = None, source: str = "slack", started_at: datetime | None = None,
            alert_group_key: str | None = None, now: datetime | None = None) -> Incident:
    """Open `INC-n`, audit it and queue its card for the project's channel.

    `project` is None for an unrouted incident (an alert with nowhere to go): it is stored in
    the workspace `team_id` and announced nowhere.
    """
    draft = draft.validated()
    team = project.team_id if project is not None else team_id
    if team is None:
        raise ValueError("an incident needs a project or a team")
    now = now or utcnow()
    incident = Incident(
        team_id=team, number=next_number(session, team, Incident.ref_prefix), project=project,
        title=draft.title, severity=draft.severity, status=IncidentStatus.DECLARED,
        commander=draft.commander, model=draft.model, model_version=draft.model_version,
        description=draft.description, source=source, started_at=min(started_at or now, now),
        last_update_at=now, alert_group_key=alert_group_key, created_by=actor, created_at=now,
    )
    session.add(incident)
    session.flush()
    _record(session, incident, Kind.DECLARED, actor, draft.description, at=now, post=False)
    _audit(session, incident, actor, "declared", None)
    if project is not None:
        outbox.post_message(session, team, project.channel_id, render_card(incident),
                            key=card_key(incident))
    return incident


def acknowledge(session: Session, incident: Incident, actor: str,
                now: datetime | None = None) -> bool:
    """Acknowledge the incident; False when it already was (a double click changes nothing)."""
    _require_open(incident)
    if incident.acknowledged_at is not None:
        return False
    now = now or utcnow()
    before = _snapshot(incident)
    _engage(incident, actor, now)
    incident.last_update_at = now
    _record(session, incident, Kind.ACKNOWLEDGED, actor, at=now)
    _audit(session, incident, actor, "acknowledged", before)
    _refresh_cards(session, incident)
    return True


def mitigate(session: Session, incident: Incident, actor: str,
             now: datetime | None = None) -> bool:
    """Mark the impact as mitigated; False when it already was."""
    _require_open(incident)
    if incident.status == IncidentStatus.MITIGATED:
        return False
    now = now or utcnow()
    before = _snapshot(incident)
    _engage(incident, actor, now)
    incident.status = IncidentStatus.MITIGATED
    incident.mitigated_at = now
    incident.last_update_at = now
    _record(session, incident, Kind.MITIGATED, actor, at=now)
    _audit(session, incident, actor, "mitigated", before)
    _refresh_cards(session, incident)
    return True


def add_update(session: Session, incident: Incident, actor: str, text: str,
               now: datetime | None = None) -> IncidentEvent:
    """A status update on the timeline (`/incident update` or the card's Add update)."""
    text = _clean_text(text, "update")
    if not text:
        raise InvalidInput("The update is empty: say what changed.", field="update")
    _require_open(incident)
    now = now or utcnow()
    before = _snapshot(incident)
    _engage(incident, actor, now)
    incident.last_update_at = now
    event = _record(session, incident, Kind.UPDATE, actor, text, at=now)
    _audit(session, incident, actor, "updated", before, {"update": text})
    _refresh_cards(session, incident)
    return event


def resolve(session: Session, incident: Incident, actor: str, summary: str,
            root_cause: str = "", follow_ups: str = "", now: datetime | None = None) -> Incident:
    """Resolve the incident and post its summary to the project channel."""
    summary = _clean_text(summary, "summary")
    if not summary:
        raise InvalidInput("The summary is empty: say how it ended.", field="summary")
    root_cause = _clean_text(root_cause, "root_cause")
    follow_ups = _clean_text(follow_ups, "follow_ups")
    _require_open(incident)
    now = now or utcnow()
    before = _snapshot(incident)
    _engage(incident, actor, now)
    incident.status = IncidentStatus.RESOLVED
    incident.resolved_at = now
    incident.last_update_at = now
    incident.summary, incident.root_cause, incident.follow_ups = summary, root_cause, follow_ups
    _record(session, incident, Kind.RESOLVED, actor, summary, at=now)
    _audit(session, incident, actor, "resolved", before)
    _refresh_cards(session, incident)
    if incident.project is not None:
        session.refresh(incident, ["events"])
        outbox.post_message(session, incident.team_id, incident.project.channel_id,
                            render_summary(incident), key=summary_key(incident))
    return incident


# ------------------------------------------------------------------------ the dedicated channel

def channel_name(number: int, title: str, attempt: int = 1) -> str:
    """`inc-<n>-<slug>` within Slack's rules: at most 80 characters of lowercase letters, digits,
    hyphens and underscores. Later attempts (after `name_taken`) end in `-2`, `-3`…"""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9_]+", "-", ascii_title.lower()).strip("-_")
    slug = re.sub(r"-{2,}", "-", slug)
    prefix = f"inc-{number}"
    suffix = f"-{attempt}" if attempt > 1 else ""
    room = CHANNEL_NAME_LIMIT - len(prefix) - len(suffix) - 1
    slug = slug[:room].rstrip("-_")
    return f"{prefix}-{slug}{suffix}" if slug else f"{prefix}{suffix}"


def record_channel(session: Session, incident: Incident, channel_id: str, actor: str,
                   invite: Sequence[str] = ()) -> None:
    """Remember the incident's dedicated channel (created in Slack by the caller), invite people
    there, post the card in it and link it from the card in the project channel."""
    if incident.channel_id:
        raise Conflict(f"{incident.ref} already has a channel.")
    before = _snapshot(incident)
    incident.channel_id = channel_id
    _record(session, incident, Kind.CHANNEL, actor, channel_id)
    _audit(session, incident, actor, "channel_opened", before)
    people = [user for user in dict.fromkeys(invite) if user and user not in (ALERTMANAGER, CLI)]
    if people:
        outbox.enqueue(session, incident.team_id, "conversations.invite",
                       {"channel": channel_id, "users": ",".join(people)})
    outbox.post_message(session, incident.team_id, channel_id, render_card(incident),
                        key=room_card_key(incident))
    if incident.project is not None:
        outbox.update_message(session, incident.team_id, card_key(incident),
                              render_card(incident))


# ------------------------------------------------------------------------------------ listing

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


# ---------------------------------------------------------------------------------- reminders

@sweep("incident_update_reminders")
def remind_stale_incidents(session: Session, now: datetime) -> None:
    """Remind the commander, in the card's thread, of an open incident with no recent update.

    One reminder per interval without an update: the claim key holds the time of the last update
    and how many intervals have passed since, so a new update starts the count again.
    """
    stale = or_(*(and_(Incident.severity == severity, Incident.last_update_at <= now - interval)
                  for severity, interval in REMINDER_INTERVALS.items()))
    query = select(Incident).where(Incident.status.in_(OPEN_STATUSES),
                                   Incident.project_id.is_not(None), stale)
    for incident in session.scalars(query.order_by(Incident.id)).unique():
        interval = REMINDER_INTERVALS[incident.severity]
        silent = now - incident.last_update_at
        periods = int(silent / interval)
        key = f"incident:{incident.id}:reminder:" \
              f"{incident.last_update_at:%Y%m%dT%H%M%S%f}:{periods}"
        if not claim_once(session, key):
            continue
        outbox.post_message(session, incident.team_id, incident.project.channel_id,
                            renderer.message("incident/reminder", i=incident, silent=silent),
                            thread_key=card_key(incident))


# ------------------------------------------------------------------------------------ routing

@dataclass(frozen=True)
class Route:
    """Where an incident from outside Slack goes: a project, or nowhere (`project` None)."""

    project: Project | None
    team_id: str
    via: str  # "project", "default_channel" or "unrouted"


def _find_project(session: Session, name_or_channel: str) -> Project | None:
    wanted = name_or_channel.strip().lstrip("#")
    if not wanted:
        return None
    return session.scalars(
        select(Project).where(or_(Project.channel_id == wanted, Project.name == wanted))
        .order_by(Project.id).limit(1)
    ).first()


def _single_team(session: Session) -> str | None:
    """The workspace, when Quorum knows exactly one (the usual single-workspace install)."""
    teams = session.scalars(select(Project.team_id).distinct().limit(2)).all()
    return teams[0] if len(teams) == 1 else None


def route(session: Session, *, project: str | None = None, model: str | None = None,
          default_channel: str | None = None) -> Route:
    """The project an alert or a scripted announcement belongs to.

    1. `project`: a project's channel id or name (a channel id that is not yet a project becomes
       one when Quorum knows a single workspace);
    2. (`model`: model-to-project bindings arrive with `/quorum model add`; they go here);
    3. `default_channel` (QUORUM_DEFAULT_CHANNEL): its project, created in the single known
       workspace on first use;
    4. otherwise unrouted, stored in the single known workspace (or the unnamed one, "").
    """
    if project:
        found = _find_project(session, project)
        if found is not None:
            return Route(found, found.team_id, "project")
        team = _single_team(session)
        if team and CHANNEL_ID.match(project.strip()):
            return Route(project_for_channel(session, team, project.strip()), team, "project")
    if default_channel:
        found = _find_project(session, default_channel)
        if found is not None:
            return Route(found, found.team_id, "default_channel")
        team = _single_team(session)
        if team:
            channel = default_channel.strip()
            return Route(project_for_channel(session, team, channel, channel.lstrip("#")), team,
                         "default_channel")
    return Route(None, _single_team(session) or "", "unrouted")


# ----------------------------------------------------------------------- Alertmanager webhook

@dataclass(frozen=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    ends_at: datetime | None
    generator_url: str
    fingerprint: str

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class Notification:
    """One Alertmanager webhook notification (payload version 4), validated."""

    group_key: str
    status: str
    receiver: str
    alerts: list[Alert]
    group_labels: dict[str, str] = field(default_factory=dict)
    common_labels: dict[str, str] = field(default_factory=dict)
    common_annotations: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    truncated_alerts: int = 0

    @property
    def firing(self) -> list[Alert]:
        return [alert for alert in self.alerts if alert.status == "firing"]

    @property
    def resolved(self) -> list[Alert]:
        return [alert for alert in self.alerts if alert.status == "resolved"]

    def label(self, name: str) -> str | None:
        """A label shared by the group, else the first firing (or any) alert's."""
        for labels in (self.common_labels, self.group_labels,
                       *(a.labels for a in self.firing), *(a.labels for a in self.alerts)):
            if labels.get(name):
                return labels[name]
        return None


def _string_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise InvalidInput(f"`{where}` must be an object of string values.", field=where)
    return dict(value)


def _string(data: dict[str, Any], name: str, where: str, *, required: bool = True,
            limit: int | None = None) -> str:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise InvalidInput(f"`{where}` must be a non-empty string.", field=where)
    if limit is not None and len(value) > limit:
        raise InvalidInput(f"`{where}` is longer than {limit} characters.", field=where)
    return value


def _time(value: Any, where: str) -> datetime | None:
    """An RFC 3339 time; Go's zero time (`0001-01-01T00:00:00Z`, "not ended") is None."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"`{where}` must be an RFC 3339 time.", field=where)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"`{where}` is not an RFC 3339 time: {value[:40]!r}.",
                           field=where) from None
    if parsed.year <= 1:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=utcnow().tzinfo)


def parse_alertmanager(data: Any) -> Notification:
    """Validate a webhook body (already decoded JSON); InvalidInput names the first problem."""
    if not isinstance(data, dict):
        raise InvalidInput("The payload must be a JSON object.", field="payload")
    if data.get("version") != "4":
        raise InvalidInput(f"Unsupported payload version {data.get('version')!r}: Quorum reads "
                           f"Alertmanager's webhook payload version \"4\".", field="version")
    raw_alerts = data.get("alerts")
    if not isinstance(raw_alerts, list) or not raw_alerts:
        raise InvalidInput("`alerts` must be a non-empty list.", field="alerts")
    status = data.get("status")
    if status not in ("firing", "resolved"):
        raise InvalidInput("`status` must be \"firing\" or \"resolved\".", field="status")
    alerts = []
    for index, raw in enumerate(raw_alerts):
        where = f"alerts[{index}]"
        if not isinstance(raw, dict):
            raise InvalidInput(f"`{where}` must be an object.", field="alerts")
        if raw.get("status") not in ("firing", "resolved"):
            raise InvalidInput(f"`{where}.status` must be \"firing\" or \"resolved\".",
                               field="alerts")
        alerts.append(Alert(
            status=raw["status"],
            labels=_string_map(raw.get("labels"), f"{where}.labels"),
            annotations=_string_map(raw.get("annotations"), f"{where}.annotations"),
            starts_at=_time(raw.get("startsAt"), f"{where}.startsAt"),
            ends_at=_time(raw.get("endsAt"), f"{where}.endsAt"),
            generator_url=_string(raw, "generatorURL", f"{where}.generatorURL", required=False),
            fingerprint=_string(raw, "fingerprint", f"{where}.fingerprint", limit=64),
        ))
    truncated = data.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise InvalidInput("`truncatedAlerts` must be a whole number.", field="truncatedAlerts")
    return Notification(
        group_key=_string(data, "groupKey", "groupKey", limit=1000),
        status=status,
        receiver=_string(data, "receiver", "receiver", required=False),
        alerts=alerts,
        group_labels=_string_map(data.get("groupLabels"), "groupLabels"),
        common_labels=_string_map(data.get("commonLabels"), "commonLabels"),
        common_annotations=_string_map(data.get("commonAnnotations"), "commonAnnotations"),
        external_url=_string(data, "externalURL", "externalURL", required=False),
        truncated_alerts=truncated,
    )


@dataclass(frozen=True)
class AlertOutcome:
    """What a notification did: the incident it concerns, and whether anything changed."""

    incident: Incident | None
    routed: bool
    created: bool = False
    changed: bool = False

    def as_json(self) -> dict[str, Any]:
        incident = self.incident
        return {"ok": True, "incident": incident.ref if incident else None,
                "status": incident.status if incident else None, "routed": self.routed,
                "created": self.created, "changed": self.changed}


def severity_of(alerts: Iterable[Alert], severity_map: dict[str, str]) -> str:
    """The most severe mapping of the alerts' `severity` labels (sev3 for unknown labels)."""
    mapped = [severity_map.get(alert.labels.get("severity", "").strip().lower(),
                               DEFAULT_SEVERITY) for alert in alerts]
    return min(mapped, default=DEFAULT_SEVERITY)


def _alert_text(alert: Alert) -> str:
    return renderer.text("incident/alert.txt.j2", alert=alert).strip()


def _open_for_group(session: Session, group_key: str) -> Incident | None:
    return session.scalars(
        select(Incident).where(Incident.alert_group_key == group_key,
                               Incident.status.in_(OPEN_STATUSES))
        .order_by(Incident.id.desc()).limit(1)
    ).unique().first()


def _latest_for_group(session: Session, group_key: str) -> Incident | None:
    return session.scalars(
        select(Incident).where(Incident.alert_group_key == group_key)
        .order_by(Incident.id.desc()).limit(1)
    ).unique().first()


def _seen_alert(session: Session, incident: Incident, kind: str, fingerprint: str) -> bool:
    return session.scalar(
        select(IncidentEvent.id).where(IncidentEvent.incident_id == incident.id,
                                       IncidentEvent.kind == kind,
                                       IncidentEvent.alert_fingerprint == fingerprint)
    ) is not None


def _seen_firing(session: Session, incident: Incident, alert: Alert) -> bool:
    """Whether this very firing of the alert (same fingerprint, same start) is on the timeline;
    Alertmanager repeats it while the alert keeps firing, and a new start is a new firing."""
    at = session.scalar(
        select(IncidentEvent.at).where(IncidentEvent.incident_id == incident.id,
                                       IncidentEvent.kind == Kind.ALERT,
                                       IncidentEvent.alert_fingerprint == alert.fingerprint)
    )
    if at is None:
        return False
    return alert.starts_at is None or alert.starts_at >= utcnow() or at == alert.starts_at


def _record_alert(session: Session, incident: Incident, kind: str, alert: Alert,
                  now: datetime) -> bool:
    """Add an alert to the timeline once per incident; False when it is already there."""
    if _seen_alert(session, incident, kind, alert.fingerprint):
        return False
    at = (alert.starts_at if kind == Kind.ALERT else alert.ends_at) or now
    try:
        # Another replica handling the same notification may win the unique row: not an error.
        with session.begin_nested():
            event = IncidentEvent(incident=incident, kind=kind, actor=ALERTMANAGER,
                                  text=_alert_text(alert), at=min(at, now),
                                  alert_fingerprint=alert.fingerprint)
            session.add(event)
    except IntegrityError:
        return False
    if incident.project is not None:
        outbox.post_message(session, incident.team_id, incident.project.channel_id,
                            renderer.message("incident/entry", i=incident, e=event),
                            thread_key=card_key(incident))
    return True


def _declare_from_alerts(session: Session, note: Notification, severity_map: dict[str, str],
                         default_channel: str | None, now: datetime) -> Incident:
    firing = note.firing
    where = route(session, project=note.label("project"), model=note.label("model"),
                  default_channel=default_channel)
    first = firing[0]
    title = note.common_annotations.get("summary") or first.annotations.get("summary") \
        or note.label("alertname") or note.group_key
    description = note.common_annotations.get("description") \
        or first.annotations.get("description") or ""
    starts = [alert.starts_at for alert in firing if alert.starts_at is not None]
    draft = IncidentDraft(
        title=title[:TITLE_LIMIT], severity=severity_of(firing, severity_map),
        model=(note.label("model") or "")[:MODEL_LIMIT] or None,
        model_version=(note.label("version") or note.label("model_version") or "")
        [:VERSION_LIMIT] or None,
        description=description[:TEXT_LIMIT],
    )
    try:
        with session.begin_nested():
            return declare(session, where.project, ALERTMANAGER, draft, team_id=where.team_id,
                           source="alertmanager", started_at=min(starts, default=now),
                           alert_group_key=note.group_key, now=now)
    except IntegrityError:
        # A concurrent notification of the same new group opened it first: join that one.
        incident = _open_for_group(session, note.group_key)
        if incident is None:
            raise
        return incident


def receive_alertmanager(session: Session, note: Notification, *, severity_map: dict[str, str],
                         default_channel: str | None = None,
                         now: datetime | None = None) -> AlertOutcome:
    """Apply one notification: one incident per `groupKey`, each firing alert once on its
    timeline, resolved alerts noted, and a `resolved` group resolves the incident. Repeated
    notifications change nothing and announce nothing."""
    now = now or utcnow()
    incident = _open_for_group(session, note.group_key)
    created = False
    if incident is None:
        latest = _latest_for_group(session, note.group_key)
        repeat = latest is not None and all(
            _seen_firing(session, latest, alert) for alert in note.firing)
        if note.status == "resolved" or not note.firing or repeat:
            # Nothing open: already resolved (by a person, or earlier), or never seen firing.
            return AlertOutcome(latest, routed=bool(latest and latest.project_id))
        incident = _declare_from_alerts(session, note, severity_map, default_channel, now)
        created = True
    changed = created
    for alert in note.firing:
        changed |= _record_alert(session, incident, Kind.ALERT, alert, now)
    for alert in note.resolved:
        if _seen_alert(session, incident, Kind.ALERT, alert.fingerprint):
            changed |= _record_alert(session, incident, Kind.ALERT_RESOLVED, alert, now)
    if note.status == "resolved":
        summary = renderer.text("incident/alert_resolved.txt.j2", note=note).strip()
        resolve(session, incident, ALERTMANAGER, summary, now=now)
        changed = True
    elif changed:
        _audit(session, incident, ALERTMANAGER, "alerts_received", None,
               {"alerts": [alert.fingerprint for alert in note.firing]})
    return AlertOutcome(incident, routed=incident.project_id is not None, created=created,
                        changed=changed)
