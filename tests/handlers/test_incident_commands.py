"""`/incident severity|lead|resolve`, the resolve form's follow-ups (Home, overdue DM, Done), where
timeline posts and reminders go, and the numbers of the summary: end to end through the signed
endpoint, fake Slack and the database checked."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from bot import outbox
from bot import slack_payloads as payloads
from bot.models import AuditEvent, Incident, IncidentEvent, IncidentFollowUp, utcnow
from bot.render import slack_unescape
from support.db_snapshot import changed_tables, snapshot
from support.fake_slack import Call, FakeSlack
from support.incident_steps import buttons, card_of, thread_texts
from support.quorum_server import QuorumServer
from support.slack_requests import TEAM, SlackSender
from support.waiting import eventually

CHANNEL = "C0CHURN01"
ALICE, BOB, CAROL = "U0ALICE01", "U0BOB0001", "U0CAROL01"


# ------------------------------------------------------------ helpers (as in test_incidents/home)

def incidents(quorum: QuorumServer) -> list[Incident]:
    with quorum.runtime.db.session() as session:
        return list(session.scalars(select(Incident).order_by(Incident.number)).unique())


def summary_of(fake: FakeSlack, ref: str) -> Call:
    return fake.wait_for("chat.postMessage", predicate=lambda call: call.args["blocks"][0].get(
        "text", {}).get("text", "").startswith(f"Resolved · {ref} "))[0]


def reply_text(response: Any) -> str:
    body = response.json()
    return slack_unescape(body.get("text", "") + json.dumps(body.get("blocks", [])))


def publishes(fake: FakeSlack, user: str) -> list[Call]:
    return [c for c in fake.calls_to("views.publish") if c.args["user_id"] == user]


def next_home(fake: FakeSlack, user: str, seen: int,
              containing: str | None = None) -> dict[str, Any]:
    def published() -> dict[str, Any] | None:
        for call in publishes(fake, user)[seen:]:
            text = slack_unescape(json.dumps(call.args["view"], ensure_ascii=False))
            if containing is None or containing in text:
                return call.response["view"]
        return None
    return eventually(published)


def open_home(slack: SlackSender, fake: FakeSlack, user: str) -> dict[str, Any]:
    seen = len(publishes(fake, user))
    answer = slack.event({"type": "app_home_opened", "user": user, "channel": "D0HOME001",
                          "tab": "home"})
    assert answer.status_code == 200
    return next_home(fake, user, seen)


def home_click(slack: SlackSender, view: dict[str, Any], action_id: str, value: str,
               user: str) -> None:
    element = next(b["accessory"] for b in view["blocks"]
                   if (b.get("accessory") or {}).get("action_id") == action_id
                   and b["accessory"].get("value") == value)
    payload = payloads.block_actions(dict(element), team=TEAM, user=user, channel=None,
                                     channel_name=None, response_url=None, view=view,
                                     block_id="b")
    assert slack.interaction(payload).status_code == 200


def settled(quorum: QuorumServer) -> None:
    """Wait until the outbox has delivered everything queued (so a snapshot stays still)."""
    def done() -> bool:
        with quorum.runtime.db.session() as session:
            return outbox.pending_count(session) == 0
    eventually(done)


def declared(slack: SlackSender, fake: FakeSlack, text: str = "declare sev3 Scores drift",
             **kwargs: Any) -> dict[str, Any]:
    assert "Declared" in reply_text(slack.command("/incident", text, **kwargs))
    return fake.wait_for("chat.postMessage")[0].args


def audit_actions(quorum: QuorumServer) -> list[str]:
    with quorum.runtime.db.session() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def follow_up_items(quorum: QuorumServer) -> list[IncidentFollowUp]:
    with quorum.runtime.db.session() as session:
        return list(session.scalars(select(IncidentFollowUp).order_by(IncidentFollowUp.id)))


def test_severity_and_lead_change_on_the_timeline_and_the_card(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    declared(slack, fake_slack)
    answer = reply_text(slack.command("/incident", "severity INC-1 sev1 checkout is failing",
                                      user=BOB))
    assert "*INC-1* is now sev1" in answer
    eventually(lambda: "sev1" in json.dumps(card_of(fake_slack, "INC-1")["blocks"]))
    answer = reply_text(slack.command("/incident", f"lead INC-1 <@{CAROL}|carol>", user=BOB))
    assert f"<@{CAROL}> now leads *INC-1*" in answer
    eventually(lambda: f"*Commander*\\n<@{CAROL}>" in json.dumps(
        card_of(fake_slack, "INC-1")["blocks"]))

    fake_slack.wait_for("chat.postMessage", count=3)
    replies = thread_texts(fake_slack, card_of(fake_slack, "INC-1"))
    assert f"*Severity* changed by <@{BOB}>: sev3 → sev1: checkout is failing" in replies[0]
    assert f"*Lead*: <@{BOB}> handed the lead to <@{CAROL}>" in replies[1]
    [incident] = incidents(quorum)
    assert (incident.severity, incident.commander) == ("sev1", CAROL)
    # Acting on the incident acknowledged it.
    assert incident.status == "acknowledged" and incident.acknowledged_at is not None
    assert audit_actions(quorum) == ["incident.declared", "incident.severity_changed",
                                     "incident.lead_changed"]

    # Reminders follow the new severity (sev1: every 30 minutes) and go to the new lead.
    quorum.scheduler.run_due(incident.last_update_at + timedelta(minutes=31))
    reminder = fake_slack.wait_for("chat.postMessage", count=4)[-1].args
    assert f"<@{CAROL}>, *INC-1* (sev1)" in slack_unescape(json.dumps(reminder["blocks"]))


def test_bad_severity_and_lead_commands_are_refused_and_change_nothing(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    declared(slack, fake_slack)
    settled(quorum)
    before = snapshot(quorum.runtime.db)
    cases = {
        "severity INC-1 sev9": "sev1|sev2|sev3|sev4",
        "severity INC-1": "is missing",
        "severity INC-1 sev3": "INC-1 is already sev3",
        "severity INC-7 sev1": "no incident INC-7",
        "severity D-1 sev1": "not a reference like INC-12",
        "severity INC-1 sev2 " + "x" * 501: "keep it within 500",
        "lead INC-1": "is missing",
        "lead INC-1 bob": "@user",
        f"lead INC-1 <@{ALICE}>": f"<@{ALICE}> already leads INC-1",
        f"lead INC-2 <@{BOB}>": "no incident INC-2",
        "resolve INC-4": "no incident INC-4",
    }
    for text, expected in cases.items():
        response = slack.command("/incident", text)
        assert response.json()["response_type"] == "ephemeral"
        assert expected in reply_text(response), (text, reply_text(response))
    assert changed_tables(before, quorum.runtime.db) == []
    assert not fake_slack.calls_to("views.open")

    slack.command("/incident", "resolve INC-1 Fixed by a rollback")
    fake_slack.wait_for("chat.postMessage", count=2)
    settled(quorum)
    before = snapshot(quorum.runtime.db)
    for text in ("severity INC-1 sev1", f"lead INC-1 <@{BOB}>", "resolve INC-1"):
        assert "INC-1 is already resolved" in reply_text(slack.command("/incident", text))
    assert changed_tables(before, quorum.runtime.db) == []
    assert not fake_slack.calls_to("views.open")


def test_resolve_alone_opens_the_form_with_impact_root_cause_and_follow_ups(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    declared(slack, fake_slack, "declare sev2 Churn scores stale")
    response = slack.command("/incident", "resolve INC-1")
    assert response.status_code == 200 and not response.content.strip(b"{}")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    assert view["callback_id"] == "incident_resolve_modal"
    fields = {b["block_id"] for b in view["blocks"] if b["type"] == "input"}
    assert {"summary", "impact", "root_cause", "follow_up_1", "follow_up_1_owner",
            "follow_up_1_due", "follow_up_1_link"} <= fields

    today = utcnow().date()
    due = (today + timedelta(days=3)).isoformat()
    good = {"summary": "Backfilled the features", "impact": "Churn scores 6 h old for EU",
            "root_cause": "A renamed upstream table",
            "follow_up_1": "Alert on feature freshness", "follow_up_1_owner": BOB,
            "follow_up_1_due": due,
            "follow_up_1_link": "https://github.com/acme/churn/issues/12",
            "follow_up_2": "Contract test for the upstream schema"}
    settled(quorum)
    before = snapshot(quorum.runtime.db)
    for bad, field, words in (
            ({"follow_up_1_link": "javascript:alert(1)"}, "follow_up_1_link", "http(s)"),
            ({"follow_up_1_due": (today - timedelta(days=1)).isoformat()}, "follow_up_1_due",
             "in the past"),
            ({"follow_up_3_owner": CAROL}, "follow_up_3", "needs a text"),
            ({"summary": ""}, "summary", "summary is empty")):
        answer = slack.submit(view, {**good, **bad}).json()
        assert answer["response_action"] == "errors", bad
        assert words in answer["errors"][field], (bad, answer)
    assert changed_tables(before, quorum.runtime.db) == []

    assert slack.submit(view, good).status_code == 200
    summary = slack_unescape(json.dumps(summary_of(fake_slack, "INC-1").args["blocks"],
                                                ensure_ascii=False))
    for expected in ("*Impact*\\nChurn scores 6 h old for EU", "A renamed upstream table",
                     "<https://github.com/acme/churn/issues/12|Alert on feature freshness> · "
                     f"<@{BOB}> · due {due}",
                     "Contract test for the upstream schema · _no owner_"):
        assert expected in summary, expected
    first, second = follow_up_items(quorum)
    assert (first.position, first.owner, first.due_date.isoformat(), first.url, first.status) \
        == (1, BOB, due, "https://github.com/acme/churn/issues/12", "open")
    assert (second.position, second.owner, second.due_date) == (2, None, None)
    [incident] = incidents(quorum)
    assert (incident.impact, incident.root_cause) == ("Churn scores 6 h old for EU",
                                                      "A renamed upstream table")


def test_follow_ups_on_the_owners_home_overdue_dm_and_done(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    open_home(slack, fake_slack, BOB)
    declared(slack, fake_slack)
    slack.command("/incident", "resolve INC-1")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    due = utcnow().date() + timedelta(days=2)
    seen = len(publishes(fake_slack, BOB))
    slack.submit(view, {"summary": "Rolled back", "follow_up_1": "Pin the feature schema",
                        "follow_up_1_owner": BOB, "follow_up_1_due": due.isoformat()})
    home = next_home(fake_slack, BOB, seen, containing="Pin the feature schema")
    text = slack_unescape(json.dumps(home["blocks"], ensure_ascii=False))
    assert "Your incident follow-ups · 1" in text and "*INC-1* Pin the feature schema" in text

    # The day after the due date the owner gets one DM, however often the clock ticks.
    later = utcnow() + timedelta(days=3)
    quorum.scheduler.run_due(later)
    quorum.scheduler.run_due(later + timedelta(minutes=1))
    dm = fake_slack.wait_for("chat.postMessage",
                             predicate=lambda call: call.args["channel"] == BOB)[0].args
    assert f"was due {due.isoformat()}" in slack_unescape(json.dumps(dm["blocks"]))
    assert len([c for c in fake_slack.calls_to("chat.postMessage")
                if c.args["channel"] == BOB]) == 1

    # Only the owner marks it done; a second click says it already is.
    [item] = follow_up_items(quorum)
    seen = len(publishes(fake_slack, CAROL))
    carol_home = open_home(slack, fake_slack, CAROL)
    assert "Your incident follow-ups" not in json.dumps(carol_home["blocks"])
    home_click(slack, home, "incident_follow_up_done", str(item.id), CAROL)
    assert "belongs to" in json.dumps(next_home(fake_slack, CAROL, seen + 1)["blocks"])
    seen = len(publishes(fake_slack, BOB))
    home_click(slack, home, "incident_follow_up_done", str(item.id), BOB)
    done_home = next_home(fake_slack, BOB, seen, containing="is done")
    assert "Your incident follow-ups" not in json.dumps(done_home["blocks"])
    home_click(slack, home, "incident_follow_up_done", str(item.id), BOB)
    next_home(fake_slack, BOB, seen + 1, containing="already done")
    [item] = follow_up_items(quorum)
    assert (item.status, item.done_by) == ("done", BOB)
    assert audit_actions(quorum).count("incident.follow_up_done") == 1


def test_with_a_dedicated_channel_the_timeline_and_reminders_go_there(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/incident", "declare")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    slack.submit(view, {"title": "Ranking model down", "severity": "sev2",
                        "dedicated": ["yes"]})
    room = fake_slack.wait_for("conversations.create")[0].response["channel"]["id"]
    fake_slack.wait_for("chat.postMessage", count=3)  # card, channel entry, room card

    slack.command("/incident", "update INC-1 Failing over", channel=room)
    slack.command("/incident", "severity INC-1 sev1 all regions", channel=room)
    [incident] = incidents(quorum)
    quorum.scheduler.run_due(incident.last_update_at + timedelta(minutes=31))
    def room_post(call: Call) -> bool:
        blocks = call.args.get("blocks") or [{}]
        return call.args["channel"] == room and "thread_ts" not in call.args \
            and blocks[0].get("type") != "header"

    in_room = [slack_unescape(json.dumps(c.args["blocks"], ensure_ascii=False))
               for c in fake_slack.wait_for("chat.postMessage", count=3, predicate=room_post)]
    assert "Failing over" in in_room[0] and "sev2 → sev1: all regions" in in_room[1]
    assert "no update for 31 min" in in_room[2]
    # The project channel keeps its card with the channel link, and gets the summary at the end.
    project_thread = thread_texts(fake_slack, card_of(fake_slack, "INC-1"))
    assert len(project_thread) == 1 and f"<#{room}>" in project_thread[0]
    slack.command("/incident", "resolve INC-1 Failed over to EU", channel=room)
    summary = summary_of(fake_slack, "INC-1")
    assert summary.args["channel"] == CHANNEL
    assert len(thread_texts(fake_slack, card_of(fake_slack, "INC-1"))) == 1


def test_time_to_acknowledge_only_counts_acknowledged_incidents(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    declared(slack, fake_slack, "declare sev3 Nobody looked")
    slack.command("/incident", "resolve INC-1 It went away", user=BOB)
    summary = slack_unescape(json.dumps(summary_of(fake_slack, "INC-1").args["blocks"],
                                                ensure_ascii=False))
    assert "*Time to acknowledge*\\nnever acknowledged" in summary
    [incident] = incidents(quorum)
    assert incident.acknowledged_at is None and incident.resolved_at is not None

    declared(slack, fake_slack, "declare sev3 Someone looked")
    card = eventually(lambda: card_of(fake_slack, "INC-2") if len(
        fake_slack.calls_to("chat.postMessage")) >= 4 else None)
    slack.click("incident_ack", buttons(card)["incident_ack"], user=BOB)
    eventually(lambda: incidents(quorum)[1].acknowledged_at is not None)
    now = utcnow()
    with quorum.runtime.db.session() as session:
        session.execute(update(Incident).where(Incident.number == 2).values(
            started_at=now - timedelta(minutes=20), acknowledged_at=now - timedelta(minutes=10)))
    text = reply_text(slack.command("/incident", "list"))
    assert "MTTA *10 min* over 1 acknowledged" in text


def test_timeline_kinds_are_recorded(quorum: QuorumServer, slack: SlackSender,
                                     fake_slack: FakeSlack) -> None:
    declared(slack, fake_slack)
    slack.command("/incident", "severity INC-1 sev4")
    slack.command("/incident", f"lead INC-1 <@{BOB}>")
    with quorum.runtime.db.session() as session:
        kinds = list(session.scalars(select(IncidentEvent.kind).order_by(IncidentEvent.id)))
    assert kinds == ["declared", "severity", "lead"]


def test_done_clicked_twice_at_the_same_moment_is_done_once(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    open_home(slack, fake_slack, BOB)
    declared(slack, fake_slack)
    slack.command("/incident", "resolve INC-1")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    seen = len(publishes(fake_slack, BOB))
    slack.submit(view, {"summary": "Rolled back", "follow_up_1": "Pin the schema",
                        "follow_up_1_owner": BOB})
    home = next_home(fake_slack, BOB, seen, containing="Pin the schema")
    [item] = follow_up_items(quorum)
    barrier = threading.Barrier(2)

    def click() -> None:
        sender = SlackSender(quorum.url, fake_slack.response_url())
        try:
            barrier.wait()
            home_click(sender, home, "incident_follow_up_done", str(item.id), BOB)
        finally:
            sender.close()

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Both clicks are answered on the Home (the outbox sends only the latest of two Home
    # publishes queued together, so which note shows depends on who was first).
    eventually(lambda: any("is done" in json.dumps(c.args["view"])
                           or "already done" in json.dumps(c.args["view"])
                           for c in publishes(fake_slack, BOB)[seen + 1:]))
    assert audit_actions(quorum).count("incident.follow_up_done") == 1
    [item] = follow_up_items(quorum)
    assert (item.status, item.done_by) == ("done", BOB)
