"""Decision services: concurrency and keyset paging."""

from __future__ import annotations

import importlib
import logging
import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import make_url

from bot.database import Database
from bot.errors import Conflict
from bot.models import Decision
from bot.services.decisions import (
    SEARCHED_TEXT,
    DecisionDraft,
    Page,
    get_decision,
    list_decisions,
    log_decision,
    search_decisions,
    supersede,
)
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


def _titles(page: Page) -> list[str]:
    return [decision.title for decision in page.items]


def test_list_pages_by_keyset_newest_first_and_back(db: Database) -> None:
    with db.session() as session:
        project = project_for_channel(session, "T1", "C1", "p")
        for number in range(1, 26):
            log_decision(session, project, "U0ALICE01", DecisionDraft(title=f"D {number}"))
    with db.session() as session:
        first = list_decisions(session, project)
        assert (_titles(first), first.page, first.pages, first.total, first.newer) == (
            [f"D {n}" for n in range(25, 15, -1)], 1, 3, 25, None)
        second = list_decisions(session, project, first.older)
        assert _titles(second) == [f"D {n}" for n in range(15, 5, -1)] and second.page == 2
        third = list_decisions(session, project, second.older)
        assert (_titles(third), third.page, third.older) == (
            [f"D {n}" for n in range(5, 0, -1)], 3, None)
        back = list_decisions(session, project, third.newer)
        assert _titles(back) == _titles(second) and back.page == 2
        assert _titles(list_decisions(session, project, back.newer)) == _titles(first)


def test_a_decision_logged_meanwhile_does_not_shift_the_next_page(db: Database) -> None:
    with db.session() as session:
        project = project_for_channel(session, "T1", "C1", "p")
        for number in range(1, 16):
            log_decision(session, project, "U0ALICE01", DecisionDraft(title=f"D {number}"))
        older = list_decisions(session, project).older
    with db.session() as session:
        log_decision(session, project, "U0ALICE01", DecisionDraft(title="D 16"))
    with db.session() as session:
        page = list_decisions(session, project, older)
        # With OFFSET, "D 6" (already shown on page 1) would have been shown again here.
        assert _titles(page) == [f"D {n}" for n in range(5, 0, -1)] and page.total == 16


@pytest.mark.parametrize("cursor", ["2", "2:older:999999", "x:older:1", "2:sideways:1",
                                    "2:older:" + "9" * 40, ""])
def test_an_unreadable_or_foreign_cursor_shows_the_first_page(db: Database, cursor: str) -> None:
    with db.session() as session:
        project = project_for_channel(session, "T1", "C1", "p")
        other = project_for_channel(session, "T1", "C2", "other")
        for number in range(1, 13):
            log_decision(session, project, "U0ALICE01", DecisionDraft(title=f"D {number}"))
        foreign = log_decision(session, other, "U0ALICE01", DecisionDraft(title="Elsewhere"))
    with db.session() as session:
        for value in (cursor, f"2:older:{foreign.id}"):
            page = list_decisions(session, project, value)
            assert (page.page, _titles(page)[0], len(page.items)) == (1, "D 12", 10)


def test_the_trigram_index_is_built_on_the_text_search_reads() -> None:
    """PostgreSQL uses an expression index only for a query repeating its very expression."""
    migration = importlib.import_module("bot.migrations.versions.0012_trigram")
    assert SEARCHED_TEXT.replace("decisions.", "") == migration.SEARCHED_TEXT


def test_postgresql_finds_a_rare_word_by_the_trigram_index(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("pg_trgm is PostgreSQL's; SQLite finds words by its FTS5 table")
    with db.session() as session:
        project = project_for_channel(session, "T1", "C1", "p")
        log_decision(session, project, "U0ALICE01", DecisionDraft(title="Adopt the zebra model"))
        session.execute(text(
            "INSERT INTO decisions (team_id, number, project_id, title, context, options, "
            "decision, consequences, status, deciders, created_by, created_at, updated_at) "
            "SELECT 'T1', 1 + n, :project, 'Tune the learning rate ' || n, 'context ' || n, '', "
            "'', '', 'accepted', '[]', 'U0ALICE01', now(), now() "
            "FROM generate_series(1, 3000) AS n"), {"project": project.id})
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        # As autovacuum would: moves GIN's pending list of new rows into the index proper.
        connection.exec_driver_sql("VACUUM ANALYZE decisions")
    searches: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM decisions" in statement:
            searches.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    with db.session() as session:
        found = search_decisions(session, project, "zebra")
    event.remove(db.engine, "before_cursor_execute", capture)
    assert [decision.title for decision in found] == ["Adopt the zebra model"]
    statement, parameters = searches[-1]
    with db.engine.connect() as connection:
        # At a few thousand rows a sequential scan is cheapest; the question is which index.
        connection.exec_driver_sql("SET enable_seqscan = off")
        plan = "\n".join(connection.exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars())
    assert "ix_decisions_trigram" in plan, plan


def test_without_pg_trgm_the_migration_warns_and_search_still_finds(
        database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("pg_trgm is PostgreSQL's")
    # A database whose user may not create extensions, as on a locked-down managed server.
    name = f"quorum_no_trgm_{uuid.uuid4().hex[:8]}"
    server = make_url(database_url).set(query={})
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE ROLE {name} LOGIN")
        connection.exec_driver_sql(f"CREATE DATABASE {name} OWNER postgres")
        connection.exec_driver_sql(f"REVOKE CREATE ON DATABASE {name} FROM PUBLIC")
    try:
        owner = create_engine(server.set(database=name))
        with owner.begin() as connection:
            connection.exec_driver_sql(f"CREATE SCHEMA quorum AUTHORIZATION {name}")
        owner.dispose()
        limited = server.set(database=name, username=name,
                             query={"options": "-csearch_path=quorum"})
        db = Database(limited.render_as_string(hide_password=False))
        with caplog.at_level(logging.WARNING):
            db.upgrade()
        assert "could not install pg_trgm" in caplog.text
        with db.session() as session:
            assert session.scalar(text("SELECT to_regclass('ix_decisions_trigram')")) is None
            project = project_for_channel(session, "T1", "C1", "p")
            for title in ("Adopt the zebra model", "Tune the rate"):
                log_decision(session, project, "U0ALICE01", DecisionDraft(title=title))
        with db.session() as session:
            for words in ("zebra", "odel"):
                found = search_decisions(session, project, words)
                assert [decision.title for decision in found] == ["Adopt the zebra model"]
        db.dispose()
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            connection.exec_driver_sql(f"DROP ROLE IF EXISTS {name}")
        admin.dispose()
