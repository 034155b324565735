"""`/gate` and `/quorum` end to end: signed requests in, fake Slack and the database checked."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot.export import export
from bot.models import (
    AuditEvent,
    Gate,
    GateSignoff,
    OutboxMessage,
    RoleAssignment,
    SlackName,
    utcnow,
)
from bot.render import slack_unescape
from support.cli import run_quorum
from support.fake_slack import Call, FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import TEAM, SlackSender
from support.waiting import eventually

CHANNEL = "C0CHURN01"
OTHER_CHANNEL = "C0FRAUD01"
ALICE, BOB, CAROL, DAVE, EVE, FRANK = ("U0ALICE01", "U0BOB0001", "U0CAROL01", "U0DAVE001",
                                       "U0EVE0001", "U0FRANK01")
ROLES = {BOB: "ds", CAROL: "eng", DAVE: "pm"}


# ---------------------------------------------------------------------------- helpers


def gates(quorum: QuorumServer) -> list[Gate]:
    with quorum.runtime.db.session() as session:
        found = list(session.scalars(select(Gate).order_by(Gate.number)))
        for gate in found:
            _ = gate.signoffs, gate.project, gate.superseded_by, gate.supersedes
        return found


def count(quorum: QuorumServer, model: type) -> int:
    with quorum.runtime.db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def audit_actions(quorum: QuorumServer) -> list[str]:
    with quorum.runtime.db.session() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def text_of(payload: dict[str, Any]) -> str:
    """A message's text and blocks, with Slack's escaping undone."""
    return slack_unescape(payload.get("text", "") + json.dumps(payload.get("blocks", []),
                                                               ensure_ascii=False))


def reply_text(response: httpx.Response) -> str:
    return text_of(response.json())


def card_of(fake: FakeSlack, ref: str, channel: str = CHANNEL) -> dict[str, Any]:
    """The current state in Slack of the card whose header starts with `ref`."""
    for message in fake.messages.get(channel, {}).values():
        header = (message.get("blocks") or [{}])[0]
        if header.get("type") == "header" and header["text"]["text"].startswith(f"{ref} "):
            return message
    raise AssertionError(f"no card for {ref} in {channel}")


def buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {element["action_id"]: element for block in message.get("blocks", [])
            if block["type"] == "actions" for element in block["elements"]}


def thread_of(fake: FakeSlack, card: dict[str, Any], channel: str = CHANNEL) -> list[str]:
    return [text_of(m) for m in fake.messages.get(channel, {}).values()
            if m.get("thread_ts") == card["ts"]]


def top_level(fake: FakeSlack, channel: str = CHANNEL) -> list[dict[str, Any]]:
    return [m for m in fake.messages.get(channel, {}).values() if "thread_ts" not in m]


class Clicker:
    """Presses buttons and waits for the ephemeral answer the person gets."""

    def __init__(self, slack: SlackSender, fake: FakeSlack) -> None:
        self.slack, self.fake = slack, fake

    def responses(self) -> list[Call]:
        return self.fake.calls_to("response_url")

    def click(self, action_id: str, value: Any, user: str, **kwargs: Any) -> dict[str, Any]:
        seen = len(self.responses())
        answer = self.slack.click(action_id, str(value), user=user, **kwargs)
        assert answer.status_code == 200
        return self.fake.wait_for("response_url", count=seen + 1)[seen].args

    def approve(self, gate_id: int, user: str) -> dict[str, Any]:
        return self.click("gate_approve", gate_id, user)


@pytest.fixture
def clicker(slack: SlackSender, fake_slack: FakeSlack) -> Clicker:
    return Clicker(slack, fake_slack)


def give_roles(slack: SlackSender, roles: dict[str, str], channel: str = CHANNEL) -> None:
    for user, role in roles.items():
        answer = slack.command("/quorum", f"role add <@{user}|{user.lower()}> {role}",
                               channel=channel)
        assert "now holds" in reply_text(answer), reply_text(answer)


def request(slack: SlackSender, fake: FakeSlack, text: str = "launch for churn v3",
            user: str = ALICE, channel: str = CHANNEL) -> dict[str, Any]:
    """Request a gate and return its card as posted."""
    posted = len(fake.calls_to("chat.postMessage"))
    answer = slack.command("/gate", f"request {text}", user=user, channel=channel)
    assert "Requested" in reply_text(answer), reply_text(answer)
    return fake.wait_for("chat.postMessage", count=posted + 1)[posted].response["message"]


def wait_delivered(quorum: QuorumServer) -> None:
    """Until the outbox has nothing left to send."""
    def drained() -> bool:
        with quorum.runtime.db.session() as session:
            return not session.scalar(select(func.count()).select_from(OutboxMessage)
                                      .where(OutboxMessage.status.in_(("pending", "sending"))))
    eventually(drained)


@pytest.fixture
def team(slack: SlackSender) -> None:
    """Bob is ds, Carol eng, Dave pm in the churn channel's project."""
    give_roles(slack, ROLES)


# ---------------------------------------------------------------------------- roles


def test_roles_are_added_listed_removed_and_audited(slack: SlackSender,
                                                    quorum: QuorumServer) -> None:
    give_roles(slack, {BOB: "ds", CAROL: "ENG", FRANK: "safety-review"})
    listing = reply_text(slack.command("/quorum", "roles"))
    assert f"*ds*\\n<@{BOB}>" in listing and f"*eng*\\n<@{CAROL}>" in listing
    assert "safety-review" in listing and "No holder yet for the default gate role pm" in listing
    assert "Self-approval of gates: *off*" in listing

    again = reply_text(slack.command("/quorum", f"role add <@{BOB}> ds"))
    assert "already hold `ds`" in again
    removed = reply_text(slack.command("/quorum", f"role remove <@{FRANK}> safety-review"))
    assert f"<@{FRANK}> no longer holds *safety-review*" in removed
    missing = reply_text(slack.command("/quorum", f"role remove <@{FRANK}> safety-review"))
    assert "do not hold `safety-review`" in missing
    assert count(quorum, RoleAssignment) == 2
    assert audit_actions(quorum) == ["project.owner_added"] + ["role.added"] * 3 + ["role.removed"]


def test_role_commands_refuse_bad_input(slack: SlackSender, quorum: QuorumServer) -> None:
    cases = {
        "role add bob ds": "is not a person",
        f"role add <@{BOB}> d$": "is not a role name",
        f"role add <@{BOB}>": "<role> is missing",
        f"role promote <@{BOB}> ds": "Expected `add` or `remove` after `role`",
        "settings self-approval maybe": "must be one of on, off",
        "settings reminders 0": "from 1 to 168",
        "frobnicate": "is not a `/quorum` subcommand",
    }
    for text, expected in cases.items():
        answer = slack.command("/quorum", text)
        assert answer.json()["response_type"] == "ephemeral"
        assert expected in reply_text(answer), (text, reply_text(answer))
    assert count(quorum, RoleAssignment) == 0 and audit_actions(quorum) == []


def test_only_admins_change_roles_and_settings_when_admins_are_set(
        make_settings: Callable[..., Any], fake_slack: FakeSlack) -> None:
    server = QuorumServer(make_settings(QUORUM_ADMINS=f"{ALICE}, U0ADMIN02")).start()
    sender = SlackSender(server.url, fake_slack.response_url())
    try:
        refused = reply_text(sender.command("/quorum", f"role add <@{BOB}> ds", user=BOB))
        assert "Only Quorum admins" in refused
        refused = reply_text(sender.command("/quorum", "settings self-approval on", user=BOB))
        assert "Only Quorum admins" in refused
        assert "now holds" in reply_text(sender.command("/quorum", f"role add <@{BOB}> ds"))
        listing = reply_text(sender.command("/quorum", "roles", user=BOB))
        assert "only Quorum admins can change" in listing
        assert count(server, RoleAssignment) == 1
    finally:
        sender.close()
        server.stop()


def test_settings_change_is_audited_and_shown(slack: SlackSender, quorum: QuorumServer) -> None:
    assert "can now approve" in reply_text(slack.command("/quorum", "settings self-approval on"))
    assert "after 4 h" in reply_text(slack.command("/quorum", "settings reminders 4"))
    listing = reply_text(slack.command("/quorum", "roles"))
    assert "Self-approval of gates: *on*" in listing and "after *4 h*" in listing
    assert audit_actions(quorum) == ["project.owner_added"] + ["project.settings_changed"] * 2


def test_quorum_help_lists_every_command(slack: SlackSender) -> None:
    for text in ("help", ""):
        listing = reply_text(slack.command("/quorum", text))
        for usage in ("/quorum role add @user <role>", "/quorum role remove @user <role>",
                      "/quorum settings self-approval <on|off>", "/gate status G-n",
                      "/gate request <milestone> [for <model> v<version>] [promote to <alias>]",
                      "/gate withdraw G-n <reason>",
                      "/decision supersede D-n <title>"):
            assert usage in listing, usage


# ---------------------------------------------------------------------------- the happy path


def test_full_pass_by_three_roles(slack: SlackSender, quorum: QuorumServer,
                                  fake_slack: FakeSlack, clicker: Clicker, team: None) -> None:
    card = request(slack, fake_slack)
    assert card["blocks"][0]["text"]["text"] == "G-1 · launch gate · churn v3"
    text = text_of(card)
    assert "*ds* · waiting" in text and "*eng* · waiting" in text and "*pm* · waiting" in text
    assert f"<@{ALICE}>" in text and "no due date" in text
    [gate] = gates(quorum)
    assert set(buttons(card)) == {"gate_approve", "gate_request_changes"}
    assert buttons(card)["gate_approve"]["value"] == str(gate.id)

    answer = clicker.approve(gate.id, BOB)
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert "You approved *G-1* as *ds*" in text_of(answer)
    update = fake_slack.wait_for("chat.update")[0]
    assert update.args["ts"] == card["ts"]
    eventually(lambda: f"*ds* · approved by <@{BOB}>" in text_of(card_of(fake_slack, "G-1")))

    clicker.approve(gate.id, CAROL)
    final = clicker.approve(gate.id, DAVE)
    assert "the gate passed" in text_of(final)
    wait_delivered(quorum)

    current = card_of(fake_slack, "G-1")
    assert current["ts"] == card["ts"] and "passed" in text_of(current)
    assert buttons(current) == {}
    for user in (BOB, CAROL, DAVE):
        assert f"approved by <@{user}>" in text_of(current)
    [announcement] = thread_of(fake_slack, card)
    assert "*G-1* passed" in announcement
    assert f"<@{BOB}> (ds), <@{CAROL}> (eng), <@{DAVE}> (pm)" in announcement
    channel_posts = [text_of(m) for m in top_level(fake_slack)]
    assert any("*G-1* passed" in post for post in channel_posts)
    assert len(fake_slack.calls_to("chat.postMessage")) == 3  # card, thread, channel

    [gate] = gates(quorum)
    assert gate.status == "passed" and gate.passed_at is not None
    assert [(s.role, s.user_id, s.decision) for s in gate.signoffs] == [
        ("ds", BOB, "approve"), ("eng", CAROL, "approve"), ("pm", DAVE, "approve")]
    assert audit_actions(quorum)[-5:] == ["gate.requested", "gate.approved", "gate.approved",
                                          "gate.approved", "gate.passed"]

    late = clicker.approve(gate.id, BOB)
    assert "already passed" in text_of(late)
    assert count(quorum, GateSignoff) == 3


def test_list_and_status_show_the_history(slack: SlackSender, quorum: QuorumServer,
                                          fake_slack: FakeSlack, clicker: Clicker,
                                          team: None) -> None:
    request(slack, fake_slack)
    request(slack, fake_slack, "evaluation for churn v2 roles ds")
    first = gates(quorum)[1]
    clicker.approve(first.id, BOB)  # G-2 needs only ds: it passes
    request(slack, fake_slack, "scoping roles pm")

    listing = reply_text(slack.command("/gate", "list"))
    assert listing.index("G-3") < listing.index("G-1") < listing.index("G-2")
    assert "0 of 3 approved" in listing and "1 of 1 approved" in listing

    status = reply_text(slack.command("/gate", "status g-2"))
    assert "evaluation gate · churn v2" in status and "History" in status
    assert f"approved by <@{BOB}> as *ds*" in status and ":tada: passed" in status
    assert f"requested by <@{ALICE}>" in status


# ---------------------------------------------------------------------------- rejection


def test_request_changes_needs_a_reason_then_a_fresh_request_supersedes(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack, clicker: Clicker,
        team: None) -> None:
    card = request(slack, fake_slack, "launch for churn v3")
    [gate] = gates(quorum)
    clicker.approve(gate.id, BOB)

    slack.click("gate_request_changes", str(gate.id), user=CAROL)
    view = fake_slack.wait_for("views.open")[0].args["view"]
    assert view["callback_id"] == "gate_changes_modal"
    assert "Signing as *eng*" in text_of(view)
    empty = slack.submit(view, {"reason": "   "}, user=CAROL).json()
    assert empty["response_action"] == "errors" and "reason" in empty["errors"]
    assert gates(quorum)[0].status == "open"

    answer = slack.submit(view, {"reason": "Holdout overlaps <!channel> training"}, user=CAROL)
    assert answer.status_code == 200 and not answer.content.strip(b"{}")
    wait_delivered(quorum)
    [gate] = gates(quorum)
    assert gate.status == "changes_requested"
    current = text_of(card_of(fake_slack, "G-1"))
    assert f"*eng* · changes requested by <@{CAROL}>" in current
    assert "Holdout overlaps <!channel> training" in current  # shown as typed, escaped in Slack
    assert "<!channel>" not in json.dumps(card_of(fake_slack, "G-1")["blocks"])
    assert buttons(card_of(fake_slack, "G-1")) == {}
    [notice] = thread_of(fake_slack, card)
    assert notice.startswith("Changes requested on G-1") and f"<@{ALICE}>" in notice

    refused = clicker.approve(gate.id, DAVE)
    assert "Changes were requested on G-1" in text_of(refused)

    request(slack, fake_slack, "launch for churn v3")
    wait_delivered(quorum)
    old, new = gates(quorum)
    assert old.status == "superseded" and new.supersedes_id == old.id and new.status == "open"
    assert "Superseded by *G-2*" in text_of(card_of(fake_slack, "G-1"))
    assert "supersedes *G-1*" in text_of(card_of(fake_slack, "G-2"))
    assert "superseded by *G-2*" in thread_of(fake_slack, card)[-1]
    assert "gate.superseded" in audit_actions(quorum)


# ---------------------------------------------------------------------------- signing rules


def test_non_holder_click_changes_nothing(slack: SlackSender, quorum: QuorumServer,
                                          fake_slack: FakeSlack, clicker: Clicker,
                                          team: None) -> None:
    request(slack, fake_slack)
    [gate] = gates(quorum)
    wait_delivered(quorum)
    before = (count(quorum, AuditEvent), count(quorum, OutboxMessage))

    answer = clicker.approve(gate.id, EVE)
    assert answer["response_type"] == "ephemeral"
    assert "you hold none of these roles" in text_of(answer)
    changes = clicker.click("gate_request_changes", gate.id, EVE)
    assert "you hold none of these roles" in text_of(changes)
    assert fake_slack.calls_to("views.open") == []
    assert (count(quorum, AuditEvent), count(quorum, OutboxMessage)) == before
    assert count(quorum, GateSignoff) == 0


def test_requester_cannot_approve_own_gate_unless_allowed(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack, clicker: Clicker,
        team: None) -> None:
    answer = slack.command("/gate", "request launch for churn v3 roles ds", user=BOB)
    assert "Only you hold *ds*" in reply_text(answer)
    [gate] = gates(quorum)

    refused = clicker.approve(gate.id, BOB)
    assert "You requested G-1, so you cannot approve it yourself" in text_of(refused)
    assert count(quorum, GateSignoff) == 0

    slack.command("/quorum", "settings self-approval on")
    allowed = clicker.approve(gate.id, BOB)
    assert "the gate passed" in text_of(allowed)
    assert gates(quorum)[0].status == "passed"


def test_double_click_signs_once(slack: SlackSender, quorum: QuorumServer,
                                 fake_slack: FakeSlack, clicker: Clicker, team: None) -> None:
    request(slack, fake_slack)
    [gate] = gates(quorum)
    clicker.approve(gate.id, BOB)
    again = clicker.approve(gate.id, BOB)
    assert "You already approved G-1 as `ds`" in text_of(again)
    assert count(quorum, GateSignoff) == 1
    assert audit_actions(quorum).count("gate.approved") == 1


def test_holder_of_several_roles_chooses_one_per_click(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack, clicker: Clicker,
        team: None) -> None:
    give_roles(slack, {FRANK: "eng"})
    give_roles(slack, {FRANK: "pm"})
    request(slack, fake_slack)
    [gate] = gates(quorum)

    chooser = clicker.approve(gate.id, FRANK)
    assert chooser["response_type"] == "ephemeral"
    choices = {b["text"]["text"]: b for b in buttons(chooser).values()}
    assert set(choices) == {"Approve as eng", "Approve as pm"}
    assert count(quorum, GateSignoff) == 0

    pm = choices["Approve as pm"]
    done = clicker.click(pm["action_id"], pm["value"], FRANK, ephemeral=True)
    assert done["replace_original"] is True and "as *pm*" in text_of(done)
    # One person signs one role of a gate: Frank's eng must come from someone else.
    second = clicker.approve(gate.id, FRANK)
    assert "You already approved G-1 as `pm`" in text_of(second)
    assert "one person signs one role of a gate" in text_of(second)
    [gate] = gates(quorum)
    assert {(s.role, s.user_id) for s in gate.signoffs} == {("pm", FRANK)}

    # A requester holding two roles picks the role in the changes modal.
    slack.click("gate_request_changes", str(gate.id), user=BOB)
    view = fake_slack.wait_for("views.open")[0].args["view"]
    assert [b.get("block_id") for b in view["blocks"]].count("role") == 0


def test_changes_modal_lets_a_multi_role_holder_pick(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack, team: None) -> None:
    give_roles(slack, {FRANK: "eng"})
    give_roles(slack, {FRANK: "pm"})
    request(slack, fake_slack)
    [gate] = gates(quorum)
    slack.click("gate_request_changes", str(gate.id), user=FRANK)
    view = fake_slack.wait_for("views.open")[0].args["view"]
    select_block = next(b for b in view["blocks"] if b.get("block_id") == "role")
    assert [o["value"] for o in select_block["element"]["options"]] == ["eng", "pm"]
    missing = slack.submit(view, {"reason": "not yet"}, user=FRANK).json()
    assert missing["response_action"] == "errors" and "role" in missing["errors"]
    slack.submit(view, {"role": "pm", "reason": "Pricing page is not ready"}, user=FRANK)
    [gate] = gates(quorum)
    assert [(s.role, s.decision) for s in gate.signoffs] == [("pm", "changes")]


def _race(actions: list[Callable[[], Any]]) -> list[Any]:
    """Run the actions at the same moment on their own threads."""
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = actions[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_simultaneous_approvals_lose_nothing(slack: SlackSender, quorum: QuorumServer,
                                             fake_slack: FakeSlack, clicker: Clicker,
                                             team: None) -> None:
    request(slack, fake_slack)
    [gate] = gates(quorum)
    clicker.approve(gate.id, BOB)

    senders = [SlackSender(quorum.url, fake_slack.response_url()) for _ in range(2)]
    try:
        answers = _race([
            lambda: senders[0].click("gate_approve", str(gate.id), user=CAROL),
            lambda: senders[1].click("gate_approve", str(gate.id), user=DAVE),
        ])
    finally:
        for sender in senders:
            sender.close()
    assert [a.status_code for a in answers] == [200, 200]
    fake_slack.wait_for("response_url", count=3)
    wait_delivered(quorum)
    [gate] = gates(quorum)
    assert gate.status == "passed"
    assert sorted(s.role for s in gate.signoffs) == ["ds", "eng", "pm"]
    assert audit_actions(quorum).count("gate.passed") == 1
    passed = [m for m in fake_slack.calls_to("chat.postMessage") if "passed" in m.args["text"]]
    assert len(passed) == 2  # the thread and the channel, once
    assert "passed" in text_of(card_of(fake_slack, "G-1"))


def test_simultaneous_double_click_signs_once(slack: SlackSender, quorum: QuorumServer,
                                              fake_slack: FakeSlack, team: None) -> None:
    request(slack, fake_slack)
    [gate] = gates(quorum)
    senders = [SlackSender(quorum.url, fake_slack.response_url()) for _ in range(3)]
    try:
        _race([lambda s=s: s.click("gate_approve", str(gate.id), user=BOB) for s in senders])
    finally:
        for sender in senders:
            sender.close()
    answers = [text_of(c.args) for c in fake_slack.wait_for("response_url", count=3)]
    assert sum("You approved *G-1*" in a for a in answers) == 1
    assert sum("already approved" in a for a in answers) == 2
    assert count(quorum, GateSignoff) == 1


# ---------------------------------------------------------------------------- the clock


def test_one_digest_a_day_lists_every_signoff_waiting_for_each_person(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack, clicker: Clicker,
        team: None) -> None:
    give_roles(slack, {ALICE: "pm"})  # the requester is never reminded to approve her own gate
    request(slack, fake_slack)
    request(slack, fake_slack, '"offline eval sign-off" roles eng')
    first, _second = gates(quorum)
    clicker.approve(first.id, BOB)
    wait_delivered(quorum)
    start = first.created_at

    def dms(user: str) -> list[dict[str, Any]]:
        return list(fake_slack.messages.get(user, {}).values())

    quorum.scheduler.run_due(now=start + timedelta(hours=23, minutes=59))
    wait_delivered(quorum)
    assert not any(dms(user) for user in (ALICE, BOB, CAROL, DAVE))

    day = datetime.combine((start + timedelta(days=2)).date(), datetime.min.time(), tzinfo=UTC)
    quorum.scheduler.run_due(now=day + timedelta(minutes=30))
    quorum.scheduler.run_due(now=day + timedelta(hours=23, minutes=30))  # same day: nothing new
    wait_delivered(quorum)
    # One DM per person, not one per gate: Carol's lists both gates, with their buttons.
    assert len(dms(CAROL)) == 1 and len(dms(DAVE)) == 1
    assert dms(BOB) == [] and dms(ALICE) == []
    digest = text_of(dms(CAROL)[0])
    assert "*G-1*" in digest and "*G-2*" in digest and "offline eval sign-off" in digest
    assert "sign-off as *eng*" in digest and f"<#{CHANNEL}>" in digest
    assert "*G-2*" not in text_of(dms(DAVE)[0])
    rows = [block for block in dms(CAROL)[0]["blocks"] if block["type"] == "actions"]
    assert [[e["action_id"] for e in row["elements"]] for row in rows] == \
        [["gate_approve", "gate_request_changes"]] * 2

    # The buttons of the DM work like the card's.
    approved = clicker.click("gate_approve", first.id, CAROL, channel=CAROL)
    assert "You approved *G-1* as *eng*" in text_of(approved)
    quorum.scheduler.run_due(now=day + timedelta(days=1, minutes=1))
    wait_delivered(quorum)
    assert len(dms(CAROL)) == 2 and len(dms(DAVE)) == 2
    assert "*G-1*" not in text_of(dms(CAROL)[1]) and "*G-2*" in text_of(dms(CAROL)[1])

    # A withdrawn gate is nobody's business any more.
    answer = slack.command("/gate", "withdraw G-2 folded into the launch gate")
    assert "You withdrew *G-2*" in reply_text(answer)
    quorum.scheduler.run_due(now=day + timedelta(days=2, minutes=1))
    wait_delivered(quorum)
    assert len(dms(CAROL)) == 2 and len(dms(DAVE)) == 3


def test_reminder_delay_follows_the_project_setting(slack: SlackSender, quorum: QuorumServer,
                                                    fake_slack: FakeSlack, team: None) -> None:
    slack.command("/quorum", "settings reminders 2")
    request(slack, fake_slack)
    [gate] = gates(quorum)
    quorum.scheduler.run_due(now=gate.created_at + timedelta(hours=2, minutes=1))
    wait_delivered(quorum)
    assert all(fake_slack.messages.get(user) for user in (BOB, CAROL, DAVE))


def _open_request_modal(slack: SlackSender, fake: FakeSlack, text: str = "") -> dict[str, Any]:
    opened = len(fake.calls_to("views.open"))
    slack.command("/gate", text)
    return fake.wait_for("views.open", count=opened + 1)[opened].args["view"]


def test_gate_past_its_due_date_expires(slack: SlackSender, quorum: QuorumServer,
                                        fake_slack: FakeSlack, clicker: Clicker,
                                        team: None) -> None:
    due = datetime.now(UTC).date() + timedelta(days=2)
    view = _open_request_modal(slack, fake_slack)
    slack.submit(view, {"milestone": "Evaluation", "model": "churn", "version": "v4",
                        "due_date": due.isoformat(),
                        "criteria": "- AUC ≥ 0.82\n* Fairness report reviewed\n\n"})
    card = fake_slack.wait_for("chat.postMessage")[0].response["message"]
    assert "AUC ≥ 0.82" in text_of(card) and f"*Due*\\n{due.isoformat()}" in text_of(card)
    [gate] = gates(quorum)
    assert (gate.milestone, gate.version, gate.criteria) == (
        "evaluation", "4", ["AUC ≥ 0.82", "Fairness report reviewed"])
    clicker.approve(gate.id, BOB)

    end_of_due = datetime.combine(due + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    quorum.scheduler.run_due(now=end_of_due - timedelta(seconds=1))
    assert gates(quorum)[0].status == "open"
    quorum.scheduler.run_due(now=end_of_due)
    quorum.scheduler.run_due(now=end_of_due + timedelta(minutes=1))
    wait_delivered(quorum)
    [gate] = gates(quorum)
    assert gate.status == "expired"
    assert audit_actions(quorum).count("gate.expired") == 1
    current = card_of(fake_slack, "G-1")
    assert "expired" in text_of(current) and buttons(current) == {}
    [notice] = thread_of(fake_slack, card)
    assert "*G-1* expired" in notice and "*eng*, *pm*" in notice

    late = clicker.approve(gate.id, CAROL)
    assert "G-1 expired on" in text_of(late)
    assert count(quorum, GateSignoff) == 1
    # Expired gates are not reminded (they were while open: the due date was two days away).
    reminded = len(fake_slack.messages.get(CAROL, {}))
    quorum.scheduler.run_due(now=end_of_due + timedelta(days=3))
    wait_delivered(quorum)
    assert len(fake_slack.messages.get(CAROL, {})) == reminded


# ---------------------------------------------------------------------------- forms and input


def test_bare_gate_and_bare_request_open_the_form(slack: SlackSender, quorum: QuorumServer,
                                                  fake_slack: FakeSlack, team: None) -> None:
    for text in ("", "request"):
        view = _open_request_modal(slack, fake_slack, text)
        assert view["callback_id"] == "gate_request_modal"
        roles = next(b for b in view["blocks"] if b.get("block_id") == "roles")
        assert roles["element"]["initial_value"] == "ds, eng, pm"
        assert roles["hint"]["text"] == "Roles in this project: ds, eng, pm"
    assert gates(quorum) == []


FORM_ERRORS = [
    ({"milestone": ""}, "milestone", "Name the milestone"),
    ({"milestone": "go live!"}, "milestone", "is not a milestone name"),
    ({"milestone": "launch", "wait": "soon"}, "wait", "must be a duration like `30m`"),
    ({"milestone": "launch", "model": "churn", "version": "3", "promote": "champion"},
     "promote", "MLFLOW_TRACKING_URI is not set"),
    ({"milestone": "launch", "promote": "champion"}, "promote", "Say which model version"),
    ({"milestone": "launch", "model": "churn", "version": "3 beta"}, "version", "not a version"),
    ({"milestone": "launch", "version": "3"}, "model", "Name the model"),
    ({"milestone": "launch", "model": "churn"}, "version", "Give the version of churn"),
    ({"milestone": "launch", "roles": "ds, qa"}, "roles", "Nobody holds `qa`"),
    ({"milestone": "launch", "roles": " "}, "roles", "at least one role"),
    ({"milestone": "launch", "due_date": "2020-01-01"}, "due_date", "is in the past"),
    ({"milestone": "launch", "criteria": "x" * 301}, "criteria", "keep each line within 300"),
]


def test_request_form_errors_name_the_field(slack: SlackSender, quorum: QuorumServer,
                                            fake_slack: FakeSlack, team: None) -> None:
    view = _open_request_modal(slack, fake_slack)
    for values, field, expected in FORM_ERRORS:
        answer = slack.submit(view, values).json()
        assert answer["response_action"] == "errors", (values, answer)
        assert list(answer["errors"]) == [field], (values, answer)
        assert expected in answer["errors"][field], (values, answer)
    assert gates(quorum) == []
    assert audit_actions(quorum) == ["project.owner_added"] + ["role.added"] * 3


def test_bad_input_is_refused_and_writes_nothing(slack: SlackSender, quorum: QuorumServer,
                                                 fake_slack: FakeSlack, clicker: Clicker,
                                                 team: None) -> None:
    give_roles(slack, {BOB: "ds"}, channel=OTHER_CHANNEL)
    request(slack, fake_slack, "data roles ds", channel=OTHER_CHANNEL)  # G-1 elsewhere
    wait_delivered(quorum)
    before = (count(quorum, Gate), count(quorum, AuditEvent), count(quorum, OutboxMessage))
    cases = {
        "request launch roles ds,xyz": "Nobody holds `xyz` in this project",
        "request launch roles ds,x$y": "`x$y` is not a role name",
        "request launch for churn v!!": "`v!!` is not a version",
        "request launch for churn": "v<version> is missing",
        "request go-live! ": "is not a milestone name",
        "request launch roles ds:0": "`ds:0`: write a role and how many approvals",
        "request launch roles ds:2": "`ds:2` needs 2 different people, and only 1 holds `ds`",
        "request launch wait 5": "The wait must be a duration like",
        "request launch wait 10s": "The wait must be a duration like",
        "request launch wait 31d": "from 1 minute to 30 days",
        "request launch due tomorrow": "The due must be a date like 2026-03-31",
        "request launch due 2020-01-01": "The due date 2020-01-01 is in the past",
        "request launch promote to champion": "Say which model version to promote",
        "request launch for churn v3 promote to champion": "MLFLOW_TRACKING_URI is not set",
        "request for churn v3": "<milestone> is missing",
        "withdraw G-1": "<reason> is missing",
        "withdraw G-1 gone": f"G-1 belongs to <#{OTHER_CHANNEL}>: it can be changed only",
        "withdraw G-99 gone": "There is no gate G-99",
        # Another channel's public gate is shown, saying where it lives (docs/access.md).
        "status G-1": ":round_pushpin: From <#C0FRAUD01>",
        "status G-99": "There is no gate G-99",
        "status D-1": "is not a reference like G-12",
        "list all": "Unexpected `all`",
        "request launch roles " + ",".join(f"r{n}" for n in range(21)):
            "at most 20 roles; this one names 21",
    }
    for text, expected in cases.items():
        answer = slack.command("/gate", text)
        assert answer.json()["response_type"] == "ephemeral"
        assert expected in reply_text(answer), (text, reply_text(answer))
    assert (count(quorum, Gate), count(quorum, AuditEvent), count(quorum, OutboxMessage)) \
        == before

    request(slack, fake_slack, "launch for churn v3")
    again = reply_text(slack.command("/gate", "request launch for churn V3"))
    assert "G-2 for launch of churn v3 is still open" in again
    assert count(quorum, Gate) == 2


def test_help_lists_the_gate_usage(slack: SlackSender) -> None:
    text = reply_text(slack.command("/gate", "help"))
    assert ("/gate request <milestone> [for <model> v<version>] [promote to <alias>] "
            "[roles <roles>] [due <due>] [wait <wait>]") in text
    assert "/gate withdraw G-n <reason>" in text
    assert "/gate list" in text and "/gate status G-n" in text


# ---------------------------------------------------------------------------- CI and export


@pytest.fixture
def passed_gate(slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack,
                clicker: Clicker, team: None) -> Gate:
    request(slack, fake_slack, "launch for churn v3")
    [gate] = gates(quorum)
    for user in (BOB, CAROL, DAVE):
        clicker.approve(gate.id, user)
    request(slack, fake_slack, "launch for churn v4")
    return gates(quorum)[0]


def run_cli(monkeypatch: pytest.MonkeyPatch, database_url: str, *argv: str) -> tuple[int, str]:
    code, out, _ = run_quorum(monkeypatch, *argv, DATABASE_URL=database_url)
    return code, out


def test_cli_gate_check_exit_codes(passed_gate: Gate, monkeypatch: pytest.MonkeyPatch,
                                   database_url: str, quorum: QuorumServer) -> None:
    with quorum.runtime.db.session() as session:  # the names `quorum serve` has cached
        session.add(SlackName(team_id=TEAM, slack_id=BOB, kind="user", name="bob.ds",
                              fetched_at=utcnow()))
    code, out = run_cli(monkeypatch, database_url, "gate", "check", "--model", "churn",
                        "--version", "v3")
    assert code == 0, out
    assert out.startswith("PASSED: churn v3 passed its gate")
    assert "G-1 launch gate for churn v3 is passed" in out
    assert f"ds: approved by @bob.ds ({BOB})" in out and f"pm: approved by {DAVE}" in out
    assert f"project: churn-model ({CHANNEL})" in out

    code, out = run_cli(monkeypatch, database_url, "gate", "check", "--model", "churn",
                        "--version", "4", "--milestone", "launch")
    assert code == 1 and out.startswith("NOT PASSED: 1 of 1 gate for churn v4 at milestone "
                                        "launch did not pass")
    assert "G-2 launch gate for churn v4 is open (waiting for ds, eng, pm)" in out
    assert "ds: waiting" in out

    code, out = run_cli(monkeypatch, database_url, "gate", "check", "--model", "churn",
                        "--version", "v3", "--json")
    record = json.loads(out)
    assert code == 0 and record["passed"] is True and record["owner"] is None
    assert [(g["ref"], g["milestone"], g["channel"]) for g in record["gates"]] == [
        ("G-1", "launch", CHANNEL)]
    assert [(a["role"], a["user"]) for a in record["gates"][0]["approvers"]] == [
        ("ds", BOB), ("eng", CAROL), ("pm", DAVE)]
    assert record["gates"][0]["approvers"][0]["user_name"] == "bob.ds"
    code, out = run_cli(monkeypatch, database_url, "gate", "check", "--model", "churn",
                        "--version", "4", "--json")
    assert code == 1 and json.loads(out)["gates"][0]["why_not"] == "waiting for ds, eng, pm"
    code, out = run_cli(monkeypatch, database_url, "gate", "check", "--model", "churn",
                        "--version", "3", "--milestone", "evaluation")
    assert code == 1 and "no gate for churn v3 at milestone evaluation" in out
    code, out = run_cli(monkeypatch, database_url, "gate", "check", "--model", "fraud",
                        "--version", "3")
    assert code == 1 and out.startswith("NOT PASSED")


def test_api_gates_requires_the_bearer_token(make_settings: Callable[..., Any],
                                             quorum: QuorumServer, passed_gate: Gate) -> None:
    # No token configured: everything is refused.
    refused = httpx.get(f"{quorum.url}/api/gates", params={"model": "churn", "version": "3"},
                        headers={"Authorization": "Bearer anything"})
    assert refused.status_code == 503 and "not set" in refused.json()["reason"]

    server = QuorumServer(make_settings(QUORUM_WEBHOOK_TOKEN="s3cret-token")).start()
    try:
        url = f"{server.url}/api/gates"
        params = {"model": "churn", "version": "v3"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            answer = httpx.get(url, params=params, headers=headers)
            assert answer.status_code == 401 and answer.json()["ok"] is False
            assert "bearer token" in answer.json()["reason"].lower()
        auth = {"Authorization": "Bearer s3cret-token"}
        answer = httpx.get(url, params=params, headers=auth)
        assert answer.status_code == 200
        body = answer.json()
        assert body["passed"] is True and body["gate"]["ref"] == "G-1"
        assert [s["user"] for s in body["signers"]] == [BOB, CAROL, DAVE]
        assert [s["role"] for s in body["gate"]["signoffs"]] == ["ds", "eng", "pm"]
        waiting = httpx.get(url, params={"model": "churn", "version": "4"}, headers=auth).json()
        assert waiting["passed"] is False and waiting["gate"]["status"] == "open"
        assert httpx.get(url, params={"model": "churn"}, headers=auth).status_code == 400
    finally:
        server.stop()


def test_export_gates_with_every_signoff(passed_gate: Gate, quorum: QuorumServer) -> None:
    with quorum.runtime.db.session() as session:
        out = io.StringIO()
        assert export(session, "gates", "json", out) == 2
        records = json.loads(out.getvalue())
        csv_out, md_out = io.StringIO(), io.StringIO()
        export(session, "gates", "csv", csv_out)
        export(session, "gates", "md", md_out)
    first = records[0]
    for key in ("ref", "project", "status", "created_at", "created_by", "milestone", "model",
                "version", "signoffs"):
        assert key in first
    assert (first["ref"], first["status"], first["created_by"]) == ("G-1", "passed", ALICE)
    assert [(s["role"], s["user"], s["decision"]) for s in first["signoffs"]] == [
        ("ds", BOB, "approve"), ("eng", CAROL, "approve"), ("pm", DAVE, "approve")]
    assert csv_out.getvalue().splitlines()[0].startswith("ref,project,channel,status")
    assert '""role"": ""ds""' in csv_out.getvalue()
    markdown = md_out.getvalue()
    assert "## G-1. launch gate · churn v3" in markdown
    assert f"| ds | {BOB} | approved |" in markdown and "| pm | — | waiting |" in markdown


def test_every_gate_template_is_valid_block_kit(passed_gate: Gate, fake_slack: FakeSlack,
                                                quorum: QuorumServer) -> None:
    """Everything posted so far went through the fake's Block Kit validation; check the rest."""
    from slack_sdk.models.blocks import Block
    from slack_sdk.models.views import View

    from bot.render import renderer
    from bot.services import gates as service
    from bot.services.gate_state import role_states

    hostile = "<!channel> & <@U0BOB0001> *bold* " + "x" * 400
    with quorum.runtime.db.session() as session:
        gate = session.get(Gate, passed_gate.id)
        gate.criteria = [hostile] * 20
        states = role_states(gate)
        messages = [
            service.render_card(gate),
            renderer.message("gate/status", g=gate, states=states, history=[], roles={},
                             reasons={}),
            renderer.message("gate/digest", items=[(gate, ["ds"])] * 20, more=5),
            renderer.message("gate/choose_role", g=gate, roles=["eng", "pm"]),
            renderer.message("gate/list", project=gate.project, gates=[gate] * 30, total=40),
        ]
        views = [renderer.view("gate/changes_modal", g=gate, roles=["eng", "pm"],
                               metadata="{}")]
        session.rollback()
    for message in messages:
        assert len(message["blocks"]) <= 50
        for block in message["blocks"]:
            Block.parse(block).validate_json()
        assert "<!channel>" not in json.dumps(message)
    for view in views:
        View(**view).validate_json()


# ---------------------------------------------------------------------------- release gates


def test_multi_word_milestones_versions_and_options_in_any_order(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack, team: None) -> None:
    give_roles(slack, {EVE: "ds"})
    card = request(slack, fake_slack,
                   "Offline eval sign-off for churn 3 due 2099-01-31 roles ds:2,eng wait 2h")
    request(slack, fake_slack, '"launch for EU" roles pm for churn v3')
    first, second = gates(quorum)
    assert (first.milestone, first.model, first.version, first.required_roles,
            first.role_counts, first.wait_seconds, str(first.due_date)) == (
        "offline eval sign-off", "churn", "3", ["ds", "eng"], {"ds": 2}, 7200, "2099-01-31")
    assert (second.milestone, second.version, second.required_roles) == (
        "launch for eu", "3", ["pm"])
    text = text_of(card)
    assert "offline eval sign-off gate · churn v3" in text
    assert "0 of 3 approved · then a wait of 2h" in text and "*Due*\\n2099-01-31" in text


def test_a_role_needing_two_approvals_takes_two_different_people(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack, clicker: Clicker,
        team: None) -> None:
    give_roles(slack, {EVE: "ds"})
    request(slack, fake_slack, "launch for churn v3 roles ds:2,eng")
    [gate] = gates(quorum)
    assert "You approved *G-1* as *ds*" in text_of(clicker.approve(gate.id, BOB))
    assert "You already approved G-1 as `ds`" in text_of(clicker.approve(gate.id, BOB))
    clicker.approve(gate.id, CAROL)
    assert gates(quorum)[0].status == "open"  # one ds approval is not two
    assert "1 of 2" not in text_of(card_of(fake_slack, "G-1"))
    assert "That was the last sign-off" in text_of(clicker.approve(gate.id, EVE))
    [gate] = gates(quorum)
    assert gate.status == "passed"
    assert sorted((s.role, s.slot, s.user_id) for s in gate.signoffs) == [
        ("ds", 1, BOB), ("ds", 2, EVE), ("eng", 1, CAROL)]
    wait_delivered(quorum)
    assert "3 of 3 approved" in text_of(card_of(fake_slack, "G-1"))


def test_nobody_passes_a_gate_alone(slack: SlackSender, quorum: QuorumServer,
                                    fake_slack: FakeSlack, clicker: Clicker) -> None:
    """Frank holds ds and eng: he signs one of them, never both; the requester signs nothing
    until an admin turns self-approval on, in the open."""
    give_roles(slack, {FRANK: "ds"})
    give_roles(slack, {FRANK: "eng"})
    give_roles(slack, {BOB: "ds"})
    request(slack, fake_slack, "launch roles ds,eng", user=BOB)
    [gate] = gates(quorum)
    assert "you cannot approve it yourself" in text_of(clicker.approve(gate.id, BOB))
    chooser = clicker.approve(gate.id, FRANK)
    eng = next(b for b in buttons(chooser).values() if b["text"]["text"] == "Approve as eng")
    clicker.click(eng["action_id"], eng["value"], FRANK, ephemeral=True)
    again = text_of(clicker.approve(gate.id, FRANK))
    assert "You already approved G-1 as `eng`" in again and "one person signs one role" in again
    snapshot = (count(quorum, GateSignoff), audit_actions(quorum))
    # Through the modal too: the same person cannot request changes after approving.
    answer = slack.click("gate_request_changes", str(gate.id), user=FRANK)
    assert answer.status_code == 200
    refusal = fake_slack.wait_for("response_url", count=len(clicker.responses()))[-1].args
    assert "You already approved G-1" in text_of(refusal)
    assert (count(quorum, GateSignoff), audit_actions(quorum)) == snapshot
    assert gates(quorum)[0].status == "open"


def test_a_wait_timer_passes_the_gate_after_the_last_approval_unless_changes_come(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack, clicker: Clicker,
        team: None) -> None:
    request(slack, fake_slack, "launch for churn v3 roles ds,eng wait 2h")
    request(slack, fake_slack, "launch for churn v4 roles ds,eng wait 2h")
    first, second = gates(quorum)
    for gate in (first, second):
        clicker.approve(gate.id, BOB)
        clicker.approve(gate.id, CAROL)
    first, second = gates(quorum)
    assert first.status == second.status == "open" and first.ready_at is not None
    assert abs((first.ready_at - first.signoffs[-1].at) - timedelta(hours=2)) < \
        timedelta(seconds=1)
    wait_delivered(quorum)
    assert "passes on" in text_of(card_of(fake_slack, "G-1"))
    assert any("after its wait of 2h" in m for m in thread_of(fake_slack,
                                                              card_of(fake_slack, "G-1")))
    # Dave (pm) is no signer of these gates; a holder who has not signed may still object.
    give_roles(slack, {EVE: "eng"})
    view = _changes_view(slack, fake_slack, second.id, EVE)
    slack.submit(view, {"reason": "Latency regressed in the canary"}, user=EVE)
    assert eventually(lambda: gates(quorum)[1].status == "changes_requested")

    quorum.scheduler.run_due(now=first.ready_at - timedelta(seconds=1))
    assert [g.status for g in gates(quorum)] == ["open", "changes_requested"]
    quorum.scheduler.run_due(now=first.ready_at)
    quorum.scheduler.run_due(now=first.ready_at + timedelta(minutes=5))
    assert [g.status for g in gates(quorum)] == ["passed", "changes_requested"]
    assert audit_actions(quorum).count("gate.passed") == 1
    wait_delivered(quorum)
    assert sum(":tada: *G-1* passed" in text_of(m) for m in top_level(fake_slack)) == 1


def _changes_view(slack: SlackSender, fake: FakeSlack, gate_id: int, user: str
                  ) -> dict[str, Any]:
    opened = len(fake.calls_to("views.open"))
    slack.click("gate_request_changes", str(gate_id), user=user)
    return fake.wait_for("views.open", count=opened + 1)[opened].args["view"]


def test_withdraw_by_the_requester_or_an_admin_only(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack, clicker: Clicker,
        make_settings: Callable[..., Any], team: None) -> None:
    card = request(slack, fake_slack, "launch for churn v3")
    request(slack, fake_slack, "scoping")
    first, _second = gates(quorum)
    # The same database served with Dave as the only admin.
    server = QuorumServer(make_settings(QUORUM_ADMINS=DAVE)).start()
    admin_slack = SlackSender(server.url, fake_slack.response_url(), team=TEAM)
    try:
        before = (count(quorum, AuditEvent), count(quorum, OutboxMessage))
        refused = reply_text(admin_slack.command("/gate", "withdraw G-1 not mine", user=BOB))
        assert "Only G-1's requester or a project admin can withdraw it" in refused
        assert (count(quorum, AuditEvent), count(quorum, OutboxMessage)) == before
        by_admin = reply_text(admin_slack.command("/gate", "withdraw G-2 stale", user=DAVE))
        assert "You withdrew *G-2*" in by_admin
        answer = reply_text(admin_slack.command("/gate", "withdraw G-1 superseded by the v4 "
                                                "plan"))
        assert "You withdrew *G-1*" in answer
    finally:
        admin_slack.close()
        server.stop()
    gate = first
    gate, other = gates(quorum)
    assert (gate.status, gate.withdrawn_by, gate.withdrawn_reason) == (
        "withdrawn", ALICE, "superseded by the v4 plan")
    assert (other.status, other.withdrawn_by) == ("withdrawn", DAVE)
    assert audit_actions(quorum).count("gate.withdrawn") == 2
    wait_delivered(quorum)
    now = card_of(fake_slack, "G-1")
    assert "withdrawn" in text_of(now) and "superseded by the v4 plan" in text_of(now)
    assert buttons(now) == {}  # nothing to press any more
    assert any("withdrew *G-1*" in m for m in thread_of(fake_slack, card))
    assert "was withdrawn" in text_of(clicker.approve(gate.id, BOB))
    again = reply_text(slack.command("/gate", "withdraw G-1 twice"))
    assert "only an open gate" in again
    assert audit_actions(quorum).count("gate.withdrawn") == 2


def test_a_gate_for_a_model_bound_elsewhere_is_refused_with_the_reason(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack, team: None) -> None:
    slack.command("/quorum", "model add churn", channel=OTHER_CHANNEL)
    before = count(quorum, Gate), count(quorum, AuditEvent)
    answer = reply_text(slack.command("/gate", "request launch for churn v3"))
    assert f"`churn` is bound to <#{OTHER_CHANNEL}>" in answer and "would not count" in answer
    assert (count(quorum, Gate), count(quorum, AuditEvent)) == before
    request(slack, fake_slack, "launch for fraud v3")  # an unbound model is fine here


def test_api_gates_answers_from_the_project_that_owns_the_model(
        make_settings: Callable[..., Any], quorum: QuorumServer, passed_gate: Gate,
        slack: SlackSender) -> None:
    """G-1 passed in #churn; once churn is bound to another project, it no longer counts."""
    server = QuorumServer(make_settings(QUORUM_WEBHOOK_TOKEN="s3cret-token")).start()
    try:
        def ask() -> dict[str, Any]:
            answer = httpx.get(f"{server.url}/api/gates", params={"model": "churn",
                                                                   "version": "v3"},
                               headers={"Authorization": "Bearer s3cret-token"})
            assert answer.status_code == 200, answer.text
            return answer.json()

        unbound = ask()
        assert unbound["passed"] is True and unbound["owner"] is None
        assert [(g["ref"], g["channel"]) for g in unbound["gates"]] == [("G-1", CHANNEL)]
        slack.command("/quorum", "model add churn", channel=OTHER_CHANNEL)
        bound = ask()
        assert bound["passed"] is False and bound["gates"] == []
        assert bound["owner"]["channel"] == OTHER_CHANNEL
    finally:
        server.stop()
