"""`quorum socket`: the same Bolt app over Socket Mode, for workspaces without a public URL.

Slack hands out a WebSocket URL (`apps.connections.open`, with the `xapp-` app-level token) and
sends every slash command, interaction and event over it; Bolt's built-in Socket Mode client
acknowledges each envelope with the listener's ack. The outbox worker and the scheduler run
alongside, as in `quorum serve`.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from slack_bolt.adapter.socket_mode import SocketModeHandler

from bot.delivery import OutboxWorker
from bot.pacing import pacer_for
from bot.runtime import Runtime
from bot.scheduler import Scheduler
from bot.slack_app import build_app, web_client

log = logging.getLogger("quorum.socket")


class SocketModeRunner:
    """The Socket Mode connection, the outbox worker and the scheduler, started and stopped
    together."""

    def __init__(self, runtime: Runtime, *, worker_poll_seconds: float = 1.0,
                 run_scheduler: bool = True) -> None:
        token = runtime.settings.slack_app_token
        if not token:
            raise ValueError("an app-level token (SLACK_APP_TOKEN) is required")
        self.runtime = runtime
        # Socket Mode requests are not signed: the app token authenticates the connection.
        self.app = build_app(runtime, verify_requests=False, process_before_response=False)
        self.worker = OutboxWorker(
            runtime.db, web_client(runtime), poll_seconds=worker_poll_seconds,
            lease=timedelta(seconds=runtime.settings.outbox_lease_seconds),
            pacer=pacer_for(runtime.db, runtime.settings))
        self.scheduler = Scheduler(runtime.db, runtime.settings.scheduler_tick_seconds,
                                   runtime.settings) \
            if run_scheduler else None
        self.handler = SocketModeHandler(self.app, app_token=token)

    def start(self) -> SocketModeRunner:
        """Start delivering and ticking, then connect (returns once connected); if Slack
        refuses the connection, everything started is stopped again before the error rises."""
        self.worker.start()
        if self.scheduler is not None:
            self.scheduler.start()
        try:
            self.handler.connect()
        except BaseException:
            self.stop()
            raise
        log.info("connected to Slack over Socket Mode")
        return self

    def stop(self) -> None:
        try:
            self.handler.close()
        finally:
            if self.scheduler is not None:
                self.scheduler.stop()
            self.worker.stop()

    def run_until(self, stop: threading.Event) -> None:
        """Serve until `stop` is set (the CLI sets it on SIGTERM or Ctrl-C)."""
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()
