"""The scheduler's contract: sweeps run for the given time, claims are taken once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import outbox
from bot.database import Database
from bot.models import OutboxMessage, RitualOccurrence, utcnow
from bot.scheduler import SWEEPS, Scheduler, claim_once, load_sweeps
from bot.services import rituals
from bot.services.projects import project_for_channel


def test_claim_once_is_true_once_per_key(db: Database) -> None:
    with db.session() as session:
        assert claim_once(session, "standup:1:2026-11-23T09:30")
        assert not claim_once(session, "standup:1:2026-11-23T09:30")
    with db.session() as session:
        assert not claim_once(session, "standup:1:2026-11-23T09:30")
        assert claim_once(session, "standup:1:2026-11-24T09:30")


def test_claim_is_released_when_the_work_fails(db: Database) -> None:
    try:
        with db.session() as session:
            assert claim_once(session, "job:x")
            raise RuntimeError("posting failed")
    except RuntimeError:
        pass
    with db.session() as session:
        assert claim_once(session, "job:x")


def test_run_due_passes_the_time_and_survives_a_failing_sweep(db: Database) -> None:
    seen: list[datetime] = []

    def failing(session: Session, now: datetime) -> None:
        raise RuntimeError("boom")

    def recording(session: Session, now: datetime) -> None:
        seen.append(now)

    scheduler = Scheduler(db)
    scheduler.sweeps = {"failing": failing, "recording": recording}
    moment = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    scheduler.run_due(moment)
    assert seen == [moment]
    assert isinstance(SWEEPS, dict)


def test_a_ritual_sweep_that_fails_midway_claims_nothing_and_the_next_tick_posts_each_once(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The occurrence claims and their cards' outbox rows commit together: a process that dies
    (here: fails) between a claim and its card leaves every ritual due for the next tick."""
    now = utcnow()
    with db.session() as session:
        for n in range(3):
            project = project_for_channel(session, "T1", f"C0SWEEP0{n}", f"p{n}")
            schedule, _ = rituals.set_schedule(session, project, "U1", "standup",
                                               f"daily {now:%H:%M}", "UTC", now=now)
            schedule.checked_until = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
    real_post, posts = outbox.post_message, iter(range(100))

    def dies_at_the_second_card(*args: Any, **kwargs: Any) -> Any:
        if next(posts) == 1:
            raise RuntimeError("killed between a claim and its card")
        return real_post(*args, **kwargs)

    monkeypatch.setattr(outbox, "post_message", dies_at_the_second_card)
    scheduler = Scheduler(db)
    scheduler.sweeps = {"rituals": load_sweeps()["rituals"]}
    scheduler.run_due(now)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(RitualOccurrence)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    monkeypatch.setattr(outbox, "post_message", real_post)
    scheduler.run_due(now)
    scheduler.run_due(now + timedelta(seconds=30))
    with db.session() as session:
        occurrences = list(session.scalars(select(RitualOccurrence)))
        cards = list(session.scalars(select(OutboxMessage.message_key)))
    assert len(occurrences) == 3
    assert sorted(cards) == sorted(rituals.card_key(o) for o in occurrences)


def test_a_sweep_with_work_left_runs_again_at_once_in_a_fresh_transaction(db: Database) -> None:
    # Hold the sessions themselves: id() of a collected session can be reused.
    rounds: list[Session] = []

    def backlog(session: Session, now: datetime) -> bool:
        rounds.append(session)
        return len(rounds) < 3

    scheduler = Scheduler(db)
    scheduler.sweeps = {"backlog": backlog}
    scheduler.run_due(utcnow())
    assert len(rounds) == 3 and len({id(s) for s in rounds}) == 3


def test_standups_due_together_post_in_one_tick_committed_in_chunks(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    with db.session() as session:
        for n in range(5):
            project = project_for_channel(session, "T1", f"C0FAN00{n}", f"p{n}")
            schedule, _ = rituals.set_schedule(session, project, "U1", "standup",
                                               f"daily {now:%H:%M}", "UTC", now=now)
            schedule.checked_until = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
    monkeypatch.setattr(rituals.occurrences, "SCHEDULES_PER_TRANSACTION", 2)
    cards_after_each_commit: list[int] = []

    def count_cards(_: Session) -> None:
        with db.engine.connect() as connection:
            cards_after_each_commit.append(connection.scalar(
                select(func.count()).select_from(OutboxMessage)) or 0)

    db.on_commit(count_cards)
    scheduler = Scheduler(db)
    scheduler.sweeps = {"rituals": load_sweeps()["rituals"]}
    scheduler.run_due(now)
    assert cards_after_each_commit == [2, 4, 5]
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(RitualOccurrence)) == 5
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 5
