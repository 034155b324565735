"""`POST /hooks/alertmanager` end to end: Alertmanager's payloads in, fake Slack and the database
checked."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot import outbox
from bot.models import AuditEvent, Incident, IncidentEvent, OutboxMessage, Project, utcnow
from bot.render import slack_unescape
from bot.services import access
from bot.services import incidents as service
from bot.services.projects import project_for_channel
from support.db_snapshot import changed_tables, snapshot
from support.fake_slack import FakeSlack
from support.processes import free_port
from support.quorum_server import QuorumServer
from support.slack_requests import TEAM, SlackSender
from support.waiting import eventually

TOKEN = "alertmanager-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHANNEL = "C0CHURN01"
GROUP = '{}/{project="churn-model"}:{alertname="ChurnLatencyHigh"}'
NOT_ENDED = "0001-01-01T00:00:00Z"


@pytest.fixture
def serve(make_settings: Callable[..., Any]) -> Iterator[Callable[..., QuorumServer]]:
    """Start Quorum with the webhook token (and any other settings) given."""
    servers: list[QuorumServer] = []

    def start(**overrides: Any) -> QuorumServer:
        server = QuorumServer(make_settings(**{"QUORUM_WEBHOOK_TOKEN": TOKEN, **overrides}))
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()


def iso(minutes_ago: float) -> str:
    return (utcnow() - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


def alert(fingerprint: str = "5ac1e2f3a4b5c6d7", *, status: str = "firing",
          name: str = "ChurnLatencyHigh", severity: str = "critical", starts: str | None = None,
          summary: str = "p99 latency above 2s", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "severity": severity, "project": "churn-model", **labels},
        "annotations": {"summary": summary},
        "startsAt": starts or iso(10),
        "endsAt": NOT_ENDED if status == "firing" else iso(0),
        "generatorURL": "http://prometheus:9090/graph?g0.expr=latency",
        "fingerprint": fingerprint,
    }


def notification(*alerts: dict[str, Any], group: str = GROUP,
                 status: str | None = None) -> dict[str, Any]:
    """A version 4 payload as Alertmanager builds it (common labels: those all alerts share)."""
    firing = any(a["status"] == "firing" for a in alerts)
    common = dict(alerts[0]["labels"])
    for other in alerts[1:]:
        common = {k: v for k, v in common.items() if other["labels"].get(k) == v}
    return {
        "receiver": "quorum", "status": status or ("firing" if firing else "resolved"),
        "alerts": list(alerts), "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]},
        "commonLabels": common, "commonAnnotations": {"summary": "p99 latency above 2s"},
        "externalURL": "http://alertmanager:9093", "version": "4", "groupKey": group,
        "truncatedAlerts": 0,
    }


def post(server: QuorumServer, payload: Any, headers: dict[str, str] | None = None,
         content: bytes | None = None) -> httpx.Response:
    body = content if content is not None else json.dumps(payload).encode()
    return httpx.post(f"{server.url}/hooks/alertmanager", content=body, timeout=10,
                      headers={"Content-Type": "application/json",
                               **(AUTH if headers is None else headers)})


def count(server: QuorumServer, model: type) -> int:
    with server.runtime.db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def all_incidents(server: QuorumServer) -> list[Incident]:
    with server.runtime.db.session() as session:
        return list(session.scalars(select(Incident).order_by(Incident.id)).unique())


def kinds(server: QuorumServer, number: int = 1) -> list[str]:
    with server.runtime.db.session() as session:
        return list(session.scalars(
            select(IncidentEvent.kind).join(Incident).where(Incident.number == number)
            .order_by(IncidentEvent.id)))


def add_project(server: QuorumServer, channel: str = CHANNEL, name: str = "churn-model",
                team: str = TEAM) -> None:
    with server.runtime.db.session() as session:
        # Known to be public, as a project Slack has told Quorum about (docs/access.md).
        access.set_privacy(session, project_for_channel(session, team, channel, name), False,
                           utcnow())


def thread_replies(fake: FakeSlack, minimum: int) -> list[str]:
    calls = fake.wait_for("chat.postMessage", count=minimum,
                          predicate=lambda call: "thread_ts" in call.args)
    return [slack_unescape(json.dumps(call.args["blocks"])) for call in calls]


def test_the_hook_refuses_calls_without_the_right_token(serve: Callable[..., QuorumServer],
                                                        fake_slack: FakeSlack) -> None:
    closed = serve(QUORUM_WEBHOOK_TOKEN=None)
    refused = post(closed, notification(alert()))
    assert refused.status_code == 503 and refused.json()["error"] == "webhooks_disabled"
    assert "QUORUM_WEBHOOK_TOKEN" in refused.json()["reason"]

    server = serve()
    for headers, reason in (({}, "Missing bearer token"),
                            ({"Authorization": "Bearer not-the-token"}, "Wrong bearer token"),
                            ({"Authorization": f"Basic {TOKEN}"}, "Missing bearer token"),
                            ({"Authorization": "Bearer"}, "Missing bearer token")):
        response = post(server, notification(alert()), headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["ok"] is False and reason in response.json()["reason"]
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert count(server, Incident) == 0 and count(server, OutboxMessage) == 0


def test_the_hook_refuses_bad_payloads_and_writes_nothing(
        serve: Callable[..., QuorumServer]) -> None:
    server = serve(QUORUM_DEFAULT_CHANNEL="C0ALERTS1")
    add_project(server)
    no_alerts = notification(alert())
    del no_alerts["alerts"]
    no_fingerprint = alert()
    del no_fingerprint["fingerprint"]
    cases: list[tuple[Any, bytes | None, int, str]] = [
        (None, b"{not json", 400, "not valid JSON"),
        (None, b"\xff\xfe", 400, "not valid JSON"),
        ([notification(alert())], None, 400, "must be a JSON object"),
        ({**notification(alert()), "version": "3"}, None, 422, "version '3'"),
        ({**notification(alert()), "version": 4}, None, 422, "payload version 4"),
        (no_alerts, None, 422, "`alerts` must be a non-empty list"),
        ({**notification(alert()), "alerts": []}, None, 422, "`alerts` must be a non-empty"),
        ({**notification(alert()), "alerts": {"a": 1}}, None, 422, "`alerts` must be"),
        (notification(no_fingerprint), None, 422, "`alerts[0].fingerprint`"),
        (notification(alert(status="pending")), None, 422, "`alerts[0].status`"),
        (notification(alert(starts="yesterday")), None, 422, "`alerts[0].startsAt`"),
        ({**notification(alert()), "groupKey": ""}, None, 422, "`groupKey`"),
        ({**notification(alert()), "status": "unknown"}, None, 422, "`status`"),
        ({**notification(alert()), "commonLabels": {"a": 1}}, None, 422, "`commonLabels`"),
    ]
    for payload, raw, status, reason in cases:
        response = post(server, payload, content=raw)
        assert response.status_code == status, (payload, response.text)
        assert reason in response.json()["reason"], (reason, response.json())
    assert count(server, Incident) == 0 and count(server, OutboxMessage) == 0
    assert count(server, Project) == 1 and count(server, AuditEvent) == 0


def test_one_incident_per_group_from_first_alert_to_resolution(
        serve: Callable[..., QuorumServer], fake_slack: FakeSlack) -> None:
    server = serve()
    add_project(server)
    first = alert("5ac1e2f3a4b5c6d7", starts=iso(12))

    opened = post(server, notification(first))
    assert opened.status_code == 200
    assert opened.json() == {"ok": True, "incident": "INC-1", "status": "declared",
                             "routed": True, "created": True, "changed": True}
    card = fake_slack.wait_for("chat.postMessage")[0]
    assert card.args["channel"] == CHANNEL
    text = slack_unescape(json.dumps(card.args["blocks"]))
    assert card.args["blocks"][0]["text"]["text"] == "INC-1 · p99 latency above 2s"
    assert "sev1" in text and "Opened by Alertmanager" in text
    assert "Alert firing*: ChurnLatencyHigh: p99 latency above 2s" in thread_replies(
        fake_slack, 1)[0]
    [incident] = all_incidents(server)
    assert (incident.source, incident.severity, incident.alert_group_key, incident.team_id) == (
        "alertmanager", "sev1", GROUP, TEAM)
    assert abs(incident.started_at - utcnow() + timedelta(minutes=12)) < timedelta(seconds=5)

    # Alertmanager sends the group again at every group_interval: nothing new, nothing posted.
    queued = count(server, OutboxMessage)
    again = post(server, notification(first))
    assert again.status_code == 200 and again.json()["changed"] is False
    assert again.json()["created"] is False and count(server, OutboxMessage) == queued

    second = alert("0f9e8d7c6b5a4321", severity="warning", summary="p95 latency above 1s")
    grown = post(server, notification(first, second))
    assert grown.json()["changed"] is True and grown.json()["incident"] == "INC-1"
    assert "p95 latency above 1s" in thread_replies(fake_slack, 2)[1]
    assert post(server, notification(first, second)).json()["changed"] is False

    partly = post(server, notification({**first, "status": "resolved", "endsAt": iso(1)},
                                       second))
    assert partly.json()["changed"] is True and partly.json()["status"] == "declared"
    assert "*Alert resolved*: ChurnLatencyHigh" in thread_replies(fake_slack, 3)[2]

    resolved = [{**a, "status": "resolved", "endsAt": iso(0)} for a in (first, second)]
    closed = post(server, notification(*resolved))
    assert closed.json() == {"ok": True, "incident": "INC-1", "status": "resolved",
                             "routed": True, "created": False, "changed": True}
    summary = fake_slack.wait_for("chat.postMessage", predicate=lambda c: c.args["blocks"][0]
                                  .get("text", {}).get("text", "").startswith("Resolved · "))[0]
    summary_text = slack_unescape(json.dumps(summary.args["blocks"]))
    assert summary.args["channel"] == CHANNEL
    assert "Resolved automatically: Alertmanager reported all 2 alerts of the group resolved" \
        in summary_text and "never acknowledged" in summary_text
    assert {e["action_id"] for b in summary.args["blocks"] if b["type"] == "actions"
            for e in b["elements"]} == {"incident_log_decision", "incident_add_risk"}
    assert post(server, notification(*resolved)).json()["changed"] is False
    assert kinds(server) == ["declared", "alert", "alert", "alert_resolved", "alert_resolved",
                             "resolved"]
    with server.runtime.db.session() as session:
        actions = list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert actions == ["incident.declared", "incident.alerts_received",
                       "incident.alerts_received", "incident.alerts_received",
                       "incident.resolved"]
    assert len(all_incidents(server)) == 1


def test_unrouted_alerts_are_stored_and_the_default_channel_routes(
        serve: Callable[..., QuorumServer], fake_slack: FakeSlack) -> None:
    server = serve()
    unrouted = post(server, notification(alert(project="nobody-knows")))
    assert unrouted.status_code == 202
    assert unrouted.json()["routed"] is False and unrouted.json()["incident"] == "INC-1"
    [incident] = all_incidents(server)
    assert incident.project_id is None and incident.team_id == ""
    assert count(server, OutboxMessage) == 0 and count(server, Project) == 0
    assert post(server, notification(alert(project="nobody-knows"))).status_code == 202

    # With one workspace known, the default channel becomes a project of that workspace.
    add_project(server, "C0OTHER01", "other")
    routed = serve(QUORUM_DEFAULT_CHANNEL="C0ALERTS1")
    response = post(routed, notification(alert("77aa", project="nobody-knows"),
                                         group="{}:{alertname=\"Drift\"}"))
    assert response.status_code == 200 and response.json()["routed"] is True
    card = fake_slack.wait_for("chat.postMessage")[0]
    assert card.args["channel"] == "C0ALERTS1"
    with routed.runtime.db.session() as session:
        project = session.scalars(select(Project).where(Project.channel_id == "C0ALERTS1")).one()
        assert project.team_id == TEAM
        assert session.scalars(select(Incident).where(Incident.alert_group_key != GROUP)).one() \
            .ref == "INC-1"  # numbered in that workspace


def test_the_severity_map_is_configurable(serve: Callable[..., QuorumServer],
                                          fake_slack: FakeSlack) -> None:
    server = serve(QUORUM_ALERT_SEVERITY_MAP="page=sev1, ticket=sev4")
    add_project(server)
    for number, severity in enumerate(("ticket", "critical", "PAGE"), start=1):
        response = post(server, notification(alert(f"fp{number}", severity=severity),
                                             group=f"group-{number}"))
        assert response.json()["created"] is True
    assert [i.severity for i in all_incidents(server)] == ["sev4", "sev3", "sev1"]
    # The most severe alert of a group sets the incident's severity.
    post(server, notification(alert("fp4", severity="ticket"), alert("fp5", severity="page"),
                              group="group-4"))
    assert all_incidents(server)[-1].severity == "sev1"


def test_a_group_firing_again_after_a_manual_resolution(
        serve: Callable[..., QuorumServer], fake_slack: FakeSlack) -> None:
    server = serve()
    add_project(server)
    firing = alert(starts=iso(30))
    post(server, notification(firing))
    with server.runtime.db.session() as session:
        incident = service.get_incident(session, TEAM, "INC-1")
        service.resolve(session, incident, "U0ALICE01", "Scaled out by hand")

    # Still firing (Alertmanager's repeat_interval), then resolved: the incident stays closed.
    assert post(server, notification(firing)).json() == {
        "ok": True, "incident": "INC-1", "status": "resolved", "routed": True,
        "created": False, "changed": False}
    resolved = {**firing, "status": "resolved", "endsAt": iso(0)}
    assert post(server, notification(resolved)).json()["changed"] is False
    # A new firing of the same alert (a new start) is a new incident.
    refired = post(server, notification(alert(starts=iso(1))))
    assert refired.json()["incident"] == "INC-2" and refired.json()["created"] is True
    assert [i.status for i in all_incidents(server)] == ["resolved", "declared"]


def test_concurrent_notifications_of_a_new_group_make_one_incident(
        serve: Callable[..., QuorumServer], fake_slack: FakeSlack) -> None:
    server = serve()
    add_project(server)
    payload = notification(alert())
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def send() -> None:
        barrier.wait()
        statuses.append(post(server, payload).status_code)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 6
    assert len(all_incidents(server)) == 1 and kinds(server) == ["declared", "alert"]


def test_repeated_notifications_in_any_order_and_at_once_change_nothing_more(
        serve: Callable[..., QuorumServer], fake_slack: FakeSlack) -> None:
    """Alertmanager's repeat_interval resends the group as it is (its alerts in any order), and
    with several Alertmanagers (HA) the copies arrive together: one incident, each alert once on
    its timeline, one resolution, one summary."""
    server = serve()
    add_project(server)
    first = alert("5ac1e2f3a4b5c6d7", starts=iso(12))
    second = alert("0f9e8d7c6b5a4321", severity="warning", summary="p95 latency above 1s")

    def at_once(payload: dict[str, Any], copies: int = 4) -> list[httpx.Response]:
        barrier = threading.Barrier(copies)
        replies: list[httpx.Response] = []

        def send() -> None:
            barrier.wait()
            replies.append(post(server, payload))

        threads = [threading.Thread(target=send) for _ in range(copies)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert [r.status_code for r in replies] == [200] * copies, [r.text for r in replies]
        return replies

    opened = at_once(notification(first, second))
    assert sum(r.json()["created"] for r in opened) == 1
    queued = count(server, OutboxMessage)
    for payload in (notification(second, first), notification(first, second)):
        assert post(server, payload).json()["changed"] is False
    assert count(server, OutboxMessage) == queued

    resolved = [{**a, "status": "resolved", "endsAt": iso(0)} for a in (first, second)]
    closed = at_once(notification(*resolved))
    assert sum(r.json()["changed"] for r in closed) == 1
    assert {r.json()["status"] for r in closed} == {"resolved"}
    assert post(server, notification(*reversed(resolved))).json()["changed"] is False
    assert len(all_incidents(server)) == 1
    assert kinds(server) == ["declared", "alert", "alert", "alert_resolved", "alert_resolved",
                             "resolved"]
    with server.runtime.db.session() as session:
        actions = list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert actions == ["incident.declared", "incident.alerts_received", "incident.resolved"]

    def delivered() -> bool:
        with server.runtime.db.session() as session:
            return not session.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.status.in_(("pending", "sending"))))

    eventually(delivered)
    summaries = [c for c in fake_slack.calls_to("chat.postMessage") if c.args["blocks"][0]
                 .get("text", {}).get("text", "").startswith("Resolved · ")]
    assert len(summaries) == 1


# ------------------------------------------------------------------ links, times and silences


def card_message(fake: FakeSlack) -> dict[str, Any]:
    call = fake.wait_for("chat.postMessage", predicate=lambda c: c.args["blocks"][0].get(
        "type") == "header")[0]
    return {**call.args, "ts": call.response["ts"]}


def test_alert_links_are_validated_and_the_times_are_the_alerts(
        serve: Callable[..., QuorumServer], fake_slack: FakeSlack) -> None:
    server = serve()
    add_project(server)
    firing = alert(starts=iso(10))
    firing["annotations"].update({"runbook_url": "javascript:alert(1)",
                                  "dashboard_url": "https://grafana.example/d/churn?a=1&b=<2>",
                                  "dashboard": "https://grafana.example/d/churn"})
    assert post(server, notification(firing)).status_code == 200
    card = card_message(fake_slack)
    text = slack_unescape(json.dumps(card["blocks"]))
    assert "<http://prometheus:9090/graph?g0.expr=latency|Alert source>" in text
    assert "<https://grafana.example/d/churn|Dashboard>" in text
    assert "javascript" not in text and "Runbook" not in text
    # No ALERTMANAGER_URL: no silence buttons.
    assert not any("silence" in e["action_id"] for b in card["blocks"] if b["type"] == "actions"
                   for e in b["elements"])

    ended = iso(3)
    resolved = {**alert(status="resolved", starts=firing["startsAt"]), "endsAt": ended}
    assert post(server, notification(resolved)).json()["status"] == "resolved"
    with server.runtime.db.session() as session:
        [incident] = session.scalars(select(Incident)).unique().all()
        assert incident.started_at.isoformat()[:19] == firing["startsAt"][:19]
        assert incident.resolved_at.isoformat()[:19] == ended[:19]
        assert service.duration(incident) == incident.resolved_at - incident.started_at
        assert incident.source_url == "http://prometheus:9090/graph?g0.expr=latency"
        assert incident.runbook_url is None


def test_a_silence_when_alertmanager_is_down_tells_the_person_and_changes_nothing(
        serve: Callable[..., QuorumServer], fake_slack: FakeSlack) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    server = serve(ALERTMANAGER_URL=nowhere)
    add_project(server)
    assert post(server, notification(alert())).status_code == 200
    card = card_message(fake_slack)
    fake_slack.wait_for("chat.postMessage", count=2)  # the card and its alert entry
    eventually(lambda: outbox_settled(server))
    before = snapshot(server.runtime.db)
    sender = SlackSender(server.url, fake_slack.response_url(), team=TEAM)
    try:
        values = {e["action_id"]: e["value"] for b in card["blocks"] if b["type"] == "actions"
                  for e in b["elements"]}
        sender.click("incident_silence_4h", values["incident_silence_4h"], message=card)
    finally:
        sender.close()
    told = fake_slack.wait_for("response_url")[0].args
    assert "Alertmanager cannot be reached" in told["text"]
    assert "INC-1 was not silenced" in told["text"] and told["replace_original"] is False
    assert changed_tables(before, server.runtime.db) == []


def outbox_settled(server: QuorumServer) -> bool:
    with server.runtime.db.session() as session:
        return outbox.pending_count(session) == 0


def test_a_database_outage_gets_a_503_alertmanager_retries_and_nothing_stored(
        serve: Callable[..., QuorumServer]) -> None:
    server = serve(DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    refused = post(server, notification(alert()))
    assert refused.status_code == 503
    assert refused.json() == {"ok": False, "error": "database_unavailable", "reason": (
        "Quorum cannot reach its database; nothing was stored. Alertmanager will send it again.")}
    # A payload Quorum cannot read is refused before the database is even tried.
    assert post(server, {"version": "4", "alerts": "none"}).status_code == 422

