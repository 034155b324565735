"""`create_web_app`: the Starlette app of `quorum serve` and its routes.

Slack's events (verified, then dispatched by `bot.web.slack_dispatch`), the webhooks (Alertmanager,
MLflow, GitHub, promotions), the CI's `/api/gates`, `/healthz`, `/metrics`, and the portal under
`/portal` when it is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_starlette_response
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from bot import github_app, metrics
from bot.database import UNAVAILABLE, database_outage
from bot.delivery import OutboxWorker
from bot.errors import InvalidInput, QuorumError
from bot.logs import request_context
from bot.render import UNSTORABLE
from bot.runtime import Runtime
from bot.scheduler import Scheduler
from bot.services import alertmanager, github, mlflow_webhook, promotions
from bot.services.gate_check import check
from bot.slack_app import bolt_request
from bot.web.limits import BODY_LIMIT, BODY_READ_SECONDS, RequestLimits
from bot.web.refusals import bearer_refusal, json_refusal, read_json_object
from bot.web.request_log import measured
from bot.web.slack_dispatch import (
    ANSWER_WITHIN,
    LISTENER_THREADS,
    dispatch_until_ack,
    late_command_answer,
    slack_context,
)

log = logging.getLogger("quorum.web")


def _slack_refusal(reason: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": "invalid_signature", "reason": reason},
                        status_code=401)


def _portal_routes(runtime: Runtime) -> list[Mount]:
    """`/portal` (bot.portal) when Sign in with Slack is configured; links on cards follow."""
    from bot.portal import create_portal_app
    from bot.render import renderer

    renderer.public_url = runtime.settings.public_url if runtime.settings.portal_enabled else None
    if not runtime.settings.portal_enabled:
        return []
    return [Mount("/portal", app=create_portal_app(runtime))]


def create_web_app(runtime: Runtime, bolt_app: App, worker: OutboxWorker | None,
                   scheduler: Scheduler | None = None, *, body_limit: int = BODY_LIMIT,
                   body_read_seconds: float = BODY_READ_SECONDS,
                   answer_within: float = ANSWER_WITHIN) -> Starlette:
    """The ASGI app; starts and stops the outbox worker and the scheduler with the server.
    `answer_within`: how long a Slack request may take before a slash command is told it may
    not be saved (and a health check counts the database as down)."""

    listeners = ThreadPoolExecutor(LISTENER_THREADS, thread_name_prefix="quorum-listener")
    verifier = SignatureVerifier(runtime.settings.slack_signing_secret or "")

    async def slack_events(request: Request) -> Response:
        # Verified before Bolt sees it, with the verifier Bolt uses: Bolt parses the body first,
        # so an unsigned body that is not UTF-8 or nests too deep would get a 500, not a 401,
        # and its verifier raises on a timestamp that is not a number.
        timestamp = request.headers.get("x-slack-request-timestamp", "").strip()
        if not timestamp.isdecimal():
            return _slack_refusal("X-Slack-Request-Timestamp is missing or is not a Unix time "
                                  "in seconds.")
        body = await request.body()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:  # Slack sends UTF-8; the verifier would raise on it
            return _slack_refusal("The body is not UTF-8, so Slack did not sign it.")
        if not verifier.is_valid(text, timestamp, request.headers.get("x-slack-signature", "")):
            return _slack_refusal("The request is not signed with SLACK_SIGNING_SECRET, or was "
                                  "signed more than 5 minutes away from now.")
        try:
            bolt = bolt_request(text, request.headers, request.query_params)
        except (ValueError, RecursionError) as exc:  # signed, yet no payload Slack would send
            reason = "nested too deep" if isinstance(exc, RecursionError) else str(exc)[:200]
            return JSONResponse({"ok": False, "error": "invalid_payload",
                                 "reason": f"The body is not a Slack payload: {reason}."},
                                status_code=400)
        context = request_context.get()
        if context is not None:
            context.update(slack_context(bolt))
        answer = asyncio.ensure_future(dispatch_until_ack(bolt_app, bolt, listeners))
        try:
            bolt_response = await asyncio.wait_for(asyncio.shield(answer), answer_within)
        except TimeoutError:
            late = late_command_answer(bolt.body, answer_within)
            if late is not None:
                # The listener runs on; whatever it answers later is not wanted any more.
                answer.add_done_callback(lambda task: task.cancelled() or task.exception())
                return late
            bolt_response = await answer
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
            return json_refusal(422, "invalid_payload", exc.message, field=exc.field)
        settings = runtime.settings

        def apply() -> dict[str, object]:
            with runtime.db.session() as session:
                outcome = alertmanager.receive_alertmanager(
                    session, note, severity_map=settings.alert_severity_map,
                    default_channel=settings.default_channel,
                    silences=settings.alertmanager_url is not None)
                return outcome.as_json()

        result = await stored("Alertmanager notification", apply, invalid_status=422,
                              again="Alertmanager will send it again.")
        if isinstance(result, Response):
            return result
        # 202: stored, but no channel to announce it in (no project and no default channel).
        return JSONResponse(result, status_code=200 if result["routed"] else 202)

    async def stored(what: str, apply: Callable[[], dict[str, object]], *,
                     invalid_status: int = 400,
                     again: str = "Send it again later.") -> dict[str, object] | Response:
        """`apply` (one transaction) run on a worker thread: its result; a 4xx for a value the
        record refuses; a 503 while the database is down, or a 500, either of which makes the
        sender deliver it again (with the same delivery id, acted on once)."""
        try:
            return await run_in_threadpool(apply)
        except InvalidInput as exc:
            return json_refusal(invalid_status, "invalid_payload", exc.message, field=exc.field)
        except UNAVAILABLE:
            database_outage.failed(log, "%s not stored: database error", what)
            return json_refusal(503, "database_unavailable", "Quorum cannot reach its database; "
                                f"nothing was stored. {again}")
        except Exception:
            log.exception("%s failed", what)
            return json_refusal(500, "internal_error", "Something went wrong on our side; "
                                "nothing was stored.")

    async def mlflow_hook(request: Request) -> Response:
        """MLflow's registry webhooks: an alias set on a version is a promotion."""
        secret = runtime.settings.mlflow_webhook_secret
        if not secret:
            return json_refusal(503, "webhooks_disabled", "MLFLOW_WEBHOOK_SECRET is not set, so "
                                "Quorum refuses every MLflow webhook.")
        body = await request.body()  # the raw bytes: the signature covers exactly these
        delivery_id = request.headers.get("x-mlflow-delivery-id", "").strip()
        reason = mlflow_webhook.verify_mlflow_signature(
            secret, delivery_id, request.headers.get("x-mlflow-timestamp", "").strip(), body,
            request.headers.get("x-mlflow-signature", "").strip(), time.time())
        if reason is not None:
            return json_refusal(401, "invalid_signature", reason)
        if len(delivery_id) > mlflow_webhook.DELIVERY_ID_LIMIT:
            return json_refusal(400, "invalid_payload", "X-MLflow-Delivery-Id is too long.",
                                field="X-MLflow-Delivery-Id")
        data = await read_json_object(request)
        if isinstance(data, JSONResponse):
            return data
        try:
            mlflow_webhook.mlflow_draft(data)  # validate before touching the database
        except InvalidInput as exc:
            return json_refusal(400, "invalid_payload", exc.message, field=exc.field)
        settings = runtime.settings

        def apply() -> dict[str, object]:
            with runtime.db.session() as session:
                return mlflow_webhook.receive_mlflow(
                    session, data, delivery_id, default_channel=settings.default_channel,
                    repeat_window=settings.promotion_repeat_window).as_json()

        result = await stored("MLflow webhook", apply)
        if isinstance(result, Response):
            return result
        fresh_unrouted = result["created"] and not result["routed"]
        return JSONResponse(result, status_code=202 if fresh_unrouted else 200)

    async def github_hook(request: Request) -> Response:
        """GitHub's `deployment_protection_rule` webhooks: hold a deployment for its gates."""
        settings = runtime.settings
        secret = settings.github_webhook_secret
        if not (secret and settings.github_app_id and settings.github_app_private_key):
            return json_refusal(503, "webhooks_disabled", "GITHUB_WEBHOOK_SECRET, GITHUB_APP_ID "
                                "and GITHUB_APP_PRIVATE_KEY must all be set, so Quorum refuses "
                                "every GitHub webhook.")
        body = await request.body()  # the raw bytes: the signature covers exactly these
        reason = github_app.signature_refusal(
            secret, body, request.headers.get("x-hub-signature-256", ""))
        if reason is not None:
            return json_refusal(401, "invalid_signature", reason)
        event = request.headers.get("x-github-event", "").strip()
        delivery_id = request.headers.get("x-github-delivery", "").strip()
        if not delivery_id or len(delivery_id) > github.DELIVERY_ID_LIMIT:
            return json_refusal(400, "invalid_payload", "X-GitHub-Delivery must be the delivery's "
                                "GUID.", field="X-GitHub-Delivery")
        data = await read_json_object(request)
        if isinstance(data, JSONResponse):
            return data
        if event == "ping":
            return JSONResponse({"ok": True, "pong": True})
        if event != "deployment_protection_rule" or data.get("action") != "requested":
            return JSONResponse({"ok": True, "ignored": True}, status_code=202)
        try:
            parsed = github.parse_event(data)
        except InvalidInput as exc:
            return json_refusal(400, "invalid_payload", exc.message, field=exc.field)

        def apply() -> dict[str, object]:
            with runtime.db.session() as session:
                return github.receive(session, parsed, delivery_id).as_json()

        result = await stored("GitHub webhook", apply)
        if isinstance(result, Response):
            return result
        if not result["mapped"]:
            log.info("GitHub deployment of %s to %s ignored: no project maps them "
                     "(/quorum github map)", parsed.repo, parsed.environment)
            return JSONResponse({**result, "reason": "No project maps this repository and "
                                 "environment; `/quorum github map` in its channel."},
                                status_code=202)
        return JSONResponse(result, status_code=200)

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
            return json_refusal(400, "invalid_payload", exc.message, field=exc.field)
        settings = runtime.settings

        def apply() -> dict[str, object]:
            with runtime.db.session() as session:
                return promotions.record_promotion(
                    session, draft, source="webhook", created_by=promotions.WEBHOOK,
                    default_channel=settings.default_channel,
                    repeat_window=settings.promotion_repeat_window).as_json()

        result = await stored("Promotion", apply)
        if isinstance(result, Response):
            return result
        # 202: stored, but no channel to announce it in (no binding and no default channel).
        return JSONResponse(result, status_code=201 if result["routed"] else 202)

    async def healthz(_: Request) -> Response:
        try:  # a database that hangs is as down as one that refuses
            healthy = await asyncio.wait_for(asyncio.shield(run_in_threadpool(runtime.db.ping)),
                                             answer_within)
        except TimeoutError:
            healthy = False
        return JSONResponse({"ok": healthy, "database": "up" if healthy else "down"},
                            status_code=200 if healthy else 503)

    async def metrics_endpoint(_: Request) -> Response:
        with contextlib.suppress(Exception):  # metrics stay readable while the database is down
            await run_in_threadpool(metrics.refresh_shared, runtime.db)
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
        if any(UNSTORABLE.search(value) for value in (model, version, milestone or "")):
            # PostgreSQL cannot even compare text holding NUL: refuse it before the query.
            return JSONResponse({"ok": False, "error": "bad_request",
                                 "reason": "model, version and milestone cannot hold NUL "
                                           "(%00)."}, status_code=400)

        def lookup() -> dict[str, object]:
            with runtime.db.session() as session:
                return check(session, model, version, milestone).as_record()

        try:
            result = await run_in_threadpool(lookup)
        except QuorumError as exc:
            return JSONResponse({"ok": False, "error": "bad_request", "reason": exc.message},
                                status_code=400)
        except UNAVAILABLE:
            database_outage.failed(log, "Gate check not answered: database error")
            return json_refusal(503, "database_unavailable", "Quorum cannot reach its database, so "
                                "it cannot say whether the gate passed; try again shortly.")
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
            listeners.shutdown(wait=False, cancel_futures=True)

    return Starlette(
        routes=[
            Route("/slack/events", measured("/slack/events", slack_events), methods=["POST"]),
            Route("/hooks/alertmanager", measured("/hooks/alertmanager", alertmanager_hook),
                  methods=["POST"]),
            Route("/hooks/mlflow", measured("/hooks/mlflow", mlflow_hook), methods=["POST"]),
            Route("/hooks/github", measured("/hooks/github", github_hook), methods=["POST"]),
            Route("/hooks/promotion", measured("/hooks/promotion", promotion_hook),
                  methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/api/gates", measured("/api/gates", api_gates), methods=["GET"]),
            *_portal_routes(runtime),
        ],
        middleware=[Middleware(RequestLimits, limit=body_limit,
                               read_seconds=body_read_seconds)],
        lifespan=lifespan,
    )
