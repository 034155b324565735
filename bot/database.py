"""Engine, sessions and migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
# What "the database cannot be reached right now" looks like: a driver error, or no connection
# free in the pool within `pool_timeout` (not a driver error, so it needs naming).
UNAVAILABLE = (DBAPIError, PoolTimeout)

log = logging.getLogger("quorum.database")


class OutageLog:
    """Logs the failures of an unreachable database without flooding the log.

    Every request fails the same way during an outage, and a traceback each (~9 KB) buried
    the log: the first failure is logged with its traceback, the rest as one counted line per
    `window` seconds, and the first success after them ends the outage with a line.
    """

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._failing = False
        self._uncounted = 0  # failures since the last line
        self._total = 0
        self._since = 0.0  # when the last line was logged

    def failed(self, logger: logging.Logger, message: str, *args: object) -> None:
        """Report the database failure being handled (call it in the `except` block)."""
        now = self.clock()
        with self._lock:
            self._total += 1
            first = not self._failing
            if first:
                self._failing, self._uncounted, self._since = True, 0, now
            else:
                self._uncounted += 1
            counted = self._uncounted if not first and now - self._since >= self.window else 0
            if counted:
                self._uncounted, self._since = 0, now
        if first:
            logger.error(message, *args, exc_info=True)
        elif counted:
            error = sys.exc_info()[1]
            logger.error("database still unavailable: %d more failures in the last %g s "
                         "(latest: %s)", counted, self.window,
                         type(error).__name__ if error else "unknown")

    def recovered(self) -> None:
        """The database answered: an outage in progress is over."""
        if not self._failing:  # the usual case, without taking the lock
            return
        with self._lock:
            if not self._failing:
                return
            total, self._failing, self._uncounted, self._total = self._total, False, 0, 0
        log.warning("database reachable again after %d failed requests", total)


# One per process: every request, sweep and delivery reports to it.
database_outage = OutageLog()


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
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, pool_timeout=2,
                         connect_args={"connect_timeout": 2})


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

    def listen(self, name: str, hook: Callable[..., Any]) -> None:
        """Listen for the SQLAlchemy session event `name` on every session of this database."""
        event.listen(self._sessions, name, hook)

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
                database_outage.recovered()
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
