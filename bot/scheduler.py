"""The clock: APScheduler wakes every process; the database decides who acts.

Scheduled work is written as *sweeps*: functions `sweep(session, now)` that look in the database
for what is due at `now` (a standup to post, a sign-off to remind, a review to announce) and act
on it. Each unit of work is claimed with `claim_once(session, key)`, a unique row, so that with
any number of replicas every occurrence is handled exactly once. Tests call `run_due(now)` with
the time they want instead of waiting for the wall clock.

    @sweep("risk_reviews")
    def remind_overdue_reviews(session: Session, now: datetime) -> None: ...
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.database import UNAVAILABLE, Database, database_outage
from bot.models import JobClaim, utcnow

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger("quorum.scheduler")

# A sweep returns True when it stopped with work left (to commit what it did so far): it then
# runs again at once in a fresh transaction. None or False: done for this tick.
Sweep = Callable[[Session, datetime], bool | None]
# A sweep that talks to a peer (MLflow, GitHub) also gets the settings: `@sweep(name,
# with_settings=True)` functions are called `f(session, now, settings)`.
SETTINGS_SWEEPS: set[str] = set()
# A sweep that keeps saying "more" this many times in one tick is left for the next tick.
MAX_ROUNDS = 1000
SWEEPS: dict[str, Sweep] = {}
# Work at the runtime edge (calls to Slack or Alertmanager), run after the sweeps on each tick,
# outside any transaction: it opens its own short ones around each call.
EdgeJob = Callable[[datetime], object]


def sweep(name: str, *, with_settings: bool = False) -> Callable[[Any], Any]:
    """Register a function to run on every tick of the clock, in its own transaction (a sweep
    that returns True runs again in another, to work through a backlog in chunks)."""

    def register(function: Any) -> Any:
        SWEEPS[name] = function
        if with_settings:
            SETTINGS_SWEEPS.add(name)
        return function

    return register


def claim_once(session: Session, key: str) -> bool:
    """True for exactly one caller ever per `key`, across processes; the claim commits with the
    caller's transaction, so work that fails leaves the key free for the next tick."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    claimed = session.execute(
        insert(JobClaim).values(key=key, claimed_at=utcnow()).on_conflict_do_nothing()
        .returning(JobClaim.key)
    ).scalar()
    return claimed is not None


def load_sweeps() -> dict[str, Sweep]:
    """Import every domain service module so that their sweeps are registered."""
    import bot.services

    for module in pkgutil.iter_modules(bot.services.__path__):
        importlib.import_module(f"bot.services.{module.name}")
    return SWEEPS


class Scheduler:
    """Runs every registered sweep on a fixed tick (default every 30 seconds)."""

    def __init__(self, db: Database, tick_seconds: float = 30.0,
                 settings: Settings | None = None, jobs: Sequence[EdgeJob] = ()) -> None:
        self.db = db
        self.settings = settings  # for the sweeps that talk to MLflow or GitHub
        self.tick_seconds = tick_seconds
        self.sweeps = load_sweeps()
        self.jobs = list(jobs)
        # Imported here: every domain module imports this one for `sweep`, and a CLI command
        # such as `quorum gate check` should not pay for APScheduler.
        from apscheduler.schedulers.background import BackgroundScheduler

        self._apscheduler = BackgroundScheduler(timezone="UTC")

    def run_due(self, now: datetime | None = None) -> None:
        """Run every sweep once for `now`; one failing sweep does not stop the others."""
        from bot import metrics  # here: CLI commands import this module, not Prometheus

        now = now or utcnow()
        for name, function in self.sweeps.items():
            try:
                for _ in range(MAX_ROUNDS):
                    with self.db.session() as session:
                        if name in SETTINGS_SWEEPS:
                            if self.settings is None:
                                break
                            more = function(session, now, self.settings)
                        else:
                            more = function(session, now)
                    if not more:
                        break
                else:
                    log.warning("sweep %s still had work after %s rounds; it goes on next tick",
                                name, MAX_ROUNDS)
            except UNAVAILABLE:
                database_outage.failed(log, "sweep %s failed at %s; it runs again next tick",
                                       name, now)
            except Exception:
                metrics.scheduler_sweep_failures.labels(name).inc()
                log.exception("sweep %s failed at %s; it runs again next tick", name, now)
        for job in self.jobs:
            try:
                job(now)
            except Exception:
                log.exception("job %s failed at %s; it runs again next tick",
                              getattr(job, "__name__", job), now)
        metrics.scheduler_last_tick.set(time.time())

    def start(self) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        self._apscheduler.add_job(
            self.run_due, IntervalTrigger(seconds=self.tick_seconds), id="quorum-tick",
            max_instances=1, coalesce=True, next_run_time=utcnow(),
        )
        self._apscheduler.start()

    def stop(self) -> None:
        if self._apscheduler.running:
            self._apscheduler.shutdown(wait=True)
