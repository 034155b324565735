"""How `quorum serve` and `quorum worker` split the work into processes.

`quorum serve` answers HTTP (Slack events, webhooks, health, metrics) and, unless started with
`--no-worker`, also runs the background work in the same process: the outbox worker (posting
to Slack) and the scheduler (rituals, reminders, sweeps). `quorum worker` runs that background
work alone, with no HTTP server, so that request handling and delivery do not share one
interpreter (and its GIL). The scheduler goes with the outbox worker because both are
background work whose output is Slack calls, and both are safe to run in several processes at
once: outbox rows are leased (`bot.outbox.claim`) and scheduled work is claimed once
(`bot.scheduler.claim_once`). A deployment is then `quorum serve --no-worker [--workers N]`
plus one or more `quorum worker`.

`--workers N` starts N uvicorn processes on one socket, each with its own database pool (and,
without `--no-worker`, its own outbox worker and scheduler, like N replicas). SQLite runs one
writer at a time and its per-process writer lock would not be shared, so it keeps one process.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from datetime import timedelta
from typing import Any

from bot.config import load_settings
from bot.runtime import Runtime

log = logging.getLogger("quorum")

# Tells the processes `--workers N` spawns whether to run the background work (set by `serve`).
BACKGROUND_ENV = "_QUORUM_SERVE_BACKGROUND"
WORKER_HEALTHCHECK_SECONDS = 60


def outbox_worker(runtime: Runtime) -> Any:
    """The outbox worker configured by the settings (lease, pacing)."""
    from bot.delivery import OutboxWorker
    from bot.pacing import pacer_for
    from bot.slack_http import KeepAliveWebClient

    settings = runtime.settings
    # One connection kept open: the worker's calls go one after another from one thread.
    client = KeepAliveWebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url,
                                timeout=10)
    client.retry_handlers.clear()  # the outbox decides about retries
    return OutboxWorker(runtime.db, client,
                        lease=timedelta(seconds=settings.outbox_lease_seconds),
                        pacer=pacer_for(runtime.db, settings))


def scheduler(runtime: Runtime) -> Any:
    from bot.edge import edge_jobs
    from bot.scheduler import Scheduler

    return Scheduler(runtime.db, runtime.settings.scheduler_tick_seconds, runtime.settings,
                     jobs=edge_jobs(runtime))


def web_app(runtime: Runtime, *, background: bool) -> Any:
    """The ASGI app of `quorum serve`, with the background work when `background`."""
    from bot.slack_app import build_app
    from bot.web import create_web_app

    if not background:
        return create_web_app(runtime, build_app(runtime), None, None)
    return create_web_app(runtime, build_app(runtime), outbox_worker(runtime), scheduler(runtime))


def web_app_of_process() -> Any:
    """The app factory each of the `--workers` processes calls (it rebuilds its own runtime and,
    being a fresh interpreter, sets up logging as `quorum` does)."""
    from bot.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_format)
    runtime = Runtime.from_settings(settings)
    return web_app(runtime, background=os.environ.get(BACKGROUND_ENV) == "1")


def process_count(runtime: Runtime, requested: int) -> int:
    """How many HTTP processes to start for `--workers requested`."""
    if requested > 1 and runtime.db.is_sqlite:
        log.warning("--workers %d: SQLite runs one writer at a time, so Quorum serves it from one "
                    "process; use PostgreSQL (DATABASE_URL) for more", requested)
        return 1
    return max(1, requested)


def serve(runtime: Runtime, *, workers: int = 1, background: bool = True) -> None:
    """Run the HTTP server until it is stopped (SIGINT/SIGTERM)."""
    import uvicorn

    from bot.web.limits import HeaderDeadlineProtocol

    settings = runtime.settings
    # No limit_concurrency: slow-loris connections would then lock out genuine requests (503).
    # log_config=None: uvicorn's lines go through Quorum's logging (QUORUM_LOG_FORMAT).
    options: dict[str, Any] = {"host": settings.host, "port": settings.port,
                               "log_level": "info", "log_config": None, "access_log": False,
                               "timeout_graceful_shutdown": 10, "http": HeaderDeadlineProtocol}
    processes = process_count(runtime, workers)
    if processes == 1:
        uvicorn.run(web_app(runtime, background=background), **options)
        return
    runtime.db.dispose()  # each process opens its own connections
    os.environ[BACKGROUND_ENV] = "1" if background else "0"
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
        # uvicorn restarts a process that does not answer its health check in time (5 s by
        # default); on a busy machine importing and building the app can take longer than that.
        options["timeout_worker_healthcheck"] = WORKER_HEALTHCHECK_SECONDS
    uvicorn.run("bot.serving:web_app_of_process", factory=True, workers=processes, **options)


def run_background(runtime: Runtime, stop: threading.Event) -> None:
    """`quorum worker`: the outbox worker and the scheduler, until `stop` is set."""
    worker, clock = outbox_worker(runtime), scheduler(runtime)
    worker.start()
    clock.start()
    log.info("quorum worker: delivering the outbox and running the scheduler")
    try:
        stop.wait()
    finally:
        clock.stop()
        worker.stop()
        runtime.db.dispose()
