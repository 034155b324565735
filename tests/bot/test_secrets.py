"""Secrets never leave the process: the bot token, the signing secret, the webhook token, the
MLflow secret and the database password appear in no log line, error message, HTTP answer,
Slack message or export, on the happy paths and the failing ones (issue #11, item 8).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from bot.config import load_settings
from bot.database import Database
from bot.export import FORMATS, REGISTERS, export
from support.cli import run_quorum
from support.fake_slack import FakeSlack
from support.mlflow_signing import mlflow_signed
from support.processes import free_port, running
from support.quorum_server import QuorumServer
from support.slack_requests import SIGNING_SECRET, SlackSender, sign
from support.waiting import eventually

BOT_TOKEN = "xoxb-1111-2222-Bot5ecretT0ken"
WEBHOOK_TOKEN = "whk-Hook5ecretT0ken-77"
MLFLOW_SECRET = "mlf-Mlflow5ecret-42"
DB_PASSWORD = "Pg-Pa55word-Secret9"
SECRETS = {"the bot token": BOT_TOKEN, "the signing secret": SIGNING_SECRET,
           "the webhook token": WEBHOOK_TOKEN, "the MLflow secret": MLFLOW_SECRET,
           "the database password": DB_PASSWORD}
# How the secrets travel in HTTP headers, to check the leak-finder itself sees them.
CANARY = f"Authorization: Bearer {WEBHOOK_TOKEN}"


def leaks(text: str) -> list[str]:
    """The secrets found in `text`, also base64- or URL-encoded."""
    found = []
    for name, secret in SECRETS.items():
        forms = {secret, base64.b64encode(secret.encode()).decode(),
                 secret.replace("-", "%2D")}
        if any(form in text for form in forms):
            found.append(name)
    return found


def with_password(url: str) -> str:
    """`url` with DB_PASSWORD as its password when it is PostgreSQL (trust auth ignores it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    return parsed.set(password=DB_PASSWORD).render_as_string(hide_password=False)


def mlflow_headers(body: bytes, secret: str = MLFLOW_SECRET) -> dict[str, str]:
    return mlflow_signed(body, secret)


def test_the_leak_finder_finds_secrets() -> None:
    assert leaks(CANARY) == ["the webhook token"]
    assert leaks(base64.b64encode(BOT_TOKEN.encode()).decode()) == ["the bot token"]
    assert leaks("nothing to see") == []


def test_settings_never_show_a_secret() -> None:
    settings = load_settings(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                             SLACK_APP_TOKEN="xapp-" + BOT_TOKEN,
                             QUORUM_WEBHOOK_TOKEN=WEBHOOK_TOKEN,
                             MLFLOW_WEBHOOK_SECRET=MLFLOW_SECRET,
                             DATABASE_URL=f"postgresql://quorum:{DB_PASSWORD}@db:5432/quorum")
    assert leaks(repr(settings)) == [] and leaks(str(settings)) == []
    assert leaks(f"{settings!r} {settings}") == []


BAD_CONFIGURATIONS = {
    "a user token as the bot token": {"SLACK_BOT_TOKEN": "xoxp-" + BOT_TOKEN},
    "a bot token without its prefix": {"SLACK_BOT_TOKEN": BOT_TOKEN.removeprefix("xoxb-")},
    "a bot token as the app token": {"SLACK_APP_TOKEN": BOT_TOKEN},
    "a port that is not a number": {
        "DATABASE_URL": f"postgresql://quorum:{DB_PASSWORD}@db:{DB_PASSWORD}/quorum"},
    "a password in the port's place": {"DATABASE_URL": f"postgresql://db:{DB_PASSWORD}/quorum"},
    "an unsupported database": {"DATABASE_URL": f"mysql://quorum:{DB_PASSWORD}@db/quorum"},
    "an unreachable database": {
        "DATABASE_URL": f"postgresql://quorum:{DB_PASSWORD}@127.0.0.1:1/quorum"},
    "a URL with no scheme": {"DATABASE_URL": f"quorum:{DB_PASSWORD}@db/quorum"},
    "a webhook token as the API URL": {"SLACK_API_URL": WEBHOOK_TOKEN},
}


@pytest.mark.parametrize("name", BAD_CONFIGURATIONS)
def test_configuration_errors_name_the_variable_not_its_secret(
        name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "DATABASE_URL": "sqlite:///:memory:", **BAD_CONFIGURATIONS[name]}
    code, out, err = run_quorum(monkeypatch, "db", "upgrade", **env)
    assert code == 2 and err.startswith("quorum: configuration error: "), err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    assert leaks(out + err + caplog.text) == [], err


def _exercise(base_url: str, fake: FakeSlack) -> list[str]:
    """Happy and failing paths through every edge; returns every HTTP answer's text."""
    answers: list[httpx.Response] = []
    slack = SlackSender(base_url, fake.response_url())
    try:
        fake.inject("auth.test", error="invalid_auth")  # the bot's ids cannot be learnt at first
        answers.append(slack.command("/decision", "Ship the v3 scorer"))
        answers.append(slack.command("/incident", "declare sev2 Scores are stale"))
        answers.append(slack.command("/gate", "request launch for churn-model v3"))
        answers.append(slack.command("/risk", "Label drift in the EU market"))
        answers.append(slack.command("/hypothesis", "Fresher labels lift recall"))
        answers.append(slack.command("/standup", "schedule weekdays 09:30"))
        body = "command=/decision&text=forged"
        answers.append(slack.post(body, "application/x-www-form-urlencoded",
                                  signature=sign(body, secret="not-the-secret")))
        answers.append(slack.post(body, "application/x-www-form-urlencoded",
                                  signature=sign(body, timestamp=int(time.time()) - 900)))
        fake.wait_for("chat.postMessage", count=4)
        # Slack refuses the token, then fails: the outbox gives up on this one, logging why.
        fake.inject("chat.postMessage", error="invalid_auth", times=3)
        fake.inject("chat.postMessage", status=500, times=2)
        answers.append(slack.command("/decision", "Posted while Slack refuses our token"))
        eventually(lambda: any(call.response.get("error") == "invalid_auth"
                               for call in fake.calls_to("chat.postMessage", ok_only=False)))
    finally:
        slack.close()
    promotion = json.dumps({"model": "churn-model", "version": "3", "to": "champion"}).encode()
    event = json.dumps({"entity": "model_version_alias", "action": "created",
                        "data": {"name": "churn-model", "alias": "champion",
                                 "version": "4"}}).encode()
    alert = json.dumps({"version": "4", "status": "firing", "groupKey": "g", "alerts": [
        {"status": "firing", "labels": {"alertname": "X", "severity": "critical"},
         "annotations": {}, "startsAt": "2026-11-23T10:00:00Z", "fingerprint": "f1"}]}).encode()
    bearer = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
    wrong = {"Authorization": f"Bearer {WEBHOOK_TOKEN[:-1]}", "Content-Type": "application/json"}
    with httpx.Client(base_url=base_url, timeout=10) as http:
        answers += [
            http.post("/hooks/promotion", content=promotion, headers=bearer),
            http.post("/hooks/promotion", content=promotion, headers=wrong),
            http.post("/hooks/promotion", content=b"{not json", headers=bearer),
            http.post("/hooks/promotion", content=b'{"model": ""}', headers=bearer),
            http.post("/hooks/alertmanager", content=alert, headers=bearer),
            http.post("/hooks/alertmanager", content=b'{"alerts": 3}', headers=bearer),
            http.post("/hooks/mlflow", content=event, headers=mlflow_headers(event)),
            http.post("/hooks/mlflow", content=event,
                      headers=mlflow_headers(event, MLFLOW_SECRET[:-1])),
            http.post("/hooks/mlflow", content=b"[]", headers=mlflow_headers(b"[]")),
            http.get("/api/gates?model=churn-model&version=3", headers=bearer),
            http.get("/api/gates?model=churn-model&version=3", headers=wrong),
            http.get("/metrics"), http.get("/healthz"),
        ]
    return [f"{a.status_code} {a.headers} {a.text}" for a in answers]


def test_no_secret_in_logs_answers_slack_messages_or_exports(
        make_settings: Callable[..., Any], database_url: str, fake_slack: FakeSlack,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(fake_slack, "token", BOT_TOKEN)
    url = with_password(database_url)
    env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_API_URL": fake_slack.url, "DATABASE_URL": url,
           "QUORUM_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "MLFLOW_WEBHOOK_SECRET": MLFLOW_SECRET}
    quorum = QuorumServer(make_settings(**env)).start()
    try:
        answers = _exercise(quorum.url, fake_slack)
        # The outbox gave up on the refused post, and said so in the log.
        eventually(lambda: "giving up on outbox call" in caplog.text)
    finally:
        quorum.stop()
    # Every register in every format (in-process: the CLI is a thin wrapper, run once below).
    outputs = []
    db = Database(url)
    try:
        for register in sorted(REGISTERS):
            for fmt in FORMATS:
                out = io.StringIO()
                with db.session() as session:
                    export(session, register, fmt, out)
                outputs.append(out.getvalue())
    finally:
        db.dispose()
    code, out, err = run_quorum(monkeypatch, "export", "audit", "--format", "json", **env)
    assert code == 0, err
    outputs.append(out + err)
    assert '"ref": "D-1"' in " ".join(outputs)  # the exports hold what was exercised
    outputs.append("".join(run_quorum(monkeypatch, "gate", "check", "--model", "churn-model",
                                      "--version", "3", **env)[1:]))
    outputs.append("".join(run_quorum(monkeypatch, "announce", "promotion", "--model",
                                      "churn-model", "--version", "5", "--to", "champion",
                                      **env)[1:]))
    slack_calls = [json.dumps([call.method, call.args, call.response], default=str)
                   for call in fake_slack.calls]
    captured = capfd.readouterr()
    everything = {"HTTP answers": "\n".join(answers), "log records": caplog.text,
                  "stdout and stderr": captured.out + captured.err,
                  "CLI outputs and exports": "\n".join(outputs),
                  "what reached Slack": "\n".join(slack_calls)}
    assert "invalid_auth" in everything["log records"] + everything["what reached Slack"]
    found = {where: leaks(text) for where, text in everything.items() if leaks(text)}
    assert found == {}


DEBUG_SERVE = ("import logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stderr); "
               "from bot.cli import main; sys.exit(main(['serve']))")


@pytest.mark.slow
def test_quorum_serve_logs_no_secret_at_debug_level(database_url: str, fake_slack: FakeSlack,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    """The real `quorum serve` process with DEBUG logging, on happy and failing requests."""
    if os.environ.get("TEST_DATABASE_URL") and database_url.startswith("sqlite"):
        pytest.skip("one process run is enough: the PostgreSQL one also has a password")
    monkeypatch.setattr(fake_slack, "token", BOT_TOKEN)
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "SLACK_BOT_TOKEN": BOT_TOKEN,
           "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": fake_slack.url,
           "DATABASE_URL": with_password(database_url), "QUORUM_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
           "MLFLOW_WEBHOOK_SECRET": MLFLOW_SECRET, "HOST": "127.0.0.1", "PORT": str(port),
           "QUORUM_SCHEDULER_TICK_SECONDS": "0.5"}
    log = tmp_path / "serve.log"
    with running([sys.executable, "-c", DEBUG_SERVE], ready_url=f"http://127.0.0.1:{port}/healthz",
                 log_path=log, env=env, cwd=Path(__file__).parents[2]):
        answers = _exercise(f"http://127.0.0.1:{port}", fake_slack)
        eventually(lambda: "giving up on outbox call" in log.read_text())
    text = log.read_text()
    assert "DEBUG" in text and "Application startup complete" in text
    assert leaks(text) == [] and leaks("\n".join(answers)) == []



def test_github_and_mlflow_credentials_never_show() -> None:
    from bot.config import ConfigError
    from support.fake_github import new_private_key

    private, _ = new_private_key()
    settings = load_settings(GITHUB_APP_ID="1234", GITHUB_APP_PRIVATE_KEY=private,
                             GITHUB_WEBHOOK_SECRET="gh-Webhook5ecret-1",
                             MLFLOW_TRACKING_URI="http://mlflow:5000",
                             MLFLOW_TRACKING_TOKEN="mlf-Tracking5ecret-2")
    shown = repr(settings) + str(settings)
    for secret in ("gh-Webhook5ecret-1", "mlf-Tracking5ecret-2", private.splitlines()[1]):
        assert secret not in shown
    # A damaged key is refused in one line that quotes none of it.
    damaged = private.replace(private.splitlines()[2], "A" * 64)
    with pytest.raises(ConfigError) as refused:
        load_settings(GITHUB_APP_PRIVATE_KEY=damaged)
    assert str(refused.value).startswith("GITHUB_APP_PRIVATE_KEY: ")
    assert "\n" not in str(refused.value) and "AAAA" not in str(refused.value)
