"""Fixtures of the portal's tests: Quorum serving `/portal` with Sign in with Slack configured
against the fake Slack, a signed-in HTTP client, and registers filled through the services."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest

from bot.database import Database
from bot.models import Project, utcnow
from bot.render import renderer
from bot.services import (
    decisions,
    gates,
    hypotheses,
    incidents,
    model_bindings,
    promotions,
    risks,
    rituals,
    roles,
)
from bot.services.gate_drafts import GateDraft
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer

CLIENT_ID = "1234.5678"
CLIENT_SECRET = "portal-client-secret"
ALICE = "U0ALICE01"  # a member of every channel
MALLORY = "U0MALLORY"  # a member of the workspace, not of the private channel
PUBLIC_CHANNEL = "C0PUBLIC1"
# What a hostile person types into every field, and the links they try: none may run.
HOSTILE = ' <script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">'
HOSTILE_LINK = "javascript:window.__pwned=1"
HOSTILE_URL = 'https://evil.example/"onfocus="window.__pwned=1'
PRIVATE_CHANNEL = "G0PRIVAT1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def portal_server(make_settings: Callable[..., Any], fake_slack: FakeSlack
                  ) -> Iterator[QuorumServer]:
    """`quorum serve` with the portal on: its public URL is its own loopback address."""
    port = free_port()
    settings = make_settings(QUORUM_PUBLIC_URL=f"http://127.0.0.1:{port}",
                             SLACK_CLIENT_ID=CLIENT_ID, SLACK_CLIENT_SECRET=CLIENT_SECRET)
    fake_slack.oauth_clients[CLIENT_ID] = CLIENT_SECRET
    fake_slack.channel_members[PRIVATE_CHANNEL] = [ALICE, "U0BOB0001"]
    fake_slack.users[ALICE] = {"real_name": "Alice Liddell"}
    fake_slack.users[MALLORY] = {"real_name": "Mallory <b>Evil</b>"}
    server = QuorumServer(settings, port=port).start()
    yield server
    server.stop()
    renderer.public_url = None  # process-wide: later tests' cards must not carry the link


def sign_in(server: QuorumServer, fake_slack: FakeSlack, user: str) -> httpx.Client:
    """An HTTP client that went through Sign in with Slack as `user`."""
    fake_slack.signed_in_user = user
    client = httpx.Client(base_url=server.url, follow_redirects=True, timeout=10)
    answer = client.get("/portal/login/slack")
    assert answer.status_code == 200, answer.text
    assert str(answer.url).endswith("/portal/"), answer.url
    return client


@pytest.fixture
def alice(portal_server: QuorumServer, fake_slack: FakeSlack) -> Iterator[httpx.Client]:
    client = sign_in(portal_server, fake_slack, ALICE)
    yield client
    client.close()


@dataclass
class Seeded:
    """What `seed` wrote: ids and refs the tests look for."""

    public: int
    private: int
    refs: dict[str, str] = field(default_factory=dict)


def seed(db: Database, team: str, hostile: str = "") -> Seeded:
    """A public and a private project with a record in every register (text `hostile` added
    to every field a person types)."""
    h = hostile
    now = utcnow()
    with db.session() as session:
        # Slack's word on both channels, as the handlers store it (`access.set_privacy`).
        public = Project(team_id=team, channel_id=PUBLIC_CHANNEL, name=f"ml-churn{h}"[:200],
                         is_private=False, privacy_checked_at=now)
        private = Project(team_id=team, channel_id=PRIVATE_CHANNEL, name="secret-launch",
                          is_private=True, privacy_checked_at=now)
        session.add_all([public, private])
        session.flush()
        hyp = hypotheses.log_hypothesis(session, public, ALICE, hypotheses.HypothesisDraft(
            statement=f"Recency features lift recall{h}", metric=f"recall@10{h}",
            expected_effect="+2%", owner=ALICE, experiment_url="https://mlflow.example/run/1",
            notes=f"notes{h}"))
        hypotheses.start_hypothesis(session, hyp, ALICE)
        old = decisions.log_decision(session, public, ALICE, decisions.DecisionDraft(
            title=f"Use gradient boosting for churn-model{h}", context=f"Context{h}",
            options=f"GBM or logistic regression{h}", decision=f"GBM{h}",
            consequences=f"Retrain weekly{h}", status="accepted", deciders=[ALICE],
            source_permalink=HOSTILE_LINK if h else "https://acme.slack.com/archives/C1/p1",
            hypotheses=[hyp.ref], model="churn-model", version="3"))
        new = decisions.supersede(session, old, ALICE, f"Use a calibrated GBM for churn-model{h}")
        roles.add_role(session, public, ALICE, "U0DSPERSN", "ds", admins=())
        gate = gates.request_gate(session, public, ALICE, GateDraft(
            milestone="launch", model="churn-model", version="3", roles=["ds"],
            criteria=[f"AUC above 0.8{h}"])).gate
        gates.sign(session, gate.id, team, "U0DSPERSN", "approve", "ds")
        risk = risks.log_risk(session, public, ALICE, risks.RiskDraft(
            title=f"Data drift in billing{h}", description=f"desc{h}", likelihood=2, impact=3,
            owner=ALICE, mitigation=f"monitor{h}"))
        risks.reassess(session, risk, ALICE, 4, 5, note=f"drift seen{h}")
        incident = incidents.declare(session, public, ALICE, incidents.IncidentDraft(
            title=f"Churn scores stale{h}", severity="sev2", model="churn-model",
            model_version="3", description=f"desc{h}"), started_at=now - timedelta(hours=3))
        incidents.acknowledge(session, incident, ALICE, now=now - timedelta(hours=2))
        incidents.resolve(session, incident, ALICE, f"Backfilled{h}", now=now - timedelta(hours=1))
        model_bindings.bind_model(session, public, ALICE, "churn-model", admins=())
        promotion = promotions.record_promotion(session, promotions.PromotionDraft(
            model="churn-model", version="3", to="production", actor=ALICE,
            url=HOSTILE_URL if h else "https://ci.example/run/9", note=f"note{h}"),
            source="cli", created_by=ALICE).promotion
        rituals.set_schedule(session, public, ALICE, "standup", "weekdays 09:30")
        secret = decisions.log_decision(session, private, ALICE, decisions.DecisionDraft(
            title="Secret launch plan"))
        assert promotion is not None
        refs = {"hypothesis": hyp.ref, "old": old.ref, "new": new.ref, "gate": gate.ref,
                "risk": risk.ref, "incident": incident.ref, "promotion": promotion.ref,
                "secret": secret.ref}
        return Seeded(public.id, private.id, refs)
