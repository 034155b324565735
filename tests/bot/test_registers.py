"""Shared register mechanisms: projects, references, the append-only audit log."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError

from bot.database import Database
from bot.models import AuditEvent, Project
from bot.services.decisions import DecisionDraft, log_decision
from bot.services.projects import project_for_channel
from bot.services.refs import next_number


def test_a_channel_gets_one_project_even_under_concurrency(db: Database) -> None:
    barrier = threading.Barrier(8)

    def first_use() -> None:
        barrier.wait()
        with db.session() as session:
            project_for_channel(session, "T1", "C0RACE001", "race")

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Project)) == 1


def test_reference_numbers_are_unique_under_concurrency(db: Database) -> None:
    numbers: list[int] = []
    barrier = threading.Barrier(8)

    def take() -> None:
        barrier.wait()
        for _ in range(10):
            with db.session() as session:
                numbers.append(next_number(session, "T1", "D"))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(numbers) == list(range(1, 81))
    with db.session() as session:
        assert next_number(session, "T2", "D") == 1  # per workspace
        assert next_number(session, "T1", "H") == 1  # per prefix


def test_the_audit_log_refuses_updates_and_deletes(db: Database) -> None:
    with db.session() as session:
        project = project_for_channel(session, "T1", "C1", "p")
        log_decision(session, project, "U0ALICE01", DecisionDraft(title="Audited"))
    for statement in (update(AuditEvent).values(actor="someone else"), delete(AuditEvent)):
        with pytest.raises(DBAPIError, match="append-only"), db.session() as session:
            session.execute(statement)
    with db.session() as session:
        [event] = session.scalars(select(AuditEvent)).all()
        assert event.actor == "U0ALICE01" and event.after["title"] == "Audited"


def test_sqlite_runs_with_wal_and_foreign_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp_path}/quorum.db")
    with db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
