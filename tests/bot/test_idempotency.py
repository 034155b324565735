"""`bot.services.idempotency`: a key acts once, a rolled-back key is free again, old keys go."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.database import Database
from bot.models import ProcessedRequest, utcnow
from bot.scheduler import load_sweeps
from bot.services import idempotency


def keys(db: Database) -> list[tuple[str, str]]:
    with db.session() as session:
        return [(row.team_id, row.key) for row in
                session.scalars(select(ProcessedRequest).order_by(ProcessedRequest.key))]


def test_a_key_is_first_once_per_team(db: Database) -> None:
    with db.session() as session:
        assert idempotency.first_time(session, "T1", "event:Ev1")
        assert not idempotency.first_time(session, "T1", "event:Ev1")
        assert idempotency.first_time(session, "T2", "event:Ev1")  # another workspace
    with db.session() as session:
        assert not idempotency.first_time(session, "T1", "event:Ev1")
    assert keys(db) == [("T1", "event:Ev1"), ("T2", "event:Ev1")]


def test_a_failed_attempt_leaves_the_key_for_the_retry(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session() as session:
        assert idempotency.first_time(session, "T1", "event:Ev2")
        raise RuntimeError("the effect failed: the retry must do it")
    assert keys(db) == []
    with db.session() as session:
        assert idempotency.first_time(session, "T1", "event:Ev2")


def test_two_copies_at_the_same_moment_act_once(db: Database) -> None:
    """Each copy in its own transaction; the second waits for the first to commit."""
    barrier = threading.Barrier(4)
    firsts: list[bool] = []

    def deliver() -> None:
        barrier.wait()
        with db.session() as session:
            firsts.append(idempotency.first_time(session, "T1", "event:Ev3"))

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(firsts) == [False, False, False, True]


def test_the_sweep_forgets_keys_no_retry_can_match(db: Database) -> None:
    now = utcnow()
    with db.session() as session:
        idempotency.first_time(session, "T1", "event:old", now=now - timedelta(days=2))
        idempotency.first_time(session, "T1", "event:new", now=now - timedelta(hours=1))
    assert load_sweeps()["processed_requests"] is idempotency.forget_old_requests
    with db.session() as session:
        idempotency.forget_old_requests(session, now)
    assert keys(db) == [("T1", "event:new")]
    with db.session() as session:  # forgotten: a (very) late copy would act again
        assert idempotency.first_time(session, "T1", "event:old")
