"""A real MLflow tracking server (open-source MLflow 3.x from PyPI) on loopback calls Quorum's
registry webhook: setting an alias on a registered model version announces the promotion in the
model's project channel with the gate record of that version.

MLflow is not a dependency of Quorum: it lives in its own virtualenv (`.venv-mlflow`, or
QUORUM_MLFLOW_VENV), which `make test` creates with `scripts/ensure_mlflow.sh`. The MLflow client
calls run in that virtualenv's Python, as a pipeline's would.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.models import AuditEvent, Gate, ModelBinding, Promotion
from bot.render import slack_unescape
from bot.services import gates as gate_service
from bot.services import roles as role_service
from bot.services.gate_drafts import GateDraft
from bot.services.projects import project_for_channel
from support.fake_slack import FakeSlack
from support.processes import free_port, running
from support.quorum_server import QuorumServer
from support.slack_requests import TEAM, SlackSender
from support.tcp_proxy import TcpProxy
from support.waiting import eventually

# MLflow takes 10-50 s to start on a busy two-core machine: one server for the module, and more
# time than the default 120 s per test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SECRET = "real-mlflow-webhook-secret"
# A fixed Fernet key: MLflow encrypts webhook secrets with it (each worker would make its own).
FERNET_KEY = "vqzNDgChMCxaCh9fMJbRYhilYEycCvaCXu4KmYeMBW0="
CHANNEL = "C0CHURN01"
MODEL = "churn-model"
BOB, CAROL = "U0BOB0001", "U0CAROL01"
ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("QUORUM_MLFLOW_VENV") or ROOT / ".venv-mlflow")

CLIENT = """
import json, sys
import mlflow
from mlflow import MlflowClient

uri, hook_url, secret, model = sys.argv[1:5]
mlflow.set_tracking_uri(uri)
client = MlflowClient(uri)
for old in client.list_webhooks():  # the server is shared: only this test's Quorum listens
    client.delete_webhook(old.webhook_id)
client.create_webhook(name="quorum", url=hook_url, events=["model_version_alias.created"],
                      secret=secret)
with mlflow.start_run() as run:
    mlflow.log_param("features", "recency")
client.create_registered_model(model)
version = client.create_model_version(model, source=f"runs:/{run.info.run_id}/model",
                                      run_id=run.info.run_id)
client.set_registered_model_alias(model, "champion", version.version)
print(json.dumps({"version": version.version}))
"""


def venv_binary(name: str) -> Path:
    binary = VENV / "bin" / name
    if not binary.exists():
        pytest.fail(f"MLflow is not installed in {VENV}: run scripts/ensure_mlflow.sh "
                    f"(make test does)")
    return binary


@pytest.fixture
def model_name(database_url: str) -> str:
    """A registered model name of this test's own (the MLflow server is shared)."""
    return f"{MODEL}-{database_url.split(':', 1)[0].split('+', 1)[0]}"


@pytest.fixture
def quorum_for_mlflow(make_settings: Callable[..., Any], model_name: str
                      ) -> Iterator[QuorumServer]:
    """Quorum with the MLflow secret; the model bound to #churn, its v1 through a launch gate."""
    server = QuorumServer(make_settings(MLFLOW_WEBHOOK_SECRET=SECRET)).start()
    with server.runtime.db.session() as session:
        project = project_for_channel(session, TEAM, CHANNEL, "churn")
        session.add(ModelBinding(team_id=TEAM, project=project, model=model_name,
                                 created_by="U0ALICE01"))
        for user, role in ((BOB, "ds"), (CAROL, "eng")):
            role_service.add_role(session, project, "U0ALICE01", user, role, ())
        gate = gate_service.request_gate(session, project, "U0ALICE01", GateDraft(
            milestone="launch", model=model_name, version="1", roles=["ds", "eng"])).gate
        for user, role in ((BOB, "ds"), (CAROL, "eng")):
            gate_service.sign(session, gate.id, TEAM, user, "approve", role)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on a loopback port with a SQLite backend store, allowed to call loopback
    webhook targets over http."""
    tmp_path = tmp_path_factory.mktemp("mlflow")
    binary = venv_binary("mlflow")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true", MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
               MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=FERNET_KEY, MLFLOW_WEBHOOK_CACHE_TTL="0",
               MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    command = [str(binary), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
               "--default-artifact-root", str(tmp_path / "artifacts"), "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]
    with running(command, ready_url=f"{url}/health", log_path=tmp_path / "mlflow.log", env=env,
                 cwd=tmp_path, timeout=120):
        yield url


def test_setting_an_alias_in_mlflow_announces_the_promotion_with_its_gate(
        quorum_for_mlflow: QuorumServer, mlflow_server: str, fake_slack: FakeSlack,
        model_name: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(venv_binary("python")), "-c", CLIENT, mlflow_server,
         f"{quorum_for_mlflow.url}/hooks/mlflow", SECRET, model_name],
        capture_output=True, text=True, timeout=90, cwd=tmp_path,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
             "MLFLOW_TRACKING_URI": mlflow_server})
    assert result.returncode == 0, result.stderr[-3000:]
    version = json.loads(result.stdout.strip().splitlines()[-1])["version"]
    assert str(version) == "1"

    calls = fake_slack.wait_for(
        "chat.postMessage", timeout=15,
        predicate=lambda call: call.args.get("channel") == CHANNEL
        and ":rocket:" in json.dumps(call.args.get("blocks", [])))
    text = slack_unescape(json.dumps(calls[0].args["blocks"], ensure_ascii=False))
    assert f"model *{model_name}* version *1* is now `champion`" in text
    assert "launch passed" in text and f"<@{BOB}> (ds)" in text and f"<@{CAROL}> (eng)" in text
    assert "without a passed gate" not in text

    def stored() -> Promotion:
        with quorum_for_mlflow.runtime.db.session() as session:
            return session.scalars(select(Promotion)).unique().one()

    promotion = eventually(stored)
    assert (promotion.source, promotion.status, promotion.to_stage) == (
        "mlflow", "announced", "champion")
    assert promotion.delivery_id  # MLflow's X-MLflow-Delivery-Id, kept to spot redeliveries

    # MLflow sets the same alias again (a pipeline re-run): it fires the event again with a
    # new delivery id, and Quorum edits the one card and says so in its thread.
    again = httpx.post(f"{mlflow_server}/api/2.0/mlflow/registered-models/alias", timeout=10,
                       json={"name": model_name, "alias": "champion", "version": "1"})
    assert again.status_code == 200, again.text
    card_ts = calls[0].response["ts"]
    fake_slack.wait_for("chat.update", timeout=15,
                        predicate=lambda call: call.args.get("ts") == card_ts)
    line = fake_slack.wait_for("chat.postMessage", timeout=15,
                               predicate=lambda call: call.args.get("thread_ts") == card_ts)[0]
    assert "MLflow set the alias again" in slack_unescape(json.dumps(line.args["blocks"]))
    assert eventually(lambda: stored().repeats == 1)
    assert len([c for c in fake_slack.calls_to("chat.postMessage")
                if ":rocket:" in json.dumps(c.args.get("blocks", []))]) == 1

# ------------------------------------------------------------------ promote on approval

SETUP = """
import json, sys
import mlflow
from mlflow import MlflowClient

uri, hook_url, secret, model = sys.argv[1:5]
mlflow.set_tracking_uri(uri)
client = MlflowClient(uri)
for old in client.list_webhooks():  # the server is shared: only this test's Quorum listens
    client.delete_webhook(old.webhook_id)
client.create_webhook(name="quorum", url=hook_url, secret=secret,
                      events=["model_version_alias.created", "model_version_alias.deleted"])
client.create_registered_model(model)
versions = []
for _ in range(2):
    with mlflow.start_run() as run:
        mlflow.log_param("features", "recency")
    versions.append(client.create_model_version(
        model, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id).version)
print(json.dumps({"versions": versions}))
"""

MOVE = """
import sys
from mlflow import MlflowClient

uri, model, alias, version = sys.argv[1:5]
client = MlflowClient(uri)
if version == "delete":
    client.delete_registered_model_alias(model, alias)
else:
    client.set_registered_model_alias(model, alias, version)
"""


def run_client(script: str, *args: str, cwd: Path) -> str:
    result = subprocess.run(
        [str(venv_binary("python")), "-c", script, *args], capture_output=True, text=True,
        timeout=90, cwd=cwd,
        env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def alias_version(mlflow_url: str, model: str, alias: str) -> str | None:
    answer = httpx.get(f"{mlflow_url}/api/2.0/mlflow/registered-models/alias",
                       params={"name": model, "alias": alias}, timeout=10)
    if answer.status_code != 200:
        return None
    return str(answer.json()["model_version"]["version"])


def test_a_passed_gate_moves_the_alias_once_even_through_an_mlflow_outage_and_rollbacks_are_announced(  # noqa: E501
        make_settings: Callable[..., Any], mlflow_server: str, fake_slack: FakeSlack,
        model_name: str, tmp_path: Path) -> None:
    model = f"{model_name}-promote"
    mlflow_port = int(mlflow_server.rsplit(":", 1)[1])
    proxy = TcpProxy(mlflow_port).start()
    proxy.refuse()  # MLflow is "down" for Quorum when the gate passes
    server = QuorumServer(make_settings(
        MLFLOW_WEBHOOK_SECRET=SECRET, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{proxy.port}"
    )).start()
    slack = SlackSender(server.url, fake_slack.response_url(), team=TEAM)
    try:
        versions = json.loads(run_client(SETUP, mlflow_server, f"{server.url}/hooks/mlflow",
                                         SECRET, model, cwd=tmp_path).splitlines()[-1])
        assert versions["versions"] == ["1", "2"]
        for user, role in ((BOB, "ds"), (CAROL, "eng")):
            slack.command("/quorum", f"role add <@{user}> {role}", channel=CHANNEL)
        slack.command("/quorum", f"model add {model}", channel=CHANNEL)
        answer = slack.command("/gate", f"request launch for {model} v2 promote to champion "
                                        f"roles ds,eng", channel=CHANNEL)
        assert "Requested *G-1*" in slack_unescape(json.dumps(answer.json())), answer.text
        with server.runtime.db.session() as session:
            gate_id = session.scalars(select(Gate.id)).one()
        for user in (BOB, CAROL):
            assert slack.click("gate_approve", str(gate_id), user=user).status_code == 200
        eventually(lambda: gate_of(server).status == "passed")

        # MLflow is unreachable: the gate stays passed, the card says so, nothing moved.
        passed_at = gate_of(server).passed_at
        server.scheduler.run_due(now=passed_at)
        gate = gate_of(server)
        assert (gate.promotion_state, gate.promotion_attempts) == ("pending", 1)
        assert "unreachable" in (gate.promotion_error or "")
        assert alias_version(mlflow_server, model, "champion") is None
        eventually(lambda: "Promotion pending — retrying" in card_text(fake_slack))
        server.scheduler.run_due(now=passed_at + timedelta(seconds=10))  # before the backoff
        assert gate_of(server).promotion_attempts == 1

        # MLflow is back: the next attempt after the backoff moves the alias, once.
        proxy.accept()
        server.scheduler.run_due(now=passed_at + timedelta(seconds=31))
        assert gate_of(server).promotion_state == "moved"
        assert alias_version(mlflow_server, model, "champion") == "2"
        server.scheduler.run_due(now=passed_at + timedelta(hours=1))
        assert audit_count(server, "gate.promoted") == 1
        eventually(lambda: "Quorum moved MLflow alias `champion`" in card_text(fake_slack))

        # MLflow's own webhook for that move is recognised: one announcement in all.
        def promotions_stored() -> list[Promotion]:
            with server.runtime.db.session() as session:
                return list(session.scalars(select(Promotion).order_by(Promotion.id)).unique())

        eventually(lambda: promotions_stored()[0].delivery_id is not None, timeout=20)
        rockets = fake_slack.wait_for(
            "chat.postMessage", timeout=15,
            predicate=lambda call: ":rocket: *P-1*" in json.dumps(call.args.get("blocks", [])))
        assert len(rockets) == 1
        text = slack_unescape(json.dumps(rockets[0].args["blocks"], ensure_ascii=False))
        assert f"<@{BOB}> (ds)" in text and f"<@{CAROL}> (eng)" in text
        assert "Quorum moved the MLflow alias when G-1 passed" in text
        assert len(promotions_stored()) == 1

        # Someone moves the alias back to v1 in MLflow, then deletes it: both are rollbacks,
        # with the gate records of the versions.
        run_client(MOVE, mlflow_server, model, "champion", "1", cwd=tmp_path)
        back = fake_slack.wait_for(
            "chat.postMessage", timeout=20,
            predicate=lambda call: "moved back from version" in json.dumps(
                call.args.get("blocks", [])))
        text = slack_unescape(json.dumps(back[0].args["blocks"], ensure_ascii=False))
        assert "`champion` moved back from version *2* to version *1*" in text
        assert "Gate record of v2" in text and "*G-1* launch passed" in text
        assert "Promoted without a passed gate" in text  # v1 never had one
        run_client(MOVE, mlflow_server, model, "champion", "delete", cwd=tmp_path)
        deleted = fake_slack.wait_for(
            "chat.postMessage", timeout=20,
            predicate=lambda call: "was deleted" in json.dumps(call.args.get("blocks", [])))
        text = slack_unescape(json.dumps(deleted[0].args["blocks"], ensure_ascii=False))
        assert "alias `champion` of model" in text and "pointed at version *1*" in text
        kinds = [(p.kind, p.version, p.source) for p in promotions_stored()]
        assert kinds == [("promotion", "2", "quorum"), ("promotion", "1", "mlflow"),
                         ("alias_deleted", "1", "mlflow")]
        assert gate_of(server).promotion_attempts == 1  # nothing was moved again
    finally:
        slack.close()
        server.stop()
        proxy.stop()


def gate_of(server: QuorumServer) -> Gate:
    with server.runtime.db.session() as session:
        return session.scalars(select(Gate)).unique().one()


def audit_count(server: QuorumServer, action: str) -> int:
    with server.runtime.db.session() as session:
        return len(session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all())


def card_text(fake: FakeSlack) -> str:
    return " ".join(slack_unescape(json.dumps(m, ensure_ascii=False))
                    for m in fake.messages.get(CHANNEL, {}).values()
                    if (m.get("blocks") or [{}])[0].get("type") == "header")
