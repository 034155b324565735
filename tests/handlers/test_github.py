"""Quorum as a GitHub App deployment protection rule, end to end: GitHub's signed webhook in,
gates signed through the Slack endpoint, the review out to a fake GitHub API on loopback that
verifies the App's JWT, the installation token, the paths and the bodies."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot.models import AuditEvent, Gate, GithubDeployment, GithubMapping, OutboxMessage
from bot.render import slack_unescape
from support.fake_github import FakeGithub, new_private_key, protection_rule_event
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import TEAM, SlackSender
from support.waiting import eventually

CHANNEL = "C0CHURN01"
ALICE, BOB, CAROL, DAVE = "U0ALICE01", "U0BOB0001", "U0CAROL01", "U0DAVE001"
SECRET = "github-webhook-secret"
APP_ID = "123456"
INSTALLATION = 987654
REPO = "acme/churn-service"


@pytest.fixture(scope="module")
def key_pair() -> tuple[str, str]:
    return new_private_key()


@pytest.fixture
def github(key_pair: tuple[str, str]) -> Iterator[FakeGithub]:
    with FakeGithub(app_id=APP_ID, public_key=key_pair[1],
                    installations={REPO.lower(): INSTALLATION,
                                   "acme/web": INSTALLATION + 1}) as fake:
        yield fake


@pytest.fixture
def server(make_settings: Callable[..., Any], github: FakeGithub, key_pair: tuple[str, str]
           ) -> Iterator[QuorumServer]:
    quorum = QuorumServer(make_settings(
        GITHUB_APP_ID=APP_ID, GITHUB_APP_PRIVATE_KEY=key_pair[0], GITHUB_WEBHOOK_SECRET=SECRET,
        GITHUB_API_URL=github.url)).start()
    yield quorum
    quorum.stop()


@pytest.fixture
def slack(server: QuorumServer, fake_slack: FakeSlack) -> Iterator[SlackSender]:
    sender = SlackSender(server.url, fake_slack.response_url(), team=TEAM)
    for user, role in ((BOB, "ds"), (CAROL, "eng"), (DAVE, "pm")):
        sender.command("/quorum", f"role add <@{user}> {role}", channel=CHANNEL)
    yield sender
    sender.close()


def deliver(server: QuorumServer, body: dict[str, Any] | bytes, delivery: str | None = None,
            secret: str = SECRET, event: str = "deployment_protection_rule") -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return httpx.post(f"{server.url}/hooks/github", content=raw, timeout=10, headers={
        "Content-Type": "application/json", "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()), "X-Hub-Signature-256": signature})


def rows(server: QuorumServer, model: type) -> int:
    with server.runtime.db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def gates(server: QuorumServer) -> list[Gate]:
    with server.runtime.db.session() as session:
        found = list(session.scalars(select(Gate).order_by(Gate.number)).unique())
        for gate in found:
            _ = gate.signoffs
        return found


def deployments(server: QuorumServer) -> list[GithubDeployment]:
    with server.runtime.db.session() as session:
        return list(session.scalars(select(GithubDeployment).order_by(GithubDeployment.id))
                    .unique())


def channel_text(fake: FakeSlack) -> str:
    return slack_unescape(json.dumps(list(fake.messages.get(CHANNEL, {}).values()),
                                     ensure_ascii=False))


def approve(slack: SlackSender, fake: FakeSlack, gate_id: int, *users: str) -> None:
    for user in users:
        seen = len(fake.calls_to("response_url"))
        assert slack.click("gate_approve", str(gate_id), user=user).status_code == 200
        fake.wait_for("response_url", count=seen + 1)


def test_a_deployment_waits_for_its_gate_and_is_approved_once_with_an_installation_token(
        server: QuorumServer, slack: SlackSender, fake_slack: FakeSlack,
        github: FakeGithub) -> None:
    answer = slack.command("/quorum", f"github map {REPO} production model churn",
                           channel=CHANNEL)
    assert "now wait" in slack_unescape(answer.text), answer.text
    callback = github.run(REPO, 1001, "production")
    event = protection_rule_event(REPO, "production", callback, INSTALLATION,
                                  payload={"version": "v3"})
    delivery = str(uuid.uuid4())
    first = deliver(server, event, delivery)
    assert first.status_code == 200, first.text
    assert first.json()["gates"] == ["G-1"] and first.json()["state"] == "waiting"
    again = deliver(server, event, delivery)  # GitHub's redelivery: same GUID
    assert again.status_code == 200 and again.json()["created"] is False
    [gate] = gates(server)
    assert (gate.milestone, gate.model, gate.version, gate.requested_by) == (
        "deploy to production", "churn", "3", "github")
    assert rows(server, GithubDeployment) == 1
    eventually(lambda: "GitHub holds the deployment of *acme/churn-service@a1b2c3d*"
               in channel_text(fake_slack))

    server.scheduler.run_due()
    assert github.reviews == [] and github.token_requests == []  # nothing decided yet

    approve(slack, fake_slack, gate.id, BOB, CAROL, DAVE)
    assert gates(server)[0].status == "passed"
    server.scheduler.run_due()
    server.scheduler.run_due()  # a second tick sends nothing more
    [review] = github.reviews
    assert (review.repo, review.run_id, review.body["state"], review.body["environment_name"]) \
        == (REPO, 1001, "approved", "production")
    assert "G-1 deploy to production passed" in review.body["comment"]
    assert f"{BOB} (ds), {CAROL} (eng), {DAVE} (pm)" in review.body["comment"]
    assert github.refusals == []
    [token_request] = github.token_requests
    assert token_request["installation"] == INSTALLATION
    assert token_request["claims"]["iss"] == APP_ID
    assert token_request["claims"]["exp"] - token_request["claims"]["iat"] <= 600
    assert [d.state for d in deployments(server)] == ["approved"]
    eventually(lambda: "Quorum approved the GitHub deployment" in channel_text(fake_slack))

    # The next deployment of the same version links the passed gate and goes at once, with
    # the cached installation token.
    callback = github.run(REPO, 1002, "production")
    second = deliver(server, protection_rule_event(REPO, "production", callback, INSTALLATION,
                                                   ref="refs/tags/v3"))
    assert second.json()["gates"] == ["G-1"] and second.json()["state"] == "approve"
    server.scheduler.run_due()
    assert [r.run_id for r in github.reviews] == [1001, 1002]
    assert len(github.token_requests) == 1 and len(gates(server)) == 1

    # A revoked token is renewed once, and the review still goes exactly once.
    github.expire_tokens()
    callback = github.run(REPO, 1003, "production")
    deliver(server, protection_rule_event(REPO, "production", callback, INSTALLATION,
                                          payload=json.dumps({"model_version": 3})))
    server.scheduler.run_due()
    assert [r.run_id for r in github.reviews] == [1001, 1002, 1003]
    assert len(github.token_requests) == 2
    with server.runtime.db.session() as session:
        actions = list(session.scalars(select(AuditEvent.action)))
    assert actions.count("gate.deployment_approved") == 3


def test_changes_requested_reject_the_deployment_and_github_outages_are_retried(
        server: QuorumServer, slack: SlackSender, fake_slack: FakeSlack,
        github: FakeGithub) -> None:
    slack.command("/quorum", "github map acme/web staging", channel=CHANNEL)
    callback = github.run("acme/web", 7, "staging")
    answer = deliver(server, protection_rule_event("acme/web", "staging", callback,
                                                   INSTALLATION + 1, sha="ffeeddccbbaa"))
    assert answer.status_code == 200 and answer.json()["gates"] == ["G-1"]
    [gate] = gates(server)
    assert gate.milestone == "deploy to staging" and gate.model is None
    assert gate.criteria == ["GitHub deployment of acme/web@ffeeddc to staging"]

    opened = len(fake_slack.calls_to("views.open"))
    slack.click("gate_request_changes", str(gate.id), user=BOB)
    view = fake_slack.wait_for("views.open", count=opened + 1)[opened].args["view"]
    slack.submit(view, {"reason": "Canary error rate doubled"}, user=BOB)
    eventually(lambda: gates(server)[0].status == "changes_requested")

    github.fail("review", 502)  # GitHub has a bad moment
    server.scheduler.run_due()
    [held] = deployments(server)
    assert (held.state, held.attempts) == ("reject", 1) and github.reviews == []
    server.scheduler.run_due()  # within the backoff: nothing
    assert github.reviews == []
    server.scheduler.run_due(now=held.next_attempt_at + timedelta(seconds=1))
    server.scheduler.run_due(now=held.next_attempt_at + timedelta(hours=1))
    [review] = github.reviews
    assert review.body["state"] == "rejected"
    assert f"changes requested by {BOB} (ds): Canary error rate doubled" in \
        review.body["comment"]
    assert [d.state for d in deployments(server)] == ["rejected"]


def test_unmapped_unsigned_and_malformed_deliveries_change_nothing(
        server: QuorumServer, slack: SlackSender, github: FakeGithub) -> None:
    callback = github.run(REPO, 5, "production")
    event = protection_rule_event(REPO, "production", callback, INSTALLATION)
    unmapped = deliver(server, event)
    assert unmapped.status_code == 202 and unmapped.json()["mapped"] is False
    assert "/quorum github map" in unmapped.json()["reason"]
    slack.command("/quorum", f"github map {REPO} production", channel=CHANNEL)
    before = (rows(server, Gate), rows(server, GithubDeployment), rows(server, AuditEvent),
              rows(server, OutboxMessage))
    bad = deliver(server, event, secret="not-the-secret")
    assert bad.status_code == 401 and "X-Hub-Signature-256" in bad.json()["reason"]
    unsigned = httpx.post(f"{server.url}/hooks/github", json=event, headers={
        "X-GitHub-Event": "deployment_protection_rule", "X-GitHub-Delivery": "d-1"})
    assert unsigned.status_code == 401
    cases = {
        "environment": ({**event, "environment": ""}, "`environment`"),
        "callback": ({**event, "deployment_callback_url": "ftp://x"}, "http(s) URL"),
        "repository": ({**event, "repository": {"full_name": "no-slash"}}, "owner/name"),
        "installation": ({**event, "installation": {"id": "1"}}, "installation.id"),
        "deployment": ({**event, "deployment": [1]}, "`deployment` must be an object"),
    }
    for name, (body, reason) in cases.items():
        answer = deliver(server, body)
        assert answer.status_code == 400 and reason in answer.json()["reason"], name
    assert deliver(server, b"null").status_code == 400
    assert deliver(server, event, delivery="x" * 65).status_code == 400
    other = deliver(server, {"zen": "Keep it logically awesome."}, event="ping")
    assert other.status_code == 200 and other.json()["pong"] is True
    ignored = deliver(server, {**event, "action": "completed"})
    assert ignored.status_code == 202 and ignored.json()["ignored"] is True
    assert (rows(server, Gate), rows(server, GithubDeployment), rows(server, AuditEvent),
            rows(server, OutboxMessage)) == before


def test_a_version_quorum_cannot_tell_is_rejected_with_the_reason(
        server: QuorumServer, slack: SlackSender, github: FakeGithub) -> None:
    slack.command("/quorum", f"github map {REPO} production model churn", channel=CHANNEL)
    callback = github.run(REPO, 9, "production")
    answer = deliver(server, protection_rule_event(REPO, "production", callback, INSTALLATION,
                                                   ref="main"))
    assert answer.json()["state"] == "reject" and rows(server, Gate) == 0
    server.scheduler.run_due()
    [review] = github.reviews
    assert review.body["state"] == "rejected" and "which version of churn" in \
        review.body["comment"]


def test_github_map_refuses_bad_input_and_non_admins(
        make_settings: Callable[..., Any], server: QuorumServer, slack: SlackSender,
        fake_slack: FakeSlack) -> None:
    for text, reason in (("github map nope production", "is not a repository"),
                         (f"github map {REPO}", "<environment> is missing"),
                         (f"github map {REPO} prod model bad!name", "is not a model name")):
        answer = slack_unescape(slack.command("/quorum", text, channel=CHANNEL).text)
        assert reason in answer, (text, answer)
    assert rows(server, GithubMapping) == 0
    # Alice configured roles first, so she owns the project; Bob is no admin.
    answer = slack_unescape(slack.command("/quorum", f"github map {REPO} production",
                                          channel=CHANNEL, user=BOB).text)
    assert "Only Quorum admins and this project's owners" in answer
    assert rows(server, GithubMapping) == 0
    slack.command("/quorum", f"github map {REPO} production", channel=CHANNEL)
    elsewhere = slack_unescape(slack.command("/quorum", f"github map {REPO} production",
                                             channel="C0OTHER01").text)
    assert f"already waits for the gates of <#{CHANNEL}>" in elsewhere
    assert rows(server, GithubMapping) == 1
