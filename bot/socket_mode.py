"""`quorum socket`: the same Bolt app over Socket Mode, for workspaces without a public URL.

Slack hands out a WebSocket URL (`apps.connections.open`, with the `xapp-` app-level token) and
sends every slash command, interaction and event over it; Bolt's built-in Socket Mode client
acknowledges each envelope with the listener's ack. The outbox worker and the scheduler run
alongside, as in `quorum serve`, and a small HTTP server answers `GET /healthz` and
`GET /metrics` on PORT for probes and Prometheus (nothing else is served: Slack reaches this
process over the WebSocket only).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from slack_bolt.adapter.socket_mode import SocketModeHandler

from bot import metrics
from bot.database import Database
from bot.delivery import OutboxWorker
from bot.edge import edge_jobs
from bot.pacing import pacer_for
from bot.runtime import Runtime
from bot.scheduler import Scheduler
from bot.slack_app import build_app, web_client

log = logging.getLogger("quorum.socket")


class SocketModeRunner:
    """The Socket Mode connection, the outbox worker and the scheduler, started and stopped
    together."""

    def __init__(self, runtime: Runtime, *, worker_poll_seconds: float = 1.0,
                 run_scheduler: bool = True, health_address: tuple[str, int] | None = None
                 ) -> None:
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
                                   settings=runtime.settings, jobs=edge_jobs(runtime)) \
            if run_scheduler else None
        self.handler = SocketModeHandler(self.app, app_token=token)
        # Bound now, so that a port already taken is an error before anything starts.
        self.health = HealthServer(health_address, runtime.db, self.connected) \
            if health_address is not None else None

    def connected(self) -> bool:
        """Is the WebSocket to Slack open right now (the client reconnects on its own)?"""
        return bool(self.handler.client.is_connected())

    def start(self) -> SocketModeRunner:
        """Start the health server, delivering and ticking, then connect (returns once
        connected); if Slack refuses the connection, everything started is stopped again
        before the error rises."""
        if self.health is not None:
            self.health.start()
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
            if self.health is not None:
                self.health.stop()

    def run_until(self, stop: threading.Event) -> None:
        """Serve until `stop` is set (the CLI sets it on SIGTERM or Ctrl-C)."""
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()


class HealthServer:
    """`GET /healthz` (200 only while the WebSocket is connected and the database answers, 503
    otherwise) and `GET /metrics`, on a thread of their own."""

    def __init__(self, address: tuple[str, int], db: Database,
                 connected: Callable[[], bool]) -> None:
        self.db = db
        self.connected = connected
        self.server = ThreadingHTTPServer(address, _health_handler(self))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        name="quorum-health", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def health(self) -> tuple[int, dict[str, object]]:
        socket_up = self.connected()
        database_up = self.db.ping()
        body = {"ok": socket_up and database_up, "database": "up" if database_up else "down",
                "socket": "connected" if socket_up else "disconnected"}
        return (200 if body["ok"] else 503), body

    def metrics(self) -> bytes:
        from prometheus_client import generate_latest

        with contextlib.suppress(Exception):  # metrics stay readable while the database is down
            metrics.refresh_shared(self.db)
        return generate_latest(metrics.registry)


def _health_handler(server: HealthServer) -> type[BaseHTTPRequestHandler]:
    from prometheus_client import CONTENT_TYPE_LATEST

    class Handler(BaseHTTPRequestHandler):
        # A probe that opens a connection and sends nothing must not hold a thread for ever.
        timeout = 10

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                status, body = server.health()
                self._answer(status, "application/json", json.dumps(body).encode())
            elif path == "/metrics":
                self._answer(200, CONTENT_TYPE_LATEST, server.metrics())
            else:
                self._answer(404, "application/json", json.dumps(
                    {"ok": False, "error": "not_found", "reason": "Over Socket Mode this "
                     "process serves only /healthz and /metrics."}).encode())

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds are not worth a log line each

    return Handler
