"""`/incident` end to end: signed requests in, fake Slack and the database checked."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from bot.models import (
    AuditEvent,
    Incident,
    IncidentEvent,
    IncidentFollowUp,
    OutboxMessage,
    Project,
    Risk,
    utcnow,
)
from bot.render import slack_unescape
from support.fake_slack import Call, FakeSlack
from support.incident_steps import buttons, card_of, thread_texts
from support.quorum_server import QuorumServer
from support.slack_requests import SlackSender
from support.waiting import eventually

CHANNEL = "C0CHURN01"


def incidents(quorum: QuorumServer) -> list[Incident]:
    with quorum.runtime.db.session() as session:
        return list(session.scalars(select(Incident).order_by(Incident.number)).unique())


def count(quorum: QuorumServer, model: type) -> int:
    with quorum.runtime.db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def timeline(quorum: QuorumServer, number: int = 1) -> list[str]:
    with quorum.runtime.db.session() as session:
        return list(session.scalars(
            select(IncidentEvent.kind).join(Incident).where(Incident.number == number)
            .order_by(IncidentEvent.id)))


def wait_for_replies(fake: FakeSlack, number: int) -> list[Call]:
    return fake.wait_for("chat.postMessage", count=number,
                         predicate=lambda call: "thread_ts" in call.args)


def summary_of(fake: FakeSlack, ref: str) -> Call:
    """The incident summary posted to the channel when `ref` was resolved."""
    return fake.wait_for("chat.postMessage", predicate=lambda call: call.args["blocks"][0].get(
        "text", {}).get("text", "").startswith(f"Resolved · {ref} "))[0]


def reply_text(response: Any) -> str:
    body = response.json()
    return slack_unescape(body.get("text", "") + json.dumps(body.get("blocks", [])))


def test_declare_with_severity_posts_card_and_audits(slack: SlackSender, quorum: QuorumServer,
                                                     fake_slack: FakeSlack) -> None:
    response = slack.command("/incident", "declare SEV2 Churn p99 latency above 2s")

    assert response.status_code == 200 and response.json()["response_type"] == "ephemeral"
    assert "INC-1" in response.json()["text"]
    post = fake_slack.wait_for("chat.postMessage")[0]
    assert post.args["channel"] == CHANNEL
    assert post.args["blocks"][0]["text"]["text"] == "INC-1 · Churn p99 latency above 2s"
    card = json.dumps(post.args["blocks"])
    assert "sev2" in card and "<@U0ALICE01>" in card
    assert set(buttons(post.args)) == {"incident_ack", "incident_add_update", "incident_resolve"}
    [incident] = incidents(quorum)
    assert (incident.ref, incident.severity, incident.status, incident.commander) == (
        "INC-1", "sev2", "declared", "U0ALICE01")
    assert incident.project.channel_id == CHANNEL
    assert count(quorum, AuditEvent) == 1 and timeline(quorum) == ["declared"]


def test_severity_defaults_to_sev3_and_refs_count_per_workspace(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/incident", "declare Severe drift on the fraud model")
    slack.command("/incident", "declare sev4 Stale dashboard", channel="C0FRAUD01",
                  channel_name="fraud")
    fake_slack.wait_for("chat.postMessage", count=2)
    first, second = incidents(quorum)
    assert (first.title, first.severity) == ("Severe drift on the fraud model", "sev3")
    assert (second.ref, second.severity, second.project.channel_id) == ("INC-2", "sev4",
                                                                        "C0FRAUD01")


def test_bad_input_is_refused_and_changes_nothing(slack: SlackSender,
                                                  quorum: QuorumServer) -> None:
    assert "/incident declare [<sev1|sev2|sev3|sev4>] <title>" in reply_text(
        slack.command("/incident", "help"))
    cases = {
        "declare sev9 Everything is on fire": "`sev9` is not a severity",
        "declare sev1": "<title> is missing",
        "declare " + "x" * 151: "151 characters long",
        "update INC-9 rolled back": "no incident INC-9",
        "update INC-1": "<text> is missing",
        "update D-1 hello": "not a reference like INC-12",
        "resolve INC-3 fixed": "no incident INC-3",
        "resolve": "A reference like INC-12 is missing",
        "list all": "Unexpected `all`",
        "escalate INC-1": "`escalate` is not a `/incident` subcommand",
    }
    for text, expected in cases.items():
        response = slack.command("/incident", text)
        body = response.json()
        assert response.status_code == 200 and body["response_type"] == "ephemeral"
        assert expected in slack_unescape(body["text"]), (text, body["text"])
    for model in (Incident, IncidentEvent, AuditEvent, OutboxMessage, Project):
        assert count(quorum, model) == 0, model


def test_lifecycle_through_buttons_with_the_timeline_in_the_thread(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/incident", "declare sev2 Feature pipeline stopped")
    post = fake_slack.wait_for("chat.postMessage")[0]
    incident_id = buttons(post.args)["incident_ack"]

    slack.click("incident_ack", incident_id, message=post.response["message"], user="U0BOB0001")
    update = fake_slack.wait_for("chat.update")[0]
    assert update.args["ts"] == post.response["ts"]
    slack.click("incident_ack", incident_id, message=post.response["message"], user="U0CAROL01")
    again = fake_slack.wait_for("response_url")[0].args
    assert "already acknowledged" in again["text"] and again["replace_original"] is False
    eventually(lambda: set(buttons(card_of(fake_slack, "INC-1"))) == {
        "incident_mitigate", "incident_add_update", "incident_resolve"})
    card = card_of(fake_slack, "INC-1")
    assert "acknowledged" in json.dumps(card["blocks"])

    slack.click("incident_mitigate", incident_id, user="U0BOB0001")
    wait_for_replies(fake_slack, 2)
    response = slack.command("/incident", "update inc-1 Backfill running, ETA 20 min",
                             user="U0BOB0001")
    assert "Added your update to *INC-1*" in response.json()["text"]
    wait_for_replies(fake_slack, 3)
    replies = thread_texts(fake_slack, card)
    assert "*Acknowledged* by <@U0BOB0001>" in replies[0]
    assert "*Mitigated*" in replies[1]
    assert "Backfill running, ETA 20 min" in replies[2]
    eventually(lambda: set(buttons(card_of(fake_slack, "INC-1"))) == {"incident_add_update",
                                                                      "incident_resolve"})

    slack.click("incident_resolve", incident_id, user="U0BOB0001")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    assert view["callback_id"] == "incident_resolve_modal"
    empty = slack.submit(view, {"summary": "  "}, user="U0BOB0001").json()
    assert empty["response_action"] == "errors" and "summary" in empty["errors"]
    due = (utcnow() + timedelta(days=7)).date().isoformat()
    answer = slack.submit(view, {"summary": "Backfill finished; features fresh again",
                                 "root_cause": "Upstream table renamed",
                                 "follow_up_1": "Alert on feature freshness",
                                 "follow_up_1_owner": "U0CAROL01", "follow_up_1_due": due},
                          user="U0BOB0001")
    assert answer.status_code == 200 and not answer.content.strip(b"{}")

    summary_post = summary_of(fake_slack, "INC-1")
    summary = slack_unescape(json.dumps(summary_post.args["blocks"]))
    assert summary_post.args["channel"] == CHANNEL and "thread_ts" not in summary_post.args
    for expected in ("sev2", "*Duration*", "*Time to acknowledge*", "<@U0BOB0001>",
                     "Backfill finished", "Upstream table renamed", "Alert on feature freshness",
                     "*Acknowledged* by <@U0BOB0001>", "Backfill running"):
        assert expected in summary, expected
    assert buttons(summary_post.args) == {"incident_log_decision": incident_id,
                                          "incident_add_risk": incident_id}
    eventually(lambda: buttons(card_of(fake_slack, "INC-1")) == {})

    [incident] = incidents(quorum)
    # The declarer commands the incident unless someone else is named.
    assert incident.status == "resolved" and incident.commander == "U0ALICE01"
    assert incident.acknowledged_at <= incident.mitigated_at <= incident.resolved_at
    assert incident.root_cause == "Upstream table renamed"
    with quorum.runtime.db.session() as session:
        [item] = session.scalars(select(IncidentFollowUp)).all()
        assert (item.text, item.owner, item.due_date.isoformat(), item.status) == (
            "Alert on feature freshness", "U0CAROL01", due, "open")
    assert timeline(quorum) == ["declared", "acknowledged", "mitigated", "update", "resolved"]
    with quorum.runtime.db.session() as session:
        actions = list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert actions == ["incident.declared", "incident.acknowledged", "incident.mitigated",
                       "incident.updated", "incident.resolved"]


def test_add_update_modal_posts_in_the_thread(slack: SlackSender, quorum: QuorumServer,
                                              fake_slack: FakeSlack) -> None:
    slack.command("/incident", "declare Scores look off")
    post = fake_slack.wait_for("chat.postMessage")[0]
    slack.click("incident_add_update", buttons(post.args)["incident_add_update"])
    view = fake_slack.wait_for("views.open")[0].args["view"]
    assert view["callback_id"] == "incident_update_modal" and view["title"]["text"] == \
        "Update INC-1"
    empty = slack.submit(view, {"update": ""}).json()
    assert empty["response_action"] == "errors" and "update" in empty["errors"]
    assert timeline(quorum) == ["declared"]

    slack.submit(view, {"update": "Found it: a <!channel> & a bad join"})
    [reply] = wait_for_replies(fake_slack, 1)
    text = json.dumps(reply.args["blocks"])
    assert "a &lt;!channel&gt; &amp; a bad join" in text and "<!channel>" not in text
    # An update by a person acknowledges a declared incident.
    [incident] = incidents(quorum)
    assert incident.status == "acknowledged" and incident.acknowledged_at is not None


def test_a_resolved_incident_refuses_changes(slack: SlackSender, quorum: QuorumServer,
                                             fake_slack: FakeSlack) -> None:
    slack.command("/incident", "declare sev1 Model server down")
    post = fake_slack.wait_for("chat.postMessage")[0]
    assert "Resolved *INC-1*" in slack.command("/incident", "resolve INC-1 Restarted").json()[
        "text"]
    fake_slack.wait_for("chat.postMessage", count=2)
    audits, events = count(quorum, AuditEvent), count(quorum, IncidentEvent)

    for text in ("update INC-1 still flaky", "resolve INC-1 again"):
        assert "INC-1 is already resolved" in reply_text(slack.command("/incident", text))
    slack.click("incident_ack", buttons(post.args)["incident_ack"])
    slack.click("incident_resolve", buttons(post.args)["incident_resolve"])
    refusals = fake_slack.wait_for("response_url", count=2)
    assert all("already resolved" in call.args["text"] for call in refusals)
    assert (count(quorum, AuditEvent), count(quorum, IncidentEvent)) == (audits, events)
    assert not fake_slack.calls_to("views.open")


def test_declare_modal_opens_a_dedicated_channel(slack: SlackSender, quorum: QuorumServer,
                                                 fake_slack: FakeSlack) -> None:
    fake_slack.channels["C0TAKEN01"] = {"id": "C0TAKEN01", "name": "inc-1-churn-features-stale"}
    slack.command("/incident", "declare")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    assert view["callback_id"] == "incident_declare_modal"
    commander = next(b for b in view["blocks"] if b.get("block_id") == "commander")
    assert commander["element"]["initial_user"] == "U0ALICE01"

    answer = slack.submit(view, {
        "title": "Churn features stale!", "severity": "sev1", "model": "churn-xgb",
        "model_version": "12", "commander": "U0BOB0001", "description": "Since 09:00",
        "dedicated": ["yes"]})
    assert answer.status_code == 200 and not answer.content.strip(b"{}")

    creates = fake_slack.wait_for("conversations.create", count=1)
    attempts = [c.args["name"] for c in fake_slack.calls_to("conversations.create", False)]
    assert attempts == ["inc-1-churn-features-stale", "inc-1-churn-features-stale-2"]
    room = creates[0].response["channel"]["id"]
    invite = fake_slack.wait_for("conversations.invite")[0].args
    assert (invite["channel"], invite["users"]) == (room, "U0ALICE01,U0BOB0001")
    fake_slack.wait_for("chat.postMessage", count=3)
    room_card = card_of(fake_slack, "INC-1", room)
    assert set(buttons(room_card)) == {"incident_ack", "incident_add_update", "incident_resolve"}
    eventually(lambda: f"<#{room}>" in json.dumps(card_of(fake_slack, "INC-1")["blocks"]))
    assert "churn-xgb v12" in json.dumps(card_of(fake_slack, "INC-1")["blocks"])
    assert f"<#{room}>" in thread_texts(fake_slack, card_of(fake_slack, "INC-1"))[0]

    [incident] = incidents(quorum)
    assert (incident.severity, incident.commander, incident.model, incident.model_version,
            incident.channel_id) == ("sev1", "U0BOB0001", "churn-xgb", "12", room)
    assert timeline(quorum) == ["declared", "channel"]

    # Buttons on the card in the dedicated channel work the same and update both cards.
    slack.click("incident_ack", buttons(room_card)["incident_ack"], channel=room)
    for channel in (room, CHANNEL):
        eventually(lambda c=channel: "incident_mitigate" in buttons(card_of(fake_slack, "INC-1",
                                                                            c)))


def test_channel_creation_refused_tells_the_declarer(slack: SlackSender, quorum: QuorumServer,
                                                     fake_slack: FakeSlack) -> None:
    fake_slack.inject("conversations.create", error="restricted_action")
    slack.command("/incident", "")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    slack.submit(view, {"title": "GPU node lost", "dedicated": ["yes"]})
    warning = fake_slack.wait_for("chat.postEphemeral")[0].args
    assert warning["user"] == "U0ALICE01" and "restricted_action" in warning["text"]
    [incident] = incidents(quorum)
    assert incident.channel_id is None and incident.severity == "sev3"


def test_declare_modal_bad_input_answers_on_the_field(slack: SlackSender, quorum: QuorumServer,
                                                      fake_slack: FakeSlack) -> None:
    slack.command("/incident", "")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    for values, field in (({"title": " "}, "title"), ({"title": "x", "model": "m" * 201},
                                                       "model")):
        answer = slack.submit(view, values).json()
        assert answer["response_action"] == "errors" and field in answer["errors"]
    assert count(quorum, Incident) == 0 and count(quorum, Project) == 0


def test_log_a_decision_from_the_summary_is_prefilled(slack: SlackSender, quorum: QuorumServer,
                                                      fake_slack: FakeSlack) -> None:
    slack.command("/incident", "declare sev2 Drift on churn-xgb")
    slack.command("/incident", "resolve INC-1 Rolled back to v11")
    summary = summary_of(fake_slack, "INC-1")
    slack.click("incident_log_decision", buttons(summary.args)["incident_log_decision"])
    view = fake_slack.wait_for("views.open")[0].args["view"]
    assert view["callback_id"] == "decision_modal"
    values = {b["block_id"]: b["element"].get("initial_value") for b in view["blocks"]
              if b.get("type") == "input"}
    assert values["title"] == "After INC-1: Drift on churn-xgb"
    assert "From incident INC-1 (sev2)" in values["context"]
    assert "Summary: Rolled back to v11" in values["context"]
    assert json.loads(view["private_metadata"])["channel"] == CHANNEL


def test_add_to_risk_register_from_the_summary(slack: SlackSender, quorum: QuorumServer,
                                               fake_slack: FakeSlack) -> None:
    slack.command("/incident", "declare sev2 Drift on churn-xgb")
    slack.command("/incident", "resolve INC-1 Rolled back to v11")
    summary = summary_of(fake_slack, "INC-1")
    slack.click("incident_add_risk", buttons(summary.args)["incident_add_risk"])
    view = fake_slack.wait_for("views.open")[0].args["view"]
    values = {b["block_id"]: b["element"] for b in view["blocks"] if b.get("type") == "input"}
    assert values["title"]["initial_value"] == "Recurrence of INC-1: Drift on churn-xgb"
    assert "Summary: Rolled back to v11" in values["description"]["initial_value"]
    assert values["owner"]["initial_user"] == "U0ALICE01"

    answer = slack.submit(view, {"likelihood": "3", "impact": "4"})
    assert answer.status_code == 200 and not answer.content.strip(b"{}")
    with quorum.runtime.db.session() as session:
        [risk] = session.scalars(select(Risk)).all()
        assert (risk.title, risk.category, risk.score) == (
            "Recurrence of INC-1: Drift on churn-xgb", "model", 12)
        assert risk.project.channel_id == CHANNEL


def test_list_shows_open_first_with_mtta_and_mttr(slack: SlackSender, quorum: QuorumServer,
                                                  fake_slack: FakeSlack) -> None:
    for text in ("declare sev3 Old outage", "declare sev2 Yesterday's outage",
                 "declare sev4 Still flaky", "declare sev1 Down right now"):
        slack.command("/incident", text)
    now = utcnow()
    times = {
        1: dict(started_at=now - timedelta(days=40), acknowledged_at=now - timedelta(days=40),
                resolved_at=now - timedelta(days=39), status="resolved"),
        2: dict(started_at=now - timedelta(hours=26), resolved_at=now - timedelta(hours=25),
                acknowledged_at=now - timedelta(hours=25, minutes=50), status="resolved"),
        3: dict(started_at=now - timedelta(hours=3), status="acknowledged",
                acknowledged_at=now - timedelta(hours=2, minutes=55)),
    }
    with quorum.runtime.db.session() as session:
        for number, values in times.items():
            session.execute(update(Incident).where(Incident.number == number).values(**values))

    text = reply_text(slack.command("/incident", "list"))
    # MTTA over INC-2 (10 min) and INC-3 (5 min); MTTR over INC-2 only (1 h): INC-1 is too old.
    assert "MTTA *7 min* over 2 acknowledged" in text and "MTTR *1 h* over 1 resolved" in text
    assert text.index("INC-4") < text.index("INC-3") < text.index("Resolved in the last")
    assert text.index("Resolved in the last") < text.index("INC-2")
    assert "INC-1" not in text


def test_update_reminders_follow_the_severity_interval(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/incident", "declare sev1 Payments model down", user="U0BOB0001")
    slack.command("/incident", "declare sev4 Slow nightly batch")
    fake_slack.wait_for("chat.postMessage", count=2)
    [sev1, sev4] = incidents(quorum)
    start = sev1.last_update_at

    quorum.scheduler.run_due(start + timedelta(minutes=29))
    assert count(quorum, OutboxMessage) == 2
    quorum.scheduler.run_due(start + timedelta(minutes=31))
    quorum.scheduler.run_due(start + timedelta(minutes=45))  # same interval: no second nudge
    [reminder] = wait_for_replies(fake_slack, 1)
    text = slack_unescape(json.dumps(reminder.args["blocks"]))
    assert "<@U0BOB0001>, *INC-1*" in text and "no update for 31 min" in text
    assert reminder.args["thread_ts"] == card_of(fake_slack, "INC-1")["ts"]
    quorum.scheduler.run_due(start + timedelta(minutes=61))
    wait_for_replies(fake_slack, 2)

    slack.command("/incident", "update INC-1 Failing over to the backup region",
                  user="U0BOB0001")
    wait_for_replies(fake_slack, 3)
    updated = incidents(quorum)[0].last_update_at
    quorum.scheduler.run_due(updated + timedelta(minutes=10))
    assert count(quorum, OutboxMessage) == 6  # 2 cards, 2 reminders, update + its card edit
    quorum.scheduler.run_due(sev4.last_update_at + timedelta(hours=24, minutes=1))
    replies = wait_for_replies(fake_slack, 5)
    assert sum("INC-2" in json.dumps(c.args["blocks"]) for c in replies) == 1
