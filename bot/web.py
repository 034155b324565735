"""The HTTP server of `quorum serve`: Slack's endpoint, health and metrics, on Starlette/uvicorn.

Bolt's own Starlette adapter calls the synchronous `App.dispatch` on the event loop, which would
serialize every request. Here each dispatch runs on a worker thread instead, so slow listeners
never hold up other requests, and the event loop only moves bytes.
"""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot import metrics, outbox
from bot.delivery import OutboxWorker
from bot.errors import QuorumError
from bot.runtime import Runtime
from bot.scheduler import Scheduler
from bot.services.gates import check

Endpoint = Callable[[Request], Awaitable[Response]]


def bearer_refusal(request: Request, token: str | None) -> Response | None:
    """A 401 JSON answer unless the request carries `Authorization: Bearer <token>`.

    With no token configured every request is refused: an open API would be worse.
    """
    if not token:
        reason = "QUORUM_WEBHOOK_TOKEN is not set on the server, so it refuses every request"
    else:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode()):
            return None
        reason = "missing or wrong bearer token (Authorization: Bearer <QUORUM_WEBHOOK_TOKEN>)"
    return JSONResponse({"ok": False, "error": "unauthorized", "reason": reason},
                        status_code=401, headers={"WWW-Authenticate": "Bearer"})


def _measured(route: str, endpoint: Endpoint) -> Endpoint:
    async def wrapper(request: Request) -> Response:
        started = time.perf_counter()
        response = await endpoint(request)
        metrics.http_latency.labels(route).observe(time.perf_counter() - started)
        metrics.http_requests.labels(route, str(response.status_code)).inc()
        return response

    return wrapper


def create_web_app(runtime: Runtime, bolt_app: App, worker: OutboxWorker | None,
                   scheduler: Scheduler | None = None) -> Starlette:
    """The ASGI app; starts and stops the outbox worker and the scheduler with the server."""

    async def slack_events(request: Request) -> Response:
        body = await request.body()
        bolt_request = to_bolt_request(request, body)
        bolt_response = await run_in_threadpool(bolt_app.dispatch, bolt_request)
        return to_starlette_response(bolt_response)

    async def healthz(_: Request) -> Response:
        healthy = await run_in_threadpool(runtime.db.ping)
        return JSONResponse({"ok": healthy, "database": "up" if healthy else "down"},
                            status_code=200 if healthy else 503)

    async def metrics_endpoint(_: Request) -> Response:
        def pending() -> int:
            with runtime.db.session() as session:
                return outbox.pending_count(session)

        with contextlib.suppress(Exception):  # metrics stay readable while the database is down
            metrics.outbox_pending.set(await run_in_threadpool(pending))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def api_gates(request: Request) -> Response:
        """The CI check over HTTP: did `model` `version` pass its (`milestone`) gate?"""
        refusal = bearer_refusal(request, runtime.settings.webhook_token)
        if refusal is not None:
            return refusal
        model = request.query_params.get("model", "").strip()
        version = request.query_params.get("version", "").strip()
        milestone = request.query_params.get("milestone") or None
        if not model or not version:
            return JSONResponse({"ok": False, "error": "bad_request",
                                 "reason": "give model and version, e.g. "
                                           "/api/gates?model=churn&version=3"}, status_code=400)

        def lookup() -> dict[str, object]:
            with runtime.db.session() as session:
                return check(session, model, version, milestone).as_record()

        try:
            result = await run_in_threadpool(lookup)
        except QuorumError as exc:
            return JSONResponse({"ok": False, "error": "bad_request", "reason": exc.message},
                                status_code=400)
        return JSONResponse({"ok": True, **result})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if worker is not None:
            worker.start()
        if scheduler is not None:
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            if worker is not None:
                worker.stop()

    return Starlette(
        routes=[
            Route("/slack/events", _measured("/slack/events", slack_events), methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/api/gates", _measured("/api/gates", api_gates), methods=["GET"]),
        ],
        lifespan=lifespan,
    )
