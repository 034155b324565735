"""The scheduler's contract: sweeps run for the given time, claims are taken once."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from bot.database import Database
from bot.scheduler import SWEEPS, Scheduler, claim_once


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
