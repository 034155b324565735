"""Signed requests shaped like Slack's own: slash commands, interactions and events.

The payloads come from `bot.slack_payloads`, which `quorum shell` uses too; this module signs
them and posts them to a running Quorum.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from slack_sdk.signature import SignatureVerifier

from bot import slack_payloads as payloads

SIGNING_SECRET = "test-signing-secret"
TEAM = "T0TEAM001"


def sign(body: str, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """The X-Slack-Signature headers Slack would send with `body`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body)
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature}


class SlackSender:
    """Sends what Slack sends to `POST /slack/events`, correctly signed, and returns the reply."""

    def __init__(self, base_url: str, response_url: str, team: str = TEAM) -> None:
        self.url = base_url.rstrip("/") + "/slack/events"
        self.response_url = response_url
        self.team = team
        self.http = httpx.Client(timeout=10)

    def close(self) -> None:
        self.http.close()

    def post(self, body: str, content_type: str, headers: dict[str, str] | None = None,
             signature: dict[str, str] | None = None) -> httpx.Response:
        all_headers = {"Content-Type": content_type, **(signature or sign(body)),
                       **(headers or {})}
        return self.http.post(self.url, content=body.encode(), headers=all_headers)

    def command(self, command: str, text: str = "", *, user: str = "U0ALICE01",
                channel: str = "C0CHURN01", channel_name: str = "churn-model") -> httpx.Response:
        form = payloads.slash_command(command, text, team=self.team, user=user, channel=channel,
                                      channel_name=channel_name, response_url=self.response_url)
        return self.post(payloads.form_body(form), "application/x-www-form-urlencoded")

    def interaction(self, payload: dict[str, Any]) -> httpx.Response:
        return self.post(payloads.interaction_body(payload), "application/x-www-form-urlencoded")

    def click(self, action_id: str, value: str, *, message: dict[str, Any] | None = None,
              user: str = "U0ALICE01", channel: str = "C0CHURN01",
              ephemeral: bool = False, block_id: str = "actions") -> httpx.Response:
        """Press a button (a `block_actions` payload)."""
        payload = payloads.block_actions(
            payloads.button_action(action_id, value), team=self.team, user=user,
            channel=channel, channel_name="churn-model", response_url=self.response_url,
            message=message, ephemeral=ephemeral, block_id=block_id)
        if ephemeral:  # older tests expect the placeholder message even on ephemeral clicks
            payload["message"] = message or {"ts": "1700000000.000001", "text": "", "blocks": []}
        return self.interaction(payload)

    def submit(self, view: dict[str, Any], values: dict[str, Any], *,
               user: str = "U0ALICE01") -> httpx.Response:
        """Submit a modal the bot opened, filling inputs by block_id (`view_submission`)."""
        try:
            payload = payloads.view_submission(view, values, team=self.team, user=user)
        except ValueError as exc:
            raise AssertionError(str(exc)) from None
        return self.interaction(payload)

    def message_shortcut(self, callback_id: str, message: dict[str, Any], *,
                         user: str = "U0ALICE01", channel: str = "C0CHURN01") -> httpx.Response:
        return self.interaction(payloads.message_shortcut(
            callback_id, message, team=self.team, user=user, channel=channel,
            channel_name="churn-model", response_url=self.response_url))

    def event(self, event: dict[str, Any], *, event_id: str | None = None,
              retry: int | None = None) -> httpx.Response:
        body = json.dumps(payloads.event_callback(event, team=self.team, event_id=event_id))
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} \
            if retry else None
        return self.post(body, "application/json", headers=headers)
