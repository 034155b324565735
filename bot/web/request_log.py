"""Each request's id, its metrics and its access-log line: `measured` wraps a route's endpoint."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from bot import metrics
from bot.logs import request_context

Endpoint = Callable[[Request], Awaitable[Response]]

access_log = logging.getLogger("quorum.access")
# A caller's X-Request-Id is kept when it looks like one (a proxy's or a load balancer's id);
# anything else is replaced, so that no client can write arbitrary text into the logs.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "").strip()
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def measured(route: str, endpoint: Endpoint) -> Endpoint:
    """Count and time the route's requests, and log one access line each, with the request's
    id (and, for Slack, its team and command: `slack_events` adds them to the context)."""

    async def wrapper(request: Request) -> Response:
        started = time.perf_counter()
        context = {"request_id": _request_id(request)}
        token = request_context.set(context)
        try:
            response = await endpoint(request)
        finally:
            request_context.reset(token)
        elapsed = time.perf_counter() - started
        metrics.http_latency.labels(route).observe(elapsed)
        metrics.http_requests.labels(route, str(response.status_code)).inc()
        response.headers["X-Request-Id"] = context["request_id"]
        access_log.info("%s %s %s %.1f ms", request.method, route, response.status_code,
                        elapsed * 1000,
                        extra={**context, "route": route, "status": response.status_code,
                               "latency_ms": round(elapsed * 1000, 1)})
        return response

    return wrapper
