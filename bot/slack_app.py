"""Builds the Bolt app: Quorum's listeners on a Web API client pointed at SLACK_API_URL."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt import App, BoltRequest
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context import BoltContext
from slack_bolt.request.internals import build_context
from slack_bolt.response import BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import (
    BackoffRetryIntervalCalculator,
    ConnectionErrorRetryHandler,
    HttpRequest,
    HttpResponse,
    RateLimitErrorRetryHandler,
    RetryState,
)
from slack_sdk.http_retry.jitter import Jitter

import handlers
from bot.render import storable
from bot.replays import ContextExecutor, track_commands
from bot.runtime import Runtime

log = logging.getLogger("quorum.slack")


def web_client(runtime: Runtime, timeout: int = 10, *, with_token: bool = True) -> WebClient:
    """A Web API client with no retry handlers of its own: the outbox decides about retries."""
    token = runtime.settings.slack_bot_token if with_token else None
    client = WebClient(token=token, base_url=runtime.settings.slack_api_url, timeout=timeout)
    client.retry_handlers.clear()
    return client


# What the listeners' own calls (views.open, conversations.create, …) may spend on retries: a
# modal's trigger id expires 3 s after the click, and the request has used some of them already.
# A reset connection is tried again twice (after 0.1 to 0.15 s, then 0.2 to 0.3 s); a 429 once, and
# only when Slack asks for at most this many seconds.
LISTENER_CONNECTION_RETRIES = 2
LISTENER_RATE_LIMIT_WAIT = 1.0


class ProportionalJitter(Jitter):
    """Up to half the interval again: slack_sdk's default jitter adds up to a whole second to
    every wait, which two retries inside a 3-second trigger id cannot afford."""

    def recalculate(self, duration: float) -> float:
        return duration * (1 + random.random() / 2)


class BoundedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handler, retrying only when `Retry-After` fits in `max_wait` seconds
    and waiting exactly that long (the stock handler adds up to a second of jitter)."""

    def __init__(self, max_wait: float, max_retry_count: int = 1) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    def _can_retry(self, *, state: RetryState, request: HttpRequest,
                   response: HttpResponse | None = None,
                   error: Exception | None = None) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = _retry_after(response)
        return wait is not None and wait <= self.max_wait

    def prepare_for_next_attempt(self, *, state: RetryState, request: HttpRequest,
                                 response: HttpResponse | None = None,
                                 error: Exception | None = None) -> None:
        state.next_attempt_requested = True
        wait = _retry_after(response) if response is not None else None
        time.sleep(wait or 0.0)
        state.increment_current_attempt()


def _retry_after(response: HttpResponse) -> float | None:
    for name, values in response.headers.items():
        if name.lower() == "retry-after":
            value = values[0] if isinstance(values, list) and values else values
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def listener_client(runtime: Runtime, timeout: int = 10) -> WebClient:
    """The Web API client the listeners call Slack with, during a request: unlike the outbox's,
    it retries a dropped connection and a short 429 itself, within the time the call has."""
    client = WebClient(base_url=runtime.settings.slack_api_url, timeout=timeout)
    client.retry_handlers = [
        ConnectionErrorRetryHandler(
            max_retry_count=LISTENER_CONNECTION_RETRIES,
            interval_calculator=BackoffRetryIntervalCalculator(backoff_factor=0.1,
                                                               jitter=ProportionalJitter())),
        BoundedRateLimitRetryHandler(max_wait=LISTENER_RATE_LIMIT_WAIT),
    ]
    return client


def workspace_authorization(client: WebClient, token: str | None) -> Callable[..., AuthorizeResult]:
    """Authorizes requests with the one bot token, learning the bot's ids from `auth.test` once.

    Bolt's default does the same but fails every request while `auth.test` cannot be reached;
    here a Slack outage only delays learning the ids, and requests go on being served.
    """
    known: list[AuthorizeResult] = []
    lock = threading.Lock()

    def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
        if known:
            return known[0]
        with lock:
            if not known:
                try:
                    known.append(AuthorizeResult.from_auth_test_response(
                        auth_test_response=client.auth_test(token=token), bot_token=token))
                except (SlackApiError, SlackClientError, OSError) as exc:
                    log.warning("auth.test failed (%s); serving without the bot's ids for now",
                                type(exc).__name__)
                    return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id,
                                           bot_token=token)
        return known[0]

    return authorize


def parse_slack_body(body: str, content_type: str | None) -> dict[str, Any]:
    """What Slack posted: a JSON event, an interaction (JSON in the `payload` form field) or the
    form fields of a slash command. Raises ValueError for a body that is none of these.

    Bolt's own parser takes any form body that merely contains the word "payload" for an
    interaction, so `/decision payload limits` would reach no listener (a 404).
    """
    if (content_type or "").split(";")[0].strip() == "application/json" or body.startswith("{"):
        parsed: object = json.loads(body)
    else:
        fields = dict(parse_qsl(body, keep_blank_values=True))
        parsed = json.loads(fields["payload"]) if "payload" in fields else fields
    if not isinstance(parsed, dict):
        raise ValueError("a Slack payload is a JSON object")
    _check_shape(parsed)
    return parsed


# The parts of each kind of payload that Bolt and the listeners read without checking their
# type: a signed body with any of them shaped otherwise would fail with a traceback (a 500).
_SLASH_COMMAND_FIELDS = ("command", "text", "user_id", "channel_id")
_PAYLOAD_SHAPES: dict[str, dict[str, type]] = {
    "event_callback": {"event": dict},
    "block_actions": {"actions": list, "user": dict},
    "view_submission": {"view": dict, "user": dict},
    "view_closed": {"view": dict, "user": dict},
    "message_action": {"message": dict, "user": dict},
    "shortcut": {"user": dict},
}


def _check_shape(payload: dict[str, Any]) -> None:
    """Raises ValueError when a payload's fields do not have the shapes Slack sends."""
    if "command" in payload:
        missing = [name for name in _SLASH_COMMAND_FIELDS
                   if not isinstance(payload.get(name), str)]
        if missing:
            raise ValueError(f"a slash command needs {', '.join(missing)}")
        return
    kind = payload.get("type")
    if kind is not None and not isinstance(kind, str):
        raise ValueError("a payload's type is a string")
    for name, shape in _PAYLOAD_SHAPES.get(kind or "", {}).items():
        if not isinstance(payload.get(name), shape):
            raise ValueError(f"a {kind} payload's {name} is a {shape.__name__}")
    if kind == "block_actions" and not all(isinstance(a, dict) for a in payload["actions"]):
        raise ValueError("a block_actions payload's actions are objects")
    if kind == "event_callback" and not isinstance(payload["event"].get("type"), str):
        raise ValueError("an event has a type")
    view = payload.get("view")
    if isinstance(view, dict) and not isinstance(view.get("state", {}), dict):
        raise ValueError("a view's state is an object")
    for name in ("team", "channel", "enterprise"):
        if not isinstance(payload.get(name), dict | str | None):
            raise ValueError(f"a payload's {name} is an object or an id")


def bolt_request(body: str, headers: Mapping[str, str | Sequence[str]],
                 query: Mapping[str, str | Sequence[str]] | None = None) -> BoltRequest:
    """The one way a Slack HTTP body becomes a Bolt request (`quorum serve` and `quorum shell`).

    Raises ValueError for a body that is no Slack payload (checked before Bolt parses it: its
    parser fails with a traceback on `null` or a list). The raw body stays, for Bolt's
    signature check; the parsed one is `parse_slack_body`'s.
    """
    normalized = {name.lower(): value for name, value in dict(headers).items()}
    content_type = normalized.get("content-type")
    if not isinstance(content_type, str):
        content_type = content_type[0] if content_type else None
    parsed = parse_slack_body(body, content_type)
    request = BoltRequest(body="", query=dict(query or {}), headers=dict(headers))
    request.raw_body = body
    request.body = parsed
    request.context = build_context(BoltContext(), request.body)
    return request


def _storable_payload(req: BoltRequest, next: Callable[[], BoltResponse]) -> BoltResponse:
    """Bolt middleware: every text in every payload (slash command, modal, thread reply, over
    HTTP or Socket Mode) loses what no database can store before any listener reads it."""
    req.body = storable(req.body)
    return next()


def build_app(runtime: Runtime, *, verify_requests: bool = True,
              process_before_response: bool = True, app_class: type[App] = App) -> App:
    """The Bolt app with every feature's listeners; no Slack call is made while building it.

    Listeners run to completion inside `dispatch`: over HTTP, `dispatch_until_ack`
    (`bot.web.slack_dispatch`) answers Slack as soon as a listener calls `ack()` and lets it finish
    on its thread; `quorum shell` shows the reply once the listener is done. Socket Mode passes
    `process_before_response=False` (Bolt acknowledges first, then runs the listener on its own
    thread pool).
    `quorum manifest` passes an `app_class` that records what the features register.
    """
    # The token comes from `authorize`; Bolt gives each request a client that carries it (and
    # copies this one's retry handlers to it).
    client = listener_client(runtime)
    app = app_class(
        client=client,
        authorize=workspace_authorization(client, runtime.settings.slack_bot_token),
        signing_secret=runtime.settings.slack_signing_secret or "",
        token_verification_enabled=False,
        request_verification_enabled=verify_requests,
        process_before_response=process_before_response,
        # Listeners that run after the ack (Socket Mode) keep the request's command trigger.
        listener_executor=ContextExecutor(max_workers=5),
    )
    app.use(_storable_payload)
    track_commands(app, runtime.db)
    handlers.register_all(app, runtime)
    return app
