"""Builds the Bolt app: Quorum's listeners on a Web API client pointed at SLACK_API_URL."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from slack_bolt import App
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

import handlers
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
    handlers.register_all(app, runtime)
    return app
