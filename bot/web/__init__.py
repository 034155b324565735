"""The HTTP server of `quorum serve`: Slack's endpoint, webhooks, health and metrics (Starlette).

- `app`: `create_web_app`, the Starlette app and its routes;
- `slack_dispatch`: Bolt listeners on worker threads, Slack answered at `ack()`;
- `limits`: how much a client may send, and how slowly (`RequestLimits`, `HeaderDeadlineProtocol`);
- `refusals`: the JSON refusals, the bearer token and webhook bodies' checks;
- `request_log`: each request's id, metrics and access-log line.
"""

from bot.web.app import create_web_app
from bot.web.limits import (
    BODY_LIMIT,
    HEADER_READ_SECONDS,
    HeaderDeadlineProtocol,
    header_deadline_protocol,
)
from bot.web.slack_dispatch import ANSWER_WITHIN, dispatch_until_ack

__all__ = [
    "ANSWER_WITHIN",
    "BODY_LIMIT",
    "HEADER_READ_SECONDS",
    "HeaderDeadlineProtocol",
    "create_web_app",
    "dispatch_until_ack",
    "header_deadline_protocol",
]
