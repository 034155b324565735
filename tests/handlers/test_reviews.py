"""Design reviews and sprint demos on schedule, end to end: the agenda thread a day ahead
(items by button or reply), the reminder at the start, and the outcome with its decisions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from bot.models import Decision, OutboxMessage, RetroItem, RitualOccurrence, SlackMessage
from bot.render import slack_unescape
from support.db_snapshot import changed_tables, snapshot
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import SlackSender
from support.waiting import eventually

CHANNEL = "C0CHURN01"
ALICE, BOB, CAROL = "U0ALICE01", "U0BOB0001", "U0CAROL01"


def text_of(message: dict[str, Any]) -> str:
    return slack_unescape(message.get("text", "") + json.dumps(message.get("blocks", []),
                                                               ensure_ascii=False))


def occurrences(quorum: QuorumServer, kind: str = "review") -> list[RitualOccurrence]:
    """The reviews held (a demo of the same days, or one missed, is not one)."""
    with quorum.runtime.db.session() as session:
        return list(session.scalars(select(RitualOccurrence).where(
            RitualOccurrence.kind == kind, RitualOccurrence.status != "skipped")
            .order_by(RitualOccurrence.id)))


def agenda(quorum: QuorumServer) -> list[tuple[str, str]]:
    with quorum.runtime.db.session() as session:
        return [(i.created_by, i.text) for i in session.scalars(
            select(RetroItem).where(RetroItem.kind == "agenda").order_by(RetroItem.id))]


def _outbox(quorum: QuorumServer) -> list[str]:
    with quorum.runtime.db.session() as session:
        return list(session.scalars(select(OutboxMessage.status)))


def reply(slack: SlackSender, thread_ts: str, user: str, text: str, ts: str,
          event_id: str | None = None, retry: int | None = None) -> None:
    event = {"type": "message", "channel": CHANNEL, "user": user, "text": text, "ts": ts,
             "thread_ts": thread_ts, "channel_type": "channel"}
    assert slack.event(event, event_id=event_id, retry=retry).status_code == 200


def test_a_design_review_runs_on_schedule_and_logs_its_decisions(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    now = datetime.now(UTC)
    thursday = (now + timedelta(days=(3 - now.weekday()) % 7)).date()
    meeting = datetime.combine(thursday, time(14), UTC)
    if meeting - timedelta(days=1) < now + timedelta(hours=1):
        meeting += timedelta(days=7)  # the next Thursday whose agenda opens in the future
    answer = slack.command("/ritual", "schedule review thursdays 14:00 tz UTC").json()
    assert "Review scheduled" in text_of(answer)
    assert "Demo scheduled" in text_of(slack.command("/ritual",
                                                     "schedule demo fridays 16:00").json())
    run = quorum.scheduler.run_due
    run(meeting - timedelta(days=1, minutes=1))
    assert occurrences(quorum) == []
    run(meeting - timedelta(days=1) + timedelta(seconds=5))  # the agenda opens a day ahead
    [review] = occurrences(quorum)
    assert (review.kind, review.scheduled_for) == ("review", meeting)
    [card] = fake_slack.wait_for("chat.postMessage",
                                 predicate=lambda c: "Design review" in c.args["text"])
    assert "add agenda items" in card.args["text"]

    def card_ts() -> str | None:
        with quorum.runtime.db.session() as session:
            row = session.get(SlackMessage, f"ritual:{review.id}:card")
            return row.ts if row else None
    ts = eventually(card_ts)
    slack.click("ritual_agenda_add", str(review.id), user=ALICE)
    view = fake_slack.wait_for("views.open")[-1].args["view"]
    assert not slack.submit(view, {"text": "Feature store design"}, user=ALICE
                            ).content.strip(b"{}")
    reply(slack, ts, BOB, "Latency budget for v2", "1900000000.000001", event_id="EvAgenda1")
    reply(slack, ts, BOB, "Latency budget for v2", "1900000000.000001", event_id="EvAgenda1",
          retry=1)
    reply(slack, ts, CAROL, f"<@{BOB}> which budget?", "1900000000.000002")
    assert agenda(quorum) == [(ALICE, "Feature store design"), (BOB, "Latency budget for v2")]

    run(meeting + timedelta(seconds=5))  # the reminder at the start, with the agenda
    [start] = fake_slack.wait_for("chat.postMessage",
                                  predicate=lambda c: "starts now" in c.args["text"])
    assert "Feature store design" in text_of(start.args) and "thread_ts" not in start.args

    run(meeting + timedelta(hours=1, seconds=5))  # afterwards: the outcome is asked for
    assert len(fake_slack.calls_to("chat.getPermalink")) == 0
    [prompt] = fake_slack.wait_for("chat.postMessage",
                                   predicate=lambda c: "outcome" in c.args["text"])
    assert prompt.args["thread_ts"] == ts
    slack.click("ritual_outcome", str(review.id), user=ALICE)
    form = fake_slack.wait_for("views.open", count=2)[-1].args["view"]
    empty = slack.submit(form, {"outcome": "", "decisions": ""}, user=ALICE).json()
    assert empty["response_action"] == "errors" and "outcome" in empty["errors"]
    assert not slack.submit(form, {"outcome": "Design approved with changes",
                                   "decisions": "Adopt the feature store\n- Drop the v1 API"},
                            user=ALICE).content.strip(b"{}")
    with quorum.runtime.db.session() as session:
        decisions = session.scalars(select(Decision).order_by(Decision.number)).all()
        logged = [(d.title, d.status, d.source_permalink is not None, f"REVIEW-{review.id}" in
                   d.context) for d in decisions]
        held = session.get(RitualOccurrence, review.id)
        assert held is not None
        assert (held.outcome, held.outcome_by) == ("Design approved with changes", ALICE)
        assert held.outcome_decisions == [d.ref for d in decisions]
    assert logged == [("Adopt the feature store", "accepted", True, True),
                      ("Drop the v1 API", "accepted", True, True)]
    [outcome] = fake_slack.wait_for("chat.postMessage",
                                    predicate=lambda c: c.args["text"].startswith("Outcome"))
    assert outcome.args["thread_ts"] == ts and "Adopt the feature store" in text_of(outcome.args)

    eventually(lambda: not [m for m in _outbox(quorum) if m in ("pending", "sending")])
    before = snapshot(quorum.runtime.db)
    slack.click("ritual_outcome", str(review.id), user=BOB)  # a second outcome: refused
    fake_slack.wait_for("chat.postEphemeral", predicate=lambda c: "already recorded" in
                        c.args["text"] and c.args["user"] == BOB)
    assert changed_tables(before, quorum.runtime.db) == []


def test_bad_ritual_commands_are_refused_and_write_nothing(
        slack: SlackSender, quorum: QuorumServer) -> None:
    before = snapshot(quorum.runtime.db)
    for text, expected in {"schedule meeting fridays 15:00": "review, demo",
                           "schedule review sometimes": "weekdays 09:30",
                           "schedule demo fridays 15:00 each": "standups only",
                           "off review": "no review scheduled",
                           "status": "review"}.items():
        body = slack.command("/ritual", text).json()
        assert body["response_type"] == "ephemeral"
        assert expected in text_of(body), (text, text_of(body))
    assert changed_tables(before, quorum.runtime.db) == []
