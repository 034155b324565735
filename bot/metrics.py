"""Prometheus metrics of this process, served at GET /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

registry = CollectorRegistry()

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
    "quorum_outbox_pending", "Outbox calls not yet delivered (read at scrape time)",
    registry=registry,
)
