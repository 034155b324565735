"""Runs the real Quorum web app (uvicorn, Bolt, outbox worker) on a loopback port for tests."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import uvicorn

from bot.config import Settings
from bot.delivery import OutboxWorker
from bot.edge import edge_jobs
from bot.runtime import Runtime
from bot.scheduler import Scheduler
from bot.slack_app import build_app, web_client
from bot.web import HEADER_READ_SECONDS, create_web_app, header_deadline_protocol

TEST_ANSWER_WITHIN = 10.0


class QuorumServer:
    """`quorum serve` in a thread: the same app object graph, bound to port 0."""

    def __init__(self, settings: Settings, header_seconds: float = HEADER_READ_SECONDS,
                 port: int = 0, *, with_edge_jobs: bool = False, **web_options: Any) -> None:
        """`web_options` go to `create_web_app` (body limit, read deadline); `port` 0 is any
        free one (a fixed one when the URL must be known first: QUORUM_PUBLIC_URL);
        `with_edge_jobs` makes `scheduler.run_due` also run the edge jobs (silence expiry, Slack
        names)."""
        self.settings = settings
        self.runtime = Runtime.from_settings(settings)
        self.worker = OutboxWorker(self.runtime.db, web_client(self.runtime, timeout=3),
                                   poll_seconds=0.05,
                                   lease=timedelta(seconds=settings.outbox_lease_seconds))
        # Not started: tests drive the clock with `scheduler.run_due(now)`.
        self.scheduler = Scheduler(self.runtime.db, settings=settings,
                                   jobs=edge_jobs(self.runtime) if with_edge_jobs else ())
        self.bolt = build_app(self.runtime)
        # Slack's 3 s are a production deadline, not a test's: on CI's two loaded cores a first
        # request can take longer, and "it may not be saved" would then fail a test that is
        # about something else. The tests of that answer pass `answer_within` themselves.
        web_options.setdefault("answer_within", TEST_ANSWER_WITHIN)
        self.web = create_web_app(self.runtime, self.bolt, self.worker, **web_options)
        config = uvicorn.Config(self.web, host="127.0.0.1", port=port, log_level="warning",
                                lifespan="on", http=header_deadline_protocol(header_seconds))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def start(self) -> QuorumServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("Quorum did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.runtime.db.dispose()

