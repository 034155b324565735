"""`quorum socket`: the app over Socket Mode, end to end against a local fake Socket Mode server.

The fake Slack hands out the URL of a WebSocket server on a loopback port
(`apps.connections.open`); that server greets the client, sends envelopes as Slack does and
collects the acknowledgements.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot import cli
from bot import slack_payloads as payloads
from bot.models import Decision
from bot.runtime import Runtime
from bot.socket_mode import SocketModeRunner
from support.fake_slack import FakeSlack
from support.fake_socket_mode import FakeSocketMode, fake_socket_mode
from support.processes import free_port
from support.waiting import eventually

TEAM = "T0TEAM001"


@pytest.fixture
def socket_server() -> Iterator[FakeSocketMode]:
    with fake_socket_mode() as server:
        yield server


def slash_envelope(envelope_id: str, text: str) -> dict[str, Any]:
    body = payloads.slash_command("/decision", text, team=TEAM, user="U0ALICE01",
                                  channel="C0CHURN01", channel_name="churn-model",
                                  response_url="https://hooks.slack.invalid/commands/1")
    return {"envelope_id": envelope_id, "type": "slash_commands", "payload": body,
            "accepts_response_payload": True}


def test_envelopes_are_acknowledged_and_handled(
        make_settings: Callable[..., Any], fake_slack: FakeSlack,
        socket_server: FakeSocketMode) -> None:
    fake_slack.socket_mode_url = socket_server.url
    settings = make_settings(SLACK_APP_TOKEN=fake_slack.app_token)
    runtime = Runtime.from_settings(settings)
    runner = SocketModeRunner(runtime, worker_poll_seconds=0.05, run_scheduler=False)
    stop = threading.Event()
    serving = threading.Thread(target=runner.run_until, args=(stop,), daemon=True)
    serving.start()
    try:
        socket_server.send(slash_envelope("env-1", "Serve churn model from batch"))
        ack = socket_server.ack_of("env-1")
        assert ack["payload"]["response_type"] == "ephemeral"
        assert "Logged *D-1*" in ack["payload"]["text"]

        card = fake_slack.wait_for("chat.postMessage", timeout=10)[0]
        assert card.args["channel"] == "C0CHURN01"
        assert card.args["blocks"][0]["text"]["text"] == "D-1 · Serve churn model from batch"
        [opened] = fake_slack.calls_to("apps.connections.open")
        assert opened.token == fake_slack.app_token

        socket_server.send(slash_envelope("env-2", ""))  # the bare command opens the form
        assert socket_server.ack_of("env-2").get("payload") in (None, {})
        view = fake_slack.wait_for("views.open", timeout=10)[0].args["view"]
        assert view["callback_id"] == "decision_modal"
        submission = payloads.view_submission(view, {"title": "Adopt a feature store"},
                                              team=TEAM, user="U0ALICE01")
        socket_server.send({"envelope_id": "env-3", "type": "interactive",
                            "payload": submission, "accepts_response_payload": True})
        socket_server.ack_of("env-3")
        fake_slack.wait_for("chat.postMessage", count=2, timeout=10)
        with runtime.db.session() as session:
            titles = session.scalars(select(Decision.title).order_by(Decision.number)).all()
        assert titles == ["Serve churn model from batch", "Adopt a feature store"]
    finally:
        stop.set()
        serving.join(10)
        runtime.db.dispose()
    assert not serving.is_alive()


def test_a_command_delivered_twice_over_socket_mode_is_acted_on_once(
        make_settings: Callable[..., Any], fake_slack: FakeSlack,
        socket_server: FakeSocketMode) -> None:
    """The trigger id reaches the listener on Bolt's thread pool (`bot.replays`)."""
    fake_slack.socket_mode_url = socket_server.url
    runtime = Runtime.from_settings(make_settings(SLACK_APP_TOKEN=fake_slack.app_token))
    runner = SocketModeRunner(runtime, worker_poll_seconds=0.05, run_scheduler=False)
    stop = threading.Event()
    serving = threading.Thread(target=runner.run_until, args=(stop,), daemon=True)
    serving.start()
    try:
        envelope = slash_envelope("env-1", "Logged once over Socket Mode")
        socket_server.send(envelope)
        assert "Logged *D-1*" in socket_server.ack_of("env-1")["payload"]["text"]
        socket_server.send({**envelope, "envelope_id": "env-2"})
        assert "Already done" in socket_server.ack_of("env-2")["payload"]["text"]
        fake_slack.wait_for("chat.postMessage", timeout=10)
        with runtime.db.session() as session:
            assert session.scalars(select(Decision.title)).all() == [
                "Logged once over Socket Mode"]
    finally:
        stop.set()
        serving.join(10)
        runtime.db.dispose()


def test_healthz_and_metrics_follow_the_websocket_and_the_database(
        make_settings: Callable[..., Any], fake_slack: FakeSlack) -> None:
    """Probes get 200 only while Slack's WebSocket is connected and the database answers."""
    port = free_port()
    health = f"http://127.0.0.1:{port}/healthz"
    settings = make_settings(SLACK_APP_TOKEN=fake_slack.app_token)
    runtime = Runtime.from_settings(settings)
    stop = threading.Event()
    with fake_socket_mode() as server:
        fake_slack.socket_mode_url = server.url
        runner = SocketModeRunner(runtime, worker_poll_seconds=0.05, run_scheduler=False,
                                  health_address=("127.0.0.1", port))
        serving = threading.Thread(target=runner.run_until, args=(stop,), daemon=True)
        serving.start()
        try:
            eventually(lambda: httpx.get(health).status_code == 200)
            assert httpx.get(health).json() == {"ok": True, "database": "up",
                                                "socket": "connected"}
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics")
            assert metrics.status_code == 200
            assert "quorum_outbox_pending 0.0" in metrics.text
            assert "process_resident_memory_bytes" in metrics.text
            assert httpx.get(f"http://127.0.0.1:{port}/slack/events").status_code == 404

            runtime.db.ping = lambda: False  # type: ignore[method-assign]
            down = httpx.get(health)
            assert (down.status_code, down.json()["database"]) == (503, "down")
            del runtime.db.ping
        finally:
            server.server.shutdown()  # Slack goes away: the WebSocket drops
            fake_slack.socket_mode_url = "ws://127.0.0.1:9/link/?ticket=gone"
            try:
                eventually(lambda: httpx.get(health).status_code == 503, timeout=30)
                assert httpx.get(health).json()["socket"] == "disconnected"
            finally:
                stop.set()
                serving.join(15)
                runtime.db.dispose()
    assert not serving.is_alive()
    with pytest.raises(httpx.TransportError):  # stopped with the rest
        httpx.get(health)


@pytest.mark.parametrize(("token", "expected"), [
    (None, "SLACK_APP_TOKEN: required for Socket Mode"),
    ("xoxb-not-an-app-token", "SLACK_APP_TOKEN: must be an app-level token starting with xapp-"),
])
def test_socket_without_an_app_token_is_one_line(
        token: str | None, expected: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-real-enough")
    monkeypatch.setenv("DATABASE_URL", "sqlite://")
    if token is None:
        monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    else:
        monkeypatch.setenv("SLACK_APP_TOKEN", token)
    assert cli.main(["socket"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"quorum: configuration error: {expected}")


def test_a_refused_app_token_is_one_line(
        make_settings: Callable[..., Any], fake_slack: FakeSlack, database_url: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in {"SLACK_BOT_TOKEN": fake_slack.token, "SLACK_API_URL": fake_slack.url,
                        "DATABASE_URL": database_url,
                        "SLACK_APP_TOKEN": "xapp-revoked", "HOST": "127.0.0.1",
                        "PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)
    before = set(threading.enumerate())
    assert cli.main(["socket"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == "quorum: configuration error: SLACK_APP_TOKEN: Slack refused the connection " \
                   "(invalid_auth)"
    # The worker and the scheduler it had started are stopped again.
    assert not [t.name for t in set(threading.enumerate()) - before
                if t.name == "quorum-outbox" or t.name.startswith("APScheduler")]
