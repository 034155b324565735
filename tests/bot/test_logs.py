"""`QUORUM_LOG_FORMAT=json`: a real `quorum serve` writes one JSON object a line, each request's
line carries its id, workspace, command and latency, and no secret ever reaches the log."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from bot.logs import JsonFormatter, request_context
from support.fake_slack import FakeSlack
from support.processes import quorum_serve
from support.slack_requests import SIGNING_SECRET, TEAM, SlackSender

WEBHOOK_TOKEN = "hook-token-that-must-not-be-logged"


def test_a_served_process_logs_json_lines_without_secrets(
        database_url: str, fake_slack: FakeSlack, tmp_path: Path) -> None:
    log_path = tmp_path / "serve.log"
    with quorum_serve(database_url, fake_slack.url, fake_slack.token, log_path,
                      QUORUM_LOG_FORMAT="json", QUORUM_WEBHOOK_TOKEN=WEBHOOK_TOKEN) as (_, url):
        sender = SlackSender(url, response_url=fake_slack.response_url(), team=TEAM)
        answer = sender.command("/decision", "Retrain weekly", user="U0ALICE01")
        assert answer.status_code == 200 and "D-1" in answer.text
        request_id = answer.headers["x-request-id"]
        # A forged Slack request, a wrong webhook token, and a caller's own request id.
        assert httpx.post(f"{url}/slack/events", content=b"command=/decision&text=x",
                          headers={"X-Slack-Request-Timestamp": "1",
                                   "X-Slack-Signature": "v0=bad"}).status_code == 401
        assert httpx.post(f"{url}/hooks/promotion", json={},
                          headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}-wrong",
                                   "X-Request-Id": "ci-run-42"}).status_code == 401
        assert httpx.get(f"{url}/api/gates", params={"model": "m", "version": "1"},
                         headers={"X-Request-Id": "forged id; rm -rf"}).status_code == 401
        fake_slack.wait_for("chat.postMessage")
        sender.close()
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert len(lines) >= 5
    for entry in lines:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        assert entry["time"].endswith("Z") and entry["level"] in ("info", "warning", "error")
    access = [entry for entry in lines if entry["logger"] == "quorum.access"]
    [command] = [entry for entry in access if entry.get("command") == "/decision"]
    assert command["request_id"] == request_id and command["team"] == TEAM
    assert command["status"] == 200 and command["route"] == "/slack/events"
    assert isinstance(command["latency_ms"], float) and command["latency_ms"] > 0
    hook = [entry for entry in access if entry["route"] == "/hooks/promotion"]
    assert [(entry["status"], entry["request_id"]) for entry in hook] == [(401, "ci-run-42")]
    [gates] = [entry for entry in access if entry["route"] == "/api/gates"]
    assert len(gates["request_id"]) == 32 and "forged" not in text  # replaced, not echoed
    assert any(entry["logger"].startswith("uvicorn") for entry in lines)  # its lines too
    for secret in (fake_slack.token, SIGNING_SECRET, WEBHOOK_TOKEN):
        assert secret not in text


def test_the_formatter_carries_the_request_context_and_tracebacks() -> None:
    record = logging.LogRecord("quorum.test", logging.ERROR, __file__, 1, "failed %s",
                               ("again",), None)
    token = request_context.set({"request_id": "r1", "team": "T1", "command": "/risk"})
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
        entry = json.loads(JsonFormatter().format(record))
    finally:
        request_context.reset(token)
    assert entry["message"] == "failed again" and entry["level"] == "error"
    assert (entry["request_id"], entry["team"], entry["command"]) == ("r1", "T1", "/risk")
    assert "ValueError: boom" in entry["exception"] and "\n" not in json.dumps(entry)


@pytest.mark.parametrize("value", ["yaml", "JSON "])
def test_an_unknown_log_format_is_one_line(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from support.cli import run_quorum

    code, _, err = run_quorum(monkeypatch, "db", "check", QUORUM_LOG_FORMAT=value)
    assert code == 2
    assert err == ("quorum: configuration error: QUORUM_LOG_FORMAT: input should be 'text' "
                   "or 'json'\n")
