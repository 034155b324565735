"""Silences from Slack in a real Alertmanager (Debian's `prometheus-alertmanager`, API v2): the
card's Silence button makes a silence there with the alert group's matchers, the timeline says
who silenced it, and resolving the incident expires it (from Slack at once; after Alertmanager
resolved it, on the scheduler's next tick).

`make test` installs the package when it is missing (`scripts/ensure_alertmanager.sh`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.models import Incident, IncidentSilence, utcnow
from bot.render import slack_unescape
from bot.services.projects import project_for_channel
from support.alertmanager import running_alertmanager
from support.fake_slack import FakeSlack
from support.processes import free_port
from support.quorum_server import QuorumServer
from support.slack_requests import TEAM, SlackSender
from support.waiting import eventually

pytestmark = pytest.mark.slow

TOKEN = "silences-webhook-token"
CHANNEL = "C0CHURN01"
BOB = "U0BOB0001"
LABELS = {"alertname": "ChurnLatencyHigh", "severity": "critical", "project": "churn-model",
          "instance": "scorer-1"}


@dataclass
class Stack:
    quorum: QuorumServer
    alertmanager: str
    slack: SlackSender


@pytest.fixture
def stack(make_settings: Callable[..., Any], fake_slack: FakeSlack,
          tmp_path: Path) -> Iterator[Stack]:
    """Alertmanager on a loopback port notifying Quorum, and Quorum silencing in it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = QuorumServer(make_settings(QUORUM_WEBHOOK_TOKEN=TOKEN, ALERTMANAGER_URL=url),
                          with_edge_jobs=True).start()
    with server.runtime.db.session() as session:
        project_for_channel(session, TEAM, CHANNEL, "churn-model")
    sender = SlackSender(server.url, fake_slack.response_url(), team=TEAM)
    try:
        with running_alertmanager(server.url, TOKEN, tmp_path, port):
            yield Stack(server, url, sender)
    finally:
        sender.close()
        server.stop()


def fire(alertmanager: str) -> None:
    alert = {"labels": LABELS, "annotations": {
                 "summary": "Churn model p99 latency above 2s",
                 "runbook_url": "https://runbooks.example/churn-latency",
                 "dashboard": "https://grafana.example/d/churn"},
             "startsAt": (utcnow() - timedelta(minutes=5)).isoformat(),
             "generatorURL": "http://prometheus.example/graph?g0.expr=churn_latency"}
    response = httpx.post(f"{alertmanager}/api/v2/alerts", json=[alert], timeout=5)
    assert response.status_code == 200, response.text


def silences_in(alertmanager: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{alertmanager}/api/v2/silences", timeout=5)
    assert response.status_code == 200
    return list(response.json())


def the_card(fake: FakeSlack) -> dict[str, Any]:
    call = fake.wait_for("chat.postMessage", timeout=20, predicate=lambda c: c.args["blocks"][0]
                         .get("type") == "header")[0]
    return {**call.args, "ts": call.response["ts"]}


def card_buttons(message: dict[str, Any]) -> dict[str, str]:
    return {e["action_id"]: e["value"] for b in message["blocks"] if b["type"] == "actions"
            for e in b["elements"]}


def stored_silences(quorum: QuorumServer) -> list[IncidentSilence]:
    with quorum.runtime.db.session() as session:
        return list(session.scalars(select(IncidentSilence)))


def test_a_silence_from_slack_is_made_in_alertmanager_and_expired_on_resolve(
        stack: Stack, fake_slack: FakeSlack) -> None:
    fire(stack.alertmanager)
    card = the_card(fake_slack)
    text = slack_unescape(json.dumps(card["blocks"]))
    assert "<http://prometheus.example/graph?g0.expr=churn_latency|Alert source>" in text
    assert "<https://runbooks.example/churn-latency|Runbook>" in text
    assert "<https://grafana.example/d/churn|Dashboard>" in text
    actions = card_buttons(card)
    assert {"incident_silence_1h", "incident_silence_4h", "incident_silence_resolved"} <= \
        set(actions)

    stack.slack.click("incident_silence_resolved", actions["incident_silence_resolved"],
                      message=card, user=BOB)
    told = fake_slack.wait_for("response_url")[0].args
    assert "Silenced INC-1's alerts in Alertmanager until it is resolved" in told["text"]

    [silence] = silences_in(stack.alertmanager)
    assert silence["status"]["state"] == "active" and silence["createdBy"] == BOB
    assert "INC-1" in silence["comment"]
    matchers = sorted((m["name"], m["value"], m["isRegex"], m.get("isEqual", True))
                      for m in silence["matchers"])
    assert matchers == [("alertname", "ChurnLatencyHigh", False, True),
                        ("project", "churn-model", False, True)]
    [stored] = stored_silences(stack.quorum)
    assert stored.silence_id == silence["id"] and stored.until_resolved
    entry = fake_slack.wait_for("chat.postMessage", predicate=lambda c: "*Silenced*" in
                                json.dumps(c.args["blocks"]))[0].args
    assert entry["thread_ts"] == card["ts"] and f"<@{BOB}>" in json.dumps(entry["blocks"])
    eventually(lambda: "Silenced in Alertmanager by" in json.dumps(
        fake_slack.messages[CHANNEL][card["ts"]]["blocks"]))

    # A second click (or a colleague's) makes no second silence.
    stack.slack.click("incident_silence_4h", actions["incident_silence_4h"], message=card)
    again = fake_slack.wait_for("response_url", count=2)[1].args
    assert "already silenced until it is resolved" in again["text"]
    assert f"(by <@{BOB}>)" in again["text"]  # a mention, not the escaped `&lt;@…&gt;`
    assert len(silences_in(stack.alertmanager)) == 1 and len(stored_silences(stack.quorum)) == 1

    answer = stack.slack.command("/incident", "resolve INC-1 Scaled the scorer out")
    assert "Resolved *INC-1*" in answer.json()["text"]
    eventually(lambda: silences_in(stack.alertmanager)[0]["status"]["state"] == "expired")
    eventually(lambda: stored_silences(stack.quorum)[0].expired_at is not None)


def test_silences_of_an_incident_alertmanager_resolved_expire_on_the_next_tick(
        stack: Stack, fake_slack: FakeSlack) -> None:
    fire(stack.alertmanager)
    card = the_card(fake_slack)
    stack.slack.click("incident_silence_1h", card_buttons(card)["incident_silence_1h"],
                      message=card)
    assert "until" in fake_slack.wait_for("response_url")[0].args["text"]
    [silence] = silences_in(stack.alertmanager)
    ends = silence["endsAt"]
    left = datetime.fromisoformat(ends.replace("Z", "+00:00")) - utcnow()
    assert timedelta(minutes=59) < left <= timedelta(hours=1)

    # Alertmanager says the group resolved (sent to Quorum's hook as Alertmanager would).
    with stack.quorum.runtime.db.session() as session:
        incident = session.scalars(select(Incident)).unique().one()
        group_key = incident.alert_group_key
    resolved = {"version": "4", "groupKey": group_key, "status": "resolved", "receiver": "quorum",
                "alerts": [{"status": "resolved", "labels": LABELS, "annotations": {},
                            "startsAt": (utcnow() - timedelta(minutes=5)).isoformat(),
                            "endsAt": utcnow().isoformat(), "generatorURL": "",
                            "fingerprint": "abcdef0123456789"}],
                "groupLabels": {"alertname": "ChurnLatencyHigh", "project": "churn-model"},
                "commonLabels": LABELS, "commonAnnotations": {}, "externalURL": ""}
    answer = httpx.post(f"{stack.quorum.url}/hooks/alertmanager", json=resolved, timeout=10,
                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.json()["status"] == "resolved"
    assert silences_in(stack.alertmanager)[0]["status"]["state"] == "active"
    stack.quorum.scheduler.run_due()
    assert silences_in(stack.alertmanager)[0]["status"]["state"] == "expired"
    assert stored_silences(stack.quorum)[0].expired_at is not None


def test_two_silence_clicks_at_the_same_moment_leave_one_silence(
        stack: Stack, fake_slack: FakeSlack) -> None:
    fire(stack.alertmanager)
    card = the_card(fake_slack)
    value = card_buttons(card)["incident_silence_4h"]
    barrier = threading.Barrier(2)

    def click() -> None:
        sender = SlackSender(stack.quorum.url, fake_slack.response_url(), team=TEAM)
        try:
            barrier.wait()
            sender.click("incident_silence_4h", value, message=card)
        finally:
            sender.close()

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    said = [c.args["text"] for c in fake_slack.wait_for("response_url", count=2)]
    assert sum("Silenced INC-1" in text for text in said) == 1, said
    assert sum("already silenced" in text for text in said) == 1, said
    [stored] = stored_silences(stack.quorum)
    states = {s["id"]: s["status"]["state"] for s in silences_in(stack.alertmanager)}
    # The loser's silence, if Alertmanager made it, was taken back at once.
    assert states[stored.silence_id] == "active"
    assert [state for sid, state in states.items() if sid != stored.silence_id] in (
        [], ["expired"])
