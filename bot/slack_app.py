"""Builds the Bolt app: Quorum's listeners on a Web API client pointed at SLACK_API_URL."""

from __future__ import annotations

import json
import logging
import threading
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

import handlers
from bot.render import storable
from bot.runtime import Runtime

log = logging.getLogger("quorum.slack")


def web_client(runtime: Runtime, timeout: int = 10, *, with_token: bool = True) -> WebClient:
    """A Web API client with no retry handlers of its own: the outbox decides about retries."""
    token = runtime.settings.slack_bot_token if with_token else None
    client = WebClient(token=token, base_url=runtime.settings.slack_api_url, timeout=timeout)
    client.retry_handlers.clear()
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
    return parsed


def bolt_request(body: str, headers: Mapping[str, str | Sequence[str]],
                 query: Mapping[str, str | Sequence[str]] | None = None) -> BoltRequest:
    """The one way a Slack HTTP body becomes a Bolt request (`quorum serve` and `quorum shell`).

    The raw body stays, for Bolt's signature check; the parsed one is `parse_slack_body`'s.
    """
    request = BoltRequest(body=body, query=dict(query or {}), headers=dict(headers))
    request.body = parse_slack_body(body, request.content_type)
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

    Listeners run to completion inside `dispatch`: over HTTP, `bot.web.dispatch_until_ack` answers
    Slack as soon as a listener calls `ack()` and lets it finish on its thread; `quorum shell` shows
    the reply once the listener is done. Socket Mode passes `process_before_response=False` (Bolt
    acknowledges first, then runs the listener on its own thread pool).
    `quorum manifest` passes an `app_class` that records what the features register.
    """
    # The token comes from `authorize`; Bolt gives each request a client that carries it.
    client = web_client(runtime, with_token=False)
    app = app_class(
        client=client,
        authorize=workspace_authorization(client, runtime.settings.slack_bot_token),
        signing_secret=runtime.settings.slack_signing_secret or "",
        token_verification_enabled=False,
        request_verification_enabled=verify_requests,
        process_before_response=process_before_response,
    )
    app.use(_storable_payload)
    handlers.register_all(app, runtime)
    return app
