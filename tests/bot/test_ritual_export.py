"""`quorum export rituals` in JSON, CSV and Markdown, with every ritual kind in every state."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.database import Database
from bot.export import export
from bot.models import RitualOccurrence, RitualSchedule
from bot.services import rituals
from bot.services.projects import project_for_channel
from bot.services.rituals import occurrences, retros, reviews, standups, zones

MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
A, B, C = "U0ALICE01", "U0BOB0001", "U0CAROL01"


def build_every_state(db: Database) -> None:
    """Schedules (one off, one `each`, custom questions), standups posted, answered, skipped
    (holiday and missed), closed with someone away; a retro with an anonymous item, votes and
    action items done and open; a review with agenda and outcome; a demo only scheduled."""
    with db.session() as session:
        team = project_for_channel(session, "T1", "C0TEAM001", "team")
        rituals.set_schedule(session, team, A, "standup", "weekdays 09:30", "UTC",
                             members=[A, B, C], now=MONDAY - timedelta(days=3))
        standups.set_questions(session, team, A, [("What did you ship?", True),
                                                  ("Anything blocking you?", False)])
        rituals.skip_date(session, team, A, "standup", date(2026, 11, 24),
                          now=MONDAY - timedelta(days=3))
        rituals.set_away(session, team, A, C, date(2026, 11, 30), now=MONDAY - timedelta(days=3))
        rituals.set_schedule(session, team, A, "retro", "fridays 15:00", "UTC", members=[A, B],
                             now=MONDAY, votes=2)
        rituals.turn_off(session, team, A, "retro")
        rituals.set_schedule(session, team, A, "demo", "fridays 16:00", "UTC", now=MONDAY)
        each = project_for_channel(session, "T1", "C0EACH001", "each")
        rituals.set_schedule(session, each, A, "standup", "weekdays 09:30", "Europe/London",
                             members=[A, B], now=MONDAY, each=True)
        zones.remember(session, "T1", {A: "Asia/Tokyo", B: "America/Chicago"}, MONDAY)
    with db.session() as session:  # Friday's standup missed: Quorum was down since Thursday
        for schedule in session.scalars(select(RitualSchedule)):
            if schedule.kind == "standup" and schedule.mode == "channel":
                schedule.checked_until = MONDAY - timedelta(days=4)
    with db.session() as session:
        occurrences.run_rituals(session, MONDAY + timedelta(minutes=30, seconds=5))
    with db.session() as session:
        standup = session.scalars(select(RitualOccurrence).where(
            RitualOccurrence.kind == "standup", RitualOccurrence.status == "open",
            RitualOccurrence.mode == "channel")).one()
        standups.record_message(session, standup, A, "1: the drift monitor; 2: none", "1.1")
        standups.add_update(session, standup, B, {"q1": "eval harness", "q2": "labels"})
    with db.session() as session:
        occurrences.run_rituals(session, MONDAY + timedelta(hours=4))  # closed
        occurrences.run_rituals(session, MONDAY + timedelta(days=1, minutes=31))  # holiday
    with db.session() as session:
        team = project_for_channel(session, "T1", "C0TEAM001")
        retro = rituals.run_now(session, team, A, "retro", MONDAY + timedelta(days=1))
        now = datetime.now(UTC)
        anonymous = retros.add_item(session, retro, A, retros.ItemDraft(
            "went_well", "Fast loop", anonymous=True), now)
        flaky = retros.add_item(session, retro, B, retros.ItemDraft("to_improve", "Flaky CI"),
                                now)
        done = retros.add_item(session, retro, A, retros.ItemDraft(
            "action", "Quarantine tests", B, now.date() + timedelta(days=2)), now)
        retros.add_item(session, retro, A, retros.ItemDraft(
            "action", "Write the runbook", A, now.date() + timedelta(days=9)), now)
        retros.vote(session, flaky.id, A)
        retros.vote(session, flaky.id, B)
        retros.vote(session, anonymous.id, B)
        retros.complete_item(session, done.id, B)
        review = rituals.run_now(session, team, A, "review", MONDAY + timedelta(days=1))
        reviews.add_agenda_item(session, review, B, "Latency budget")
        reviews.record_outcome(session, review, A, "Approved", "Adopt the budget")
        rituals.run_now(session, team, A, "standup", MONDAY + timedelta(days=2))  # left open
    with db.session() as session:  # the `each` standup of Tuesday: planned, prompts due
        occurrences.run_rituals(session, datetime(2026, 11, 24, 0, 31, tzinfo=UTC))


def exported(db: Database, fmt: str) -> tuple[int, str]:
    out = io.StringIO()
    with db.session() as session:
        count = export(session, "rituals", fmt, out)
    return count, out.getvalue()


def test_every_state_exports_as_json(db: Database) -> None:
    build_every_state(db)
    count, text = exported(db, "json")
    records = json.loads(text)
    assert len(records) == count
    for record in records:
        for key in ("ref", "project", "status", "created_at", "created_by", "type", "kind"):
            assert key in record
    schedules = {(r["kind"], r["project"]): r for r in records if r["type"] == "schedule"}
    assert schedules[("retro", "team")]["status"] == "off"
    assert schedules[("retro", "team")]["votes_per_person"] == 2
    assert schedules[("standup", "each")]["mode"] == "each"
    assert [q["text"] for q in schedules[("standup", "team")]["questions"]] == [
        "What did you ship?", "Anything blocking you?"]
    held = [r for r in records if r["type"] == "occurrence"]
    states = {(r["kind"], r["status"], r["skip_reason"] is not None) for r in held}
    assert {("standup", "skipped", True), ("standup", "closed", False),
            ("standup", "open", False), ("retro", "open", False),
            ("review", "open", False)} <= states
    reasons = {r["skip_reason"].split(" ")[0] for r in held if r["skip_reason"]}
    assert reasons == {"missed:", "skipped"}
    closed = next(r for r in held if r["kind"] == "standup" and r["status"] == "closed")
    assert {u["user"]: [a["answer"] for a in u["answers"]] for u in closed["updates"]} == {
        A: ["the drift monitor", ""], B: ["eval harness", "labels"]}
    assert C not in closed["participants"]  # away
    retro = next(r for r in held if r["kind"] == "retro")
    by_text = {i["text"]: i for i in retro["items"]}
    assert by_text["Fast loop"]["anonymous"] and by_text["Fast loop"]["created_by"] == \
        "anonymous"
    assert (by_text["Flaky CI"]["votes"], by_text["Fast loop"]["votes"]) == (2, 1)
    assert (by_text["Quarantine tests"]["state"], by_text["Write the runbook"]["state"]) == \
        ("done", "open")
    assert by_text["Quarantine tests"]["ref"].startswith("A-")
    review = next(r for r in held if r["kind"] == "review")
    assert review["outcome"] == "Approved" and review["outcome_decisions"] == ["D-1"]
    each = next(r for r in held if r["mode"] == "each")
    assert {p["user"]: p["timezone"] for p in each["prompts"]} == {
        A: "Asia/Tokyo", B: "America/Chicago"}


@pytest.mark.parametrize("fmt", ["csv", "md"])
def test_every_state_exports_as_csv_and_markdown(db: Database, fmt: str) -> None:
    build_every_state(db)
    count, text = exported(db, fmt)
    assert count >= 10
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == count
        assert {row["type"] for row in rows} == {"schedule", "occurrence"}
        retro = next(row for row in rows if row["kind"] == "retro" and
                     row["type"] == "occurrence")
        assert "Quarantine tests" in retro["items"] and json.loads(retro["items"])
    else:
        assert text.count("\n## ") == count
        assert "Fast loop" in text and "(anonymous)" in text and "(2 votes)" in text
        assert "What did you ship? the drift monitor" in text
        assert "Outcome (U0ALICE01): Approved — decisions D-1" in text
        assert "missed" in text and "each person at their own time" in text
