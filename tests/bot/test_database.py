"""`bot.database`: the health check does not queue behind work holding the database."""

from __future__ import annotations

import threading

from bot.database import Database
from bot.services.projects import project_for_channel


def test_ping_answers_while_another_session_holds_the_writer_lock(db: Database) -> None:
    # A scheduler sweep or a request in the middle of a write transaction: on SQLite it holds
    # the one writer lock (BEGIN IMMEDIATE). /healthz must still see the database as up,
    # rather than wait out the busy timeout and report it down.
    writing, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.session() as session:
            project_for_channel(session, "T1", "C1", "held")
            session.flush()
            writing.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert writing.wait(30)
        assert db.ping() is True
    finally:
        release.set()
        holder.join()


def test_ping_reports_a_database_that_cannot_be_opened(tmp_path: object) -> None:
    missing = Database(f"sqlite:///{tmp_path}/no/such/dir/quorum.db")
    assert missing.ping() is False
    missing.dispose()
