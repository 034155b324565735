"""Engine, sessions and migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Select, create_engine, event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:  # Alembic costs a tenth of a second to import: only `upgrade` needs it
    from alembic.config import Config

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

    def peek(self, query: Select[Any]) -> tuple[Any, ...] | None:
        """The first row of a read-only `query`, asked on a bare driver connection as `ping`
        does, so that it never queues behind a writer (SQLite's `BEGIN IMMEDIATE`)."""
        compiled = query.compile(dialect=self.engine.dialect)
        params = compiled.construct_params()
        order = compiled.positiontup
        driver_error = self.engine.dialect.loaded_dbapi.Error
        try:
            connection = self.engine.raw_connection()
        except driver_error as exc:  # the driver's own error: raise it as SQLAlchemy would
            raise DBAPIError.instance(None, None, exc, driver_error) from exc
        try:
            cursor = connection.cursor()
            cursor.execute(str(compiled), [params[name] for name in order]
                           if order is not None else params)
            row = cursor.fetchone()
            cursor.close()
            connection.rollback()
            return tuple(row) if row is not None else None
        except driver_error as exc:
            connection.invalidate(exc)  # it may be broken: not back into the pool
            raise DBAPIError.instance(str(compiled), params, exc, driver_error) from exc
        finally:
            connection.close()

    def upgrade(self, revision: str = "heads") -> None:
        """Apply the Alembic migrations up to `revision`.

        On PostgreSQL the whole upgrade holds a transaction-level advisory lock of the schema:
        replicas (or migration jobs) starting together queue on it, and each one after the
        first finds the schema already at its revision and has nothing to do. A database at a
        revision this code does not know (a newer release migrated it) is refused first.
        """
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:prefix || "
                                        "coalesce(current_schema(), '')))"),
                                   {"prefix": f"{MIGRATION_LOCK}:"})
            found = database_revisions(connection)
            if found - all_revisions():
                raise SchemaMismatch(_ahead_message(found - all_revisions()))
            if revision == "heads" and found == head_revisions():
                return  # up to date: no need to load Alembic and every migration script
            from alembic import command

            config = alembic_config(self.url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    def check_revision(self) -> None:
        """Raise SchemaMismatch, worded as one line, unless the database is at exactly this
        code's schema revision (for every command that uses the database but does not migrate
        it: they must neither run on a schema they do not know nor change it)."""
        with self.engine.connect() as connection:
            found = database_revisions(connection)
        expected = head_revisions()
        if found == expected:
            return
        if not found:
            raise SchemaMismatch("the database has no Quorum schema yet: run `quorum db "
                                 "upgrade` first")
        if found - all_revisions():
            raise SchemaMismatch(_ahead_message(found - all_revisions()))
        raise SchemaMismatch(
            f"the database is at schema revision {_listed(found)} but this Quorum needs "
            f"{_listed(expected)}: run `quorum db upgrade` first (or start `quorum serve`, "
            f"which migrates)")

    def dispose(self) -> None:
        self.engine.dispose()


class SchemaMismatch(Exception):
    """The database's schema revision is not this code's; worded as the one line users see."""


# Prefix of the advisory lock key that serializes migrations of one schema.
MIGRATION_LOCK = "quorum-migrations"
_REVISION_LINE = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+)$", re.MULTILINE)


def _migration_graph() -> dict[str, set[str]]:
    """Each migration's revision → the revisions it follows, read from the version files'
    `revision = "…"` and `down_revision = …` lines: knowing the schema head this way costs a
    millisecond, where loading Alembic's script directory costs a few hundred."""
    graph: dict[str, set[str]] = {}
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        values = {name: re.findall(r"[\"']([^\"']+)[\"']", value)
                  for name, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8"))}
        if values.get("revision"):
            graph[values["revision"][0]] = set(values.get("down_revision", []))
    return graph


def all_revisions() -> set[str]:
    return set(_migration_graph())


def head_revisions() -> set[str]:
    """The revisions no other migration follows: where `quorum db upgrade` takes the schema."""
    graph = _migration_graph()
    followed = set().union(*graph.values()) if graph else set()
    return set(graph) - followed


def database_revisions(connection: Connection) -> set[str]:
    """The revisions recorded in the database's `alembic_version` table (empty: no schema)."""
    from sqlalchemy import inspect

    if not inspect(connection).has_table("alembic_version"):
        return set()
    return set(connection.scalars(text("SELECT version_num FROM alembic_version")))


def _listed(revisions: set[str]) -> str:
    return ", ".join(sorted(revisions))


def _ahead_message(unknown: set[str]) -> str:
    return (f"the database is at schema revision {_listed(unknown)}, newer than this Quorum "
            f"knows (its latest is {_listed(head_revisions())}): run a newer Quorum")


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config
