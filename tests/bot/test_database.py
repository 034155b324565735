"""`bot.database`: the health check does not queue behind work holding the database; an outage
is logged once with its traceback, then counted."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy.exc import OperationalError

from bot.database import UNAVAILABLE, Database, OutageLog
from bot.models import Project
from bot.services.projects import project_for_channel


@contextmanager
def another_session_writing(db: Database, channel: str) -> Iterator[None]:
    """While the block runs, another session is in the middle of a write transaction (a
    scheduler sweep, a request): on SQLite it holds the one writer lock (BEGIN IMMEDIATE)."""
    writing, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.session() as session:
            project_for_channel(session, "T1", channel, "uncommitted")
            session.flush()
            writing.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert writing.wait(30)
        yield
    finally:
        release.set()
        holder.join()


def test_ping_answers_while_another_session_holds_the_writer_lock(db: Database) -> None:
    # /healthz must still see the database as up, rather than wait out the busy timeout and
    # report it down.
    with another_session_writing(db, "C1"):
        assert db.ping() is True


def test_peek_reads_committed_rows_while_another_session_holds_the_writer_lock(
        db: Database) -> None:
    """The replay check of every slash command (`bot.replays`) must not queue behind a write."""
    with db.session() as session:
        project_for_channel(session, "T1", "C1", "committed")
    with another_session_writing(db, "C2"):
        names = select(Project.name).where(Project.channel_id == bindparam("channel"))
        assert db.peek(names.params(channel="C1")) == ("committed",)
        assert db.peek(names.params(channel="C2")) is None


def test_ping_reports_a_database_that_cannot_be_opened(tmp_path: object) -> None:
    missing = Database(f"sqlite:///{tmp_path}/no/such/dir/quorum.db")
    assert missing.ping() is False
    missing.dispose()


def test_an_outage_is_logged_once_with_its_traceback_then_counted_until_it_ends(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    outage = OutageLog(window=10, clock=lambda: now[0])
    logger = logging.getLogger("quorum.test-outage")

    def fail(times: int) -> None:
        for _ in range(times):
            try:
                raise OperationalError("SELECT 1", {}, Exception("connection refused"))
            except OperationalError:
                outage.failed(logger, "request failed")

    caplog.set_level(logging.INFO)
    fail(5)
    now[0] = 9.9
    fail(3)
    assert [(r.getMessage(), bool(r.exc_info)) for r in caplog.records] == [
        ("request failed", True)]
    now[0] = 10.0
    fail(1)
    now[0] = 15.0
    fail(2)
    now[0] = 20.0
    fail(1)
    assert [r.getMessage() for r in caplog.records][1:] == [
        "database still unavailable: 8 more failures in the last 10 s (latest: OperationalError)",
        "database still unavailable: 3 more failures in the last 10 s (latest: OperationalError)"]
    caplog.clear()
    outage.recovered()
    outage.recovered()  # only the first success after an outage says so
    assert caplog.messages == ["database reachable again after 12 failed requests"]
    caplog.clear()
    fail(2)  # a new outage: its first failure has a traceback again
    assert [(r.getMessage(), bool(r.exc_info)) for r in caplog.records] == [
        ("request failed", True)]


def test_peek_raises_sqlalchemy_errors_for_an_unreachable_database() -> None:
    """A driver error escaping `peek` would be a 500 (Bolt middleware) instead of the polite
    "database unavailable" that `UNAVAILABLE` handlers give."""
    unreachable = Database("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    try:
        with pytest.raises(UNAVAILABLE):
            unreachable.peek(select(Project.name))
    finally:
        unreachable.dispose()
