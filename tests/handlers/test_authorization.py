"""Who may do what: every privileged command and button against every kind of user, through the
signed endpoint (issue #11, item 6).

Each row runs in a channel (a project) of its own. Allowed: the change is in the database, in the
audit log and on the card in Slack. Refused: a specific ephemeral error, and the database (records,
audit log, outbox) exactly as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.models import (
    AuditEvent,
    Gate,
    GateSignoff,
    GithubMapping,
    Incident,
    ModelBinding,
    OutboxMessage,
    Project,
    Risk,
    RoleAssignment,
)
from bot.render import slack_unescape
from bot.services import gates as gate_service
from bot.services import roles as role_service
from bot.services.decisions import DecisionDraft, log_decision
from bot.services.incidents import IncidentDraft, declare
from bot.services.projects import project_for_channel
from bot.services.risks import RiskDraft, log_risk
from support.db_snapshot import changed_tables, snapshot
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import TEAM, SlackSender
from support.waiting import eventually

ADMIN, ALICE, BOB, CAROL, DAVE, EVE, FRANK = (
    "U0ADMIN01", "U0ALICE01", "U0BOB0001", "U0CAROL01", "U0DAVE001", "U0EVE0001", "U0FRANK01")
# In every row's project: Bob is ds, Carol eng, Dave pm; Alice, who requested the gate, owns the
# risk and declared the incident, is ds as well; Eve holds nothing; the admin holds nothing.
ROLES = [(BOB, "ds"), (CAROL, "eng"), (DAVE, "pm"), (ALICE, "ds")]
ADMIN_ONLY = "Only Quorum admins and this project's owners can change roles and settings"
NO_ROLE = "you hold none of these roles"
SELF_APPROVAL = "so you cannot approve it yourself"
MAP_ADMIN_ONLY = "Only Quorum admins and this project's owners can map GitHub environments"
WITHDRAW_REFUSAL = "Only G-1's requester or a project admin can withdraw it"


@dataclass
class Row:
    action: str
    who: str  # admin · holder · holder-eng · holder-pm · member · requester
    allowed: bool
    refusal: str = ""
    self_approval: bool = False

    @property
    def id(self) -> str:
        setting = " (self-approval on)" if self.self_approval else ""
        return f"{self.action} by {self.who}{setting}"


USERS = {"admin": ADMIN, "holder": BOB, "holder-eng": CAROL, "holder-pm": DAVE, "member": EVE,
         "requester": ALICE, "outsider": BOB}
# An outsider is a person of another workspace (same user id, even) pressing a button that names
# a record of this one: records are looked up within the clicking workspace only.
OTHER_TEAM = "T0OTHER01"
ADMIN_ACTIONS = ["role add", "role remove", "settings self-approval", "settings reminders",
                 "settings new-versions", "model add", "model remove"]
ROWS = [
    *(Row(action, who, who == "admin", "" if who == "admin" else ADMIN_ONLY)
      for action in ADMIN_ACTIONS for who in ("admin", "holder", "member", "requester")),
    # Signing needs a required role: being an admin is not enough.
    Row("approve", "admin", False, NO_ROLE),
    Row("approve", "holder", True),
    Row("approve", "holder-eng", True),
    Row("approve", "holder-pm", True),
    Row("approve", "member", False, NO_ROLE),
    Row("approve", "requester", False, SELF_APPROVAL),
    Row("approve", "requester", True, self_approval=True),
    Row("approve as a role not held", "holder", False, "as `eng`; you can sign as `ds`"),
    Row("request changes", "admin", False, NO_ROLE),
    Row("request changes", "holder", True),
    Row("request changes", "holder-pm", True),
    Row("request changes", "member", False, NO_ROLE),
    # Self-approval only stops a requester approving; asking for changes is always theirs.
    Row("request changes", "requester", True),
    # No owner restriction exists on closing risks or resolving incidents (design §2 names none):
    # anyone in the channel may, and the audit log and the card name who did it.
    *(Row("close risk", who, True) for who in ("admin", "holder", "member", "requester")),
    *(Row("resolve incident", who, True) for who in ("admin", "holder", "member", "requester")),
    *(Row("github map", who, who == "admin", "" if who == "admin" else MAP_ADMIN_ONLY)
      for who in ("admin", "holder", "member", "requester")),
    # The requester or a project admin may withdraw a gate; a signer may not.
    *(Row("withdraw", who, who in ("admin", "requester"),
          "" if who in ("admin", "requester") else "can withdraw it")
      for who in ("admin", "holder", "member", "requester")),
    Row("approve", "outsider", False, "That gate no longer exists"),
    Row("close risk button", "outsider", False, "That risk no longer exists"),
    Row("acknowledge incident button", "outsider", False, "That incident no longer exists"),
    Row("decision details button", "outsider", False, "That decision no longer exists"),
]


# The record each action works on (the others need only the project).
NEEDS = {"approve": "gate", "approve as a role not held": "gate", "request changes": "gate",
         "withdraw": "gate",
         "close risk": "risk", "close risk button": "risk", "resolve incident": "incident",
         "acknowledge incident button": "incident", "decision details button": "decision"}


@pytest.fixture
def server(make_settings: Callable[..., Any]) -> Iterator[QuorumServer]:
    quorum = QuorumServer(make_settings(QUORUM_ADMINS=ADMIN)).start()
    yield quorum
    quorum.stop()


@pytest.fixture
def sender(server: QuorumServer, fake_slack: FakeSlack) -> Iterator[SlackSender]:
    slack = SlackSender(server.url, fake_slack.response_url())
    yield slack
    slack.close()


def _text(payload: dict[str, Any]) -> str:
    return slack_unescape(payload.get("text", "") + json.dumps(payload.get("blocks", []),
                                                               ensure_ascii=False))


def _drained(server: QuorumServer) -> bool:
    with server.runtime.db.session() as session:
        return not session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.status.in_(("pending", "sending"))))


class Scene:
    """One row's project, roles and binding, the record it acts on, and how to act in it."""

    def __init__(self, server: QuorumServer, slack: SlackSender, fake: FakeSlack,
                 session: Session, channel: str, row: Row) -> None:
        self.server, self.slack, self.fake, self.channel = server, slack, fake, channel
        self.outsider = False
        project = project_for_channel(session, TEAM, channel, channel.lower())
        project.allow_self_approval = row.self_approval
        needs = NEEDS.get(row.action, "")
        for user, role in ROLES:
            role_service.add_role(session, project, ADMIN, user, role, frozenset())
        # Bindings are unique in the workspace: each row binds models of its own.
        self.bound, self.unbound = f"fraud-{channel.lower()}", f"churn-{channel.lower()}"
        session.add(ModelBinding(team_id=TEAM, project=project, model=self.bound,
                                 created_by=ADMIN))
        # Only the record the row acts on: every card costs deliveries before the row can start.
        # References count per workspace, so each row's records have their own numbers.
        self.gate_id = self.risk_id = self.incident_id = self.decision_id = 0
        self.gate_ref = self.risk_ref = self.incident_ref = ""
        if needs == "gate":
            gate = gate_service.request_gate(session, project, ALICE,
                                             gate_service.GateDraft(milestone="launch")).gate
            session.flush()
            self.gate_id, self.gate_ref = gate.id, gate.ref
        elif needs == "risk":
            risk = log_risk(session, project, ALICE, RiskDraft(
                title="Label drift", owner=ALICE, likelihood=3, impact=3))
            session.flush()
            self.risk_id, self.risk_ref = risk.id, risk.ref
        elif needs == "incident":
            incident = declare(session, project, ALICE, IncidentDraft(title="Scores are stale"))
            session.flush()
            self.incident_id, self.incident_ref = incident.id, incident.ref
        elif needs == "decision":
            decision = log_decision(session, project, ALICE,
                                    DecisionDraft(title="Use fresh labels"))
            session.flush()
            self.decision_id = decision.id
        self.project_id = project.id

    def command(self, command: str, text: str, user: str) -> dict[str, Any]:
        response = self.slack.command(command, text, user=user, channel=self.channel,
                                      channel_name=self.channel.lower())
        assert response.status_code == 200, response.text
        return response.json()

    def click(self, action_id: str, value: str, user: str) -> dict[str, Any] | None:
        """Press a button: the modal it opened, or the ephemeral answer (through `response_url`,
        or `chat.postEphemeral` from listeners that have no `respond`)."""
        seen = len(self.fake.calls_to("response_url"))
        opened = len(self.fake.calls_to("views.open"))
        whispered = len(self.fake.calls_to("chat.postEphemeral"))
        sender = self.slack
        if self.outsider:
            sender = SlackSender(self.server.url, self.fake.response_url(), team=OTHER_TEAM)
        try:
            assert sender.click(action_id, value, user=user,
                                channel=self.channel).status_code == 200
        finally:
            if sender is not self.slack:
                sender.close()

        def answered() -> dict[str, Any] | None:
            if len(self.fake.calls_to("views.open")) > opened:
                return {"opened": self.fake.calls_to("views.open")[opened].args["view"]}
            ephemerals = self.fake.calls_to("chat.postEphemeral")
            if len(ephemerals) > whispered:
                return {"response_type": "ephemeral", **ephemerals[whispered].args}
            calls = self.fake.calls_to("response_url")
            return calls[seen].args if len(calls) > seen else None

        return eventually(answered, timeout=5)

    def card(self, ref: str) -> str:
        """The card of `ref` as it is now in Slack."""
        for message in self.fake.messages.get(self.channel, {}).values():
            if "thread_ts" not in message and f"{ref} " in _text(message)[:200]:
                return _text(message)
        raise AssertionError(f"no card for {ref} in {self.channel}")

    def card_shows(self, ref: str, text: str) -> None:
        """Wait until the outbox has edited the card of `ref` to show `text`."""
        def shows() -> bool:
            card = self.card(ref)
            assert text in card, card
            return True

        eventually(shows, timeout=5)

    def get(self, model: type, record_id: int) -> Any:
        with self.server.runtime.db.session() as session:
            return session.get(model, record_id)

    def audited(self, action: str, actor: str) -> bool:
        with self.server.runtime.db.session() as session:
            return bool(session.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.action == action, AuditEvent.actor == actor)))

    def signoffs(self) -> list[tuple[str, str, str]]:
        with self.server.runtime.db.session() as session:
            return [(s.role, s.user_id, s.decision) for s in session.scalars(
                select(GateSignoff).where(GateSignoff.gate_id == self.gate_id))]

    def roles(self) -> set[tuple[str, str]]:
        with self.server.runtime.db.session() as session:
            return {(a.user_id, a.role) for a in session.scalars(
                select(RoleAssignment).where(RoleAssignment.project_id == self.project_id))}

    def bindings(self) -> set[str]:
        with self.server.runtime.db.session() as session:
            return set(session.scalars(select(ModelBinding.model).where(
                ModelBinding.project_id == self.project_id)))


def _act(scene: Scene, row: Row, user: str) -> dict[str, Any] | None:
    """Do the row's action as `user`; the ephemeral answer (None: a modal was submitted)."""
    # A requester acts on themselves: takes a role they lack, or drops their own.
    target, role = (user, "eng") if row.who == "requester" else (FRANK, "ds")
    commands = {
        "role add": f"role add <@{target}> {role}",
        "role remove": f"role remove <@{ALICE if row.who == 'requester' else BOB}> ds",
        "settings self-approval": "settings self-approval on",
        "settings reminders": "settings reminders 4",
        "settings new-versions": "settings new-versions on",
        "model add": f"model add {scene.unbound}",
        "model remove": f"model remove {scene.bound}",
        "github map": f"github map acme/{scene.channel.lower()} production",
    }
    if row.action in commands:
        return scene.command("/quorum", commands[row.action], user)
    scene.outsider = row.who == "outsider"
    if row.action == "approve":
        return scene.click("gate_approve", str(scene.gate_id), user)
    if row.action == "close risk button":
        return scene.click("risk_close", str(scene.risk_id), user)
    if row.action == "acknowledge incident button":
        return scene.click("incident_ack", str(scene.incident_id), user)
    if row.action == "decision details button":
        return scene.click("decision_add_details", str(scene.decision_id), user)
    if row.action == "approve as a role not held":
        return scene.click("gate_approve_as_1", f"{scene.gate_id}:eng", user)
    if row.action == "request changes":
        answer = scene.click("gate_request_changes", str(scene.gate_id), user)
        if answer is None or "opened" not in answer:
            return answer
        submitted = scene.slack.submit(answer["opened"], {"reason": "Holdout leaks"}, user=user)
        assert submitted.status_code == 200 and not submitted.content.strip(b"{}")
        return None
    if row.action == "withdraw":
        return scene.command("/gate", f"withdraw {scene.gate_ref} No longer needed", user)
    if row.action == "close risk":
        return scene.command("/risk", f"close {scene.risk_ref} Mitigated by new labels", user)
    assert row.action == "resolve incident"
    return scene.command("/incident", f"resolve {scene.incident_ref} Rolled back", user)


def _check_effect(scene: Scene, row: Row, user: str, answer: dict[str, Any] | None) -> None:
    """What an allowed action must have changed: records, audit log, card."""
    if answer is not None:
        assert answer.get("response_type", "ephemeral") == "ephemeral", answer
    project = scene.get(Project, scene.project_id)
    if row.action == "role add":
        assert (FRANK, "ds") in scene.roles() and scene.audited("role.added", user)
    elif row.action == "role remove":
        removed = ALICE if row.who == "requester" else BOB
        assert (removed, "ds") not in scene.roles() and scene.audited("role.removed", user)
    elif row.action == "settings self-approval":
        assert project.allow_self_approval and scene.audited("project.settings_changed", user)
    elif row.action == "settings reminders":
        assert project.gate_reminder_hours == 4
        assert scene.audited("project.settings_changed", user)
    elif row.action == "settings new-versions":
        assert project.announce_new_versions
        assert scene.audited("project.settings_changed", user)
    elif row.action == "model add":
        assert scene.unbound in scene.bindings()
    elif row.action == "model remove":
        assert scene.bound not in scene.bindings()
    elif row.action == "github map":
        with scene.server.runtime.db.session() as session:
            mapped = session.scalars(select(GithubMapping.repo).where(
                GithubMapping.project_id == scene.project_id)).all()
        assert mapped == [f"acme/{scene.channel.lower()}"]
        assert scene.audited("project.github_mapped", user)
    elif row.action == "withdraw":
        gate = scene.get(Gate, scene.gate_id)
        assert (gate.status, gate.withdrawn_by) == ("withdrawn", user)
        assert scene.audited("gate.withdrawn", user)
        scene.card_shows(scene.gate_ref, f"Withdrawn by <@{user}>")
    elif row.action == "approve":
        role = {ALICE: "ds", BOB: "ds", CAROL: "eng", DAVE: "pm"}[user]
        assert scene.signoffs() == [(role, user, "approve")]
        assert scene.audited("gate.approved", user)
        scene.card_shows(scene.gate_ref, f"*{role}* · approved by <@{user}>")
    elif row.action == "request changes":
        role = {ALICE: "ds", BOB: "ds", DAVE: "pm"}[user]
        assert scene.signoffs() == [(role, user, "changes")]
        assert scene.get(Gate, scene.gate_id).status == "changes_requested"
        scene.card_shows(scene.gate_ref, f"*{role}* · changes requested by <@{user}>")
    elif row.action == "close risk":
        risk = scene.get(Risk, scene.risk_id)
        assert (risk.status, risk.closed_by) == ("closed", user)
        assert scene.audited("risk.closed", user)
        scene.card_shows(scene.risk_ref, f"*Closed* by <@{user}>")
    else:
        incident = scene.get(Incident, scene.incident_id)
        assert incident.status == "resolved" and scene.audited("incident.resolved", user)
        scene.card_shows(scene.incident_ref, "· resolved ")


@pytest.mark.slow
def test_every_privileged_action_against_every_kind_of_user(
        server: QuorumServer, sender: SlackSender, fake_slack: FakeSlack) -> None:
    with server.runtime.db.session() as session:
        scenes = [Scene(server, sender, fake_slack, session, f"C0ROW{n:04d}", row)
                  for n, row in enumerate(ROWS, start=1)]
    eventually(lambda: _drained(server))
    failures: list[str] = []
    # Refusals first, while nothing else is moving: each must leave the database as it was.
    before = snapshot(server.runtime.db)
    for row, scene in zip(ROWS, scenes, strict=True):
        if row.allowed:
            continue
        try:
            answer = _act(scene, row, USERS[row.who])
            assert answer is not None and "opened" not in answer, answer
            assert answer.get("response_type") == "ephemeral", answer
            assert row.refusal in _text(answer), _text(answer)
            assert changed_tables(before, server.runtime.db) == []
        except AssertionError as exc:
            failures.append(f"{row.id}: {exc}")
    done = [(row, scene, _act(scene, row, USERS[row.who]))
            for row, scene in zip(ROWS, scenes, strict=True) if row.allowed]
    for row, scene, answer in done:
        try:
            _check_effect(scene, row, USERS[row.who], answer)
        except AssertionError as exc:
            failures.append(f"{row.id}: {exc}")
    assert not failures, "\n".join(failures)
