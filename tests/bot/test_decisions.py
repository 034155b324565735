"""Decision services under concurrency."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from bot.database import Database
from bot.errors import Conflict
from bot.models import Decision
from bot.services.decisions import DecisionDraft, get_decision, log_decision, supersede
from bot.services.projects import project_for_channel


def test_two_simultaneous_supersedes_make_one_successor(db: Database) -> None:
    with db.session() as session:
        project = project_for_channel(session, "T1", "C1", "p")
        log_decision(session, project, "U0ALICE01", DecisionDraft(title="Original"))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def replace(title: str) -> None:
        barrier.wait()
        try:
            with db.session() as session:
                supersede(session, get_decision(session, "T1", "D-1"), "U0BOB0001", title)
            outcomes.append("superseded")
        except Conflict:
            outcomes.append("refused")

    threads = [threading.Thread(target=replace, args=(f"Successor {n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused", "superseded"]
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Decision)) == 2
