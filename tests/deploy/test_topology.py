"""What deploy/ describes, run as plain processes on this machine: the Compose topology (the
migration first, then two `quorum serve --no-migrate` on one PostgreSQL) takes a decision and a
gate through both replicas; and the image's health check command, run against `quorum serve`
and `quorum socket`, says healthy only while each is."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select, text

from bot.database import Database, head_revisions
from bot.models import Decision, Gate, OutboxMessage, OutboxStatus
from bot.render import slack_unescape
from support.fake_slack import FakeSlack
from support.fake_socket_mode import fake_socket_mode
from support.postgres import scratch_schema
from support.processes import free_port, quorum_serve, running
from support.slack_requests import SIGNING_SECRET, SlackSender
from support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "")
CHANNEL, CHANNEL_NAME = "C0CHURN01", "churn-model"
SIGNERS = {"U0BOB0001": "ds", "U0CAROL01": "eng"}


def as_process(command: list[str]) -> list[str]:
    """A container's command on this machine: `quorum …` is this interpreter's `bot.cli`,
    `python …` this interpreter."""
    if command[0] == "quorum":
        return [sys.executable, "-m", "bot.cli", *command[1:]]
    if command[0] == "python":
        return [sys.executable, *command[1:]]
    raise AssertionError(f"not a Quorum command: {command}")


def dockerfile_healthcheck() -> list[str]:
    """The image's HEALTHCHECK command (exec form)."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    found = re.search(r"^HEALTHCHECK .*?CMD (\[.*?\])\s*$", dockerfile, re.MULTILINE | re.DOTALL)
    assert found, "the Dockerfile has no exec-form HEALTHCHECK"
    return json.loads(found.group(1))


def healthy(command: list[str], port: int) -> bool:
    """Run a health check command the way the container runtime does, for a server on `port`."""
    env = {**os.environ, "PORT": str(port), "PYTHONPATH": str(ROOT)}
    return subprocess.run(as_process(command), env=env, cwd=ROOT, capture_output=True,
                          timeout=30).returncode == 0


def quorum_env(database_url: str, fake: FakeSlack, **extra: str) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items()
            if not key.startswith(("SLACK_", "QUORUM_", "DATABASE_URL", "PORT", "HOST"))}
    return {**base, "SLACK_BOT_TOKEN": fake.token, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake.url, "DATABASE_URL": database_url, "HOST": "127.0.0.1",
            "PYTHONPATH": str(ROOT), "QUORUM_SCHEDULER_TICK_SECONDS": "1", **extra}


def test_the_health_check_follows_quorum_serve(
        database_url: str, fake_slack: FakeSlack, tmp_path: Path) -> None:
    check = dockerfile_healthcheck()
    with quorum_serve(database_url, fake_slack.url, fake_slack.token,
                      tmp_path / "serve.log") as (_, url):
        port = int(url.rsplit(":", 1)[1])
        assert healthy(check, port)
    assert not healthy(check, port)


def test_the_health_check_follows_quorum_socket(
        database_url: str, fake_slack: FakeSlack, tmp_path: Path) -> None:
    """Socket Mode serves no Slack HTTP, but answers /healthz on PORT like `serve` does."""
    check = dockerfile_healthcheck()
    port = free_port()
    env = quorum_env(database_url, fake_slack, SLACK_APP_TOKEN=fake_slack.app_token,
                     PORT=str(port))
    with fake_socket_mode() as server:
        fake_slack.socket_mode_url = server.url
        with running([sys.executable, "-m", "bot.cli", "socket"], env=env, cwd=ROOT,
                     ready_url=f"http://127.0.0.1:{port}/healthz",
                     log_path=tmp_path / "socket.log", timeout=90):
            assert healthy(check, port)
            [opened] = fake_slack.calls_to("apps.connections.open")
            assert opened.token == fake_slack.app_token
    assert not healthy(check, port)


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    """A PostgreSQL schema with nothing in it, as a new deployment's database."""
    if not POSTGRES_URL:
        pytest.skip("the Compose topology runs on PostgreSQL (set TEST_DATABASE_URL)")
    with scratch_schema(POSTGRES_URL, "quorum_compose") as url:
        yield url


def service_env(service: Mapping[str, Any], base: Mapping[str, str]) -> dict[str, str]:
    """The process environment of a Compose service: ours, then the service's `environment`
    (its env_file holds the secrets, which `base` gives)."""
    return {**base, **{key: str(value) for key, value in service.get("environment", {}).items()}}


@pytest.mark.slow
def test_the_compose_topology_runs_as_processes(
        empty_postgres: str, fake_slack: FakeSlack, tmp_path: Path) -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    base = quorum_env(empty_postgres, fake_slack)

    # 1. The migration service, alone, before anything serves.
    migrate = services["migrate"]
    done = subprocess.run(as_process(migrate["command"]), env=service_env(migrate, base),
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    db = Database(empty_postgres)
    with db.engine.connect() as connection:
        assert set(connection.scalars(text("SELECT version_num FROM alembic_version"))) == \
            head_revisions()

    # 2. Every service that depends on the migration, each on a port of its own.
    replicas = [name for name, service in services.items()
                if "migrate" in service.get("depends_on", {})]
    assert replicas == ["quorum-1", "quorum-2"]
    urls = []
    with ExitStack() as stack:
        for name in replicas:
            service = services[name]
            port = free_port()
            env = service_env(service, base) | {"PORT": str(port)}
            assert env["QUORUM_LOG_FORMAT"] == "json"
            stack.enter_context(running(
                as_process(service["command"]), env=env, cwd=ROOT, timeout=90,
                ready_url=f"http://127.0.0.1:{port}/healthz", log_path=tmp_path / f"{name}.log"))
            assert healthy(service["healthcheck"]["test"][1:], port)
            urls.append(f"http://127.0.0.1:{port}")
        senders = [stack.enter_context(closing(SlackSender(url, fake_slack.response_url())))
                   for url in urls]
        _decide_and_gate(db, fake_slack, senders)
    for name in replicas:  # they logged JSON, one object a line, and never migrated
        lines = [json.loads(line) for line in (tmp_path / f"{name}.log").read_text().splitlines()]
        assert lines and not any("alembic" in entry["logger"] for entry in lines)

    # 3. CI asks whether the gate passed, with the CLI (which only checks the schema).
    ci = subprocess.run(as_process(["quorum", "gate", "check", "--model", "churn", "--version",
                                    "3"]), env=base, cwd=ROOT, capture_output=True, text=True,
                        timeout=60)
    assert ci.returncode == 0, ci.stdout + ci.stderr
    db.dispose()


def _decide_and_gate(db: Database, fake: FakeSlack, senders: list[SlackSender]) -> None:
    first, second = senders
    for n, (user, role) in enumerate(SIGNERS.items()):
        answer = senders[n % 2].command("/quorum", f"role add <@{user}|{user.lower()}> {role}",
                                        channel=CHANNEL, channel_name=CHANNEL_NAME)
        assert answer.status_code == 200, answer.text
    requested = first.command("/gate", "request launch for churn v3 roles ds,eng",
                              channel=CHANNEL, channel_name=CHANNEL_NAME)
    assert "Requested" in slack_unescape(requested.text), requested.text
    decided = second.command("/decision", "Ship churn v3 on Monday", channel=CHANNEL,
                             channel_name=CHANNEL_NAME)
    assert "D-1" in decided.text
    with db.session() as session:
        gate_id = session.scalars(select(Gate.id)).one()
    # Each signer approves on a different replica; the second approval passes the gate.
    for sender, user in zip(senders, SIGNERS, strict=True):
        assert sender.click("gate_approve", str(gate_id), user=user,
                            channel=CHANNEL).status_code == 200
    fake.wait_for("chat.postMessage", timeout=30,
                  predicate=lambda call: "*G-1* passed" in slack_unescape(
                      json.dumps(call.args, ensure_ascii=False)))

    def drained() -> bool:
        with db.session() as session:
            return not session.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING))))

    eventually(drained, timeout=30)
    with db.session() as session:
        gate = session.get_one(Gate, gate_id)
        assert gate.status == "passed"
        assert sorted((s.user_id, s.role) for s in gate.signoffs) == sorted(SIGNERS.items())
        assert [d.title for d in session.scalars(select(Decision))] == ["Ship churn v3 on Monday"]
    cards = [message["blocks"][0]["text"]["text"]
             for message in fake.messages.get(CHANNEL, {}).values()
             if "thread_ts" not in message and message.get("blocks")
             and message["blocks"][0].get("type") == "header"]
    assert sorted(cards) == ["D-1 · Ship churn v3 on Monday", "G-1 · launch gate · churn v3"]

