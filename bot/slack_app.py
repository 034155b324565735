"""Builds the Bolt app: Quorum's listeners on a Web API client pointed at SLACK_API_URL."""

from __future__ import annotations

from slack_bolt import App
from slack_sdk import WebClient

import handlers
from bot.runtime import Runtime


def web_client(runtime: Runtime, timeout: int = 10) -> WebClient:
    """A Web API client with no retry handlers of its own: the outbox decides about retries."""
    client = WebClient(token=runtime.settings.slack_bot_token,
                       base_url=runtime.settings.slack_api_url, timeout=timeout)
    client.retry_handlers.clear()
    return client


def build_app(runtime: Runtime, *, verify_requests: bool = True,
              process_before_response: bool = False, app_class: type[App] = App) -> App:
    """The Bolt app with every feature's listeners; no Slack call is made while building it.

    `quorum shell` processes before responding (it shows the reply once the listener is done);
    `quorum manifest` passes an `app_class` that records what the features register.
    """
    app = app_class(
        client=web_client(runtime),
        signing_secret=runtime.settings.slack_signing_secret or "",
        token_verification_enabled=False,
        request_verification_enabled=verify_requests,
        # By default ack first, then run the rest of the listener on Bolt's thread pool.
        process_before_response=process_before_response,
    )
    handlers.register_all(app, runtime)
    return app
