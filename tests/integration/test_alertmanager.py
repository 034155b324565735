"""A real Alertmanager (Debian's `prometheus-alertmanager`) on loopback notifies Quorum: an alert
posted to its v2 API opens an incident, and the same alert resolved closes it with a summary.

`make test` installs the package when it is missing (`scripts/ensure_alertmanager.sh`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.models import Incident, utcnow
from bot.render import slack_unescape
from bot.services.projects import project_for_channel
from support.alertmanager import running_alertmanager
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import TEAM

pytestmark = pytest.mark.slow

TOKEN = "real-alertmanager-token"
CHANNEL = "C0CHURN01"


@pytest.fixture
def quorum_for_alerts(make_settings: Callable[..., Any]) -> Iterator[QuorumServer]:
    server = QuorumServer(make_settings(QUORUM_WEBHOOK_TOKEN=TOKEN)).start()
    with server.runtime.db.session() as session:
        project_for_channel(session, TEAM, CHANNEL, "churn-model")
    yield server
    server.stop()


@pytest.fixture
def alertmanager(quorum_for_alerts: QuorumServer, tmp_path: Path) -> Iterator[str]:
    """Alertmanager on a loopback port, its webhook receiver pointing at Quorum."""
    with running_alertmanager(quorum_for_alerts.url, TOKEN, tmp_path) as url:
        yield url


def post_alert(alertmanager: str, *, ends: bool) -> None:
    now = utcnow()
    alert = {
        "labels": {"alertname": "ChurnLatencyHigh", "severity": "critical",
                   "project": "churn-model", "model": "churn-xgb", "version": "12"},
        # The newest post's annotations win: resolve with the same ones.
        "annotations": {"summary": "Churn model p99 latency above 2s",
                        "description": "p99 at 2.7s for 5 minutes"},
        "startsAt": (now - timedelta(minutes=5)).isoformat(),
        "generatorURL": "http://prometheus.example/graph?g0.expr=churn_latency",
    }
    if ends:
        alert["endsAt"] = now.isoformat()
    response = httpx.post(f"{alertmanager}/api/v2/alerts", json=[alert], timeout=5)
    assert response.status_code == 200, response.text


def test_a_real_alertmanager_opens_and_resolves_an_incident(
        alertmanager: str, quorum_for_alerts: QuorumServer, fake_slack: FakeSlack) -> None:
    post_alert(alertmanager, ends=False)

    card = fake_slack.wait_for("chat.postMessage", timeout=20)[0]
    assert card.args["channel"] == CHANNEL
    assert card.args["blocks"][0]["text"]["text"] == "INC-1 · Churn model p99 latency above 2s"
    card_text = slack_unescape(json.dumps(card.args["blocks"]))
    assert "sev1" in card_text and "churn-xgb v12" in card_text
    assert "p99 at 2.7s for 5 minutes" in card_text and "Opened by Alertmanager" in card_text
    alert_entry = fake_slack.wait_for("chat.postMessage", count=2, timeout=20)[1]
    assert alert_entry.args["thread_ts"] == card.response["ts"]
    assert "ChurnLatencyHigh: Churn model p99 latency above 2s" in json.dumps(
        alert_entry.args["blocks"])

    post_alert(alertmanager, ends=True)

    summary = fake_slack.wait_for(
        "chat.postMessage", timeout=20, predicate=lambda call: call.args["blocks"][0].get(
            "text", {}).get("text", "").startswith("Resolved · INC-1 "))[0]
    assert summary.args["channel"] == CHANNEL and "thread_ts" not in summary.args
    text = slack_unescape(json.dumps(summary.args["blocks"]))
    for expected in ("sev1", "*Duration*", "churn-xgb v12", "never acknowledged",
                     "Resolved automatically: Alertmanager reported the alert of the group "
                     "resolved (ChurnLatencyHigh)", "*Alert firing*", "*Alert resolved*"):
        assert expected in text, expected
    with quorum_for_alerts.runtime.db.session() as session:
        [incident] = session.scalars(select(Incident)).unique().all()
        assert (incident.status, incident.source, incident.severity) == ("resolved",
                                                                          "alertmanager", "sev1")
        assert incident.alert_group_key and "ChurnLatencyHigh" in incident.alert_group_key
        assert [e.kind for e in incident.events] == ["declared", "alert", "alert_resolved",
                                                     "resolved"]
