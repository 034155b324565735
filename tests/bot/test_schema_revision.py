"""Migrations with replicas: `quorum db upgrade` under an advisory lock, and every command that
does not migrate refusing, in one line, a database whose schema is behind or ahead of it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from bot.database import Database, alembic_config, all_revisions, head_revisions
from support.cli import run_quorum
from support.db_snapshot import snapshot
from support.postgres import scratch_schema

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])
[HEAD] = sorted(head_revisions())
PREVIOUS = sorted(all_revisions())[-2]


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with scratch_schema(POSTGRES_URL, "quorum_fresh") as url:
        yield url


def revisions(url: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as connection:
        found = list(connection.scalars(text("SELECT version_num FROM alembic_version")))
    engine.dispose()
    return found


def test_the_head_read_from_the_files_is_alembics() -> None:
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert head_revisions() == set(scripts.get_heads())
    assert all_revisions() == {script.revision for script in scripts.walk_revisions()}


def test_three_concurrent_upgrades_of_a_fresh_database_all_succeed(empty_url: str) -> None:
    """Three pods rolling out at once: one migrates, the other two wait on the lock and then
    find nothing to do (on SQLite, its writer lock does the queueing)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SLACK_", "QUORUM_", "DATABASE_URL"))}
    env.update(DATABASE_URL=empty_url, PYTHONPATH=str(ROOT))
    processes = [subprocess.Popen([sys.executable, "-m", "bot.cli", "db", "upgrade"], env=env,
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(3)]
    outcomes = [(process.wait(120), process.stderr.read()) for process in processes]
    for process in processes:
        process.stdout.close()
        process.stderr.close()
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    assert all("Traceback" not in err and "database is up to date" in err
               for _, err in outcomes), outcomes
    assert revisions(empty_url) == [HEAD]


def test_gate_check_on_a_database_one_migration_behind_stops_and_changes_nothing(
        empty_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(empty_url)
    db.upgrade(PREVIOUS)
    before = snapshot(db)
    code, out, err = run_quorum(monkeypatch, "gate", "check", "--model", "churn", "--version",
                                "3", DATABASE_URL=empty_url)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"quorum: the database is at schema revision {PREVIOUS} but this Quorum needs {HEAD}: "
        f"run `quorum db upgrade` first (or start `quorum serve`, which migrates)"]
    assert snapshot(db) == before
    assert revisions(empty_url) == [PREVIOUS]
    db.dispose()


@pytest.mark.parametrize("argv", [
    ("export", "decisions"),
    ("announce", "incident", "--title", "Scores are stale", "--channel", "C0CHURN01"),
    ("announce", "promotion", "--model", "churn", "--version", "3", "--to", "production"),
    ("db", "check"),
])
def test_other_commands_do_not_migrate_either(
        argv: tuple[str, ...], empty_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(empty_url)
    db.upgrade(PREVIOUS)
    before = snapshot(db)
    code, out, err = run_quorum(monkeypatch, *argv, DATABASE_URL=empty_url)
    assert (code, out) == (2, "")
    [line] = err.splitlines()
    assert line.startswith(f"quorum: the database is at schema revision {PREVIOUS} but")
    assert snapshot(db) == before and revisions(empty_url) == [PREVIOUS]
    db.dispose()


def test_serve_with_no_migrate_refuses_a_database_behind(
        empty_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    Database(empty_url).upgrade(PREVIOUS)
    code, _, err = run_quorum(monkeypatch, "serve", "--no-migrate", DATABASE_URL=empty_url,
                              SLACK_BOT_TOKEN="xoxb-test", SLACK_SIGNING_SECRET="secret")
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith(f"quorum: the database is at schema revision {PREVIOUS} but")
    assert revisions(empty_url) == [PREVIOUS]


def test_a_database_with_no_schema_is_named_as_such(
        empty_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_quorum(monkeypatch, "gate", "check", "--model", "m", "--version", "1",
                              DATABASE_URL=empty_url)
    assert (code, err) == (2, "quorum: the database has no Quorum schema yet: run `quorum db "
                              "upgrade` first\n")


def test_a_database_ahead_is_refused_by_every_command_even_upgrade(
        empty_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A newer release migrated it: this one neither reads nor migrates it."""
    db = Database(empty_url)
    db.upgrade()
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    before = snapshot(db)
    expected = (f"quorum: the database is at schema revision 9999, newer than this Quorum "
                f"knows (its latest is {HEAD}): run a newer Quorum")
    for argv in (("gate", "check", "--model", "m", "--version", "1"), ("db", "upgrade"),
                 ("export", "risks")):
        code, out, err = run_quorum(monkeypatch, *argv, DATABASE_URL=empty_url)
        assert (code, out, err.splitlines()) == (2, "", [expected]), argv
    assert snapshot(db) == before and revisions(empty_url) == ["9999"]
    db.dispose()


def test_db_upgrade_then_check(empty_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_quorum(monkeypatch, "db", "upgrade", DATABASE_URL=empty_url)[0] == 0
    assert run_quorum(monkeypatch, "db", "check", DATABASE_URL=empty_url)[0] == 0
    assert run_quorum(monkeypatch, "db", "upgrade", DATABASE_URL=empty_url)[0] == 0
    assert revisions(empty_url) == [HEAD]
