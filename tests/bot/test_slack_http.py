"""The outbox worker's Slack client: one kept-alive connection, slack_sdk's answers and errors."""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError

from bot import outbox
from bot.database import Database
from bot.delivery import OutboxWorker
from bot.models import OutboxMessage, OutboxStatus
from bot.slack_http import KeepAliveWebClient
from support.fake_slack import FakeSlack

TEAM, CHANNEL = "T0TEAM001", "C0CHURN01"


def keep_alive_client(fake_slack: FakeSlack) -> KeepAliveWebClient:
    client = KeepAliveWebClient(token=fake_slack.token, base_url=fake_slack.url, timeout=5)
    client.retry_handlers.clear()
    return client


def test_calls_share_one_connection_when_slack_keeps_it_open(fake_slack: FakeSlack) -> None:
    fake_slack.keep_alive = True
    client = keep_alive_client(fake_slack)
    for n in range(5):
        answer = client.chat_postMessage(channel=CHANNEL, text=f"message {n}")
        assert answer["ok"] and answer["ts"]
    assert [c.args["text"] for c in fake_slack.calls_to("chat.postMessage")] == \
        [f"message {n}" for n in range(5)]
    assert client.connections_opened == 1 and fake_slack.connections == 1
    client.close()


def test_a_server_that_closes_each_connection_gets_a_fresh_one_per_call(
        fake_slack: FakeSlack) -> None:
    client = keep_alive_client(fake_slack)
    for n in range(3):
        client.chat_postMessage(channel=CHANNEL, text=f"message {n}")
    assert len(fake_slack.calls_to("chat.postMessage")) == 3
    assert client.connections_opened == 3


def test_a_rate_limit_is_slack_sdks_error_with_retry_after(fake_slack: FakeSlack) -> None:
    fake_slack.keep_alive = True
    client = keep_alive_client(fake_slack)
    fake_slack.inject("chat.postMessage", status=429, error="ratelimited", retry_after=7)
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=CHANNEL, text="too fast")
    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"
    assert client.chat_postMessage(channel=CHANNEL, text="later")["ok"]
    assert client.connections_opened == 1  # an error answer does not cost the connection


def test_an_error_answer_is_slack_sdks_error(fake_slack: FakeSlack) -> None:
    client = keep_alive_client(fake_slack)
    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel=CHANNEL, ts="1.000", text="nothing there")
    assert raised.value.response["error"] == "message_not_found"


def test_a_dropped_connection_fails_the_call_and_the_next_call_reconnects(
        fake_slack: FakeSlack) -> None:
    fake_slack.keep_alive = True
    client = keep_alive_client(fake_slack)
    client.chat_postMessage(channel=CHANNEL, text="first")
    fake_slack.inject("chat.postMessage", disconnect=True)
    with pytest.raises(OSError):
        client.chat_postMessage(channel=CHANNEL, text="dropped")
    assert client.chat_postMessage(channel=CHANNEL, text="second")["ok"]
    assert client.connections_opened == 2


def test_nobody_listening_is_a_refused_connection(fake_slack: FakeSlack) -> None:
    client = KeepAliveWebClient(token="xoxb-x", base_url="http://127.0.0.1:9/api/", timeout=2)
    with pytest.raises(ConnectionRefusedError):
        client.chat_postMessage(channel=CHANNEL, text="nowhere")


def test_the_worker_delivers_a_batch_over_one_connection(db: Database,
                                                         fake_slack: FakeSlack) -> None:
    fake_slack.keep_alive = True
    worker = OutboxWorker(db, keep_alive_client(fake_slack), poll_seconds=0.05)
    with db.session() as session:
        for n in range(6):
            outbox.post_message(session, TEAM, CHANNEL, {"text": f"card {n}"}, key=f"card:{n}")
        outbox.update_message(session, TEAM, "card:0", {"text": "card 0 v2"})
    while worker.run_once():
        pass
    with db.session() as session:
        assert {row.status for row in session.query(OutboxMessage)} == {OutboxStatus.SENT}
    assert [c.method for c in fake_slack.calls] == ["chat.postMessage"] * 6 + ["chat.update"]
    assert fake_slack.connections == 1
