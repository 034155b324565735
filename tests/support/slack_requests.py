"""Signed requests shaped like Slack's own: slash commands, interactions and events."""

from __future__ import annotations

import itertools
import json
import re
import time
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

from bot.render import slack_escape

SIGNING_SECRET = "test-signing-secret"
TEAM = "T0TEAM001"
_counter = itertools.count(1)


ENTITY = re.compile(r"<(?:[@#!][^<>]*|https?://[^<>]*)>")


def as_slack_sends(text: str) -> str:
    """Command text the way Slack delivers it: `&`, `<`, `>` escaped, mentions and links kept."""
    parts, last = [], 0
    for match in ENTITY.finditer(text):
        parts.append(slack_escape(text[last:match.start()]))
        parts.append(match.group(0))
        last = match.end()
    parts.append(slack_escape(text[last:]))
    return "".join(parts)


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
        form = {
            "token": "legacy-verification-token", "team_id": self.team, "team_domain": "acme",
            "channel_id": channel, "channel_name": channel_name, "user_id": user,
            "user_name": user.lower(), "command": command, "text": as_slack_sends(text),
            "api_app_id": "A0001", "is_enterprise_install": "false",
            "response_url": self.response_url, "trigger_id": f"trigger.{next(_counter)}",
        }
        return self.post(urlencode(form), "application/x-www-form-urlencoded")

    def interaction(self, payload: dict[str, Any]) -> httpx.Response:
        return self.post(urlencode({"payload": json.dumps(payload)}),
                         "application/x-www-form-urlencoded")

    def click(self, action_id: str, value: str, *, message: dict[str, Any] | None = None,
              user: str = "U0ALICE01", channel: str = "C0CHURN01",
              ephemeral: bool = False, block_id: str = "actions") -> httpx.Response:
        """Press a button (a `block_actions` payload)."""
        message = message or {"ts": "1700000000.000001", "text": "", "blocks": []}
        return self.interaction({
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "name": user.lower(),
                     "team_id": self.team},
            "api_app_id": "A0001", "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": message.get("ts"),
                          "channel_id": channel, "is_ephemeral": ephemeral},
            "trigger_id": f"trigger.{next(_counter)}",
            "team": {"id": self.team, "domain": "acme"},
            "channel": {"id": channel, "name": "churn-model"},
            "message": message,
            "response_url": self.response_url,
            "actions": [{"action_id": action_id, "block_id": block_id, "value": value,
                         "type": "button", "text": {"type": "plain_text", "text": action_id},
                         "action_ts": f"{time.time():.6f}"}],
        })

    def submit(self, view: dict[str, Any], values: dict[str, Any], *,
               user: str = "U0ALICE01") -> httpx.Response:
        """Submit a modal the bot opened, filling inputs by block_id (`view_submission`)."""
        state: dict[str, dict[str, Any]] = {}
        for block in view.get("blocks", []):
            if block.get("type") != "input":
                continue
            element = block["element"]
            block_id, action_id = block["block_id"], element["action_id"]
            value = values.get(block_id, _initial_value(element))
            state[block_id] = {action_id: _element_state(element, value)}
        submitted = {**view, "id": view.get("id", "V0000001"), "state": {"values": state},
                     "hash": "1700000000.abc", "team_id": self.team}
        return self.interaction({
            "type": "view_submission", "team": {"id": self.team, "domain": "acme"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(),
                     "team_id": self.team},
            "api_app_id": "A0001", "token": "legacy-verification-token",
            "trigger_id": f"trigger.{next(_counter)}", "view": submitted,
            "response_urls": [],
        })

    def message_shortcut(self, callback_id: str, message: dict[str, Any], *,
                         user: str = "U0ALICE01", channel: str = "C0CHURN01") -> httpx.Response:
        return self.interaction({
            "type": "message_action", "callback_id": callback_id,
            "trigger_id": f"trigger.{next(_counter)}", "message_ts": message["ts"],
            "team": {"id": self.team, "domain": "acme"},
            "user": {"id": user, "username": user.lower(), "team_id": self.team},
            "channel": {"id": channel, "name": "churn-model"},
            "message": {"type": "message", **message},
            "response_url": self.response_url, "token": "legacy-verification-token",
        })

    def event(self, event: dict[str, Any], *, event_id: str | None = None,
              retry: int | None = None) -> httpx.Response:
        body = json.dumps({
            "token": "legacy-verification-token", "team_id": self.team, "api_app_id": "A0001",
            "event": event, "type": "event_callback",
            "event_id": event_id or f"Ev{next(_counter):08d}", "event_time": int(time.time()),
        })
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} \
            if retry else None
        return self.post(body, "application/json", headers=headers)


def _initial_value(element: dict[str, Any]) -> Any:
    kind = element["type"]
    if kind == "plain_text_input":
        return element.get("initial_value")
    if kind == "multi_users_select":
        return element.get("initial_users", [])
    if kind in ("static_select", "radio_buttons"):
        option = element.get("initial_option")
        return option["value"] if option else None
    if kind in ("multi_static_select", "checkboxes"):
        return [o["value"] for o in element.get("initial_options", [])]
    if kind == "users_select":
        return element.get("initial_user")
    if kind == "datepicker":
        return element.get("initial_date")
    return None


def _element_state(element: dict[str, Any], value: Any) -> dict[str, Any]:
    """What Slack puts in `state.values` for an element holding `value`."""
    kind = element["type"]
    if kind == "plain_text_input":
        return {"type": kind, "value": value or None}
    if kind == "multi_users_select":
        return {"type": kind, "selected_users": list(value or [])}
    if kind in ("static_select", "radio_buttons"):
        options = {o["value"]: o for o in element.get("options", [])}
        if value is not None and value not in options:
            raise AssertionError(f"{value!r} is not an option of {element['action_id']}")
        return {"type": kind, "selected_option": options.get(value)}
    if kind in ("multi_static_select", "checkboxes"):
        options = {o["value"]: o for o in element.get("options", [])}
        return {"type": kind, "selected_options": [options[v] for v in value or []]}
    if kind == "users_select":
        return {"type": kind, "selected_user": value}
    if kind == "datepicker":
        return {"type": kind, "selected_date": value}
    raise AssertionError(f"no state for element type {kind}")
