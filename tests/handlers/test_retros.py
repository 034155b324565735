"""Retrospectives as Parabol runs them, end to end: anonymous items, votes, and action items
followed up (Home, overdue DM, the next retro's digest, `/retro done A-n`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from bot import slack_payloads as payloads
from bot.models import AuditEvent, RetroItem, RetroVote, RitualOccurrence
from bot.render import slack_unescape
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import TEAM, SlackSender
from support.waiting import eventually

ALICE, BOB, CAROL = "U0ALICE01", "U0BOB0001", "U0CAROL01"


def text_of(message: dict[str, Any]) -> str:
    return slack_unescape(message.get("text", "") + json.dumps(message.get("blocks", []),
                                                               ensure_ascii=False))


def add_item(slack: SlackSender, fake_slack: FakeSlack, retro_id: int, action_id: str,
             user: str, values: dict[str, Any]) -> None:
    seen = len(fake_slack.calls_to("views.open"))
    slack.click(action_id, str(retro_id), user=user)
    view = fake_slack.wait_for("views.open", count=seen + 1)[-1].args["view"]
    answer = slack.submit(view, {"anonymous": [], **values}, user=user)
    assert not answer.content.strip(b"{}"), answer.content


def items(quorum: QuorumServer) -> dict[str, RetroItem]:
    with quorum.runtime.db.session() as session:
        found = {i.text: i for i in session.scalars(select(RetroItem))}
        for item in found.values():
            _ = item.votes
        return found


def test_anonymous_items_votes_and_followed_up_action_items(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    assert "scheduled" in text_of(slack.command("/retro", "schedule fridays 15:00 tz UTC "
                                                          "votes 2").json())
    bad = slack.command("/retro", "schedule fridays 15:00 votes 99").json()
    assert "1 to 20 votes" in text_of(bad)
    assert "Started the retro" in text_of(slack.command("/retro", "now").json())
    [retro] = eventually(lambda: [o for o in _occurrences(quorum) if o.posted_at])
    assert retro.votes_per_person == 2
    slack.event({"type": "app_home_opened", "user": BOB, "channel": "D0HOME001",
                 "tab": "home"})
    fake_slack.wait_for("views.publish", predicate=lambda c: c.args["user_id"] == BOB)
    today = datetime.now(UTC).date()
    due = today + timedelta(days=3)

    add_item(slack, fake_slack, retro.id, "retro_went_well", ALICE,
             {"text": "Fast eval loop", "anonymous": ["yes"]})
    add_item(slack, fake_slack, retro.id, "retro_to_improve", BOB, {"text": "Flaky CI"})
    add_item(slack, fake_slack, retro.id, "retro_to_improve", CAROL, {"text": "Slow reviews"})
    add_item(slack, fake_slack, retro.id, "retro_action", ALICE,
             {"text": "Quarantine flaky tests", "owner": BOB, "due_date": due.isoformat()})
    found = items(quorum)
    anonymous = found["Fast eval loop"]
    assert (anonymous.anonymous, anonymous.created_by) == (True, "anonymous")
    assert found["Quarantine flaky tests"].number is not None
    ref = f"A-{found['Quarantine flaky tests'].number}"
    # The channel never sees the anonymous author, nor does the audit log keep it.
    [posted] = fake_slack.wait_for("chat.postMessage",
                                   predicate=lambda c: "Fast eval loop" in c.args["text"])
    assert ALICE not in text_of(posted.args) and "anonymously" in text_of(posted.args)
    with quorum.runtime.db.session() as session:
        for event in session.scalars(select(AuditEvent).where(
                AuditEvent.action == "retro.item_added")):
            if "Fast eval loop" in json.dumps(event.after):
                assert event.actor == "anonymous" and ALICE not in json.dumps(event.after)
    # The owner's Home lists the action item.
    home = fake_slack.wait_for("views.publish", predicate=lambda c: c.args["user_id"] == BOB
                               and ref in json.dumps(c.args["view"]))
    assert "Quarantine flaky tests" in json.dumps(home[-1].args["view"])

    flaky, slow = found["Flaky CI"].id, found["Slow reviews"].id
    for user, item, action in ((ALICE, flaky, "retro_vote"), (ALICE, slow, "retro_vote"),
                               (BOB, slow, "retro_vote"), (CAROL, slow, "retro_vote"),
                               (CAROL, flaky, "retro_vote"),
                               (CAROL, flaky, "retro_unvote")):  # Carol takes it back
        seen = len(fake_slack.calls_to("response_url"))
        assert slack.click(action, str(item), user=user).status_code == 200
        fake_slack.wait_for("response_url", count=seen + 1)  # one click after the other
    over = slack.click("retro_vote", str(anonymous.id), user=ALICE)  # a third vote
    assert over.status_code == 200

    fake_slack.wait_for("response_url", predicate=lambda c: "used your 2 votes" in
                        json.dumps(c.args))
    with quorum.runtime.db.session() as session:
        votes = sorted((v.user_id, v.item_id) for v in session.scalars(select(RetroVote)))
    assert votes == sorted([(ALICE, flaky), (ALICE, slow), (BOB, slow), (CAROL, slow)])

    run = quorum.scheduler.run_due
    run(datetime.now(UTC) + timedelta(hours=3, minutes=1))
    [summary] = fake_slack.wait_for("chat.postMessage",
                                    predicate=lambda c: "summary" in c.args["text"])
    body = text_of(summary.args)
    assert body.index("Slow reviews") < body.index("Flaky CI")  # 3 votes before 1
    assert "*3* :ballot_box: Slow reviews" in body and "3 people voted" in body
    assert f"*{ref}* Quarantine flaky tests — <@{BOB}>, due {due.isoformat()}" in body

    # Overdue: one DM to the owner, once.
    overdue = datetime.combine(due + timedelta(days=1), time(12), UTC)
    run(overdue)
    run(overdue + timedelta(hours=1))
    dms = fake_slack.wait_for("chat.postMessage", predicate=lambda c: c.args["channel"] == BOB)
    assert len([c for c in fake_slack.calls_to("chat.postMessage")
                if c.args["channel"] == BOB]) == 1
    assert f"{ref}* from the retro" in text_of(dms[0].args)

    # The next retro carries it in its digest, still open.
    friday = overdue + timedelta(days=(4 - overdue.weekday()) % 7 or 7)
    next_retro = datetime.combine(friday.date(), time(15, 0, 5), UTC)
    run(next_retro)
    cards = fake_slack.wait_for("chat.postMessage", count=2, predicate=lambda c: c.args[
        "text"].startswith("Retrospective for"))
    assert "Quarantine flaky tests" in text_of(cards[-1].args)
    assert ":hourglass: open" in text_of(cards[-1].args)

    # `/retro done A-n`: not from another channel, even by its owner (docs/access.md).
    before = _items_state(quorum)
    elsewhere = slack.command("/retro", f"done {ref}", user=BOB, channel="C0OTHER01").json()
    assert "can be changed only from there" in text_of(elsewhere) and _items_state(quorum) == before
    assert f"{ref} is done" in text_of(slack.command("/retro", f"done {ref}", user=BOB).json())
    assert "already done" in text_of(slack.command("/retro", f"done {ref}").json())
    # The Home's button on an item already done says so on the Home.
    seen = len(fake_slack.calls_to("views.publish"))
    view = home[-1].args["view"]
    assert slack.interaction(payloads.block_actions(
        payloads.button_action("retro_item_done", str(found["Quarantine flaky tests"].id)),
        team=TEAM, user=BOB, channel=None, channel_name=None, response_url=None,
        view=view)).status_code == 200
    # The Home the click publishes (a refresh queued by `/retro done` may land first).
    fake_slack.wait_for("views.publish", count=seen + 1)
    [again] = fake_slack.wait_for("views.publish", predicate=lambda call: f"{ref} was already "
                                  f"done" in json.dumps(call.args["view"]))
    assert ref not in json.dumps(again.args["view"]["blocks"][1:])  # no longer listed
    missing = slack.command("/retro", "done A-999").json()
    assert missing["response_type"] == "ephemeral" and "A-999" in text_of(missing)
    assert items(quorum)["Quarantine flaky tests"].state == "done"
    assert items(quorum)["Quarantine flaky tests"].done_by == BOB


def _occurrences(quorum: QuorumServer) -> list[RitualOccurrence]:
    with quorum.runtime.db.session() as session:
        return list(session.scalars(select(RitualOccurrence).order_by(RitualOccurrence.id)))


def _items_state(quorum: QuorumServer) -> list[tuple[str, str]]:
    with quorum.runtime.db.session() as session:
        return sorted((i.text, i.state) for i in session.scalars(select(RetroItem)))
