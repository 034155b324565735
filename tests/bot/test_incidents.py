"""Incident services: channel names, drafts, Alertmanager payloads, routing and the schema."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import IntegrityError

from bot.database import Database
from bot.errors import InvalidInput
from bot.models import IncidentEvent
from bot.services import alertmanager
from bot.services import incidents as service
from bot.services.projects import project_for_channel
from bot.services.routing import Route, route

SLACK_NAME = re.compile(r"^[a-z0-9_-]{1,80}$")


@pytest.mark.parametrize(("number", "title", "attempt", "expected"), [
    (1, "Churn features stale!", 1, "inc-1-churn-features-stale"),
    (7, "  p99 latency > 2s & rising  ", 1, "inc-7-p99-latency-2s-rising"),
    (12, "Modèle de churn: dérive", 3, "inc-12-modele-de-churn-derive-3"),
    (3, "中文 🚀 !!!", 1, "inc-3"),
    (3, "中文", 2, "inc-3-2"),
    (4, "snake_case_job --- failed", 1, "inc-4-snake_case_job-failed"),
])
def test_channel_names_follow_slack_rules(number: int, title: str, attempt: int,
                                          expected: str) -> None:
    assert service.channel_name(number, title, attempt) == expected


def test_long_titles_keep_the_suffix_within_80_characters() -> None:
    title = "The ranking model serves stale embeddings " * 5
    for attempt in (1, 2, 10):
        name = service.channel_name(123456, title, attempt)
        assert SLACK_NAME.match(name) and len(name) <= 80
        assert name.startswith("inc-123456-the-ranking-model")
        assert not name.endswith("-") and (attempt == 1 or name.endswith(f"-{attempt}"))


def test_drafts_are_validated() -> None:
    draft = service.IncidentDraft(title="  Disk   full ", severity="SEV1", model=" churn ",
                                  model_version=" ").validated()
    assert (draft.title, draft.severity, draft.model, draft.model_version) == (
        "Disk full", "sev1", "churn", None)
    for bad, field in ((service.IncidentDraft(title=""), "title"),
                       (service.IncidentDraft(title="x", severity="p1"), "severity"),
                       (service.IncidentDraft(title="x" * 151), "title"),
                       (service.IncidentDraft(title="x", description="d" * 3001), "description")):
        with pytest.raises(InvalidInput) as error:
            bad.validated()
        assert error.value.field == field
    with pytest.raises(InvalidInput, match="`sev-7` is not a severity"):
        service.draft_from_command(None, "sev-7 boom", "U1")
    assert service.draft_from_command(None, "Severe boom", "U1").severity == "sev3"
    spelled = service.draft_from_command(None, "SEV-1 Disk full", "U1")
    assert (spelled.severity, spelled.title, spelled.commander) == ("sev1", "Disk full", "U1")
    with pytest.raises(InvalidInput, match="title is empty"):
        service.draft_from_command(None, "sev-2", "U1").validated()


def test_alertmanager_payloads_are_read() -> None:
    note = alertmanager.parse_alertmanager({
        "version": "4", "groupKey": "g", "status": "firing", "receiver": "quorum",
        "commonLabels": {"alertname": "Drift"}, "truncatedAlerts": 2,
        "alerts": [
            {"status": "firing", "labels": {"alertname": "Drift", "severity": "warning",
                                            "model": "churn"},
             "startsAt": "2026-11-23T09:00:00.123456789Z", "endsAt": "0001-01-01T00:00:00Z",
             "fingerprint": "abc"},
            {"status": "resolved", "labels": {"alertname": "Drift", "severity": "critical"},
             "startsAt": "2026-11-23T08:00:00+02:00", "endsAt": "2026-11-23T09:10:00",
             "fingerprint": "def"},
        ]})
    first, second = note.alerts
    assert first.starts_at == datetime(2026, 11, 23, 9, 0, 0, 123456, tzinfo=UTC)
    assert first.ends_at is None and second.ends_at == datetime(2026, 11, 23, 9, 10, tzinfo=UTC)
    assert note.truncated_alerts == 2 and note.label("model") == "churn"
    assert [a.fingerprint for a in note.firing] == ["abc"] and note.resolved == [second]
    severity_map = {"critical": "sev1", "warning": "sev3"}
    assert alertmanager.severity_of(note.alerts, severity_map) == "sev1"
    assert alertmanager.severity_of(note.firing, severity_map) == "sev3"
    assert alertmanager.severity_of([], severity_map) == "sev3"


def test_routing_rules(db: Database) -> None:
    with db.session() as session:
        # Nothing known: unrouted, in no workspace.
        assert route(session, project="churn", default_channel="C0ALERTS1") == \
            Route(None, "", "unrouted")
        churn = project_for_channel(session, "T1", "C0CHURN01", "churn")
        # A project by name or channel id (a leading # is fine).
        assert route(session, project="#churn").project is churn
        assert route(session, project="C0CHURN01").project is churn
        # An unknown channel id becomes a project of the single known workspace.
        new = route(session, project="C0NEW0001")
        assert (new.via, new.team_id, new.project.channel_id) == ("project", "T1", "C0NEW0001")
        # An unknown name falls through to the default channel, then to unrouted.
        fallback = route(session, project="nope", default_channel="C0ALERTS1")
        assert (fallback.via, fallback.project.team_id) == ("default_channel", "T1")
        assert route(session, project="nope") == Route(None, "T1", "unrouted")
        # Two workspaces: the default channel needs a project of its own to know its workspace.
        project_for_channel(session, "T2", "C0OTHER01", "other")
        assert route(session, default_channel="C0ELSE001").via == "unrouted"
        assert route(session, default_channel="C0ALERTS1").project.team_id == "T1"


def test_the_schema_keeps_one_open_incident_per_group_and_each_alert_once(db: Database) -> None:
    draft = service.IncidentDraft(title="Latency")
    with db.session() as session:
        project = project_for_channel(session, "T1", "C1", "churn")
        first = service.declare(session, project, "alertmanager", draft, alert_group_key="g")
        service.resolve(session, first, "U1", "done")
        # Once resolved, the group may fire again into a new incident.
        second = service.declare(session, project, "alertmanager", draft, alert_group_key="g")
        service.declare(session, project, "U1", draft)  # no group: never constrained
        service.declare(session, project, "U1", draft)
        session.add(IncidentEvent(incident=second, kind="alert", actor="alertmanager",
                                  alert_fingerprint="f1"))
    with pytest.raises(IntegrityError), db.session() as session:
        project = project_for_channel(session, "T1", "C1", "churn")
        service.declare(session, project, "alertmanager", draft, alert_group_key="g")
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(IncidentEvent(incident_id=second.id, kind="alert", actor="alertmanager",
                                  alert_fingerprint="f1"))
