"""Idempotency end to end: every button clicked twice (one after the other and at the same
moment), every modal submitted twice, every event delivered again by Slack: one effect each.

The listeners are read off the Bolt app the handlers build, so a new button, modal, event or
shortcut without a case in the tables below fails `test_every_listener_has_an_idempotency_case`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from bot import slack_payloads as payloads
from bot.models import (
    AuditEvent,
    Decision,
    Gate,
    HomeTab,
    Hypothesis,
    Incident,
    OutboxMessage,
    OutboxStatus,
    ProcessedRequest,
    RetroItem,
    RetroVote,
    Risk,
    RitualOccurrence,
    RitualUpdate,
    utcnow,
)
from bot.render import slack_unescape
from bot.services.projects import project_for_channel
from bot.services.rituals import run_now
from support.fake_slack import Call, FakeSlack
from support.listeners import registered_listeners
from support.quorum_server import QuorumServer
from support.slack_requests import TEAM, SlackSender
from support.waiting import eventually

CHANNEL = "C0CHURN01"
ALICE, BOB, CAROL, DAVE, FRANK = ("U0ALICE01", "U0BOB0001", "U0CAROL01", "U0DAVE001",
                                  "U0FRANK01")

# Buttons that change a record: a second click changes nothing and gets an ephemeral answer.
CHANGING_BUTTONS = {"gate_approve", "gate_approve_as_*", "hypothesis_start", "incident_ack",
                    "incident_mitigate", "retro_item_done", "retro_vote", "retro_unvote"}
# Buttons that open a form, page a list or filter the Home: no record changes, ever.
VIEWING_BUTTONS = {
    "decision_add_details", "decision_list_page", "gate_request_changes",
    "hypothesis_add_details", "hypothesis_conclude", "hypothesis_reopen",
    "incident_add_update", "incident_resolve", "incident_add_risk", "incident_log_decision",
    "risk_reassess", "risk_add_details", "risk_close", "risk_list_page", "ritual_add_update",
    "retro_went_well", "retro_to_improve", "retro_action", "home_project",
    "ritual_agenda_add", "ritual_outcome",
}
# Changing buttons whose double click (one after the other and at the same moment) is tested
# where their peer runs: a silence needs a real Alertmanager, a follow-up's Done is on the Home.
CLICKED_TWICE_ELSEWHERE = {
    "incident_silence_1h": "tests/integration/test_alertmanager_silences.py",
    "incident_silence_4h": "tests/integration/test_alertmanager_silences.py",
    "incident_silence_resolved": "tests/integration/test_alertmanager_silences.py",
    "incident_follow_up_done": "tests/handlers/test_incident_commands.py",
}
MODALS = {"decision_modal", "hypothesis_modal", "hypothesis_conclude_modal",
          "gate_request_modal", "gate_changes_modal", "risk_modal", "risk_reassess_modal",
          "risk_close_modal", "incident_declare_modal", "incident_update_modal",
          "incident_resolve_modal", "ritual_update_modal", "retro_item_modal",
          "ritual_questions_modal", "ritual_agenda_modal", "ritual_outcome_modal"}
EVENTS = {"app_home_opened", "message", "user_change"}
SHORTCUTS = {"log_decision"}


# ---------------------------------------------------------------------------- what is registered


def test_every_listener_has_an_idempotency_case(make_settings: Callable[..., Any]) -> None:
    seen = registered_listeners(make_settings)
    assert seen.actions == CHANGING_BUTTONS | VIEWING_BUTTONS | set(CLICKED_TWICE_ELSEWHERE), \
        "a button without a double-click case here: add it to CHANGING_ or VIEWING_BUTTONS " \
        "and to SETUPS"
    assert seen.views == MODALS, "a modal without a double-submit case: add it to MODAL_CASES"
    assert seen.events == EVENTS and seen.shortcuts == SHORTCUTS
    assert set(SETUPS) == CHANGING_BUTTONS | VIEWING_BUTTONS
    assert set(MODAL_CASES) == MODALS


# ---------------------------------------------------------------------------- helpers


def text_of(payload: dict[str, Any]) -> str:
    return slack_unescape(payload.get("text", "") + json.dumps(payload.get("blocks", []),
                                                               ensure_ascii=False))


def scalar(quorum: QuorumServer, query: Any) -> Any:
    with quorum.runtime.db.session() as session:
        return session.scalar(query)


def count(quorum: QuorumServer, model: type) -> int:
    return scalar(quorum, select(func.count()).select_from(model)) or 0


def last_id(quorum: QuorumServer, model: Any) -> int:
    return int(scalar(quorum, select(func.max(model.id))))


def wait_delivered(quorum: QuorumServer) -> None:
    def drained() -> bool:
        return not scalar(quorum, select(func.count()).select_from(OutboxMessage)
                          .where(OutboxMessage.status.in_(("pending", "sending"))))
    eventually(drained)


def reached_slack_once(quorum: QuorumServer, fake: FakeSlack) -> None:
    """Everything queued reached the fake Slack, each message and each edit exactly once (so
    comparing the outbox between two moments compares what people saw in Slack). An edit
    overtaken by a newer edit of the same message is superseded, never sent: it does not count."""
    wait_delivered(quorum)
    with quorum.runtime.db.session() as session:
        for method in ("chat.postMessage", "chat.update"):
            sent = session.scalar(select(func.count()).select_from(OutboxMessage)
                                  .where(OutboxMessage.method == method,
                                         OutboxMessage.status == OutboxStatus.SENT))
            assert len(fake.calls_to(method)) == sent, (method, fake.calls_to(method))


@dataclass(frozen=True)
class State:
    """What a click or a submission may have changed: records, audit, and the messages, edits
    and Home publications queued for Slack (the outbox: the only way to post)."""

    records: tuple[int, ...]
    audit: tuple[str, ...]
    outbox: tuple[tuple[str, str | None], ...]


def state(quorum: QuorumServer, fake: FakeSlack) -> State:
    with quorum.runtime.db.session() as session:
        records = tuple(session.scalar(select(func.count()).select_from(m)) or 0 for m in (
            Decision, Hypothesis, Gate, Risk, Incident, RitualUpdate, RetroItem))
        audit = tuple(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
        outbox = tuple((row.method, row.message_key) for row in
                       session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    return State(records, audit, outbox)


def changes(before: State, after: State) -> dict[str, Any]:
    """What happened between two states (records as deltas)."""
    return {"records": tuple(b - a for a, b in zip(before.records, after.records, strict=True)),
            "audit": after.audit[len(before.audit):],
            "outbox": after.outbox[len(before.outbox):]}


def race(actions: list[Callable[[], Any]]) -> list[Any]:
    """Run the actions at the same moment, each on its own thread."""
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = actions[index]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    return results


def at_once(quorum: QuorumServer, fake: FakeSlack, send: Callable[[SlackSender], Any],
            copies: int = 2) -> list[Any]:
    """Send the same request `copies` times at the same moment, each on its own connection."""
    senders = [SlackSender(quorum.url, fake.response_url()) for _ in range(copies)]
    try:
        return race([lambda s=s: send(s) for s in senders])
    finally:
        for sender in senders:
            sender.close()


@dataclass
class World:
    """One running Quorum with a few people holding roles, and ways to make records."""

    slack: SlackSender
    quorum: QuorumServer
    fake: FakeSlack
    made: int = 0
    rituals: dict[str, int] = field(default_factory=dict)
    reviews: int = 0
    roles_given: bool = False

    def command(self, command: str, text: str = "", user: str = ALICE) -> dict[str, Any]:
        answer = self.slack.command(command, text, user=user)
        assert answer.status_code == 200, answer.text
        return answer.json() if answer.content else {}

    def fresh(self, word: str) -> str:
        self.made += 1
        return f"{word} {self.made}"

    def decision(self) -> int:
        self.command("/decision", self.fresh("Use LightGBM"))
        return last_id(self.quorum, Decision)

    def hypothesis(self, status: str = "proposed") -> int:
        self.command("/hypothesis", self.fresh("Tenure lifts recall"))
        hypothesis_id = last_id(self.quorum, Hypothesis)
        ref = "H-{}".format(scalar(self.quorum, select(Hypothesis.number)
                                   .where(Hypothesis.id == hypothesis_id)))
        if status in ("running", "concluded"):
            self.command("/hypothesis", f"start {ref}")
        if status == "concluded":
            self.command("/hypothesis", f"conclude {ref} supported AUC up 2 points")
        return hypothesis_id

    def gate(self) -> int:
        if not self.roles_given:  # Bob is ds, Carol eng, Dave pm; Frank holds eng and pm
            for user, role in ((BOB, "ds"), (CAROL, "eng"), (DAVE, "pm"), (FRANK, "eng"),
                               (FRANK, "pm")):
                self.command("/quorum", f"role add <@{user}> {role}")
            self.roles_given = True
        self.command("/gate", f"request {self.fresh('launch').replace(' ', '-')}")
        return last_id(self.quorum, Gate)

    def risk(self) -> int:
        self.command("/risk", self.fresh("Label leakage"))
        return last_id(self.quorum, Risk)

    def incident(self, resolved: bool = False) -> int:
        self.command("/incident", f"declare sev2 {self.fresh('Drift on churn')}")
        incident_id = last_id(self.quorum, Incident)
        if resolved:
            number = scalar(self.quorum, select(Incident.number).where(Incident.id == incident_id))
            self.command("/incident", f"resolve INC-{number} rolled back")
        return incident_id

    def ritual(self, kind: str) -> int:
        """The standup or retro held now (once: a second one in the same second is refused)."""
        if kind not in self.rituals:
            self.command(f"/{kind}", "now")
            self.rituals[kind] = int(scalar(self.quorum, select(func.max(RitualOccurrence.id))
                                            .where(RitualOccurrence.kind == kind)))
        return self.rituals[kind]

    def retro_item(self) -> int:
        occurrence = self.ritual("retro")
        view = self.open_form(lambda: self.slack.click("retro_action", str(occurrence)))
        due = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()
        answer = self.slack.submit(view, {"text": self.fresh("Add a leakage check"),
                                          "owner": BOB, "due_date": due})
        assert not answer.content.strip(b"{}"), answer.text
        return last_id(self.quorum, RetroItem)

    def retro_vote(self, voted: bool) -> int:
        """A fresh item of the retro, with Alice's vote on it or not."""
        occurrence = self.ritual("retro")
        view = self.open_form(lambda: self.slack.click("retro_to_improve", str(occurrence)))
        answer = self.slack.submit(view, {"text": self.fresh("Flaky CI")})
        assert not answer.content.strip(b"{}"), answer.text
        item = last_id(self.quorum, RetroItem)
        if voted:
            self.slack.click("retro_vote", str(item))
            eventually(lambda: count(self.quorum, RetroVote) >= 1)
        return item

    def review(self) -> int:
        """A fresh design review (each its own, one second apart)."""
        self.reviews += 1
        with self.quorum.runtime.db.session() as session:
            project = project_for_channel(session, TEAM, CHANNEL, "churn-model")
            return run_now(session, project, ALICE, "review",
                           utcnow() + timedelta(seconds=self.reviews)).id

    def open_form(self, click: Callable[[], Any]) -> dict[str, Any]:
        """The modal a click or command opens, as Slack stored it (with its view id)."""
        seen = len(self.fake.calls_to("views.open"))
        click()
        return self.fake.wait_for("views.open", count=seen + 1)[seen].response["view"]


@pytest.fixture
def world(slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> World:
    return World(slack, quorum, fake_slack)


def feature_of(name: str) -> str:
    """The handler module a button or modal belongs to, by its id's first word."""
    prefix = name.split("_")[0]
    return {"retro": "ritual"}.get(prefix, prefix)


def features(names: set[str]) -> list[str]:
    return sorted({feature_of(name) for name in names})


def of_feature(names: set[str], feature: str) -> list[str]:
    return sorted(name for name in names if feature_of(name) == feature)


# ---------------------------------------------------------------------------- buttons


@dataclass
class Click:
    """One button press: what to send, and the Slack call that shows the listener answered."""

    send: Callable[[SlackSender], Any]
    answered_by: str  # "response_url", "views.open" or "views.publish"
    answers: int = 2  # how many of those two clicks make


def button(action_id: str, value: Any, user: str = ALICE, **kwargs: Any) -> Click:
    return Click(lambda s: s.click(action_id, str(value), user=user, **kwargs), "response_url")


def opens_form(action_id: str, value: Any, user: str = ALICE) -> Click:
    return Click(lambda s: s.click(action_id, str(value), user=user), "views.open")


def home_select(value: str) -> Click:
    def send(sender: SlackSender) -> Any:
        action = {"action_id": "home_project", "type": "static_select",
                  "selected_option": {"value": value,
                                      "text": {"type": "plain_text", "text": "All projects"}}}
        payload = payloads.block_actions(action, team=sender.team, user=ALICE, channel=None,
                                         channel_name=None, response_url=None,
                                         view={"id": "VHOME", "type": "home"})
        return sender.interaction(payload)
    # The Home, published twice in a row, is queued once (the outbox coalesces it per person).
    return Click(send, "views.publish", answers=1)


def _approve_as(world: World) -> Click:
    gate_id = world.gate()
    return button("gate_approve_as_2", f"{gate_id}:pm", FRANK, ephemeral=True)


def _home(world: World) -> Click:
    world.slack.event({"type": "app_home_opened", "user": ALICE, "tab": "home",
                       "channel": "D0HOME001"})
    world.fake.wait_for("views.publish")
    return home_select("all")


SETUPS: dict[str, Callable[[World], Click]] = {
    # changing
    "gate_approve": lambda w: button("gate_approve", w.gate(), BOB),
    "gate_approve_as_*": _approve_as,
    "hypothesis_start": lambda w: button("hypothesis_start", w.hypothesis()),
    "incident_ack": lambda w: button("incident_ack", w.incident()),
    "incident_mitigate": lambda w: button("incident_mitigate", w.incident()),
    "retro_item_done": lambda w: button("retro_item_done", w.retro_item(), BOB),
    # viewing
    "decision_add_details": lambda w: opens_form("decision_add_details", w.decision()),
    "decision_list_page": lambda w: button("decision_list_page", 1),
    "gate_request_changes": lambda w: opens_form("gate_request_changes", w.gate(), BOB),
    "hypothesis_add_details": lambda w: opens_form("hypothesis_add_details", w.hypothesis()),
    "hypothesis_conclude": lambda w: opens_form("hypothesis_conclude", w.hypothesis("running")),
    "hypothesis_reopen": lambda w: opens_form("hypothesis_reopen", w.hypothesis("concluded")),
    "incident_add_update": lambda w: opens_form("incident_add_update", w.incident()),
    "incident_resolve": lambda w: opens_form("incident_resolve", w.incident()),
    "incident_add_risk": lambda w: opens_form("incident_add_risk", w.incident(resolved=True)),
    "incident_log_decision": lambda w: opens_form("incident_log_decision",
                                                  w.incident(resolved=True)),
    "risk_reassess": lambda w: opens_form("risk_reassess", w.risk()),
    "risk_add_details": lambda w: opens_form("risk_add_details", w.risk()),
    "risk_close": lambda w: opens_form("risk_close", w.risk()),
    "risk_list_page": lambda w: button("risk_list_page", 1),
    "ritual_add_update": lambda w: opens_form("ritual_add_update", w.ritual("standup")),
    "retro_went_well": lambda w: opens_form("retro_went_well", w.ritual("retro")),
    "retro_to_improve": lambda w: opens_form("retro_to_improve", w.ritual("retro")),
    "retro_action": lambda w: opens_form("retro_action", w.ritual("retro")),
    "home_project": _home,
    "retro_vote": lambda w: button("retro_vote", w.retro_vote(False)),
    "retro_unvote": lambda w: button("retro_unvote", w.retro_vote(True)),
    "ritual_agenda_add": lambda w: opens_form("ritual_agenda_add", w.review()),
    "ritual_outcome": lambda w: opens_form("ritual_outcome", w.review()),
}

# What the first click on a changing button writes to the audit log, and the second says.
FIRST_CLICK = {"gate_approve": "gate.approved", "gate_approve_as_*": "gate.approved",
               "hypothesis_start": "hypothesis.started", "incident_ack": "incident.acknowledged",
               "incident_mitigate": "incident.mitigated",
               "retro_item_done": "retro.action_done", "retro_vote": "retro.vote_cast",
               "retro_unvote": "retro.vote_taken"}
SECOND_CLICK = {"gate_approve": "already approved", "gate_approve_as_*": "already approved",
                "hypothesis_start": "is already running",
                "incident_ack": "was already acknowledged",
                "incident_mitigate": "is already marked as mitigated",
                "retro_item_done": "is already done", "retro_vote": "already voted for",
                "retro_unvote": "no vote on"}


def answers(fake: FakeSlack, method: str, since: int, count_: int) -> list[Call]:
    return fake.wait_for(method, count=since + count_)[since:]


def double_click(world: World, action_id: str, simultaneous: bool) -> dict[str, Any]:
    """Click a changing button twice on a fresh record: one change, one "already" answer."""
    slack, quorum, fake = world.slack, world.quorum, world.fake
    click = SETUPS[action_id](world)
    before = state(quorum, fake)
    seen = len(fake.calls_to("response_url"))

    def said() -> list[str]:
        return [text_of(c.args) for c in fake.calls_to("response_url")[seen:]]

    first = None
    if simultaneous:
        replies = at_once(quorum, fake, click.send)
    else:
        replies = [click.send(slack)]
        eventually(lambda: FIRST_CLICK[action_id] in changes(before, state(quorum, fake))["audit"])
        first = state(quorum, fake)
        replies.append(click.send(slack))
    assert [r.status_code for r in replies] == [200, 200], action_id
    # The second click's answer comes once the first click's transaction is over.
    def answered_again() -> None:
        assert any(SECOND_CLICK[action_id] in text for text in said()), (action_id, said())

    eventually(lambda: answered_again() is None)
    again = [c.args for c in fake.calls_to("response_url")[seen:]
             if SECOND_CLICK[action_id] in text_of(c.args)]
    assert len(again) == 1, (action_id, simultaneous, said())
    assert again[0]["response_type"] == "ephemeral" and not again[0]["replace_original"]
    assert "went wrong" not in " ".join(said()), said()
    after = state(quorum, fake)
    if first is not None:  # the second click queued and audited nothing
        second = changes(first, after)
        assert second["audit"] == second["outbox"] == (), (action_id, second)
    done = changes(before, after)
    assert done["audit"] == (FIRST_CLICK[action_id],), (action_id, simultaneous, done)
    # One card edit at most (a retro item is edited in place through its response_url).
    assert [m for m, _ in done["outbox"]].count("chat.update") <= 1, (action_id, done)
    return done


@pytest.mark.parametrize("feature", features(CHANGING_BUTTONS))
def test_changing_buttons_clicked_twice_change_once_and_say_so(world: World,
                                                               feature: str) -> None:
    """One click after the other, then two at the same moment from two threads: the same
    effect as one click (one audit event, one card edit, the same messages)."""
    for action_id in of_feature(CHANGING_BUTTONS, feature):
        one_by_one = double_click(world, action_id, simultaneous=False)
        together = double_click(world, action_id, simultaneous=True)
        assert [m for m, _ in together["outbox"]] == [m for m, _ in one_by_one["outbox"]], \
            (action_id, one_by_one, together)
    reached_slack_once(world.quorum, world.fake)


@pytest.mark.parametrize("feature", features(VIEWING_BUTTONS))
def test_viewing_buttons_clicked_twice_change_nothing(world: World, feature: str) -> None:
    """A form opens (or a list or the Home is shown) per click; no record, audit or post."""
    slack, quorum, fake = world.slack, world.quorum, world.fake
    for action_id in of_feature(VIEWING_BUTTONS, feature):
        click = SETUPS[action_id](world)
        before = state(quorum, fake)
        seen = len(fake.calls_to(click.answered_by))
        for sender_answer in (click.send(slack), click.send(slack)):
            assert sender_answer.status_code == 200, action_id
        answered = answers(fake, click.answered_by, seen, click.answers)
        assert len(answered) >= click.answers, action_id
        if click.answered_by == "response_url":
            assert all("went wrong" not in text_of(c.args) for c in answered), action_id
        done = changes(before, state(quorum, fake))
        assert done["records"] == (0,) * 7 and done["audit"] == (), (action_id, done)
        assert {m for m, _ in done["outbox"]} <= {"views.publish"}, (action_id, done)
    reached_slack_once(quorum, fake)
    # The project filter was set to the same value twice: the Home shows all projects.
    assert scalar(quorum, select(HomeTab.project_id).where(HomeTab.user_id == ALICE)) is None


def test_the_log_as_decision_shortcut_twice_opens_two_forms_and_logs_nothing(
        world: World) -> None:
    before = state(world.quorum, world.fake)
    message = {"ts": "1700000000.000200", "text": "Let's drop the v2 features", "user": BOB}
    for _ in range(2):
        assert world.slack.message_shortcut("log_decision", message).status_code == 200
    forms = world.fake.wait_for("views.open", count=2)
    assert [f.args["view"]["callback_id"] for f in forms] == ["decision_modal"] * 2
    assert changes(before, state(world.quorum, world.fake))["records"] == (0,) * 7


# ---------------------------------------------------------------------------- modals


@dataclass
class ModalCase:
    open: Callable[[World], dict[str, Any]]  # opens the modal, returns it as Slack stored it
    values: dict[str, Any] | Callable[[World], dict[str, Any]]
    users: tuple[str, str] = (ALICE, ALICE)  # who submits, the first time and the second

    def filled(self, world: World) -> dict[str, Any]:
        return self.values(world) if callable(self.values) else self.values


def _form(command: str, text: str = "") -> Callable[[World], dict[str, Any]]:
    return lambda w: w.open_form(lambda: w.slack.command(command, text))


def _form_of(action_id: str, make: Callable[[World], int],
             user: str = ALICE) -> Callable[[World], dict[str, Any]]:
    def open_it(w: World) -> dict[str, Any]:
        record_id = make(w)
        return w.open_form(lambda: w.slack.click(action_id, str(record_id), user=user))
    return open_it


MODAL_CASES: dict[str, ModalCase] = {
    "decision_modal": ModalCase(_form("/decision"), {"title": "Adopt a feature store"}),
    "hypothesis_modal": ModalCase(_form("/hypothesis"), {"statement": "Tenure lifts recall"}),
    "hypothesis_conclude_modal": ModalCase(
        _form_of("hypothesis_conclude", lambda w: w.hypothesis("running")),
        {"outcome": "supported", "evidence": "AUC up 2 points"}),
    "gate_request_modal": ModalCase(  # a milestone with an open gate is refused: a new one
        _form("/gate"), lambda w: {"milestone": w.fresh("evaluation").replace(" ", "-")}),
    "gate_changes_modal": ModalCase(_form_of("gate_request_changes", World.gate, BOB),
                                    {"reason": "The eval set leaks"}, (BOB, BOB)),
    "risk_modal": ModalCase(_form("/risk"), {"title": "Label leakage", "likelihood": "3",
                                             "impact": "4"}),
    "risk_reassess_modal": ModalCase(_form_of("risk_reassess", World.risk),
                                     {"likelihood": "5", "impact": "5", "note": "worse"}),
    "risk_close_modal": ModalCase(_form_of("risk_close", World.risk), {"reason": "Fixed"}),
    "incident_declare_modal": ModalCase(_form("/incident"), {"title": "Scores are all zero",
                                                             "severity": "sev2"}),
    "incident_update_modal": ModalCase(_form_of("incident_add_update", World.incident),
                                       {"update": "Rolled back to v6"}),
    "incident_resolve_modal": ModalCase(_form_of("incident_resolve", World.incident),
                                        {"summary": "Rolled back", "root_cause": "Bad feature"}),
    "ritual_update_modal": ModalCase(_form_of("ritual_add_update",
                                              lambda w: w.ritual("standup")),
                                     {"today": "Ship the retrain"}, (BOB, CAROL)),
    "retro_item_modal": ModalCase(_form_of("retro_went_well", lambda w: w.ritual("retro")),
                                  {"text": "Fast eval loop"}),
    "ritual_questions_modal": ModalCase(
        # The standup of the other cases is held first: it keeps the default questions.
        lambda w: (w.ritual("standup"), w.command("/standup", "schedule weekdays 09:30"),
                   w.open_form(lambda: w.slack.command("/standup", "questions")))[-1],
        {"question_1": "What did you ship?", "required_1": ["yes"]}),
    "ritual_agenda_modal": ModalCase(_form_of("ritual_agenda_add", World.review),
                                     {"text": "Latency budget"}),
    "ritual_outcome_modal": ModalCase(_form_of("ritual_outcome", World.review),
                                      {"outcome": "Approved", "decisions": "Adopt the budget"}),
}


def submit_twice(world: World, callback_id: str, case: ModalCase,
                 simultaneous: bool) -> dict[str, Any]:
    """Submit one freshly opened modal twice; what it changed."""
    slack, quorum, fake = world.slack, world.quorum, world.fake
    view = case.open(world)
    assert view["callback_id"] == callback_id and view["id"]
    values, user = case.filled(world), case.users[simultaneous]
    before = state(quorum, fake)
    if simultaneous:
        replies = at_once(quorum, fake, lambda s: s.submit(view, values, user=user))
    else:
        replies = [slack.submit(view, values, user=user)]
        once = changes(before, state(quorum, fake))
        replies.append(slack.submit(view, values, user=user))
        assert changes(before, state(quorum, fake)) == once, callback_id
    for reply in replies:  # the modal closes both times: no errors shown
        assert reply.status_code == 200 and not reply.content.strip(b"{}"), \
            (callback_id, reply.text)
    done = changes(before, state(quorum, fake))
    assert done["audit"], (callback_id, "the submission did nothing")
    return done


@pytest.mark.parametrize("feature", features(MODALS))
def test_modals_submitted_twice_save_once(world: World, feature: str) -> None:
    """The same modal (same view id) submitted again, then twice at the same moment, as a double
    press of Submit does: the records, audit and messages of one submission."""
    for callback_id in of_feature(MODALS, feature):
        case = MODAL_CASES[callback_id]
        effects = [submit_twice(world, callback_id, case, simultaneous=False),
                   submit_twice(world, callback_id, case, simultaneous=True)]
        assert effects[0]["records"] == effects[1]["records"], (callback_id, effects)
        assert len(effects[0]["audit"]) == len(effects[1]["audit"]), (callback_id, effects)
        assert len(effects[0]["outbox"]) == len(effects[1]["outbox"]), (callback_id, effects)
    reached_slack_once(world.quorum, world.fake)


def test_a_modal_refused_then_corrected_is_saved(world: World) -> None:
    """The view id is remembered only with what the submission saved: a submission answered with
    field errors leaves it free, so the corrected one (same view) goes through."""
    view = MODAL_CASES["decision_modal"].open(world)
    refused = world.slack.submit(view, {"title": ""}).json()
    assert refused["response_action"] == "errors"
    assert count(world.quorum, Decision) == 0 and count(world.quorum, ProcessedRequest) == 0
    saved = world.slack.submit(view, {"title": "Adopt a feature store"})
    assert not saved.content.strip(b"{}")
    assert count(world.quorum, Decision) == 1


# ---------------------------------------------------------------------------- events


def test_app_home_opened_retried_by_slack_publishes_once(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    event = {"type": "app_home_opened", "user": ALICE, "tab": "home", "channel": "D0HOME001"}
    assert slack.event(event, event_id="Ev0HOMEA01").status_code == 200
    fake_slack.wait_for("views.publish")
    wait_delivered(quorum)
    for retry in (1, 2):  # Slack's retries: same event_id, X-Slack-Retry-Num, http_timeout
        assert slack.event(event, event_id="Ev0HOMEA01", retry=retry).status_code == 200
    # The same three copies at the same moment (a retry arriving while the first still runs).
    bob = {**event, "user": BOB}
    at_once(quorum, fake_slack, lambda s: s.event(bob, event_id="Ev0HOMEB01"), copies=3)
    # A later, different event is the witness that the copies before it were handled.
    assert slack.event({**event, "user": CAROL}, event_id="Ev0HOMEC01").status_code == 200
    fake_slack.wait_for("views.publish", count=3)
    wait_delivered(quorum)
    published = [c.args["user_id"] for c in fake_slack.calls_to("views.publish")]
    assert sorted(published) == sorted([ALICE, BOB, CAROL]), published
    assert count(quorum, ProcessedRequest) == 3


def test_a_retry_of_an_event_quorum_never_handled_is_handled(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    """The first attempt may have failed while Quorum was down: its retry does the work."""
    event = {"type": "app_home_opened", "user": ALICE, "tab": "home", "channel": "D0HOME001"}
    assert slack.event(event, event_id="Ev0LOST001", retry=1).status_code == 200
    fake_slack.wait_for("views.publish")
    assert count(quorum, HomeTab) == 1


def test_a_standup_reply_retried_by_slack_counts_once(world: World) -> None:
    slack, quorum, fake = world.slack, world.quorum, world.fake
    occurrence = world.ritual("standup")
    wait_delivered(quorum)
    card = next(c for c in fake.calls_to("chat.postMessage")
                if "ritual_add_update" in json.dumps(c.args.get("blocks")))
    thread = card.response["ts"]
    before = state(quorum, fake)
    reply = {"type": "message", "channel": CHANNEL, "user": BOB, "ts": "1800000000.000500",
             "thread_ts": thread, "text": "today: retrain churn", "channel_type": "channel"}
    assert slack.event(reply, event_id="Ev0REPLY01").status_code == 200
    eventually(lambda: count(quorum, RitualUpdate) == 1)
    at_once(quorum, fake, lambda s: s.event(reply, event_id="Ev0REPLY01", retry=1))
    assert slack.event(reply, event_id="Ev0REPLY01", retry=2).status_code == 200
    # The witness: another person's reply, sent after the retries.
    witness = {**reply, "user": CAROL, "ts": "1800000000.000600", "text": "today: eval"}
    assert slack.event(witness, event_id="Ev0REPLY02").status_code == 200
    eventually(lambda: count(quorum, RitualUpdate) == 2)
    done = changes(before, state(quorum, fake))
    assert done["audit"] == ("standup.update_added",) * 2, done
    with quorum.runtime.db.session() as session:
        users = sorted(u.user_id for u in session.scalars(
            select(RitualUpdate).where(RitualUpdate.occurrence_id == occurrence)))
    assert users == [BOB, CAROL]
