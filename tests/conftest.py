"""Fixtures: a fresh database per test (SQLite, and PostgreSQL when TEST_DATABASE_URL is set),
the fake Slack server, and Quorum itself served over HTTP."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, text

from bot.config import load_settings
from bot.database import Database
from bot.models import schema
from support.fake_slack import FakeSlack
from support.postgres import scratch_schema
from support.quorum_server import QuorumServer
from support.slack_requests import SIGNING_SECRET, TEAM, SlackSender

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])

# Property-based tests (hypothesis): "ci" is repeatable and quick, and writes no example
# database; "explore" hunts longer for new failures. HYPOTHESIS_PROFILE picks one.
_PROPERTY_CHECKS = {"deadline": None, "database": None,
                    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("ci", derandomize=True, max_examples=6, **_PROPERTY_CHECKS)
settings.register_profile("explore", max_examples=300, **_PROPERTY_CHECKS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies instead of migrating again."""
    path = tmp_path_factory.mktemp("template") / "quorum.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    db.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[str]:
    """The URL of a private, migrated schema on the PostgreSQL server, dropped at the end of
    the run ("" without TEST_DATABASE_URL)."""
    if not POSTGRES_URL:
        yield ""
        return
    with scratch_schema(POSTGRES_URL, "quorum_test") as url:
        db = Database(url)
        db.upgrade()
        db.dispose()
        yield url


@pytest.fixture(scope="session")
def new_database(sqlite_template: Path, postgres_schema: str) -> Callable[[str, Path], str]:
    """`new_database(backend, directory)`: the URL of an empty, migrated database, a copy of the
    SQLite template in `directory` or the session's PostgreSQL schema with every table emptied."""

    def make(backend: str, directory: Path) -> str:
        if backend == "sqlite":
            path = directory / "quorum.db"
            shutil.copy(sqlite_template, path)
            return f"sqlite:///{path}"
        url = postgres_schema
        engine = create_engine(url)
        tables = ", ".join(table.name for table in schema().sorted_tables)
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        engine.dispose()
        return url

    return make


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path,
                 new_database: Callable[[str, Path], str]) -> str:
    """An empty, migrated database for this test, on each backend in turn."""
    return new_database(request.param, tmp_path)


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                        new_database: Callable[[str, Path], str]) -> str:
    """An empty, migrated database shared by a whole module's tests, on each backend in turn:
    for property-based tests, which run one server through many examples."""
    return new_database(request.param, tmp_path_factory.mktemp("module-db"))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def fake_slack_server() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def fake_slack(fake_slack_server: FakeSlack) -> FakeSlack:
    fake_slack_server.reset()
    return fake_slack_server


@pytest.fixture
def make_settings(database_url: str, fake_slack: FakeSlack) -> Callable[..., Any]:
    def make(**overrides: Any) -> Any:
        values = {"SLACK_BOT_TOKEN": fake_slack.token, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                  "SLACK_API_URL": fake_slack.url, "DATABASE_URL": database_url, **overrides}
        return load_settings(**values)

    return make


@pytest.fixture
def quorum(make_settings: Callable[..., Any]) -> Iterator[QuorumServer]:
    """Quorum serving HTTP on a loopback port, talking to the fake Slack."""
    server = QuorumServer(make_settings()).start()
    yield server
    server.stop()


@pytest.fixture
def slack(quorum: QuorumServer, fake_slack: FakeSlack) -> Iterator[SlackSender]:
    """Sends signed Slack requests to the running Quorum."""
    sender = SlackSender(quorum.url, fake_slack.response_url(), team=TEAM)
    yield sender
    sender.close()

