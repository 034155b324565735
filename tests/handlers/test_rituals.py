"""`/standup` and `/retro` end to end: signed requests in, the clock driven by `run_due(now)`."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select

from bot.models import (
    AuditEvent,
    Decision,
    OutboxMessage,
    Promotion,
    RetroItem,
    RitualOccurrence,
    RitualSchedule,
    RitualUpdate,
)
from bot.services import promotions
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.ritual_steps import (
    card_ts,
    occurrences,
    reply,
    roles,
    schedule,
    set_created,
    text_of,
)
from support.slack_requests import SlackSender
from support.waiting import eventually

ALICE, BOB, CAROL = "U0ALICE01", "U0BOB0001", "U0CAROL01"


def counts(quorum: QuorumServer) -> tuple[int, ...]:
    with quorum.runtime.db.session() as session:
        return tuple(session.scalar(select(func.count()).select_from(model)) or 0
                     for model in (RitualSchedule, RitualOccurrence, RitualUpdate, AuditEvent,
                                   OutboxMessage))


def updates_of(quorum: QuorumServer) -> list[tuple[str, str, str, str]]:
    with quorum.runtime.db.session() as session:
        return [(u.user_id, u.source, u.today, u.blockers) for u in
                session.scalars(select(RitualUpdate).order_by(RitualUpdate.id))]


# --- schedules -----------------------------------------------------------------------------


def test_schedule_replies_with_the_next_three_in_the_time_zone(
        slack: SlackSender, quorum: QuorumServer) -> None:
    text = schedule(slack, "standup", "weekdays 09:30 tz Europe/Paris")
    assert "Europe/Paris" in text and text.count("09:30 CE") == 3
    [row] = occurrences(quorum) or [None]  # nothing posted yet
    assert row is None
    with quorum.runtime.db.session() as session:
        [saved] = session.scalars(select(RitualSchedule)).all()
        assert (saved.cron, saved.timezone, saved.enabled) == \
            ("30 9 * * mon-fri", "Europe/Paris", True)
        # Nobody holds a role: the channel's members (conversations.members) are the fallback.
        assert saved.members
        assert session.scalars(select(AuditEvent.action)).all() == ["standup.scheduled"]


def test_cron_with_quotes_and_status_and_off(slack: SlackSender, quorum: QuorumServer) -> None:
    text = schedule(slack, "retro", '"0 15 * * 5" tz America/New_York')
    assert "America/New_York" in text and text.count("Friday") == 3
    status = text_of(slack.command("/retro", "status").json())
    assert "0 15 * * 5" in status and "America/New_York" in status
    assert "is off" in text_of(slack.command("/retro", "off").json())
    assert "No retro is scheduled" in text_of(slack.command("/retro", "").json())


def test_bad_schedules_are_refused_and_write_nothing(
        slack: SlackSender, quorum: QuorumServer) -> None:
    before = counts(quorum)
    cases = {
        "schedule sometimes maybe": "weekdays 09:30",  # the reply shows examples
        "schedule weekdays 09:30 tz Europe/Pariss": "Europe/Paris",  # close matches
        'schedule "0 9 31 2 *"': "never happens",
        "schedule * * * * *": "more than once an hour",
        "skip 2020-01-01": "in the past",
        f"away <@{BOB}> until 2020-01-01": "in the past",
    }
    for text, expected in cases.items():
        body = slack.command("/standup", text).json()
        assert body["response_type"] == "ephemeral"
        assert expected in text_of(body), (text, text_of(body))
    assert counts(quorum) == before


# --- posting exactly once ------------------------------------------------------------------


def test_standup_posts_once_at_local_time_collects_updates_reminds_and_summarizes(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    roles(slack, ALICE, BOB, CAROL)
    schedule(slack, "standup", "weekdays 09:30 tz Europe/Paris")
    monday = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # 09:00 in Paris
    set_created(quorum, monday)
    run = quorum.scheduler.run_due

    run(monday + timedelta(minutes=29))
    assert occurrences(quorum) == []
    post_at = monday + timedelta(minutes=30, seconds=20)  # 09:30 Paris = 08:30 UTC
    run(post_at)
    run(post_at + timedelta(seconds=30))  # the next tick finds nothing new
    [standup] = occurrences(quorum)
    assert standup.scheduled_for == datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
    assert standup.participants == [ALICE, BOB, CAROL]
    [card] = fake_slack.wait_for("chat.postMessage",
                                 predicate=lambda c: "Standup" in c.args["text"])
    assert "Monday 2026-11-23" in text_of(card.args) and "Blockers" in text_of(card.args)
    ts = card_ts(quorum, standup.id)

    # A thread reply (delivered twice by Slack), a bot message, an edit, and a modal update.
    reply(slack, ts, ALICE, "Yesterday: features\nToday: training\nBlockers: GPU quota",
          "1800000000.000100", event_id="Ev1")
    reply(slack, ts, ALICE, "Yesterday: features\nToday: training\nBlockers: GPU quota",
          "1800000000.000100", event_id="Ev1", retry=1)
    reply(slack, ts, "UBOT", "beep", "1800000000.000101", bot_id="B1")
    reply(slack, ts, ALICE, "edited", "1800000000.000102", subtype="message_changed")
    eventually(lambda: len(updates_of(quorum)) == 1)

    button = card.args["blocks"][-1]["elements"][0]
    assert button["action_id"] == "ritual_add_update"
    slack.click("ritual_add_update", button["value"], user=BOB)
    view = fake_slack.wait_for("views.open")[0].args["view"]
    bad = slack.submit(view, {"yesterday": "", "today": "", "blockers": ""}, user=BOB).json()
    assert bad["response_action"] == "errors" and "today" in bad["errors"]
    answer = slack.submit(view, {"yesterday": "eval", "today": "ship <!channel>",
                                 "blockers": "none"}, user=BOB)
    assert not answer.content.strip(b"{}")
    assert updates_of(quorum) == [(ALICE, "thread", "training", "GPU quota"),
                                  (BOB, "modal", "ship <!channel>", "")]

    # Halfway through the 3-hour window, Carol (no update yet) gets a DM, once.
    run(post_at + timedelta(minutes=90))
    run(post_at + timedelta(minutes=91))
    dms = fake_slack.wait_for("chat.postMessage", predicate=lambda c: c.args["channel"] == CAROL)
    assert len([c for c in fake_slack.calls_to("chat.postMessage")
                if c.args["channel"] in (ALICE, BOB, CAROL)]) == 1
    assert "waiting for your update" in text_of(dms[0].args)

    run(post_at + timedelta(hours=3))
    [summary] = fake_slack.wait_for("chat.postMessage",
                                    predicate=lambda c: "summary" in c.args["text"])
    assert summary.args["thread_ts"] == ts
    body = text_of(summary.args)
    assert "GPU quota" in body and f"<@{ALICE}>: *GPU quota*" in body
    assert "No update from*: <@U0CAROL01>" in body
    run(post_at + timedelta(hours=4))
    [closed] = occurrences(quorum)
    assert closed.status == "closed"
    assert len(fake_slack.calls_to("chat.postMessage", ok_only=False)) == len(
        fake_slack.calls_to("chat.postMessage"))
    # A reply after the close is not an update.
    reply(slack, ts, CAROL, "late", "1800000000.000200")
    assert len(updates_of(quorum)) == 2


def test_missed_occurrence_is_skipped_and_a_late_one_posted(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    schedule(slack, "standup", "weekdays 09:30 tz UTC")
    friday = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    set_created(quorum, friday)
    # Down from Friday morning to Monday 10:15: Friday's is too old, Monday's is 45 min late.
    quorum.scheduler.run_due(datetime(2026, 11, 23, 10, 15, tzinfo=UTC))
    found = occurrences(quorum)
    assert [(o.local_date, o.status) for o in found] == [
        (date(2026, 11, 20), "skipped"), (date(2026, 11, 23), "open")]
    assert "missed" in (found[0].skip_reason or "")
    fake_slack.wait_for("chat.postMessage", predicate=lambda c: "Standup" in c.args["text"])
    assert len([c for c in fake_slack.calls_to("chat.postMessage")
                if "Standup" in c.args["text"]]) == 1


def test_skip_a_holiday_and_away_people_are_not_expected(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    roles(slack, ALICE, BOB)
    schedule(slack, "standup", "weekdays 09:30 tz UTC")
    today = datetime.now(UTC).date()
    holiday = today + timedelta(days=(7 - today.weekday()))  # next Monday
    assert "No standup on" in text_of(slack.command("/standup",
                                                    f"skip {holiday.isoformat()}").json())
    until = holiday + timedelta(days=1)
    away = slack.command("/standup", f"away <@{BOB}> until {until.isoformat()}").json()
    assert f"<@{BOB}> is away until" in away["text"]  # a live mention, not &lt;@…&gt; text
    start = datetime.combine(holiday - timedelta(days=2), datetime.min.time(), UTC)
    set_created(quorum, start)
    quorum.scheduler.run_due(datetime.combine(holiday, datetime.min.time(), UTC)
                             + timedelta(hours=9, minutes=31))
    quorum.scheduler.run_due(datetime.combine(until, datetime.min.time(), UTC)
                             + timedelta(hours=9, minutes=31))
    found = occurrences(quorum)
    assert [(o.local_date, o.status) for o in found] == [(holiday, "skipped"), (until, "open")]
    assert found[1].participants == [ALICE]
    status = text_of(slack.command("/standup", "status").json())
    assert f"<@{BOB}> until {until.isoformat()}" in status


def test_dst_changes_neither_shift_nor_duplicate(
        slack: SlackSender, quorum: QuorumServer) -> None:
    schedule(slack, "standup", "daily 02:30 tz Europe/Paris")
    set_created(quorum, datetime(2026, 3, 27, 12, 0, tzinfo=UTC))
    # Spring forward (29 March: 02:00 → 03:00) and fall back (25 October: 03:00 → 02:00).
    # 02:30 does not exist on 29 March: cron (and cronsim) run it at the change, 03:00 CEST.
    for day in range(28, 31):
        quorum.scheduler.run_due(datetime(2026, 3, day, 3, 0, tzinfo=UTC))
    spring = [(o.local_date, o.scheduled_for) for o in occurrences(quorum)]
    assert spring == [
        (date(2026, 3, 28), datetime(2026, 3, 28, 1, 30, tzinfo=UTC)),
        (date(2026, 3, 29), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),  # 03:00 on the clock
        (date(2026, 3, 30), datetime(2026, 3, 30, 0, 30, tzinfo=UTC)),
    ]
    with quorum.runtime.db.session() as session:
        for row in session.scalars(select(RitualSchedule)):
            row.checked_until = datetime(2026, 10, 23, 12, 0, tzinfo=UTC)
    for hour in range(0, 72):
        quorum.scheduler.run_due(datetime(2026, 10, 24, 0, 0, tzinfo=UTC)
                                 + timedelta(hours=hour))
    autumn = [o.scheduled_for for o in occurrences(quorum)][3:]
    assert autumn == [datetime(2026, 10, 24, 0, 30, tzinfo=UTC),
                      datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # the first 02:30, once
                      datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]


def test_weekday_standup_keeps_local_time_across_dst(
        slack: SlackSender, quorum: QuorumServer) -> None:
    schedule(slack, "standup", '"30 9 * * 1-5" tz Europe/Paris')
    set_created(quorum, datetime(2026, 3, 26, 0, 0, tzinfo=UTC))
    for day in (26, 27, 30):
        quorum.scheduler.run_due(datetime(2026, day // 31 + 3, day, 9, 0, tzinfo=UTC))
    assert [o.scheduled_for for o in occurrences(quorum)] == [
        datetime(2026, 3, 26, 8, 30, tzinfo=UTC), datetime(2026, 3, 27, 8, 30, tzinfo=UTC),
        datetime(2026, 3, 30, 7, 30, tzinfo=UTC)]


# --- retrospectives ------------------------------------------------------------------------


def test_fortnightly_retro_with_digest_items_and_summary(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    schedule(slack, "retro", "every 2 weeks on friday 15:00 tz UTC")
    start = datetime(2026, 11, 16, 0, 0, tzinfo=UTC)  # a Monday: its week is week 0
    set_created(quorum, start)
    slack.command("/decision", "Use LightGBM for churn")
    slack.command("/risk", "Label leakage")
    fake_slack.wait_for("chat.postMessage", count=2)
    slack.command("/quorum", "model add churn-xgb")
    with quorum.runtime.db.session() as session:  # a promotion of the channel's model
        promotions.record_promotion(session, promotions.PromotionDraft(
            model="churn-xgb", version="7", to="champion"), source="cli", created_by="ci",
            now=datetime(2026, 11, 19, tzinfo=UTC))
    with quorum.runtime.db.session() as session:  # logged within the period
        for decision in session.scalars(select(Decision)):
            decision.created_at = datetime(2026, 11, 18, tzinfo=UTC)
        for promotion in session.scalars(select(Promotion)):
            promotion.created_at = datetime(2026, 11, 19, tzinfo=UTC)
    run = quorum.scheduler.run_due
    run(datetime(2026, 11, 20, 15, 0, 5, tzinfo=UTC))
    [retro] = occurrences(quorum)
    assert retro.local_date == date(2026, 11, 20)
    [card] = fake_slack.wait_for("chat.postMessage",
                                 predicate=lambda c: "Retrospective" in c.args["text"])
    body = text_of(card.args)
    assert "D-1* Use LightGBM for churn" in body
    assert "*churn-xgb* v7 → `champion`" in body
    buttons = [e["action_id"] for e in card.args["blocks"][-1]["elements"]]
    assert buttons == ["retro_went_well", "retro_to_improve", "retro_action"]
    card_ts(quorum, retro.id)

    slack.click("retro_went_well", str(retro.id))
    view = fake_slack.wait_for("views.open")[-1].args["view"]
    assert not slack.submit(view, {"text": "Fast eval loop"}).content.strip(b"{}")
    slack.click("retro_action", str(retro.id))
    view = fake_slack.wait_for("views.open", count=2)[-1].args["view"]
    past = slack.submit(view, {"text": "Add leakage check", "owner": BOB,
                               "due_date": "2020-01-01"}).json()
    assert past["response_action"] == "errors" and "due_date" in past["errors"]
    due = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
    assert not slack.submit(view, {"text": "Add leakage check", "owner": BOB,
                                   "due_date": due}).content.strip(b"{}")
    with quorum.runtime.db.session() as session:
        items = [(i.kind, i.text, i.owner) for i in session.scalars(select(RetroItem))]
    assert items == [("went_well", "Fast eval loop", None),
                     ("action", "Add leakage check", BOB)]

    run(datetime(2026, 11, 20, 18, 0, 5, tzinfo=UTC))
    [summary] = fake_slack.wait_for("chat.postMessage",
                                    predicate=lambda c: "summary" in c.args["text"])
    text = text_of(summary.args)
    assert "Fast eval loop" in text and f"Add leakage check — <@{BOB}>, due {due}" in text

    run(datetime(2026, 11, 27, 15, 0, 5, tzinfo=UTC))  # the odd week: no retro
    assert len(occurrences(quorum)) == 1
    # Two weeks later, the next retro lists the action item with its state.
    run(datetime(2026, 12, 4, 15, 0, 5, tzinfo=UTC))
    cards = fake_slack.wait_for("chat.postMessage", count=2,
                                predicate=lambda c: c.args["text"].startswith("Retrospective for"))
    assert "Add leakage check" in text_of(cards[-1].args) and "open" in text_of(cards[-1].args)


def test_now_posts_immediately_and_export_lists_rituals(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    assert "Started the standup" in text_of(slack.command("/standup", "now").json())
    fake_slack.wait_for("chat.postMessage", predicate=lambda c: "Standup" in c.args["text"])
    from io import StringIO

    from bot.export import export
    out = StringIO()
    with quorum.runtime.db.session() as session:
        assert export(session, "rituals", "json", out) == 1
    [record] = json.loads(out.getvalue())
    assert record["type"] == "occurrence" and record["kind"] == "standup"
    for key in ("ref", "project", "status", "created_at", "created_by"):
        assert key in record
