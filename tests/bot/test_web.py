"""The HTTP edge: health and metrics of a running `quorum serve` (hostile requests:
`test_request_security.py`)."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bot.database import database_outage
from bot.web import ANSWER_WITHIN
from handlers.common import TOO_SLOW
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import SlackSender


def test_an_unreachable_database_gets_a_polite_reply_in_time(make_settings) -> None:  # type: ignore[no-untyped-def]
    server = QuorumServer(make_settings(
        DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
        QUORUM_WEBHOOK_TOKEN="hook-token"), answer_within=ANSWER_WITHIN).start()
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
        # Webhooks and the CI check say so with a 503 the caller can retry on, never a 500.
        bearer = {"Authorization": "Bearer hook-token"}
        for method, path, body in (
                ("GET", "/api/gates?model=churn&version=3", None),
                ("POST", "/hooks/promotion", {"model": "churn", "version": "3", "to": "prod"})):
            answer = httpx.request(method, f"{server.url}{path}", json=body, headers=bearer,
                                   timeout=10)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.json()["error"] == "database_unavailable", path
    finally:
        server.stop()


def test_a_database_outage_logs_one_traceback_then_one_counted_line_per_window(
        make_settings, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
        caplog: pytest.LogCaptureFixture) -> None:
    """Every request fails alike while the database is down: a traceback each (~9 KB) buried
    the log (12 MB in 50 s). Now the first failure has its traceback, the rest are counted."""
    now = [1000.0]
    monkeypatch.setattr(database_outage, "clock", lambda: now[0])
    database_outage.recovered()  # no outage left over from another test
    caplog.set_level(logging.INFO)
    server = QuorumServer(make_settings(
        DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/nowhere")).start()
    sender = SlackSender(server.url, "http://127.0.0.1:9/unused")
    try:
        for number in range(12):
            response = sender.command("/decision", f"Logged during an outage {number}")
            assert "cannot reach its database" in response.json()["text"]
        tracebacks = [record for record in caplog.records if record.exc_info]
        assert len(tracebacks) == 1, [record.getMessage() for record in tracebacks]
        assert tracebacks[0].getMessage().startswith(("database error", "outbox pass"))
        assert "still unavailable" not in caplog.text  # within the first 10 s: silence
        now[0] += 10
        sender.command("/decision", "Ten seconds later")
        counted = [record.getMessage() for record in caplog.records
                   if "database still unavailable" in record.getMessage()]
        assert len(counted) == 1, counted
        # 12 requests + this one, less the first, plus whatever the outbox worker tried.
        found = re.search(r"(\d+) more failures in the last 10 s", counted[0])
        assert found and int(found.group(1)) >= 12, counted[0]
        assert len([record for record in caplog.records if record.exc_info]) == 1
        assert len(caplog.text) < 20_000  # not 13 tracebacks
    finally:
        sender.close()
        server.stop()
    database_outage.recovered()


def test_no_free_database_connection_gets_the_polite_database_reply(
        slack: SlackSender, quorum: QuorumServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests queued for a full pool give up after `pool_timeout` (a TimeoutError, not a
    driver error): the person is told the database is unavailable, not that we broke."""

    @contextmanager
    def pool_exhausted() -> Iterator[None]:
        raise PoolTimeout("QueuePool limit of size 10 overflow 20 reached, connection timed "
                          "out, timeout 2.00")
        yield

    monkeypatch.setattr(quorum.runtime.db, "session", pool_exhausted)
    response = slack.command("/decision", "Logged while the pool is full")
    assert response.status_code == 200 and response.json()["response_type"] == "ephemeral"
    assert "cannot reach its database" in response.json()["text"]


def test_a_command_stuck_on_the_database_is_answered_before_slack_gives_up(
        make_settings: Callable[..., Any], fake_slack: FakeSlack,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A database that accepts connections but never answers: the person gets a polite
    ephemeral (it may or may not be saved) instead of Slack's own time-out error; a health
    check says 503 instead of hanging."""
    quorum = QuorumServer(make_settings(), answer_within=ANSWER_WITHIN).start()
    slack = SlackSender(quorum.url, fake_slack.response_url())
    thawed = threading.Event()

    @contextmanager
    def frozen_database() -> Iterator[None]:
        thawed.wait(30)
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        yield

    monkeypatch.setattr(quorum.runtime.db, "session", frozen_database)
    monkeypatch.setattr(quorum.runtime.db, "ping", lambda: thawed.wait(30))
    try:
        response = slack.command("/decision", "Logged while the database hangs")
        health = httpx.get(f"{quorum.url}/healthz", timeout=10)
    finally:
        thawed.set()
        slack.close()
        quorum.stop()
    assert response.status_code == 200 and response.json()["response_type"] == "ephemeral"
    assert response.json()["text"] == TOO_SLOW
    assert health.status_code == 503 and health.json()["database"] == "down"


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
