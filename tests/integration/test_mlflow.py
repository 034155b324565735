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
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.models import ModelBinding, Promotion
from bot.render import slack_unescape
from bot.services import gates as gate_service
from bot.services import roles as role_service
from bot.services.projects import project_for_channel
from support.fake_slack import FakeSlack
from support.processes import free_port, running
from support.quorum_server import QuorumServer
from support.slack_requests import TEAM
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
        gate = gate_service.request_gate(session, project, "U0ALICE01", gate_service.GateDraft(
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
