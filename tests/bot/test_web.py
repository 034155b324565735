"""The HTTP edge: Slack signatures, health and metrics of a running `quorum serve`."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import httpx
from sqlalchemy import func, select

from bot.models import Decision
from support.quorum_server import QuorumServer
from support.slack_requests import SlackSender, sign


def _command_body(text: str = "Sneaky decision") -> str:
    return urlencode({"team_id": "T0TEAM001", "channel_id": "C0CHURN01", "user_id": "U0EVE0001",
                      "command": "/decision", "text": text, "trigger_id": "t.1",
                      "response_url": "http://127.0.0.1:9/nowhere"})


def _decision_count(quorum: QuorumServer) -> int:
    with quorum.runtime.db.session() as session:
        return session.scalar(select(func.count()).select_from(Decision)) or 0


def test_bad_stale_and_missing_signatures_get_401(slack: SlackSender, quorum: QuorumServer) -> None:
    body, form = _command_body(), "application/x-www-form-urlencoded"
    wrong_secret = slack.post(body, form, signature=sign(body, secret="not-the-secret"))
    stale = slack.post(body, form, signature=sign(body, timestamp=int(time.time()) - 6 * 60))
    future = slack.post(body, form, signature=sign(body, timestamp=int(time.time()) + 6 * 60))
    tampered_headers = sign(body)
    tampered = slack.post(body + "&text=changed", form, signature=tampered_headers)
    missing = slack.http.post(slack.url, content=body, headers={"Content-Type": form})
    for response in (wrong_secret, stale, future, tampered, missing):
        assert response.status_code == 401
    assert _decision_count(quorum) == 0
    fresh = slack.post(body, form, signature=sign(body, timestamp=int(time.time()) - 4 * 60))
    assert fresh.status_code == 200 and _decision_count(quorum) == 1


def test_an_unreachable_database_gets_a_polite_reply_in_time(make_settings) -> None:  # type: ignore[no-untyped-def]
    server = QuorumServer(make_settings(
        DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/nowhere")).start()
    try:
        sender = SlackSender(server.url, "http://127.0.0.1:9/unused")
        started = time.monotonic()
        response = sender.command("/decision", "Logged during an outage")
        assert time.monotonic() - started < 3
        assert response.status_code == 200
        assert "cannot reach its database" in response.json()["text"]
        assert response.json()["response_type"] == "ephemeral"
        health = httpx.get(f"{server.url}/healthz")
        assert health.status_code == 503
        sender.close()
    finally:
        server.stop()


def test_url_verification_challenge(slack: SlackSender) -> None:
    body = json.dumps({"token": "x", "challenge": "abc123", "type": "url_verification"})
    response = slack.post(body, "application/json")
    assert response.status_code == 200 and response.json()["challenge"] == "abc123"


def test_healthz_reports_the_database(quorum: QuorumServer) -> None:
    response = httpx.get(f"{quorum.url}/healthz")
    assert response.status_code == 200 and response.json() == {"ok": True, "database": "up"}
    quorum.runtime.db.ping = lambda: False  # type: ignore[method-assign]
    down = httpx.get(f"{quorum.url}/healthz")
    assert down.status_code == 503 and down.json()["database"] == "down"


def test_metrics_count_requests_and_outbox(slack: SlackSender, quorum: QuorumServer,
                                          fake_slack) -> None:  # type: ignore[no-untyped-def]
    slack.command("/decision", "Measured decision")
    fake_slack.wait_for("chat.postMessage")
    text = httpx.get(f"{quorum.url}/metrics").text
    assert 'quorum_http_requests_total{route="/slack/events",status="200"}' in text
    assert 'quorum_outbox_delivered_total{method="chat.postMessage"}' in text
    assert "quorum_outbox_pending " in text
    assert "quorum_http_request_seconds_bucket" in text
