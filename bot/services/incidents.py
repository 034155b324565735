"""Incidents: declare, acknowledge, update, mitigate and resolve `INC-n`; dedicated channels;
update reminders; the incident summary. (Alertmanager's notifications: `bot.services.alertmanager`.)

Every change is one timeline entry (`IncidentEvent`) and one audit event. The entry is posted in
the incident's dedicated channel when it has one, else in the thread of its card in the project
channel; the card (and its copy in the dedicated channel) is edited in place. Follow-up items:
`bot.services.follow_ups`; silences made from Slack: `bot.services.silences`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from bot import outbox
from bot.config import INCIDENT_SEVERITIES
from bot.errors import Conflict, InvalidInput
from bot.models import Incident, IncidentEvent, IncidentFollowUp, IncidentStatus, Project, utcnow
from bot.render import renderer
from bot.scheduler import claim_once, sweep
from bot.services import home
from bot.services.audit import record_event, snapshot
from bot.services.records import find_by_id, find_by_ref
from bot.services.refs import number_at_commit, pending, settle

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
    SEVERITY = "severity"
    LEAD = "lead"
    SILENCED = "silenced"


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


FOLLOW_UP_LIMIT = 500
URL_LIMIT = 2000


@dataclass
class FollowUpDraft:
    """One follow-up of a resolution: what to do, and optionally who, by when and its issue."""

    text: str
    owner: str | None = None
    due_date: date | None = None
    url: str | None = None
    field: str = "follow_up"  # the form field it came from, for error messages

    def validated(self, today: date) -> FollowUpDraft:
        text = " ".join((self.text or "").split())
        if not text:
            raise InvalidInput("A follow-up with an owner, a due date or a link needs a text: "
                               "say what is to be done.", field=self.field)
        if len(text) > FOLLOW_UP_LIMIT:
            raise InvalidInput(f"The follow-up is {len(text)} characters long; keep it within "
                               f"{FOLLOW_UP_LIMIT}.", field=self.field)
        if self.due_date is not None and self.due_date < today:
            raise InvalidInput(f"The due date {self.due_date.isoformat()} is in the past.",
                               field=f"{self.field}_due")
        url = (self.url or "").strip() or None
        if url is not None and safe_link(url, URL_LIMIT) is None:
            raise InvalidInput("The link must be an http(s) address of the issue, e.g. "
                               "https://github.com/org/repo/issues/12.", field=f"{self.field}_link")
        return FollowUpDraft(text, (self.owner or "").strip() or None, self.due_date, url,
                             self.field)


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


def safe_link(value: str | None, limit: int = 2000) -> str | None:
    """An http(s) address fit for a Slack link, else None (never a `javascript:` or a `<!here>`)."""
    url = (value or "").strip()
    if not url or len(url) > limit or not url.startswith(("https://", "http://")) \
            or any(c in url for c in "<>|\"` \n\r\t"):
        return None
    return url


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
        "impact": incident.impact,
        "root_cause": incident.root_cause,
        "follow_ups": incident.follow_ups,
        "follow_up_items": [follow_up_record(item) for item in incident.follow_up_items],
        "source_url": incident.source_url,
        "runbook_url": incident.runbook_url,
        "dashboard_url": incident.dashboard_url,
        "alert_labels": incident.alert_labels,
        "silences": [
            {"silence_id": s.silence_id, "matchers": s.matchers, "created_by": s.created_by,
             "starts_at": s.starts_at.isoformat(), "ends_at": s.ends_at.isoformat(),
             "until_resolved": s.until_resolved, "expired_at": _iso(s.expired_at)}
            for s in incident.silences
        ],
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


def follow_up_record(item: IncidentFollowUp) -> dict[str, Any]:
    return {"ref": f"{item.incident.ref}/{item.position}", "text": item.text,
            "owner": item.owner, "due_date": item.due_date.isoformat() if item.due_date else None,
            "url": item.url, "status": item.status, "done_at": _iso(item.done_at),
            "done_by": item.done_by}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def incident_snapshot(incident: Incident) -> dict[str, Any]:
    return snapshot(as_record(incident), "timeline", "time_to_acknowledge_seconds",
                    "duration_seconds", "silences")


def render_card(incident: Incident) -> dict[str, Any]:
    return renderer.message("incident/card", i=incident)


def render_summary(incident: Incident) -> dict[str, Any]:
    return renderer.message("incident/summary", i=incident, duration=duration(incident),
                            tta=time_to_acknowledge(incident), timeline=list(incident.events),
                            follow_ups=list(incident.follow_up_items))


def decision_context(incident: Incident) -> str:
    """The context of a decision logged from the incident summary."""
    return renderer.text("incident/decision_context.txt.j2", i=incident,
                         duration=duration(incident), tta=time_to_acknowledge(incident))


# ---------------------------------------------------------------------------------- lookups

def get_incident(session: Session, team_id: str, ref: str, *, lock: bool = False) -> Incident:
    """The incident named by `ref` in the workspace; `lock` makes concurrent clicks queue up."""
    return find_by_ref(session, Incident, team_id, ref, "incident", lock=lock)


def get_by_id(session: Session, incident_id: int, team_id: str, *,
              lock: bool = False) -> Incident:
    """The incident behind a button or form, never one of another workspace."""
    return find_by_id(session, Incident, incident_id, "incident", team_id=team_id, lock=lock)


# ------------------------------------------------------------------------------- the lifecycle

def post_to_incident(session: Session, incident: Incident, message: dict[str, Any]) -> None:
    """Post where the incident is being worked: its dedicated channel when it has one, else the
    thread of its card in the project channel (nowhere for an unrouted incident)."""
    if incident.channel_id:
        outbox.post_message(session, incident.team_id, incident.channel_id, message)
    elif incident.project is not None:
        outbox.post_message(session, incident.team_id, incident.project.channel_id, message,
                            thread_key=card_key(incident))


def add_timeline_entry(session: Session, incident: Incident, kind: str, actor: str,
                       text: str = "", *, at: datetime | None = None,
                       fingerprint: str | None = None, post: bool = True) -> IncidentEvent:
    """Append a timeline entry and post it where the incident is being worked."""
    event = IncidentEvent(incident=incident, kind=kind, actor=actor, text=text,
                          at=at or utcnow(), alert_fingerprint=fingerprint)
    session.add(event)
    session.flush()
    if post:
        post_to_incident(session, incident,
                         renderer.message("incident/entry", i=incident, e=event))
    return event


def refresh_cards(session: Session, incident: Incident) -> None:
    if incident.project is not None:
        outbox.update_message(session, incident.team_id, card_key(incident),
                              render_card(incident))
    if incident.channel_id:
        outbox.update_message(session, incident.team_id, room_card_key(incident),
                              render_card(incident))
    # The commander's Home lists the incident first while it is active (and drops it at the end).
    home.queue_home_refresh(session, incident.team_id, [incident.commander])


def audit(session: Session, incident: Incident, actor: str, action: str,
          before: dict[str, Any] | None, extra: dict[str, Any] | None = None) -> None:
    """Append `incident.<action>` to the audit log, with the incident as it is now."""
    after = {**incident_snapshot(incident), **(extra or {})}
    record_event(session, actor=actor, action=f"incident.{action}", entity=incident,
                 project_id=incident.project_id, before=before, after=after)


def require_open(incident: Incident) -> None:
    if incident.status == IncidentStatus.RESOLVED:
        when = incident.resolved_at.strftime("%Y-%m-%d %H:%M UTC") if incident.resolved_at \
            else "earlier"
        raise Conflict(f"{incident.ref} is already resolved (since {when}).")


def _engage(incident: Incident, actor: str, now: datetime, *, acknowledge: bool = True) -> None:
    """A person acting on an incident has acknowledged it, and commands it if no one does.
    Resolving alone is no acknowledgement (`acknowledge=False`): MTTA counts only incidents that
    someone acknowledged while they were open."""
    if actor in (ALERTMANAGER, CLI):
        return
    if not acknowledge:
        incident.commander = incident.commander or actor
        return
    if incident.acknowledged_at is None:
        incident.acknowledged_at = now
    if incident.status == IncidentStatus.DECLARED:
        incident.status = IncidentStatus.ACKNOWLEDGED
    if not incident.commander:
        incident.commander = actor


def declare(session: Session, project: Project | None, actor: str, draft: IncidentDraft, *,
            team_id: str | None = None, source: str = "slack", started_at: datetime | None = None,
            alert_group_key: str | None = None, links: dict[str, str | None] | None = None,
            alert_labels: dict[str, str] | None = None, silenceable: bool = False,
            now: datetime | None = None) -> Incident:
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
        team_id=team, number=number_at_commit(session, Incident, team), project=project,
        title=draft.title, severity=draft.severity, status=IncidentStatus.DECLARED,
        commander=draft.commander, model=draft.model, model_version=draft.model_version,
        description=draft.description, source=source, started_at=min(started_at or now, now),
        last_update_at=now, alert_group_key=alert_group_key, created_by=actor, created_at=now,
        source_url=safe_link((links or {}).get("source")),
        runbook_url=safe_link((links or {}).get("runbook")),
        dashboard_url=safe_link((links or {}).get("dashboard")),
        alert_labels=alert_labels or None, silenceable=bool(silenceable and alert_labels),
    )
    session.add(incident)
    pending(session, incident)
    session.flush()
    add_timeline_entry(session, incident, Kind.DECLARED, actor, draft.description,
                       at=incident.started_at, post=False)
    audit(session, incident, actor, "declared", None)
    if project is not None:
        outbox.post_message(session, team, project.channel_id, render_card(incident),
                            key=card_key(incident))
    home.queue_home_refresh(session, team, [incident.commander])
    settle(session)  # last: the workspace's counter row is held from here to the commit
    return incident


def acknowledge(session: Session, incident: Incident, actor: str,
                now: datetime | None = None) -> bool:
    """Acknowledge the incident; False when it already was (a double click changes nothing)."""
    require_open(incident)
    if incident.acknowledged_at is not None:
        return False
    now = now or utcnow()
    before = incident_snapshot(incident)
    _engage(incident, actor, now)
    incident.last_update_at = now
    add_timeline_entry(session, incident, Kind.ACKNOWLEDGED, actor, at=now)
    audit(session, incident, actor, "acknowledged", before)
    refresh_cards(session, incident)
    return True


def mitigate(session: Session, incident: Incident, actor: str,
             now: datetime | None = None) -> bool:
    """Mark the impact as mitigated; False when it already was."""
    require_open(incident)
    if incident.status == IncidentStatus.MITIGATED:
        return False
    now = now or utcnow()
    before = incident_snapshot(incident)
    _engage(incident, actor, now)
    incident.status = IncidentStatus.MITIGATED
    incident.mitigated_at = now
    incident.last_update_at = now
    add_timeline_entry(session, incident, Kind.MITIGATED, actor, at=now)
    audit(session, incident, actor, "mitigated", before)
    refresh_cards(session, incident)
    return True


def add_update(session: Session, incident: Incident, actor: str, text: str,
               now: datetime | None = None) -> IncidentEvent:
    """A status update on the timeline (`/incident update` or the card's Add update)."""
    text = _clean_text(text, "update")
    if not text:
        raise InvalidInput("The update is empty: say what changed.", field="update")
    require_open(incident)
    now = now or utcnow()
    before = incident_snapshot(incident)
    _engage(incident, actor, now)
    incident.last_update_at = now
    event = add_timeline_entry(session, incident, Kind.UPDATE, actor, text, at=now)
    audit(session, incident, actor, "updated", before, {"update": text})
    refresh_cards(session, incident)
    return event


def resolve(session: Session, incident: Incident, actor: str, summary: str,
            root_cause: str = "", follow_ups: str = "", *, impact: str = "",
            items: Sequence[FollowUpDraft] = (), ended_at: datetime | None = None,
            now: datetime | None = None) -> Incident:
    """Resolve the incident, add its follow-up items and post its summary to the project
    channel. `ended_at` is when the impact ended, if known better than now (an alert's
    `endsAt`); `follow_ups` is free text from callers without items (the CLI)."""
    summary = _clean_text(summary, "summary")
    if not summary:
        raise InvalidInput("The summary is empty: say how it ended.", field="summary")
    root_cause = _clean_text(root_cause, "root_cause")
    impact = _clean_text(impact, "impact")
    follow_ups = _clean_text(follow_ups, "follow_ups")
    now = now or utcnow()
    drafts = [item.validated(today=now.date()) for item in items]
    require_open(incident)
    before = incident_snapshot(incident)
    _engage(incident, actor, now, acknowledge=False)
    incident.status = IncidentStatus.RESOLVED
    incident.resolved_at = max(min(ended_at or now, now), incident.started_at)
    incident.last_update_at = now
    incident.summary, incident.root_cause, incident.follow_ups = summary, root_cause, follow_ups
    incident.impact = impact or incident.impact
    for position, draft in enumerate(drafts, start=len(incident.follow_up_items) + 1):
        incident.follow_up_items.append(IncidentFollowUp(
            team_id=incident.team_id, position=position, text=draft.text, owner=draft.owner,
            due_date=draft.due_date, url=draft.url, created_by=actor, created_at=now))
    add_timeline_entry(session, incident, Kind.RESOLVED, actor, summary, at=now)
    audit(session, incident, actor, "resolved", before)
    refresh_cards(session, incident)
    home.queue_home_refresh(session, incident.team_id, [d.owner for d in drafts])
    if incident.project is not None:
        session.refresh(incident, ["events"])
        outbox.post_message(session, incident.team_id, incident.project.channel_id,
                            render_summary(incident), key=summary_key(incident))
    return incident


def change_severity(session: Session, incident: Incident, actor: str, severity: str,
                    reason: str = "", now: datetime | None = None) -> IncidentEvent:
    """Raise or lower the severity, on the timeline and the card; reminders follow the new one."""
    severity = check_severity(severity)
    reason = _clean_text(reason, "reason", 500)
    require_open(incident)
    if incident.severity == severity:
        raise Conflict(f"{incident.ref} is already {severity}.")
    now = now or utcnow()
    before = incident_snapshot(incident)
    _engage(incident, actor, now)
    previous_severity, incident.severity = incident.severity, severity
    incident.last_update_at = now
    text = f"{previous_severity} → {severity}" + (f": {reason}" if reason else "")
    event = add_timeline_entry(session, incident, Kind.SEVERITY, actor, text, at=now)
    audit(session, incident, actor, "severity_changed", before, {"reason": reason})
    refresh_cards(session, incident)
    return event


def change_lead(session: Session, incident: Incident, actor: str, lead: str,
                now: datetime | None = None) -> IncidentEvent:
    """Hand the incident to another lead (commander), on the timeline and the card."""
    lead = (lead or "").strip()
    if not lead:
        raise InvalidInput("Name the new lead: `@someone`.", field="user")
    require_open(incident)
    if incident.commander == lead:
        raise Conflict(f"<@{lead}> already leads {incident.ref}.", mentions=[lead])
    now = now or utcnow()
    before = incident_snapshot(incident)
    _engage(incident, actor, now)
    previous_lead, incident.commander = incident.commander, lead
    incident.last_update_at = now
    event = add_timeline_entry(session, incident, Kind.LEAD, actor, lead, at=now)
    audit(session, incident, actor, "lead_changed", before)
    refresh_cards(session, incident)
    home.queue_home_refresh(session, incident.team_id, [previous_lead])
    return event


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
    there, post the card in it and link it from the card in the project channel (and in its
    thread: later entries go to the dedicated channel)."""
    if incident.channel_id:
        raise Conflict(f"{incident.ref} already has a channel.")
    before = incident_snapshot(incident)
    event = add_timeline_entry(session, incident, Kind.CHANNEL, actor, channel_id, post=False)
    if incident.project is not None:
        outbox.post_message(session, incident.team_id, incident.project.channel_id,
                            renderer.message("incident/entry", i=incident, e=event),
                            thread_key=card_key(incident))
    incident.channel_id = channel_id
    audit(session, incident, actor, "channel_opened", before)
    people = [user for user in dict.fromkeys(invite) if user and user not in (ALERTMANAGER, CLI)]
    if people:
        outbox.enqueue(session, incident.team_id, "conversations.invite",
                       {"channel": channel_id, "users": ",".join(people)})
    outbox.post_message(session, incident.team_id, channel_id, render_card(incident),
                        key=room_card_key(incident))
    if incident.project is not None:
        outbox.update_message(session, incident.team_id, card_key(incident),
                              render_card(incident))


# ---------------------------------------------------------------------------------- reminders

@sweep("incident_update_reminders")
def remind_stale_incidents(session: Session, now: datetime) -> None:
    """Remind the commander, where the incident is worked, of an open incident with no recent
    update.

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
        post_to_incident(session, incident,
                         renderer.message("incident/reminder", i=incident, silent=silent))
