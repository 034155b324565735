"""Engine, sessions and migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
# What "the database cannot be reached right now" looks like: a driver error, or no connection
# free in the pool within `pool_timeout` (not a driver error, so it needs naming).
UNAVAILABLE = (DBAPIError, PoolTimeout)


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, and `BEGIN IMMEDIATE` so concurrent writers queue instead of failing."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's begin event emit BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_db_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        _configure_sqlite(engine)
        return engine
    # Short time-outs: Slack waits 3 seconds for an answer, and a polite "try again" beats none.
    # A request either waits for a pooled connection or opens one, so neither wait may pass 2 s.
    engine = create_engine(url, pool_size=10, max_overflow=20, pool_timeout=2,
                           connect_args={"connect_timeout": 2})
    _ping_idle_connections(engine)
    return engine


# A pooled connection idle for longer than this is pinged before use (a restarted server has
# dropped it); one in use a moment ago is not. `pool_pre_ping` pinged at every checkout: a round
# trip per transaction, several per delivered card.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_idle_connections(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since <= PING_AFTER_IDLE_SECONDS:
            return  # new, or in use a moment ago
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_connection.rollback()
        except Exception as exc:
            # The pool drops this connection and checks out (or opens) another.
            raise DisconnectionError(str(exc)) from exc


class Database:
    """One database: an engine, a session factory and the schema migrations."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite runs one writer at a time. Queueing our own threads on a lock hands the database
        # over at once; left to SQLite's busy handler they would sleep and retry (long tails).
        self._turn: threading.RLock | contextlib.nullcontext[None] = (
            threading.RLock() if self.engine.dialect.name == "sqlite" else contextlib.nullcontext())
        self._commit_hooks: list[Callable[[Session], None]] = []
        event.listen(self._sessions, "after_commit", self._after_commit)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def on_commit(self, hook: Callable[[Session], None]) -> None:
        """Call `hook(session)` after every commit (the outbox wakes its worker this way)."""
        self._commit_hooks.append(hook)

    def _after_commit(self, session: Session) -> None:
        for hook in self._commit_hooks:
            hook(session)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on any exception."""
        with self._turn, self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def ping(self) -> bool:
        """Can the database answer? Asked on a bare driver connection: through the engine, SQLite
        would first wait (`BEGIN IMMEDIATE`) for whichever sweep or request holds the writer lock,
        and `/healthz` would stall for as long as that work takes."""
        try:
            connection = self.engine.raw_connection()
            try:
                cursor = connection.cursor()
                cursor.execute("SELECT 1")
                cursor.close()
            finally:
                connection.close()
            return True
        except Exception:
            return False

    def upgrade(self, revision: str = "heads") -> None:
        """Apply the Alembic migrations up to `revision`."""
        with self.engine.begin() as connection:
            config = alembic_config(self.url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config
