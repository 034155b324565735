"""Payloads shaped like the ones Slack sends: slash commands, button clicks, modal submissions.

`quorum shell` builds them to drive the real Bolt app without Slack, and the end-to-end tests
build them to sign and post to `/slack/events`; both use these functions so that what the shell
does is what the tests check. No Slack SDK imports: these are plain dictionaries.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from bot.render import slack_escape

APP_ID = "A0001"
LEGACY_TOKEN = "legacy-verification-token"
_counter = itertools.count(1)


def unique_id(prefix: str = "") -> str:
    """An id no other process hands out, ever: Slack's ids (triggers, views, events) are unique,
    and Quorum remembers them to act once, so a second `quorum shell` on the same database must
    not start again at 1. Random, with a counter for order within the process."""
    return f"{prefix}{next(_counter):04d}{secrets.token_hex(5).upper()}"


def trigger_id() -> str:
    """A fresh trigger id, as Slack hands out with every interaction."""
    return f"{int(time.time())}.{unique_id()}"


def _user(user: str, team: str) -> dict[str, Any]:
    return {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team}


ENTITY = re.compile(r"<(?:[@#!][^<>]*|https?://[^<>]*)>")


def as_slack_sends(text: str) -> str:
    """Typed text the way Slack delivers it: `&`, `<`, `>` escaped, mentions and links kept."""
    parts, last = [], 0
    for match in ENTITY.finditer(text):
        parts.append(slack_escape(text[last:match.start()]))
        parts.append(match.group(0))
        last = match.end()
    parts.append(slack_escape(text[last:]))
    return "".join(parts)


def slash_command(command: str, text: str, *, team: str, user: str, channel: str,
                  channel_name: str, response_url: str, user_name: str | None = None,
                  team_domain: str = "acme") -> dict[str, str]:
    """The form fields of a slash command request."""
    return {
        "token": LEGACY_TOKEN, "team_id": team, "team_domain": team_domain,
        "channel_id": channel, "channel_name": channel_name, "user_id": user,
        "user_name": user_name or user.lower(), "command": command,
        "text": as_slack_sends(text),
        "api_app_id": APP_ID, "is_enterprise_install": "false",
        "response_url": response_url, "trigger_id": trigger_id(),
    }


def block_actions(action: dict[str, Any], *, team: str, user: str, channel: str | None,
                  channel_name: str | None, response_url: str | None,
                  message: dict[str, Any] | None = None, ephemeral: bool = False,
                  block_id: str = "actions", view: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """A click on an interactive element (a `block_actions` payload).

    `action` is the element as the bot rendered it, plus its state after the click
    (`selected_option` for menus). The element sits in a message of `channel`, or, with `view`,
    in a modal or the App Home (which have no channel and no response_url).
    """
    clicked = {"block_id": block_id, "action_ts": f"{time.time():.6f}", **action}
    clicked.pop("confirm", None)
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user, team),
        "api_app_id": APP_ID, "token": LEGACY_TOKEN,
        "trigger_id": trigger_id(),
        "team": {"id": team, "domain": "acme"},
        "actions": [clicked],
    }
    if view is not None:
        payload["container"] = {"type": "view", "view_id": view.get("id")}
        payload["view"] = view
        return payload
    message = message or {"ts": "1700000000.000001", "text": "", "blocks": []}
    payload["container"] = {"type": "message", "message_ts": message.get("ts"),
                            "channel_id": channel, "is_ephemeral": ephemeral}
    payload["channel"] = {"id": channel, "name": channel_name}
    payload["response_url"] = response_url
    if not ephemeral:  # Slack leaves the message out of clicks on ephemeral messages
        payload["message"] = message
    return payload


def button_action(action_id: str, value: str, text: str | None = None) -> dict[str, Any]:
    """The `actions[0]` of a plain button click."""
    return {"action_id": action_id, "value": value, "type": "button",
            "text": {"type": "plain_text", "text": text or action_id}}


def view_submission(view: dict[str, Any], values: dict[str, Any], *, team: str,
                    user: str) -> dict[str, Any]:
    """The submission of a modal the bot opened, with `values` by block_id (`view_submission`).

    Inputs missing from `values` keep their initial value, as they would in Slack.
    """
    state: dict[str, dict[str, Any]] = {}
    for block in view.get("blocks", []):
        if block.get("type") != "input":
            continue
        element = block["element"]
        block_id, action_id = block["block_id"], element["action_id"]
        value = values[block_id] if block_id in values else initial_value(element)
        state[block_id] = {action_id: element_state(element, value)}
    # A view the bot opened has the id Slack gave it; the same id twice is the same modal
    # submitted twice, so a view without one (built by hand) gets a fresh id.
    view_id = view.get("id") or unique_id("V")
    submitted = {**view, "id": view_id, "state": {"values": state},
                 "hash": view.get("hash", "1700000000.abc"), "team_id": team}
    return {
        "type": "view_submission", "team": {"id": team, "domain": "acme"},
        "user": _user(user, team),
        "api_app_id": APP_ID, "token": LEGACY_TOKEN,
        "trigger_id": trigger_id(), "view": submitted,
        "response_urls": [],
    }


def message_shortcut(callback_id: str, message: dict[str, Any], *, team: str, user: str,
                     channel: str, channel_name: str, response_url: str) -> dict[str, Any]:
    """A message shortcut ("Log as decision") used on `message`."""
    return {
        "type": "message_action", "callback_id": callback_id,
        "trigger_id": trigger_id(), "message_ts": message["ts"],
        "team": {"id": team, "domain": "acme"},
        "user": {"id": user, "username": user.lower(), "team_id": team},
        "channel": {"id": channel, "name": channel_name},
        "message": {"type": "message", **message},
        "response_url": response_url, "token": LEGACY_TOKEN,
    }


def event_callback(event: dict[str, Any], *, team: str, event_id: str | None = None
                   ) -> dict[str, Any]:
    """An Events API envelope around `event`."""
    return {
        "token": LEGACY_TOKEN, "team_id": team, "api_app_id": APP_ID,
        "event": event, "type": "event_callback",
        "event_id": event_id or unique_id("Ev"),
        "event_time": int(time.time()),
    }


def form_body(fields: dict[str, str]) -> str:
    """A slash command's body as Slack posts it."""
    return urlencode(fields)


def interaction_body(payload: dict[str, Any]) -> str:
    """An interaction's body as Slack posts it: the JSON payload in a `payload` form field."""
    return urlencode({"payload": json.dumps(payload)})


def initial_value(element: dict[str, Any]) -> Any:
    """What an input element holds before anyone touches it."""
    kind = element["type"]
    if kind in ("plain_text_input", "number_input", "url_text_input", "email_text_input"):
        return element.get("initial_value")
    if kind == "multi_users_select":
        return element.get("initial_users", [])
    if kind in ("multi_conversations_select", "multi_channels_select"):
        return element.get("initial_conversations") or element.get("initial_channels") or []
    if kind in ("static_select", "radio_buttons", "external_select"):
        option = element.get("initial_option")
        return option["value"] if option else None
    if kind in ("multi_static_select", "checkboxes", "multi_external_select"):
        return [o["value"] for o in element.get("initial_options", [])]
    if kind == "users_select":
        return element.get("initial_user")
    if kind in ("conversations_select", "channels_select"):
        return element.get("initial_conversation") or element.get("initial_channel")
    if kind == "datepicker":
        return element.get("initial_date")
    if kind == "timepicker":
        return element.get("initial_time")
    return None


def options_of(element: dict[str, Any]) -> list[dict[str, Any]]:
    """The options of a menu, flattening option groups."""
    options = list(element.get("options", []))
    for group in element.get("option_groups", []):
        options.extend(group.get("options", []))
    return options


def element_state(element: dict[str, Any], value: Any) -> dict[str, Any]:
    """What Slack puts in `state.values` for an element holding `value`."""
    kind = element["type"]
    if kind in ("plain_text_input", "number_input", "url_text_input", "email_text_input"):
        return {"type": kind, "value": value or None}
    if kind == "multi_users_select":
        return {"type": kind, "selected_users": list(value or [])}
    if kind in ("multi_conversations_select", "multi_channels_select"):
        key = "selected_conversations" if "conversations" in kind else "selected_channels"
        return {"type": kind, key: list(value or [])}
    if kind in ("static_select", "radio_buttons", "external_select"):
        options = {o["value"]: o for o in options_of(element)}
        if kind == "external_select" and value is not None and value not in options:
            # Options of external menus come from the app as people type; take the value as is.
            options[value] = {"text": {"type": "plain_text", "text": str(value)}, "value": value}
        if value is not None and value not in options:
            raise ValueError(f"{value!r} is not an option of {element['action_id']}")
        return {"type": kind, "selected_option": options.get(value)}
    if kind in ("multi_static_select", "checkboxes"):
        options = {o["value"]: o for o in options_of(element)}
        unknown = [v for v in value or [] if v not in options]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not an option of {element['action_id']}")
        return {"type": kind, "selected_options": [options[v] for v in value or []]}
    if kind == "users_select":
        return {"type": kind, "selected_user": value}
    if kind in ("conversations_select", "channels_select"):
        key = "selected_conversation" if kind == "conversations_select" else "selected_channel"
        return {"type": kind, key: value}
    if kind == "datepicker":
        return {"type": kind, "selected_date": value}
    if kind == "timepicker":
        return {"type": kind, "selected_time": value}
    raise ValueError(f"no state for element type {kind}")
