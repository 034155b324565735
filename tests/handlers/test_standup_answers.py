"""Standup answers that mean something, end to end: a thread full of conversation, one-line
answers, edits and deletions, custom questions, and each person's own time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bot.models import (
    RitualOccurrence,
    RitualPrompt,
    RitualSchedule,
    RitualUpdate,
)
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.ritual_steps import (
    CHANNEL,
    card_ts,
    occurrences,
    reply,
    roles,
    schedule,
    set_created,
    text_of,
)
from support.slack_requests import TEAM, SlackSender

ALICE, BOB, CAROL = "U0ALICE01", "U0BOB0001", "U0CAROL01"


DANA, ELI = "U0DANA001", "U0ELI0001"
MONDAY = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def answers(quorum: QuorumServer) -> dict[str, dict[str, str]]:
    with quorum.runtime.db.session() as session:
        return {u.user_id: dict(u.answers) for u in
                session.scalars(select(RitualUpdate).order_by(RitualUpdate.id))}


def edit(slack: SlackSender, thread_ts: str, user: str, text: str, ts: str) -> None:
    event = {"type": "message", "subtype": "message_changed", "channel": "C0CHURN01",
             "hidden": True, "ts": "1800000099.000001", "channel_type": "channel",
             "message": {"type": "message", "user": user, "text": text, "ts": ts,
                         "thread_ts": thread_ts, "edited": {"user": user, "ts": "1"}},
             "previous_message": {"type": "message", "user": user, "text": "old", "ts": ts,
                                  "thread_ts": thread_ts}}
    assert slack.event(event).status_code == 200


def start_standup(slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack,
                  *people: str) -> tuple[RitualOccurrence, str]:
    roles(slack, *people)
    schedule(slack, "standup", "weekdays 09:30 tz UTC")
    set_created(quorum, MONDAY)
    quorum.scheduler.run_due(MONDAY + timedelta(minutes=90, seconds=5))
    [standup] = occurrences(quorum)
    return standup, card_ts(quorum, standup.id)


def test_a_thread_full_of_conversation_counts_people_not_messages(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    _, ts = start_standup(slack, quorum, fake_slack, ALICE, BOB, CAROL, DANA)
    posted = MONDAY + timedelta(minutes=90, seconds=5)
    # Dana answers on one line; Eli (not expected) chooses to answer too.
    reply(slack, ts, DANA, "Yesterday: deployed shadow v8. Today: load test.", "1800000000.1")
    reply(slack, ts, ELI, "y: eval; t: ship; blockers: legal hasn't replied", "1800000000.2")
    # Conversation: a question to a colleague, an acknowledgement, an answer to someone.
    reply(slack, ts, BOB, "<@U0DANA001> did the load test use the new cluster?", "1800000000.3")
    reply(slack, ts, DANA, "sure, looking now", "1800000000.4")
    reply(slack, ts, ALICE, "is anyone else seeing the flaky test?", "1800000000.5")
    reply(slack, ts, CAROL, "<@U0BOB0001> Today: yes, the new one", "1800000000.6")
    # Dana again: a second message extends her update instead of making another.
    reply(slack, ts, DANA, "b: none", "1800000000.7")
    found = answers(quorum)
    assert found == {
        DANA: {"yesterday": "deployed shadow v8", "today": "load test", "blockers": ""},
        ELI: {"yesterday": "eval", "today": "ship", "blockers": "legal hasn't replied"},
    }
    cards = [c for c in fake_slack.calls_to("chat.update") if "Standup" in c.args["text"]]
    assert "2 people have answered of 4 expected" in text_of(cards[-1].args)

    # An edit replaces that message's part: Dana was blocked after all.
    edit(slack, ts, DANA, "b: waiting on GPU quota", "1800000000.7")
    assert answers(quorum)[DANA]["blockers"] == "waiting on GPU quota"
    # Bob's question, edited, is still conversation; a reply in another thread is nothing.
    edit(slack, ts, BOB, "<@U0DANA001> still?", "1800000000.3")
    reply(slack, "1799999999.000001", CAROL, "Today: elsewhere", "1800000000.8")
    # Slack retries an event: it counts once.
    reply(slack, ts, ELI, "y: eval; t: ship; blockers: legal hasn't replied", "1800000000.2",
          event_id="EvRetry", retry=1)
    assert set(answers(quorum)) == {DANA, ELI}
    # A deleted reply no longer answers: Frank answers, thinks better of it, deletes it.
    reply(slack, ts, "U0FRANK01", "t: nothing", "1800000000.9")
    assert "U0FRANK01" in answers(quorum)
    deleted = {"type": "message", "subtype": "message_deleted", "channel": CHANNEL,
               "hidden": True, "ts": "1800000099.000002", "deleted_ts": "1800000000.9",
               "channel_type": "channel",
               "previous_message": {"type": "message", "user": "U0FRANK01",
                                    "text": "t: nothing", "ts": "1800000000.9",
                                    "thread_ts": ts}}
    assert slack.event(deleted).status_code == 200
    assert set(answers(quorum)) == {DANA, ELI}

    with quorum.runtime.db.session() as session:  # Carol is away today
        from bot.services.projects import project_for_channel
        from bot.services.rituals import set_away
        set_away(session, project_for_channel(session, TEAM, "C0CHURN01"), ALICE,
                 CAROL, MONDAY.date(), now=MONDAY)
    quorum.scheduler.run_due(posted + timedelta(hours=3))
    [summary] = fake_slack.wait_for("chat.postMessage",
                                    predicate=lambda c: "summary" in c.args["text"])
    body = text_of(summary.args)
    assert summary.args["text"].startswith("Standup summary: 2 of 4 answered, 2 blockers")
    # Blockers first and highlighted, then each person's answers.
    assert body.index("*Blockers*") < body.index("*Answered* (2)")
    assert f"<@{DANA}>: *waiting on GPU quota*" in body
    assert f"<@{ELI}>: *legal hasn't replied*" in body
    assert "deployed shadow v8" in body and "load test" in body
    assert f"*No update from*: <@{ALICE}>, <@{BOB}>" in body
    assert f"Away: <@{CAROL}>" in body
    assert body.count(f"<@{DANA}>") == 2  # once in the blockers, once with her answers


def test_custom_questions_drive_the_form_the_thread_and_the_summary(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    roles(slack, ALICE, BOB)
    refused = slack.command("/standup", "questions").json()
    assert "Schedule the standup first" in text_of(refused)
    schedule(slack, "standup", "weekdays 09:30 tz UTC")
    assert slack.command("/standup", "questions").status_code == 200
    view = fake_slack.wait_for("views.open")[-1].args["view"]
    assert view["callback_id"] == "ritual_questions_modal"
    empty = {f"question_{n}": "" for n in range(1, 7)} | {f"required_{n}": [] for n in
                                                              range(1, 7)}
    bad = slack.submit(view, empty | {"question_1": "What did you ship?"}).json()
    assert bad["response_action"] == "errors" and "required_1" in bad["errors"]
    ok = slack.submit(view, empty | {"question_1": "What did you ship?",
                                     "required_1": ["yes"],
                                     "question_2": "Which metric moved?",
                                     "question_3": "Are you stuck on anything?"})
    assert not ok.content.strip(b"{}")
    with quorum.runtime.db.session() as session:
        [saved] = session.scalars(select(RitualSchedule)).all()
        assert [(q["key"], q["text"], q["required"]) for q in saved.questions] == [
            ("q1", "What did you ship?", True), ("q2", "Which metric moved?", False),
            ("q3", "Are you stuck on anything?", False)]
    set_created(quorum, MONDAY)
    quorum.scheduler.run_due(MONDAY + timedelta(minutes=90, seconds=5))
    [standup] = occurrences(quorum)
    ts = card_ts(quorum, standup.id)
    [card] = fake_slack.wait_for("chat.postMessage", predicate=lambda c: "Standup" in
                                 c.args["text"])
    assert "What did you ship?" in text_of(card.args) and "Yesterday" not in text_of(card.args)
    reply(slack, ts, ALICE, "1: the drift monitor. 2: recall +2%; 3: waiting on labels",
          "1800000000.1")
    reply(slack, ts, ALICE, "what did you ship?", "1800000000.2")  # a question, not an answer
    assert answers(quorum) == {ALICE: {"q1": "the drift monitor", "q2": "recall +2%",
                                       "q3": "waiting on labels"}}
    slack.click("ritual_add_update", str(standup.id), user=BOB)
    form = fake_slack.wait_for("views.open", count=2)[-1].args["view"]
    assert [b["block_id"] for b in form["blocks"] if b["type"] == "input"] == ["q1", "q2", "q3"]
    missing = slack.submit(form, {"q1": "", "q2": "x", "q3": ""}, user=BOB).json()
    assert missing["response_action"] == "errors" and "q1" in missing["errors"]
    assert not slack.submit(form, {"q1": "the eval harness", "q2": "", "q3": "no"},
                            user=BOB).content.strip(b"{}")
    quorum.scheduler.run_due(MONDAY + timedelta(hours=5))
    [summary] = fake_slack.wait_for("chat.postMessage",
                                    predicate=lambda c: "summary" in c.args["text"])
    body = text_of(summary.args)
    assert f"<@{ALICE}>: *waiting on labels*" in body  # "stuck" makes q3 the blocker question
    assert "the eval harness" in body and "recall +2%" in body
    assert summary.args["text"].startswith("Standup summary: 2 of 2 answered, 1 blocker")


def test_each_person_is_asked_at_their_own_time(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    fake_slack.users[ALICE] = {"tz": "Asia/Tokyo"}
    fake_slack.users[BOB] = {"tz": "America/New_York"}
    roles(slack, ALICE, BOB, CAROL)  # Carol's zone is Slack's default here: UTC
    text = schedule(slack, "standup", "weekdays 09:30 tz Europe/London each")
    assert "scheduled" in text
    assert {c.args["user"] for c in fake_slack.calls_to("users.info")} == {ALICE, BOB, CAROL}
    set_created(quorum, MONDAY - timedelta(days=2))  # Saturday
    run = quorum.scheduler.run_due
    run(datetime(2026, 11, 23, 0, 0, tzinfo=UTC))  # 09:00 in Tokyo: nobody asked yet
    [standup] = occurrences(quorum)
    with quorum.runtime.db.session() as session:
        prompts = {p.user_id: (p.timezone, p.prompt_at) for p in
                   session.scalars(select(RitualPrompt))}
    assert prompts == {
        ALICE: ("Asia/Tokyo", datetime(2026, 11, 23, 0, 30, tzinfo=UTC)),
        BOB: ("America/New_York", datetime(2026, 11, 23, 14, 30, tzinfo=UTC)),
        CAROL: ("UTC", datetime(2026, 11, 23, 9, 30, tzinfo=UTC)),
    }
    assert not [c for c in fake_slack.calls_to("chat.postMessage") if c.args["channel"] == ALICE]
    run(datetime(2026, 11, 23, 0, 30, 5, tzinfo=UTC))
    [dm] = fake_slack.wait_for("chat.postMessage", predicate=lambda c: c.args["channel"] == ALICE)
    assert "Open until 12:30 your time (Asia/Tokyo)" in text_of(dm.args)
    ts = card_ts(quorum, standup.id)  # the card went up with the first prompt
    # Alice answers in the DM; her answer goes into the channel's thread.
    assert slack.event({"type": "message", "channel": "D0ALICE01", "channel_type": "im",
                        "user": ALICE, "text": "y: tokenizer\nt: eval\nb: none",
                        "ts": "1800000000.000300"}).status_code == 200
    posted = fake_slack.wait_for("chat.postMessage", predicate=lambda c: c.args.get(
        "thread_ts") == ts and "update" in c.args["text"])
    assert "tokenizer" in text_of(posted[0].args)
    run(datetime(2026, 11, 23, 9, 30, 5, tzinfo=UTC))
    run(datetime(2026, 11, 23, 14, 30, 5, tzinfo=UTC))
    for person in (BOB, CAROL):  # each at 09:30 their time
        fake_slack.wait_for("chat.postMessage", predicate=lambda c, p=person:
                            c.args["channel"] == p)
    run(datetime(2026, 11, 23, 16, 0, tzinfo=UTC))  # Bob's window is still open
    assert occurrences(quorum)[0].status == "open"
    run(datetime(2026, 11, 23, 17, 30, 5, tzinfo=UTC))  # the last zone's window has ended
    [summary] = fake_slack.wait_for("chat.postMessage",
                                    predicate=lambda c: "summary" in c.args["text"])
    assert f"*No update from*: <@{BOB}>, <@{CAROL}>" in text_of(summary.args)
    assert answers(quorum) == {ALICE: {"yesterday": "tokenizer", "today": "eval",
                                       "blockers": ""}}
