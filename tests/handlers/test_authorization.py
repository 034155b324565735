"""Who may do what: every privileged command and button against every kind of user, through the
signed endpoint (issue #11, item 6).

Each row runs in a channel (a project) of its own. Allowed: the change is in the database, in the
audit log and on the card in Slack. Refused: a specific ephemeral error, and the database (records,
audit log, outbox) exactly as it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.manifest import command_definitions
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
    utcnow,
)
from bot.render import slack_unescape
from bot.services import access
from bot.services import gates as gate_service
from bot.services import roles as role_service
from bot.services.decisions import DecisionDraft, log_decision
from bot.services.gate_drafts import GateDraft
from bot.services.incidents import IncidentDraft, declare
from bot.services.projects import project_for_channel
from bot.services.risks import RiskDraft, log_risk
from support.db_snapshot import changed_tables, snapshot
from support.fake_slack import FakeSlack
from support.listeners import registered_listeners
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
        # Slack's word on the channel, as the edge stores it: the row's request asks no more.
        access.set_privacy(session, project, False, utcnow())
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
                                             GateDraft(milestone="launch")).gate
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


# ---------------------------------------------------------------------------- across projects
#
# Issue #18: every record belongs to one project (one channel). The same person (Bob holds `ds`
# in all three projects, so roles never stand in the way) acts from a channel of their own on
# the records of a public project and of a private one: a public record may be read (the reply
# says where it lives), nothing is changed, and a private record is never shown. Every row leaves
# the database exactly as it was.

PUBLIC, PRIVATE, OUTSIDE = "C0PUB0001", "C0PRIV001", "C0OUT0001"
SHOWN_ELSEWHERE = ":round_pushpin: From <#C0PUB0001>"
CHANGE_THERE = "belongs to <#C0PUB0001>: it can be changed only from there"
PRIVATE_ONLY = "belongs to a private channel, so it is shown only there"
NOT_A_MEMBER = "belongs to a private channel you are not in"
# Commands naming a record: (command, text with {ref}, kind, reads?).
REF_COMMANDS = [
    ("/decision", "show {D}", True),
    ("/decision", "supersede {D} Use the new labels", False),
    ("/hypothesis", "show {H}", True),
    ("/hypothesis", "start {H}", False),
    ("/hypothesis", "conclude {H} supported Recall rose 4 points", False),
    ("/hypothesis", "conclude {H}", False),
    ("/risk", "show {R}", True),
    ("/risk", "update {R} likelihood 1 impact 1", False),
    ("/risk", "close {R} Mitigated", False),
    ("/incident", "update {INC} Rolled back", False),
    ("/incident", "resolve {INC} Rolled back", False),
    ("/incident", "resolve {INC}", False),  # the resolve form
    ("/incident", "severity {INC} sev1 Worse than we thought", False),
    ("/incident", f"lead {{INC}} <@{EVE}>", False),
    ("/gate", "status {G}", True),
    ("/gate", "withdraw {G} Not needed any more", False),
    ("/retro", "done {A}", False),
]
# Every button that names a record: (action id, value with {id}s).
BUTTONS = [
    ("decision_add_details", "{D}"),
    ("hypothesis_add_details", "{H}"), ("hypothesis_start", "{H}"),
    ("hypothesis_conclude", "{H}"), ("hypothesis_reopen", "{H}"),
    ("risk_reassess", "{R}"), ("risk_add_details", "{R}"), ("risk_close", "{R}"),
    ("incident_ack", "{INC}"), ("incident_mitigate", "{INC}"), ("incident_add_update", "{INC}"),
    ("incident_resolve", "{INC}"), ("incident_add_risk", "{INC}"),
    ("incident_log_decision", "{INC}"),
    ("gate_approve", "{G}"), ("gate_approve_as_1", "{G}:ds"), ("gate_request_changes", "{G}"),
    ("ritual_add_update", "{STANDUP}"), ("retro_went_well", "{RETRO}"),
    ("retro_to_improve", "{RETRO}"), ("retro_action", "{RETRO}"), ("retro_item_done", "{ITEM}"),
    ("retro_vote", "{ITEM}"), ("retro_unvote", "{ITEM}"),
    # A review's buttons, pressed on another project's ritual: the guard answers before the kind
    # of ritual matters.
    ("ritual_agenda_add", "{STANDUP}"), ("ritual_outcome", "{STANDUP}"),
    ("incident_silence_1h", "{INC}"), ("incident_silence_4h", "{INC}"),
    ("incident_silence_resolved", "{INC}"),
]
# Buttons that name no record another project could own, and why they need no row above.
NO_RECORD_BUTTONS = {
    "decision_list_page": "pages through the clicking channel's own project",
    "risk_list_page": "pages through the clicking channel's own project",
    "home_project": "filters the clicker's own Home",
    "incident_follow_up_done": "its owner's own item, on their Home (the service checks the "
                               "owner)",
}
# Subcommands that list or search this channel's project only.
LISTINGS = [("/decision", "list"), ("/decision", "search labels"), ("/hypothesis", "list"),
            ("/risk", "list"), ("/risk", "heatmap"), ("/incident", "list"), ("/gate", "list")]


@dataclass
class Project_:
    """One project of the scene: its channel and the references and ids of its records."""

    channel: str
    refs: dict[str, str]
    ids: dict[str, str]
    titles: list[str]


def _seed_project(session: Session, channel: str, private: bool, members: list[str],
                  now: Any, roles: list[tuple[str, str]] = ROLES) -> Project_:
    from bot.services import rituals
    from bot.services.hypotheses import HypothesisDraft, log_hypothesis

    project = project_for_channel(session, TEAM, channel, channel.lower())
    access.set_privacy(session, project, private, now, members if private else None)
    for user, role in roles:
        role_service.add_role(session, project, ADMIN, user, role, frozenset())
    word = "secret" if private else "open"
    titles = [f"Fresh labels {word} {channel}", f"Recency lifts recall {word} {channel}",
              f"Label drift {word} {channel}", f"Scores stale {word} {channel}"]
    decision = log_decision(session, project, ALICE, DecisionDraft(title=titles[0]))
    hypothesis = log_hypothesis(session, project, ALICE,
                                HypothesisDraft(statement=titles[1], owner=ALICE))
    risk = log_risk(session, project, ALICE, RiskDraft(title=titles[2], owner=ALICE,
                                                       likelihood=4, impact=4))
    incident = declare(session, project, ALICE, IncidentDraft(title=titles[3]))
    gate = gate_service.request_gate(session, project, ALICE,
                                     GateDraft(milestone="launch")).gate
    standup = rituals.run_now(session, project, ALICE, "standup", now)
    retro = rituals.run_now(session, project, ALICE, "retro", now)
    item = rituals.add_item(session, retro, ALICE, rituals.ItemDraft(
        kind="action", text=f"Relabel {word}", owner=ALICE,
        due_date=now.date() + timedelta(days=7)), now=now)
    session.flush()
    refs = {"D": decision.ref, "H": hypothesis.ref, "R": risk.ref, "INC": incident.ref,
            "G": gate.ref, "A": item.ref}
    ids = {"D": str(decision.id), "H": str(hypothesis.id), "R": str(risk.id),
           "INC": str(incident.id), "G": str(gate.id), "STANDUP": str(standup.id),
           "RETRO": str(retro.id), "ITEM": str(item.id)}
    return Project_(channel, refs, ids, titles)


@pytest.fixture
def projects(server: QuorumServer, fake_slack: FakeSlack) -> dict[str, Project_]:
    """A public and a private project with one record of every kind, and the outsider's own
    channel; Bob is a member of the private channel, Eve (who holds `ds` there) is not."""
    fake_slack.private_channels.add(PRIVATE)
    fake_slack.channel_members[PRIVATE] = [ADMIN, ALICE, BOB, CAROL, DAVE]
    now = utcnow()
    with server.runtime.db.session() as session:
        scene = {"public": _seed_project(session, PUBLIC, False, [], now),
                 "private": _seed_project(session, PRIVATE, True,
                                          [ADMIN, ALICE, BOB, CAROL, DAVE], now,
                                          [*ROLES, (EVE, "ds")])}
        outside = project_for_channel(session, TEAM, OUTSIDE, "outside")
        access.set_privacy(session, outside, False, now)
        role_service.add_role(session, outside, ADMIN, BOB, "ds", frozenset())
    eventually(lambda: _drained(server), timeout=30)
    return scene


def _answer(fake: FakeSlack, act: Callable[[], Any]) -> dict[str, Any]:
    """Do `act` (a button press) and return the ephemeral answer it got, however it came."""
    seen = {method: len(fake.calls_to(method))
            for method in ("response_url", "chat.postEphemeral", "views.open")}
    act()

    def answered() -> dict[str, Any] | None:
        for method in seen:
            calls = fake.calls_to(method)
            if len(calls) > seen[method]:
                return {"method": method, **calls[seen[method]].args}
        return None

    return eventually(answered, timeout=5)


def _fill(template: str, values: dict[str, str]) -> str:
    for key in sorted(values, key=len, reverse=True):
        template = template.replace("{" + key + "}", values[key])
    return template


def test_no_record_is_read_or_changed_from_another_project(
        server: QuorumServer, sender: SlackSender, fake_slack: FakeSlack,
        projects: dict[str, Project_]) -> None:
    failures: list[str] = []
    before = snapshot(server.runtime.db)

    def row(name: str, check: Callable[[], None]) -> None:
        try:
            check()
            assert changed_tables(before, server.runtime.db) == []
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")

    for which, project in projects.items():
        for command, template, reads in REF_COMMANDS:
            text = _fill(template, project.refs)

            def command_row(command: str = command, text: str = text, reads: bool = reads,
                            which: str = which) -> None:
                answer = sender.command(command, text, user=BOB, channel=OUTSIDE,
                                        channel_name="outside")
                assert answer.status_code == 200, answer.text
                reply = answer.json()
                shown = _text(reply)
                assert reply.get("response_type") == "ephemeral", reply
                if which == "private":
                    assert PRIVATE_ONLY in shown, shown
                    assert "secret" not in shown, shown
                elif reads:
                    assert SHOWN_ELSEWHERE in shown, shown
                else:
                    assert CHANGE_THERE in shown, shown

            row(f"{command} {template} on the {which} project", command_row)
        for action_id, template in BUTTONS:
            value = _fill(template, project.ids)

            def button_row(action_id: str = action_id, value: str = value,
                           which: str = which) -> None:
                answer = _answer(fake_slack, lambda: sender.click(
                    action_id, value, user=BOB, channel=OUTSIDE))
                assert answer["method"] != "views.open", answer
                shown = _text(answer)
                assert (PRIVATE_ONLY if which == "private" else CHANGE_THERE) in shown, shown
                assert "secret" not in shown, shown

            row(f"button {action_id} on the {which} project", button_row)
    for command, text in LISTINGS:
        def listing_row(command: str = command, text: str = text) -> None:
            answer = sender.command(command, text, user=BOB, channel=OUTSIDE,
                                    channel_name="outside")
            shown = _text(answer.json())
            assert answer.json().get("response_type") == "ephemeral"
            assert "secret" not in shown and "open C0PUB" not in shown, shown

        row(f"{command} {text} from another channel", listing_row)
    assert not failures, "\n".join(failures)


def _outbox_since(server: QuorumServer, after: int) -> list[OutboxMessage]:
    with server.runtime.db.session() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.id > after)
                                    .order_by(OutboxMessage.id)))


def _last_outbox_id(server: QuorumServer) -> int:
    with server.runtime.db.session() as session:
        return session.scalar(select(func.max(OutboxMessage.id))) or 0


def _open_home(sender: SlackSender, fake: FakeSlack, user: str) -> dict[str, Any]:
    seen = len([c for c in fake.calls_to("views.publish") if c.args.get("user_id") == user])
    answer = sender.event({"type": "app_home_opened", "user": user, "channel": "D0HOME001",
                           "tab": "home"})
    assert answer.status_code == 200

    def published() -> dict[str, Any] | None:
        calls = [c for c in fake.calls_to("views.publish") if c.args.get("user_id") == user]
        return calls[seen].args["view"] if len(calls) > seen else None

    return eventually(published, timeout=10)


def _home_click(sender: SlackSender, fake: FakeSlack, user: str, action: dict[str, Any],
                view: dict[str, Any]) -> str:
    """Press something on the published Home; the Home re-published with the note on top."""
    from bot import slack_payloads as payloads

    seen = len([c for c in fake.calls_to("views.publish") if c.args.get("user_id") == user])
    payload = payloads.block_actions(action, team=TEAM, user=user, channel=None,
                                     channel_name=None, response_url=None, view=view,
                                     block_id="b")
    assert sender.interaction(payload).status_code == 200

    def published() -> str | None:
        calls = [c for c in fake.calls_to("views.publish") if c.args.get("user_id") == user]
        return _text(calls[seen].args["view"]) if len(calls) > seen else None

    return eventually(published, timeout=10)


def test_private_projects_reach_their_members_only_at_home_and_in_reminders(
        server: QuorumServer, sender: SlackSender, fake_slack: FakeSlack,
        projects: dict[str, Project_]) -> None:
    """Eve holds `ds` in the private project and takes part in its standup, but is not in its
    channel: her Home, her project filter, buttons pressed there and her reminders never carry
    its records. Bob, a member, gets them (the control)."""
    private, public = projects["private"], projects["public"]
    before = snapshot(server.runtime.db)
    first = _last_outbox_id(server)

    bob = _text(_open_home(sender, fake_slack, BOB))
    assert private.refs["G"] in bob and "secret" in bob, bob  # the member sees it
    eve_view = _open_home(sender, fake_slack, EVE)
    eve = _text(eve_view)
    assert "secret" not in eve and private.refs["G"] not in eve, eve
    assert "privateproject" not in eve and PRIVATE.lower() not in eve, eve

    with server.runtime.db.session() as session:
        private_id = project_for_channel(session, TEAM, PRIVATE).id
    filtered = _home_click(sender, fake_slack, EVE, {
        "type": "static_select", "action_id": "home_project",
        "selected_option": {"text": {"type": "plain_text", "text": "x"},
                            "value": str(private_id)}}, eve_view)
    assert "That project is not one of yours" in filtered and "secret" not in filtered
    for action_id, value in (("gate_approve_as_1", f"{private.ids['G']}:ds"),
                             ("risk_reassess", private.ids["R"])):
        refused = _home_click(sender, fake_slack, EVE, {
            "type": "button", "action_id": action_id, "value": value,
            "text": {"type": "plain_text", "text": "x"}}, eve_view)
        assert NOT_A_MEMBER in refused and "secret" not in refused, refused
    # A reminder DM's buttons are hers too, within the same rule.
    answer = _answer(fake_slack, lambda: sender.click("gate_approve", private.ids["G"],
                                                      user=EVE, channel="D0EVE0001"))
    assert NOT_A_MEMBER in _text(answer), answer

    # The Home only published (Eve's and Bob's): no register, audit event or other message
    # (the Home tabs remember who opened them, and the event ids are remembered).
    assert set(changed_tables(before, server.runtime.db)) <= {
        "home_tabs", "outbox", "processed_requests"}
    for row in _outbox_since(server, first):
        assert row.method == "views.publish", (row.method, row.payload)
        if row.payload.get("user_id") == EVE:
            assert "secret" not in json.dumps(row.payload), row.payload

    # Reminders: the standup's halfway reminder, the risk reviews' morning digest and the gates'
    # reminder after a day. Eve and Bob each own a risk of the private project due for review.
    with server.runtime.db.session() as session:
        from bot.models import RitualOccurrence

        secret = project_for_channel(session, TEAM, PRIVATE)
        for owner in (EVE, BOB):
            log_risk(session, secret, ALICE, RiskDraft(
                title=f"Review secret of {owner}", owner=owner, likelihood=2, impact=2,
                next_review=utcnow().date()))

        standup = session.get_one(RitualOccurrence, int(private.ids["STANDUP"]))
        assert EVE in (standup.participants or [])
        remind_at = standup.remind_at
        gate = session.get_one(Gate, session.scalar(select(Gate.id).where(
            Gate.id == int(private.ids["G"]))))
        created = gate.created_at
    first = _last_outbox_id(server)
    server.scheduler.run_due(now=remind_at + timedelta(minutes=1))
    morning = created.replace(hour=9, minute=30) + timedelta(days=1)
    server.scheduler.run_due(now=morning)
    server.scheduler.run_due(now=created + timedelta(hours=25))
    dms: dict[str, list[str]] = {}
    for row in _outbox_since(server, first):
        channel = str(row.payload.get("channel", ""))
        if row.method == "chat.postMessage" and channel.startswith("U"):
            dms.setdefault(channel, []).append(json.dumps(row.payload))
    assert EVE not in dms, dms[EVE]
    assert any(private.refs["G"] in text for text in dms.get(CAROL, [])), dms
    assert any("standup" in text.lower() for text in dms.get(BOB, [])), dms
    assert any(f"Review secret of {BOB}" in text for text in dms.get(BOB, [])), dms
    assert public.refs["G"]  # Eve holds no role there: nothing of it was hers to be reminded of


def test_every_button_and_record_subcommand_has_a_cross_project_row(
        make_settings: Callable[..., Any]) -> None:
    """A new button or a new subcommand naming a record fails here until the matrix above
    has its row (or the button says why it needs none)."""
    listed = {re.sub(r"_\d+$", "_*", action) for action, _ in BUTTONS}
    assert registered_listeners(make_settings).actions == listed | set(NO_RECORD_BUTTONS)
    naming = {(command.name, sub.pattern.split()[0])
              for command in command_definitions().values() for sub in command.subcommands
              if "-n>" in sub.pattern}
    rows = {(command, template.split()[0]) for command, template, _ in REF_COMMANDS}
    assert naming - rows == set(), "a subcommand naming a record has no row in REF_COMMANDS"
