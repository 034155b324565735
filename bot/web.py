"""The HTTP server of `quorum serve`: Slack's endpoint, webhooks, health and metrics (Starlette).

Bolt's own Starlette adapter calls the synchronous `App.dispatch` on the event loop, which would
serialize every request. Here each dispatch runs on a worker thread instead, so slow listeners
never hold up other requests, and the event loop only moves bytes. Slack's request is answered
the moment the listener calls `ack()` (see `dispatch_until_ack`); the listener then goes on, on its
thread, with whatever Slack calls follow the acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import h11
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt import Ack, App, BoltRequest, BoltResponse
from slack_bolt.adapter.starlette.handler import to_starlette_response
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

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
from handlers.common import TOO_SLOW, error_message

log = logging.getLogger("quorum.web")

Endpoint = Callable[[Request], Awaitable[Response]]
# Threads that run Bolt listeners; a request holds one only while its listener runs.
LISTENER_THREADS = 32


class _SignallingAck(Ack):
    """Bolt's `ack` that also hands its response to the waiting request the moment it is called."""

    def __init__(self, on_ack: Callable[[BoltResponse], None]) -> None:
        super().__init__()
        self._on_ack = on_ack

    def __call__(self, *args: Any, **kwargs: Any) -> BoltResponse:
        response = super().__call__(*args, **kwargs)
        self._on_ack(response)
        return response


async def dispatch_until_ack(bolt_app: App, request: BoltRequest,
                             executor: Executor) -> BoltResponse:
    """Run `bolt_app.dispatch` on `executor` and answer as soon as the listener acknowledges.

    Bolt's own "ack first, then go on" mode (`process_before_response=False`) polls for the ack
    every 10 ms from a second thread; with an app built with `process_before_response=True` this
    gives the same behaviour with no polling: the HTTP answer leaves when `ack()` is called (or
    when dispatch returns without one: a refused signature, an unhandled request, an event), and
    the listener finishes on its thread.
    """
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[BoltResponse] = loop.create_future()

    def settle(outcome: BoltResponse | BaseException) -> None:
        if answered.done():
            return
        if isinstance(outcome, BaseException):
            answered.set_exception(outcome)
        else:
            answered.set_result(outcome)

    def answer(outcome: BoltResponse | BaseException) -> None:
        loop.call_soon_threadsafe(settle, outcome)

    request.context["ack"] = _SignallingAck(answer)

    def run() -> None:
        try:
            answer(bolt_app.dispatch(request))
        except BaseException as exc:  # dispatch handles listener errors; this is Bolt failing
            answer(exc)

    # The listener's thread carries the request's log context (request id, team, command).
    executor.submit(contextvars.copy_context().run, run)
    return await answered


# Slack shows an error unless a slash command is answered within 3 s (network included).
ANSWER_WITHIN = 2.5  # Slack counts its own network time too; Bolt gives up at 3 s

# Slack's payloads and every webhook fit in a few kilobytes; Slack caps its own at 3 MB of
# message text split over many requests. A larger body is refused before it is read.
BODY_LIMIT = 1024 * 1024
# A whole body must arrive within this many seconds: a client that dribbles it byte by byte
# must not hold its connection (and what it buffered) for ever; uvicorn has no such deadline.
BODY_READ_SECONDS = 10.0
# The same for a request's line and headers, from the connection (or the previous response).
HEADER_READ_SECONDS = 10.0


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers do not arrive in time.

    uvicorn has no such deadline: its keep-alive timer runs only between requests and every
    byte received cancels it, so a client sending a header byte now and then (slow-loris) would
    hold its connection for ever. The ASGI app only sees a request once its headers are complete,
    so this cannot be a middleware; bodies are `RequestLimits`' business.
    """

    header_seconds = HEADER_READ_SECONDS
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the headers are in
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_deadline()  # the next request on this kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_timer = self.loop.call_later(self.header_seconds, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        metrics.http_refused.labels("header_timeout").inc()
        # h11 cannot answer a request it has not parsed: the 408 is written by hand.
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n"
                             b"connection: close\r\n\r\n")
        self.transport.close()


def header_deadline_protocol(seconds: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class to give uvicorn (`http=`), with its own header deadline."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_seconds": seconds})


def _slack_refusal(reason: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": "invalid_signature", "reason": reason},
                        status_code=401)


def _refusal(status: int, error: str, reason: str, **extra: object) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"ok": False, "error": error, "reason": reason, **extra},
                        status_code=status, headers=headers)


class RequestLimits:
    """Every route's body: at most `limit` bytes, arriving within `read_seconds` (pure ASGI).

    An announced `Content-Length` over the limit is refused before a byte of the body is read;
    a chunked body is counted as it streams and refused once it passes the limit. The body is
    read here, once, and handed on, so no endpoint ever waits on a slow client.
    """

    def __init__(self, app: ASGIApp, limit: int = BODY_LIMIT,
                 read_seconds: float = BODY_READ_SECONDS) -> None:
        self.app = app
        self.limit = limit
        self.read_seconds = read_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        announced = dict(scope["headers"]).get(b"content-length")
        if announced is not None:
            try:
                length = int(announced)
            except ValueError:
                length = -1
            if length < 0:
                await _refuse(send, 400, "invalid_content_length",
                              "Content-Length must be a number of bytes.")
                return
            if length > self.limit:
                await _refuse(send, 413, "body_too_large", self._too_large())
                return
        try:
            async with asyncio.timeout(self.read_seconds):
                body = await self._read(receive)
        except TimeoutError:
            await _refuse(send, 408, "request_timeout",
                          f"The request body did not arrive within {self.read_seconds:g} s.")
            return
        if body is None:  # the client went away
            return
        if len(body) > self.limit:
            await _refuse(send, 413, "body_too_large", self._too_large())
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls wait for the disconnect, as usual

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or as soon as it passes the limit what came so far; None on hang-up."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > self.limit or not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self) -> str:
        return f"The request body is larger than {self.limit} bytes."


async def _refuse(send: Send, status: int, error: str, reason: str) -> None:
    """Answer without reading the rest of the request, and close the connection after it."""
    metrics.http_refused.labels(error).inc()
    body = json.dumps({"ok": False, "error": error, "reason": reason}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


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
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
        return _refusal(400, "invalid_json", "The body is not valid JSON.")
    if not isinstance(data, dict):
        return _refusal(400, "invalid_json", "The body must be a JSON object.")
    reason = _unstorable_text(data)
    if reason is not None:
        return _refusal(400, "invalid_json", reason)
    return data


def _late_command_answer(payload: dict[str, Any], waited: float) -> Response | None:
    """What a (verified) slash command gets when its listener is still busy (say, on a database
    that accepts connections but does not answer): a polite ephemeral before Slack gives up at
    3 s, instead of Slack's own error. None for anything else, which waits for Bolt as before."""
    command = payload.get("command")
    if not isinstance(command, str):  # only a slash command's form has one
        return None
    log.warning("%s did not finish within %ss; answered that it may not be saved",
                command[:40], waited)
    return JSONResponse(error_message(TOO_SLOW))


# No webhook sender nests its JSON anywhere near this deep; deeper is refused before any
# code that walks the value (or stores it) can run out of stack.
JSON_DEPTH_LIMIT = 32


def _unstorable_text(value: object) -> str | None:
    """Why a parsed JSON value holds text no database or reply can take, or nests too deep;
    None when it is fine."""
    pending = [(value, 1)]  # a stack, not recursion: the value may nest as deep as json allows
    while pending:
        item, depth = pending.pop()
        if depth > JSON_DEPTH_LIMIT:
            return f"The body nests deeper than {JSON_DEPTH_LIMIT} levels."
        if isinstance(item, dict):
            pending.extend((key, depth) for key in item)
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, str) and (found := UNSTORABLE.search(item)):
            if found.group() == "\x00":  # PostgreSQL refuses it in text
                return "The body holds a NUL character (\\u0000), which Quorum cannot store."
            # A lone surrogate such as "\ud800" parses, but cannot be encoded again.
            return ("The body holds a lone UTF-16 surrogate (like \\ud800): text must be "
                    "valid Unicode.")
    return None


access_log = logging.getLogger("quorum.access")
# A caller's X-Request-Id is kept when it looks like one (a proxy's or a load balancer's id);
# anything else is replaced, so that no client can write arbitrary text into the logs.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "").strip()
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def _measured(route: str, endpoint: Endpoint) -> Endpoint:
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


def _slack_context(bolt: BoltRequest) -> dict[str, str]:
    """What a Slack request is about, for its log lines: the workspace and the slash command
    (or the interaction or event type)."""
    body = bolt.body if isinstance(bolt.body, dict) else {}
    what = body.get("command") or body.get("type")
    if what == "event_callback" and isinstance(body.get("event"), dict):
        what = body["event"].get("type")
    found = {"team": bolt.context.team_id, "command": what}
    return {key: str(value)[:64] for key, value in found.items() if value}


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
            context.update(_slack_context(bolt))
        answer = asyncio.ensure_future(dispatch_until_ack(bolt_app, bolt, listeners))
        try:
            bolt_response = await asyncio.wait_for(asyncio.shield(answer), answer_within)
        except TimeoutError:
            late = _late_command_answer(bolt.body, answer_within)
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
            return _refusal(422, "invalid_payload", exc.message, field=exc.field)
        settings = runtime.settings

        def apply() -> dict[str, object]:
            with runtime.db.session() as session:
                outcome = alertmanager.receive_alertmanager(
                    session, note, severity_map=settings.alert_severity_map,
                    default_channel=settings.default_channel,
                    silences=settings.alertmanager_url is not None)
                return outcome.as_json()

        try:
            result = await run_in_threadpool(apply)
        except InvalidInput as exc:
            return _refusal(422, "invalid_payload", exc.message, field=exc.field)
        except UNAVAILABLE:
            database_outage.failed(log, "Alertmanager notification not stored: database error")
            return _refusal(503, "database_unavailable", "Quorum cannot reach its database; "
                            "nothing was stored. Alertmanager will send it again.")
        except Exception:
            log.exception("Alertmanager notification failed")
            return _refusal(500, "internal_error", "Something went wrong on our side; nothing "
                            "was stored.")
        # 202: stored, but no channel to announce it in (no project and no default channel).
        return JSONResponse(result, status_code=200 if result["routed"] else 202)

    def _store_failed(what: str, exc: Exception) -> JSONResponse:
        if isinstance(exc, UNAVAILABLE):
            database_outage.failed(log, "%s not stored: database error", what)
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
        reason = mlflow_webhook.verify_mlflow_signature(
            secret, delivery_id, request.headers.get("x-mlflow-timestamp", "").strip(), body,
            request.headers.get("x-mlflow-signature", "").strip(), time.time())
        if reason is not None:
            return _refusal(401, "invalid_signature", reason)
        if len(delivery_id) > mlflow_webhook.DELIVERY_ID_LIMIT:
            return _refusal(400, "invalid_payload", "X-MLflow-Delivery-Id is too long.",
                            field="X-MLflow-Delivery-Id")
        data = await read_json_object(request)
        if isinstance(data, JSONResponse):
            return data
        try:
            mlflow_webhook.mlflow_draft(data)  # validate before touching the database
        except InvalidInput as exc:
            return _refusal(400, "invalid_payload", exc.message, field=exc.field)
        settings = runtime.settings

        def apply() -> dict[str, object]:
            with runtime.db.session() as session:
                return mlflow_webhook.receive_mlflow(
                    session, data, delivery_id, default_channel=settings.default_channel,
                    repeat_window=settings.promotion_repeat_window).as_json()

        try:
            result = await run_in_threadpool(apply)
        except InvalidInput as exc:
            return _refusal(400, "invalid_payload", exc.message, field=exc.field)
        except Exception as exc:
            # A 5xx makes MLflow deliver it again, with the same delivery id.
            return _store_failed("MLflow webhook", exc)
        fresh_unrouted = result["created"] and not result["routed"]
        return JSONResponse(result, status_code=202 if fresh_unrouted else 200)

    async def github_hook(request: Request) -> Response:
        """GitHub's `deployment_protection_rule` webhooks: hold a deployment for its gates."""
        settings = runtime.settings
        secret = settings.github_webhook_secret
        if not (secret and settings.github_app_id and settings.github_app_private_key):
            return _refusal(503, "webhooks_disabled", "GITHUB_WEBHOOK_SECRET, GITHUB_APP_ID and "
                            "GITHUB_APP_PRIVATE_KEY must all be set, so Quorum refuses every "
                            "GitHub webhook.")
        body = await request.body()  # the raw bytes: the signature covers exactly these
        reason = github_app.signature_refusal(
            secret, body, request.headers.get("x-hub-signature-256", ""))
        if reason is not None:
            return _refusal(401, "invalid_signature", reason)
        event = request.headers.get("x-github-event", "").strip()
        delivery_id = request.headers.get("x-github-delivery", "").strip()
        if not delivery_id or len(delivery_id) > github.DELIVERY_ID_LIMIT:
            return _refusal(400, "invalid_payload", "X-GitHub-Delivery must be the delivery's "
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
            return _refusal(400, "invalid_payload", exc.message, field=exc.field)

        def apply() -> dict[str, object]:
            with runtime.db.session() as session:
                return github.receive(session, parsed, delivery_id).as_json()

        try:
            result = await run_in_threadpool(apply)
        except InvalidInput as exc:
            return _refusal(400, "invalid_payload", exc.message, field=exc.field)
        except Exception as exc:
            # A 5xx: GitHub's redelivery (same GUID) acts once.
            return _store_failed("GitHub webhook", exc)
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
            return _refusal(400, "invalid_payload", exc.message, field=exc.field)
        settings = runtime.settings

        def apply() -> dict[str, object]:
            with runtime.db.session() as session:
                return promotions.record_promotion(
                    session, draft, source="webhook", created_by=promotions.WEBHOOK,
                    default_channel=settings.default_channel,
                    repeat_window=settings.promotion_repeat_window).as_json()

        try:
            result = await run_in_threadpool(apply)
        except InvalidInput as exc:
            return _refusal(400, "invalid_payload", exc.message, field=exc.field)
        except Exception as exc:
            return _store_failed("Promotion", exc)
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
            return _refusal(503, "database_unavailable", "Quorum cannot reach its database, so "
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
            Route("/slack/events", _measured("/slack/events", slack_events), methods=["POST"]),
            Route("/hooks/alertmanager", _measured("/hooks/alertmanager", alertmanager_hook),
                  methods=["POST"]),
            Route("/hooks/mlflow", _measured("/hooks/mlflow", mlflow_hook), methods=["POST"]),
            Route("/hooks/github", _measured("/hooks/github", github_hook), methods=["POST"]),
            Route("/hooks/promotion", _measured("/hooks/promotion", promotion_hook),
                  methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/api/gates", _measured("/api/gates", api_gates), methods=["GET"]),
            *_portal_routes(runtime),
        ],
        middleware=[Middleware(RequestLimits, limit=body_limit,
                               read_seconds=body_read_seconds)],
        lifespan=lifespan,
    )
