"""Prometheus metrics of this process, served at GET /metrics (by `quorum serve`, and by
`quorum socket` on PORT).

Most series are this process's own and add up across replicas. The `quorum_outbox_*` gauges
are read from the shared database at scrape time: every replica reports the same value, so
aggregate them with `max()`, never `sum()` (deploy/prometheus/quorum.rules.yaml does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

if TYPE_CHECKING:
    from bot.database import Database

registry = CollectorRegistry()
# The standard process_* (CPU, memory, open files, start time), python_gc_* and python_info
# series, as the default registry has them.
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    registry.register(_collector)

http_requests = Counter(
    "quorum_http_requests", "HTTP requests answered", ["route", "status"], registry=registry
)
http_latency = Histogram(
    "quorum_http_request_seconds", "Time to answer an HTTP request", ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=registry,
)
http_refused = Counter(
    "quorum_http_refused",
    "Requests refused before reaching a route: too large, too slow, or a bad Content-Length",
    ["error"], registry=registry,
)
outbox_delivered = Counter(
    "quorum_outbox_delivered", "Outbox calls delivered to Slack", ["method"], registry=registry
)
# reason: ratelimited (429), server_error (5xx or a transient error), timeout (no answer in
# time), connection_refused, network (another connection failure), joined_channel.
outbox_retries = Counter(
    "quorum_outbox_retries", "Outbox deliveries put back for a retry, by reason", ["reason"],
    registry=registry,
)
outbox_failed = Counter(
    "quorum_outbox_failed", "Outbox calls given up on", ["error"], registry=registry
)
outbox_pending = Gauge(
    "quorum_outbox_pending", "Outbox calls not yet delivered (read from the shared database at "
    "scrape time: the same on every replica, aggregate with max())",
    registry=registry,
)
outbox_oldest_pending = Gauge(
    "quorum_outbox_oldest_pending_seconds", "Age of the oldest outbox call not yet delivered, "
    "0 when none waits (shared database: the same on every replica, aggregate with max())",
    registry=registry,
)
scheduler_last_tick = Gauge(
    "quorum_scheduler_last_tick_timestamp_seconds",
    "When this process's scheduler last finished running every sweep (Unix time)",
    registry=registry,
)
scheduler_sweep_failures = Counter(
    "quorum_scheduler_sweep_failures", "Sweeps that raised (they run again next tick)",
    ["sweep"], registry=registry,
)
pacing_wait = Histogram(
    "quorum_slack_pacing_wait_seconds",
    "Time a chat.postMessage waited for its workspace's pacing slot "
    "(QUORUM_SLACK_POSTS_PER_MINUTE)",
    buckets=(0, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=registry,
)


def refresh_shared(db: Database) -> None:
    """Read the gauges of shared tables (called at scrape time); raises when the database
    cannot answer, and the caller then serves the last values."""
    from bot import outbox

    with db.session() as session:
        pending, oldest = outbox.pending_summary(session)
    outbox_pending.set(pending)
    outbox_oldest_pending.set(oldest)
