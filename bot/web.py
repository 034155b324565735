"""The HTTP server of `quorum serve`: Slack's endpoint, webhooks, health and metrics (Starlette).

Bolt's own Starlette adapter calls the synchronous `App.dispatch` on the event loop, which would
serialize every request. Here each dispatch runs on a worker thread instead, so slow listeners
never hold up other requests, and the event loop only moves bytes.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot import metrics, outbox
from bot.delivery import OutboxWorker
from bot.errors import InvalidInput, QuorumError
from bot.runtime import Runtime
from bot.scheduler import Scheduler
from bot.services import alertmanager, promotions
from bot.services.gates import check

log = logging.getLogger("quorum.web")

Endpoint = Callable[[Request], Awaitable[Response]]


def _refusal(status: int, error: str, reason: str, **extra: object) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"ok": False, "error": error, "reason": reason, **extra},
                        status_code=status, headers=headers)


def bearer_refusal(runtime: Runtime, request: Request) -> JSONResponse | None:
    """The answer to a webhook call without the right `Authorization: Bearer` token, or None.

    With QUORUM_WEBHOOK_TOKEN unset every call is refused: a hook must never be open to all.
    """
    expected = runtime.settings.webhook_token
    if not expected:
        return _refusal(503, "webhooks_disabled",
                        "QUORUM_WEBHOOK_TOKEN is not set, so Quorum refuses every webhook.")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _refusal(401, "unauthorized", "Missing bearer token: send "
                        "`Authorization: Bearer <QUORUM_WEBHOOK_TOKEN>`.")
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        return _refusal(401, "unauthorized", "Wrong bearer token.")
    return None


async def read_json_object(request: Request) -> dict[str, object] | JSONResponse:
    """The request body as a JSON object, or the 400 answer that says why it is not one."""
    body = await request.body()
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _refusal(400, "invalid_json", "The body is not valid JSON.")
    if not isinstance(data, dict):
        return _refusal(400, "invalid_json", "The body must be a JSON object.")
    return data


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

    async def alertmanager_hook(request: Request) -> Response:
        """Alertmanager's webhook receiver (payload version 4): one incident per alert group."""
        refusal = bearer_refusal(runtime, request)
        if refusal is not None:
            return refusal
        data = await read_json_object(request)
        if isinstance(data, JSONResponse):
            return data
        try:
            note = alertmanager.parse_alertmanager(data)
        except InvalidInput as exc:
            return _refusal(422, "invalid_payload", exc.message, field=exc.field)
        settings = runtime.settings

        def apply() -> dict[str, object]:
            with runtime.db.session() as session:
                outcome = alertmanager.receive_alertmanager(
                    session, note, severity_map=settings.alert_severity_map,
                    default_channel=settings.default_channel)
                return outcome.as_json()

        try:
            result = await run_in_threadpool(apply)
        except InvalidInput as exc:
            return _refusal(422, "invalid_payload", exc.message, field=exc.field)
        except DBAPIError:
            log.exception("Alertmanager notification not stored: database error")
            return _refusal(503, "database_unavailable", "Quorum cannot reach its database; "
                            "nothing was stored. Alertmanager will send it again.")
        except Exception:
            log.exception("Alertmanager notification failed")
            return _refusal(500, "internal_error", "Something went wrong on our side; nothing "
                            "was stored.")
        # 202: stored, but no channel to announce it in (no project and no default channel).
        return JSONResponse(result, status_code=200 if result["routed"] else 202)

    def _store_failed(what: str, exc: Exception) -> JSONResponse:
        if isinstance(exc, DBAPIError):
            log.exception("%s not stored: database error", what)
            return _refusal(503, "database_unavailable", "Quorum cannot reach its database; "
                            "nothing was stored. Send it again later.")
        log.exception("%s failed", what)
        return _refusal(500, "internal_error", "Something went wrong on our side; nothing "
                        "was stored.")

    async def mlflow_hook(request: Request) -> Response:
        """MLflow's registry webhooks: an alias set on a version is a promotion."""
        secret = runtime.settings.mlflow_webhook_secret
        if not secret:
            return _refusal(503, "webhooks_disabled", "MLFLOW_WEBHOOK_SECRET is not set, so "
                            "Quorum refuses every MLflow webhook.")
        body = await request.body()  # the raw bytes: the signature covers exactly these
        delivery_id = request.headers.get("x-mlflow-delivery-id", "").strip()
        reason = promotions.verify_mlflow_signature(
            secret, delivery_id, request.headers.get("x-mlflow-timestamp", "").strip(), body,
            request.headers.get("x-mlflow-signature", "").strip(), time.time())
        if reason is not None:
            return _refusal(401, "invalid_signature", reason)
        if len(delivery_id) > promotions.DELIVERY_ID_LIMIT:
            return _refusal(400, "invalid_payload", "X-MLflow-Delivery-Id is too long.",
                            field="X-MLflow-Delivery-Id")
        data = await read_json_object(request)
        if isinstance(data, JSONResponse):
            return data
        try:
            promotions.mlflow_draft(data)  # validate before touching the database
        except InvalidInput as exc:
            return _refusal(400, "invalid_payload", exc.message, field=exc.field)
        settings = runtime.settings

        def apply() -> dict[str, object]:
            with runtime.db.session() as session:
                return promotions.receive_mlflow(
                    session, data, delivery_id,
                    default_channel=settings.default_channel).as_json()

        try:
            result = await run_in_threadpool(apply)
        except InvalidInput as exc:
            return _refusal(400, "invalid_payload", exc.message, field=exc.field)
        except Exception as exc:
            # A 5xx makes MLflow deliver it again, with the same delivery id.
            return _store_failed("MLflow webhook", exc)
        fresh_unrouted = result["created"] and not result["routed"]
        return JSONResponse(result, status_code=202 if fresh_unrouted else 200)

    async def promotion_hook(request: Request) -> Response:
        """A deployment pipeline says a model version was promoted."""
        refusal = bearer_refusal(runtime, request)
        if refusal is not None:
            return refusal
        data = await read_json_object(request)
        if isinstance(data, JSONResponse):
            return data
        draft = promotions.PromotionDraft.from_json(data)
        try:
            draft.validated()
        except InvalidInput as exc:
            return _refusal(400, "invalid_payload", exc.message, field=exc.field)
        settings = runtime.settings

        def apply() -> dict[str, object]:
            with runtime.db.session() as session:
                return promotions.record_promotion(
                    session, draft, source="webhook", created_by=promotions.WEBHOOK,
                    default_channel=settings.default_channel).as_json()

        try:
            result = await run_in_threadpool(apply)
        except InvalidInput as exc:
            return _refusal(400, "invalid_payload", exc.message, field=exc.field)
        except Exception as exc:
            return _store_failed("Promotion", exc)
        # 202: stored, but no channel to announce it in (no binding and no default channel).
        return JSONResponse(result, status_code=201 if result["routed"] else 202)

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
        refusal = bearer_refusal(runtime, request)
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
            Route("/hooks/alertmanager", _measured("/hooks/alertmanager", alertmanager_hook),
                  methods=["POST"]),
            Route("/hooks/mlflow", _measured("/hooks/mlflow", mlflow_hook), methods=["POST"]),
            Route("/hooks/promotion", _measured("/hooks/promotion", promotion_hook),
                  methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/api/gates", _measured("/api/gates", api_gates), methods=["GET"]),
        ],
        lifespan=lifespan,
    )
