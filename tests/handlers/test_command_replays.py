"""A slash command whose `trigger_id` was already acted on is acted on once (issue #18, item 4).

Slack hands out a fresh trigger id with every invocation, so a second request carrying one is a
replay: a retrying proxy, or a captured request sent again while its signature is fresh. What a
person expects then is what they already saw: the second copy writes nothing, posts nothing, and
is answered with an ephemeral "Already done" (a command that only reads is simply answered
again, as it changes nothing).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot import outbox
from bot import slack_payloads as payloads
from bot.models import Decision, ProcessedRequest, utcnow
from bot.replays import ALREADY_DONE
from support.db_snapshot import changed_tables, snapshot
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import SlackSender, sign
from support.waiting import eventually

FORM = "application/x-www-form-urlencoded"
CHANNEL = "C0CHURN01"


def signed_command(slack: SlackSender, command: str, text: str, trigger_id: str,
                   user: str = "U0ALICE01") -> str:
    form = payloads.slash_command(command, text, team=slack.team, user=user, channel=CHANNEL,
                                  channel_name="churn-model", response_url=slack.response_url)
    form["trigger_id"] = trigger_id
    return payloads.form_body(form)


def send(slack: SlackSender, body: str) -> dict[str, Any]:
    response = slack.post(body, FORM)
    assert response.status_code == 200, response.text
    return response.json()


def settled(quorum: QuorumServer) -> dict[str, Any]:
    """The database once the outbox has delivered everything queued so far."""

    def delivered() -> bool:
        with quorum.runtime.db.session() as session:
            return outbox.pending_count(session) == 0

    eventually(delivered)
    return snapshot(quorum.runtime.db)


def decision_count(quorum: QuorumServer) -> int:
    with quorum.runtime.db.session() as session:
        return session.scalar(select(func.count()).select_from(Decision)) or 0


WRITING_COMMANDS = [  # (command, text, what its first answer says)
    ("/decision", "Serve churn from the batch pipeline", "Logged *D-1*"),
    ("/decision", "supersede D-1 Serve churn from streaming", "supersedes *D-1*"),
    ("/hypothesis", "Fresher features lift recall by 2 points", "H-1"),
    ("/risk", "Label leakage from the support tickets", "R-1"),
    ("/incident", "declare sev2 Churn p99 latency above 2s", "INC-1"),
    ("/quorum", "role add <@U0BOB0001> ds", "ds"),
]


@pytest.mark.parametrize(("command", "text", "first_answer"), WRITING_COMMANDS,
                         ids=[f"{c} {t.split()[0]}" for c, t, _ in WRITING_COMMANDS])
def test_a_replayed_command_is_acted_on_once_and_answered_already_done(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack,
        command: str, text: str, first_answer: str) -> None:
    if "supersede" in text:
        send(slack, signed_command(slack, "/decision", "Serve churn from the batch pipeline",
                                   "setup.1"))
    body = signed_command(slack, command, text, "13345224609.738474920.8088930838d88f008e0")
    first = send(slack, body)
    assert first_answer in first["text"] and ALREADY_DONE not in first["text"], first
    before = settled(quorum)
    posts = len(fake_slack.calls_to("chat.postMessage"))
    second = send(slack, body)
    assert second["response_type"] == "ephemeral"
    assert ALREADY_DONE in second["text"], second
    assert changed_tables(before, quorum.runtime.db) == []
    assert len(fake_slack.calls_to("chat.postMessage")) == posts
    # The same words under a new trigger id are a new command, acted on.
    third = send(slack, signed_command(slack, command, text, "13345224609.738474920.other"))
    assert ALREADY_DONE not in third["text"]


def test_two_copies_at_the_same_moment_log_one_decision(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    body = signed_command(slack, "/decision", "Logged by a double delivery", "race.1")
    barrier, answers = threading.Barrier(3), []

    def copy() -> None:
        with httpx.Client(timeout=10) as http:
            barrier.wait()
            answers.append(http.post(slack.url, content=body.encode(),
                                     headers={"Content-Type": FORM, **sign(body)}).json())

    threads = [threading.Thread(target=copy) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == 3
    texts = sorted(answer["text"] for answer in answers)
    assert sum("Logged *D-1*" in text for text in texts) == 1, texts
    assert sum(ALREADY_DONE in text for text in texts) == 2, texts
    assert decision_count(quorum) == 1
    fake_slack.wait_for("chat.postMessage", count=1)
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


def test_a_replayed_read_is_answered_again_and_writes_nothing(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    send(slack, signed_command(slack, "/decision", "Something to list", "setup.2"))
    fake_slack.wait_for("chat.postMessage", count=1)
    body = signed_command(slack, "/decision", "list", "list.1")
    first = send(slack, body)
    before = settled(quorum)
    second = send(slack, body)
    assert second == first and "Something to list" in str(second["blocks"])
    assert changed_tables(before, quorum.runtime.db) == []


def test_a_command_that_failed_leaves_its_trigger_free(
        slack: SlackSender, quorum: QuorumServer) -> None:
    """Nothing was saved the first time (a bad reference), so nothing is remembered: the
    trigger is not claimed, and no key is kept for an attempt that wrote nothing."""
    body = signed_command(slack, "/decision", "supersede D-9 Something", "fail.1")
    assert "D-9" in send(slack, body)["text"]
    with quorum.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(ProcessedRequest)) == 0


def test_trigger_keys_are_swept_after_a_day(slack: SlackSender, quorum: QuorumServer) -> None:
    body = signed_command(slack, "/decision", "Remembered for a day", "sweep.1")
    send(slack, body)
    with quorum.runtime.db.session() as session:
        keys = list(session.scalars(select(ProcessedRequest.key)))
    assert keys == ["command:sweep.1"]
    quorum.scheduler.run_due(utcnow() + timedelta(hours=23))
    assert ALREADY_DONE in send(slack, body)["text"]
    quorum.scheduler.run_due(utcnow() + timedelta(days=1, minutes=1))
    with quorum.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(ProcessedRequest)) == 0
