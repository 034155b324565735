"""The App Home end to end: signed events and clicks in, `views.publish` and the DB checked."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import object_session

from bot import slack_payloads as payloads
from bot.delivery import OutboxWorker
from bot.models import (
    Decision,
    Gate,
    GateSignoff,
    GateStatus,
    HomeTab,
    Hypothesis,
    Incident,
    OutboxMessage,
    Project,
    Risk,
    RoleAssignment,
    utcnow,
)
from bot.render import slack_unescape
from bot.services import access, decisions, hypotheses, incidents, risks
from bot.services.projects import project_for_channel
from bot.slack_app import web_client
from support.fake_slack import Call, FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import TEAM, SlackSender
from support.waiting import eventually

CHANNEL, OTHER = "C0CHURN01", "C0FRAUD01"
ALICE, BOB, CAROL, DAVE = "U0ALICE01", "U0BOB0001", "U0CAROL01", "U0DAVE001"


# ---------------------------------------------------------------------------- helpers


def text_of(node: Any) -> str:
    return slack_unescape(json.dumps(node, ensure_ascii=False))


def reply_text(response: httpx.Response) -> str:
    return text_of(response.json())


def publishes(fake: FakeSlack, user: str) -> list[Call]:
    return [c for c in fake.calls_to("views.publish") if c.args["user_id"] == user]


def next_home(fake: FakeSlack, user: str, seen: int,
              containing: str | None = None) -> dict[str, Any]:
    """The first Home published for `user` after the `seen` ones (containing `containing`)."""
    def published() -> dict[str, Any] | None:
        for call in publishes(fake, user)[seen:]:
            if containing is None or containing in text_of(call.args["view"]):
                return call.response["view"]
        return None
    return eventually(published)


def open_home(slack: SlackSender, fake: FakeSlack, user: str, **kwargs: Any) -> dict[str, Any]:
    seen = len(publishes(fake, user))
    answer = slack.event({"type": "app_home_opened", "user": user, "channel": "D0HOME001",
                          "tab": "home"}, **kwargs)
    assert answer.status_code == 200
    return next_home(fake, user, seen)


def home_click(slack: SlackSender, view: dict[str, Any], action_id: str, value: str | None,
               user: str, option: dict[str, Any] | None = None) -> None:
    """Press an element of a published Home: a `block_actions` with a view and no channel."""
    element = next(e for b in view["blocks"] if b["type"] in ("actions", "section")
                   for e in (b.get("elements") or [b.get("accessory") or {}])
                   if e.get("action_id") == action_id
                   and (value is None or e.get("value") == value))
    action = {**element, "selected_option": option} if option else dict(element)
    block_id = next(b.get("block_id", "b") for b in view["blocks"]
                    if element in (b.get("elements") or [b.get("accessory")]))
    payload = payloads.block_actions(action, team=TEAM, user=user, channel=None,
                                     channel_name=None, response_url=None, view=view,
                                     block_id=block_id)
    assert slack.interaction(payload).status_code == 200


def give_roles(slack: SlackSender, roles: dict[str, str], channel: str = CHANNEL) -> None:
    for user, role in roles.items():
        answer = slack.command("/quorum", f"role add <@{user}> {role}", channel=channel)
        assert "now holds" in reply_text(answer), reply_text(answer)


def request_gate(slack: SlackSender, fake: FakeSlack, text: str = "launch for churn v3",
                 channel: str = CHANNEL) -> dict[str, Any]:
    posted = len(fake.calls_to("chat.postMessage"))
    answer = slack.command("/gate", f"request {text}", user=ALICE, channel=channel)
    assert "Requested" in reply_text(answer), reply_text(answer)
    return fake.wait_for("chat.postMessage", count=posted + 1)[posted].response["message"]


def gate_card(fake: FakeSlack, ref: str) -> dict[str, Any]:
    for message in fake.messages.get(CHANNEL, {}).values():
        header = (message.get("blocks") or [{}])[0]
        if header.get("type") == "header" and header["text"]["text"].startswith(f"{ref} "):
            return message
    raise AssertionError(f"no card for {ref}")


def wait_delivered(quorum: QuorumServer) -> None:
    """Until the outbox has nothing left to send."""
    def drained() -> bool:
        return not scalar(quorum, select(func.count()).select_from(OutboxMessage)
                          .where(OutboxMessage.status.in_(("pending", "sending"))))
    eventually(drained)


def scalar(quorum: QuorumServer, query: Any) -> Any:
    with quorum.runtime.db.session() as session:
        return session.scalar(query)


def public(project: Project) -> None:
    """Slack's word that the channel is public, as the edge stores it: the records of a project
    whose privacy is unknown reach nobody's Home (docs/access.md)."""
    access.set_privacy(object_session(project), project, False, utcnow())


def seed_records(quorum: QuorumServer, owner: str = BOB, channel: str = CHANNEL,
                 name: str = "churn-model") -> None:
    """A risk, a hypothesis, an incident and a decision in the channel's project, through the
    services (as their commands and modals would)."""
    with quorum.runtime.db.session() as session:
        project = project_for_channel(session, TEAM, channel, name)
        public(project)
        risks.log_risk(session, project, ALICE, risks.RiskDraft(
            title=f"Label drift in {name}", owner=owner, likelihood=4, impact=4))
        hypotheses.log_hypothesis(session, project, owner, hypotheses.HypothesisDraft(
            statement=f"Recency features lift {name} recall", owner=owner))
        incidents.declare(session, project, ALICE, incidents.IncidentDraft(
            title=f"{name} latency spike", severity="sev2", commander=owner))
        decisions.log_decision(session, project, owner, decisions.DecisionDraft(
            title=f"Retrain {name} weekly"))


# ---------------------------------------------------------------------------- opening


def test_opening_the_home_publishes_every_section(slack: SlackSender, quorum: QuorumServer,
                                                  fake_slack: FakeSlack) -> None:
    give_roles(slack, {BOB: "ds", CAROL: "eng", DAVE: "pm"})
    request_gate(slack, fake_slack)
    seed_records(quorum)

    view = open_home(slack, fake_slack, BOB)
    shown = text_of(view)
    assert view["type"] == "home"
    assert "Sign-offs waiting for you · 1" in shown and "*G-1* launch gate · churn v3" in shown
    assert "you sign as ds" in shown
    assert "Your open risks · 1" in shown and "*R-1* Label drift in churn-model" in shown
    assert "Your hypotheses · 1" in shown and "*H-1* Recency features" in shown
    assert "Active incidents · 1" in shown and "*you command it*" in shown
    assert "Recent decisions · 1" in shown and "*D-1* Retrain churn-model weekly" in shown
    assert "Next rituals" not in shown  # the hook shows nothing while there are none
    assert "home_project" not in shown  # one project: no filter
    buttons = {e["action_id"]: e["value"] for b in view["blocks"] if b["type"] == "actions"
               for e in b["elements"]}
    gate_id = scalar(quorum, select(Gate.id))
    assert buttons == {"gate_approve_as_0": f"{gate_id}:ds",
                       "gate_request_changes": str(gate_id)}
    assert scalar(quorum, select(func.count()).select_from(HomeTab)) == 1

    # Alice requested the gate, so nothing waits for her; she has no roles or records.
    alice = text_of(open_home(slack, fake_slack, ALICE))
    assert "Sign-offs waiting for you · 0" in alice and "Nothing waits for your sign-off" in alice


def test_next_rituals_show_the_coming_standup_in_its_time_zone(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    give_roles(slack, {BOB: "ds"})
    answer = slack.command("/standup", "schedule weekdays 09:30 tz Europe/Paris", user=BOB)
    assert "Europe/Paris" in reply_text(answer)
    shown = text_of(open_home(slack, fake_slack, BOB))
    assert "Next rituals · 1" in shown
    assert f"*Standup* in <#{CHANNEL}>" in shown and "09:30 (Europe/Paris)" in shown


def test_the_messages_tab_and_retried_events_are_harmless(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    answer = slack.event({"type": "app_home_opened", "user": BOB, "channel": "D0HOME001",
                          "tab": "messages"})
    assert answer.status_code == 200
    first = open_home(slack, fake_slack, CAROL, event_id="Ev0HOME0001")
    retried = slack.event({"type": "app_home_opened", "user": CAROL, "channel": "D0HOME001",
                           "tab": "home"}, event_id="Ev0HOME0001", retry=1)
    assert retried.status_code == 200
    wait_delivered(quorum)
    # Re-delivery at most publishes the same Home again; it never adds anything.
    assert {json.dumps(c.args["view"]["blocks"]) for c in publishes(fake_slack, CAROL)} == \
        {json.dumps(first["blocks"])}
    assert publishes(fake_slack, BOB) == []
    assert scalar(quorum, select(func.count()).select_from(HomeTab)) == 1


# ---------------------------------------------------------------------------- acting


def test_approving_from_the_home_signs_updates_the_card_and_the_home(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    give_roles(slack, {BOB: "ds", CAROL: "eng"})
    request_gate(slack, fake_slack, "launch for churn v3 roles ds,eng")
    view = open_home(slack, fake_slack, BOB)
    carol_seen = len(publishes(fake_slack, CAROL))
    open_home(slack, fake_slack, CAROL)
    gate_id = scalar(quorum, select(Gate.id))

    seen = len(publishes(fake_slack, BOB))
    home_click(slack, view, "gate_approve_as_0", f"{gate_id}:ds", BOB)
    after = text_of(next_home(fake_slack, BOB, seen, containing="Approved G-1 as `ds`"))
    assert "Sign-offs waiting for you · 0" in after
    signoff = eventually(lambda: scalar(quorum, select(GateSignoff)))
    assert (signoff.role, signoff.user_id, signoff.decision) == ("ds", BOB, "approve")
    # The card in the channel shows the approval.
    eventually(lambda: f"approved by <@{BOB}>" in text_of(gate_card(fake_slack, "G-1")))
    # Carol, who holds the other role, gets her Home re-published too: G-1 still waits for her.
    carol = text_of(next_home(fake_slack, CAROL, carol_seen + 1))
    assert "*G-1*" in carol and "you sign as eng" in carol

    # A double click (the stale Home still has the button) changes nothing and says why.
    seen = len(publishes(fake_slack, BOB))
    home_click(slack, view, "gate_approve_as_0", f"{gate_id}:ds", BOB)
    again = text_of(next_home(fake_slack, BOB, seen))
    assert ":warning: You already approved G-1 as `ds`" in again
    assert scalar(quorum, select(func.count()).select_from(GateSignoff)) == 1


def test_request_changes_from_the_home_opens_the_reason_modal(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    give_roles(slack, {BOB: "ds", CAROL: "eng", DAVE: "pm"})
    request_gate(slack, fake_slack)
    view = open_home(slack, fake_slack, BOB)
    gate_id = scalar(quorum, select(Gate.id))

    opened = len(fake_slack.calls_to("views.open"))
    home_click(slack, view, "gate_request_changes", str(gate_id), BOB)
    modal = fake_slack.wait_for("views.open", count=opened + 1)[opened].response["view"]
    seen = len(publishes(fake_slack, BOB))
    answer = slack.submit(modal, {"reason": "Evaluate on the March cohort too"}, user=BOB)
    assert answer.status_code == 200 and not answer.content.strip(b"{}")
    assert scalar(quorum, select(Gate.status)) == GateStatus.CHANGES_REQUESTED
    eventually(lambda: "changes requested" in text_of(gate_card(fake_slack, "G-1")))
    after = text_of(next_home(fake_slack, BOB, seen, containing="Sign-offs waiting for you · 0"))
    assert "*G-1*" not in after


def test_stale_clicks_change_nothing_and_the_home_says_why(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    give_roles(slack, {BOB: "ds", CAROL: "eng"})
    request_gate(slack, fake_slack, "launch for churn v3 roles ds,eng")
    seed_records(quorum, owner=CAROL)
    stale = open_home(slack, fake_slack, CAROL)
    gate_id = scalar(quorum, select(Gate.id))
    risk_id = scalar(quorum, select(Risk.id))

    # Bob asks for changes on the card and Carol closes the risk in the channel, while Carol's
    # old Home is still on screen somewhere.
    clicked = slack.click("gate_request_changes", str(gate_id), user=BOB)
    assert clicked.status_code == 200
    modal = fake_slack.wait_for("views.open")[-1].response["view"]
    slack.submit(modal, {"reason": "Needs a fairness review"}, user=BOB)
    closed = slack.command("/risk", "close R-1 Mitigated by the new labelling vendor",
                           user=CAROL)
    assert "closed" in reply_text(closed).lower()
    signed = scalar(quorum, select(func.count()).select_from(GateSignoff))
    opened = len(fake_slack.calls_to("views.open"))

    seen = len(publishes(fake_slack, CAROL))
    home_click(slack, stale, "gate_approve_as_0", f"{gate_id}:eng", CAROL)
    why = text_of(next_home(fake_slack, CAROL, seen, containing="Changes were requested"))
    assert ":warning: Changes were requested on G-1" in why
    assert scalar(quorum, select(func.count()).select_from(GateSignoff)) == signed

    seen = len(publishes(fake_slack, CAROL))
    home_click(slack, stale, "risk_reassess", str(risk_id), CAROL)
    why = text_of(next_home(fake_slack, CAROL, seen, containing="is closed"))
    assert ":warning: R-1 is closed, so it can no longer be changed." in why
    assert "Your open risks · 0" in why
    assert len(fake_slack.calls_to("views.open")) == opened  # no modal for a closed risk


def test_reassess_from_the_home_opens_the_modal(slack: SlackSender, quorum: QuorumServer,
                                                fake_slack: FakeSlack) -> None:
    seed_records(quorum)
    view = open_home(slack, fake_slack, BOB)
    opened = len(fake_slack.calls_to("views.open"))
    home_click(slack, view, "risk_reassess", str(scalar(quorum, select(Risk.id))), BOB)
    modal = fake_slack.wait_for("views.open", count=opened + 1)[opened].response["view"]
    assert modal["callback_id"] == "risk_reassess_modal"


# ---------------------------------------------------------------------------- staying current


def test_changes_re_publish_the_homes_of_the_people_they_affect(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    give_roles(slack, {BOB: "ds", CAROL: "eng", DAVE: "pm"})
    open_home(slack, fake_slack, BOB)

    seen = len(publishes(fake_slack, BOB))
    request_gate(slack, fake_slack)  # a gate for Bob's role
    assert "*G-1*" in text_of(next_home(fake_slack, BOB, seen, containing="G-1"))
    assert publishes(fake_slack, CAROL) == []  # she never opened her Home: nothing to refresh

    seen = len(publishes(fake_slack, BOB))
    with quorum.runtime.db.session() as session:  # a risk assigned to Bob
        project = project_for_channel(session, TEAM, CHANNEL, "churn-model")
        public(project)
        risks.log_risk(session, project, ALICE, risks.RiskDraft(title="PII in logs", owner=BOB))
    assert "PII in logs" in text_of(next_home(fake_slack, BOB, seen, containing="PII"))

    seen = len(publishes(fake_slack, BOB))
    declared = slack.command("/incident", "declare sev1 Scores all zero", user=BOB)
    assert declared.status_code == 200
    after = text_of(next_home(fake_slack, BOB, seen, containing="Scores all zero"))
    assert "*you command it*" in after

    seen = len(publishes(fake_slack, BOB))
    resolved = slack.command("/incident", "resolve INC-1 Rolled back", user=BOB)
    assert resolved.status_code == 200
    after = text_of(next_home(fake_slack, BOB, seen, containing="Active incidents · 0"))
    assert "Scores all zero" not in after


def test_a_burst_of_changes_publishes_once(slack: SlackSender, quorum: QuorumServer,
                                           fake_slack: FakeSlack) -> None:
    open_home(slack, fake_slack, BOB)
    seen = len(publishes(fake_slack, BOB))
    quorum.worker.stop()  # hold deliveries while the burst is queued; deliver by hand after
    worker = OutboxWorker(quorum.runtime.db, web_client(quorum.runtime, timeout=3))
    with quorum.runtime.db.session() as session:
        project = project_for_channel(session, TEAM, CHANNEL, "churn-model")
        public(project)
        for n in range(5):
            risks.log_risk(session, project, ALICE,
                           risks.RiskDraft(title=f"Burst risk {n}", owner=BOB))
    for n in range(3):
        with quorum.runtime.db.session() as session:
            project = project_for_channel(session, TEAM, CHANNEL, "churn-model")
            public(project)
            risks.log_risk(session, project, ALICE,
                           risks.RiskDraft(title=f"Later risk {n}", owner=BOB))
    while worker.run_once():
        pass
    bob = publishes(fake_slack, BOB)[seen:]
    assert len(bob) == 1
    assert "Your open risks · 8" in text_of(bob[0].args["view"])


# ---------------------------------------------------------------------------- limits


def test_hundreds_of_items_per_section_stay_within_slacks_limits(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    many, now = 240, utcnow()
    with quorum.runtime.db.session() as session:
        project = project_for_channel(session, TEAM, CHANNEL, "churn-model")
        public(project)
        session.add(RoleAssignment(project_id=project.id, user_id=BOB, role="ds",
                                   assigned_by=ALICE))
        long = "Ünïcode <!channel> & " * 7
        for n in range(1, many + 1):
            session.add_all([
                Gate(team_id=TEAM, number=n, project=project, milestone=f"m{n}",
                     required_roles=["ds", "eng"], criteria=[], status=GateStatus.OPEN,
                     requested_by=ALICE, created_at=now, updated_at=now),
                Risk(team_id=TEAM, number=n, project=project, title=long[:150], likelihood=5,
                     impact=5, score=25, band="critical", owner=BOB, status="open",
                     next_review=date.today() - timedelta(days=n % 3), created_by=ALICE,
                     created_at=now, updated_at=now),
                Hypothesis(team_id=TEAM, number=n, project=project, statement=long[:300],
                           owner=BOB, status="running" if n % 2 else "proposed",
                           created_by=BOB, created_at=now, updated_at=now),
                Incident(team_id=TEAM, number=n, project=project, title=long[:150],
                         severity="sev1", status="declared", commander=BOB,
                         created_by=ALICE, started_at=now, last_update_at=now, created_at=now,
                         updated_at=now),
                Decision(team_id=TEAM, number=n, project=project, title=long[:150],
                         created_by=BOB, created_at=now, updated_at=now),
            ])
        for n in range(150):  # and 150 more projects, for the filter
            other = project_for_channel(session, TEAM, f"C0MANY{n:04d}", f"project-{n}")
            public(other)
            session.add(RoleAssignment(project_id=other.id, user_id=BOB, role="pm",
                                       assigned_by=ALICE))

    view = open_home(slack, fake_slack, BOB)  # the fake validates it as Slack would
    assert len(view["blocks"]) < 100
    shown = text_of(view)
    assert "more blocks not shown" not in shown and "<!channel>" not in json.dumps(view)
    for header, command in (("Sign-offs waiting for you", "/gate list"),
                            ("Your open risks", "/risk list"),
                            ("Your hypotheses", "/hypothesis list"),
                            ("Active incidents", "/incident list"),
                            ("Recent decisions", "/decision list")):
        assert f"{header} · {many}" in shown, header
        assert f"`{command}` in each project's channel lists them all" in shown
    assert f"…and {many - 6} more" in shown
    select_menu = next(e for b in view["blocks"] if b["type"] == "actions"
                       for e in b["elements"] if e["action_id"] == "home_project")
    assert len(select_menu["options"]) == 100


# ---------------------------------------------------------------------------- the filter


def test_the_project_filter_narrows_every_section_and_sticks(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    give_roles(slack, {BOB: "ds", CAROL: "eng", DAVE: "pm"})
    give_roles(slack, {BOB: "ds", CAROL: "eng", DAVE: "pm"}, channel=OTHER)
    request_gate(slack, fake_slack)
    request_gate(slack, fake_slack, "launch for fraud v9", channel=OTHER)
    seed_records(quorum)
    seed_records(quorum, channel=OTHER, name="fraud-model")

    view = open_home(slack, fake_slack, BOB)
    shown = text_of(view)
    assert "Sign-offs waiting for you · 2" in shown and "Your open risks · 2" in shown
    menu = next(e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]
                if e["action_id"] == "home_project")
    with quorum.runtime.db.session() as session:
        fraud_id = project_for_channel(session, TEAM, OTHER).id
    fraud = next(o for o in menu["options"] if o["value"] == str(fraud_id))

    seen = len(publishes(fake_slack, BOB))
    home_click(slack, view, "home_project", None, BOB, option=fraud)
    narrowed = text_of(next_home(fake_slack, BOB, seen))
    assert "Sign-offs waiting for you · 1" in narrowed and "fraud v9" in narrowed
    assert "Your open risks · 1" in narrowed and "Label drift in fraud-model" in narrowed
    assert "Label drift in churn-model" not in narrowed and "churn v3" not in narrowed
    with quorum.runtime.db.session() as session:
        assert session.get(HomeTab, (TEAM, BOB)).project_id == int(fraud["value"])

    # A change elsewhere re-publishes the Home with the filter kept.
    seen = len(publishes(fake_slack, BOB))
    with quorum.runtime.db.session() as session:
        project = project_for_channel(session, TEAM, CHANNEL, "churn-model")
        public(project)
        risks.log_risk(session, project, ALICE, risks.RiskDraft(title="Churn only", owner=BOB))
    kept = text_of(next_home(fake_slack, BOB, seen))
    assert "Your open risks · 1" in kept and "Churn only" not in kept

    # A project that is not theirs is refused at the top; back to all projects works.
    seen = len(publishes(fake_slack, BOB))
    home_click(slack, view, "home_project", None, BOB,
               option={"text": {"type": "plain_text", "text": "x"}, "value": "999999"})
    assert ":warning: That project is not one of yours" in text_of(
        next_home(fake_slack, BOB, seen))
    seen = len(publishes(fake_slack, BOB))
    everything = next(o for o in menu["options"] if o["value"] == "all")
    home_click(slack, view, "home_project", None, BOB, option=everything)
    assert "Your open risks · 3" in text_of(next_home(fake_slack, BOB, seen))
