"""Alertmanager's webhook notifications (payload version 4) as incidents: one incident per alert
group, each firing alert once on its timeline, the group's resolution resolving it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import outbox
from bot.errors import InvalidInput
from bot.models import Incident, IncidentEvent, utcnow
from bot.render import renderer
from bot.services.incidents import (
    ALERTMANAGER,
    DEFAULT_SEVERITY,
    MODEL_LIMIT,
    OPEN_STATUSES,
    TEXT_LIMIT,
    TITLE_LIMIT,
    VERSION_LIMIT,
    IncidentDraft,
    Kind,
    audit,
    card_key,
    declare,
    resolve,
    safe_link,
)
from bot.services.records import lock
from bot.services.routing import route


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
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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


def _seen_firing(session: Session, incident: Incident, alert: Alert, now: datetime) -> bool:
    """Whether this very firing of the alert (same fingerprint, same start) is on the timeline;
    Alertmanager repeats it while the alert keeps firing, and a new start is a new firing."""
    at = session.scalar(
        select(IncidentEvent.at).where(IncidentEvent.incident_id == incident.id,
                                       IncidentEvent.kind == Kind.ALERT,
                                       IncidentEvent.alert_fingerprint == alert.fingerprint)
    )
    if at is None:
        return False
    # Entries keep the alert's start, unless it claimed to start in the future.
    return alert.starts_at is None or alert.starts_at >= now or at == alert.starts_at


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


def _link_annotation(note: Notification, *names: str) -> str | None:
    """The first of these annotations holding an http(s) address: the group's, else a firing
    alert's (anything else, a `javascript:` say, is never shown)."""
    for found in (note.common_annotations, *(a.annotations for a in note.firing)):
        for name in names:
            if link := safe_link(found.get(name)):
                return link
    return None


def links_of(note: Notification) -> dict[str, str | None]:
    """Where to look: the alert's source (`generatorURL`), its runbook and its dashboard."""
    source = next((link for a in note.firing if (link := safe_link(a.generator_url))), None)
    return {"source": source, "runbook": _link_annotation(note, "runbook_url", "runbook"),
            "dashboard": _link_annotation(note, "dashboard_url", "dashboard")}


def group_labels(note: Notification) -> dict[str, str]:
    """The labels that pick out the group's alerts (what a silence of the group matches): the
    labels it is grouped by, else the labels all its alerts share."""
    return dict(note.group_labels or note.common_labels)


def _declare_from_alerts(session: Session, note: Notification, severity_map: dict[str, str],
                         default_channel: str | None, now: datetime,
                         silences: bool = False) -> tuple[Incident, bool]:
    """The group's new incident, or the one a concurrent copy of the notification opened first
    (then False: this copy declared nothing)."""
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
                           alert_group_key=note.group_key, links=links_of(note),
                           alert_labels=group_labels(note), silenceable=silences, now=now), True
    except IntegrityError:
        # A concurrent notification of the same new group opened it first: join that one.
        incident = _open_for_group(session, note.group_key)
        if incident is None:
            raise
        return incident, False


def receive_alertmanager(session: Session, note: Notification, *, severity_map: dict[str, str],
                         default_channel: str | None = None, silences: bool = False,
                         now: datetime | None = None) -> AlertOutcome:
    """Apply one notification: one incident per `groupKey`, each firing alert once on its
    timeline, resolved alerts noted, and a `resolved` group resolves the incident. Repeated
    notifications change nothing and announce nothing."""
    now = now or utcnow()
    incident = _open_for_group(session, note.group_key)
    # Copies of a notification arrive together (Alertmanager in HA, retries): the incident's
    # row lock queues them, and one that finds it resolved by the copy before changes nothing.
    if incident is not None and lock(session, incident).status not in OPEN_STATUSES:
        incident = None
    created = False
    if incident is None:
        latest = _latest_for_group(session, note.group_key)
        repeat = latest is not None and all(
            _seen_firing(session, latest, alert, now) for alert in note.firing)
        if note.status == "resolved" or not note.firing or repeat:
            # Nothing open: already resolved (by a person, or earlier), or never seen firing.
            return AlertOutcome(latest, routed=bool(latest and latest.project_id))
        incident, created = _declare_from_alerts(session, note, severity_map, default_channel,
                                                 now, silences)
    changed = created
    for alert in note.firing:
        changed |= _record_alert(session, incident, Kind.ALERT, alert, now)
    for alert in note.resolved:
        if _seen_alert(session, incident, Kind.ALERT, alert.fingerprint):
            changed |= _record_alert(session, incident, Kind.ALERT_RESOLVED, alert, now)
    if note.status == "resolved":
        summary = renderer.text("incident/alert_resolved.txt.j2", note=note).strip()
        # The impact ended when the last alert did, as Alertmanager says, not when we heard.
        ends = [alert.ends_at for alert in note.alerts if alert.ends_at is not None]
        resolve(session, incident, ALERTMANAGER, summary, ended_at=max(ends, default=None),
                now=now)
        changed = True
    elif changed:
        audit(session, incident, ALERTMANAGER, "alerts_received", None,
               {"alerts": [alert.fingerprint for alert in note.firing]})
    return AlertOutcome(incident, routed=incident.project_id is not None, created=created,
                        changed=changed)
