"""Slack-shaped payloads shared by `quorum shell` and the tests (`bot.slack_payloads`)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest

from bot import slack_payloads as payloads

SELECT = {"type": "static_select", "action_id": "v", "options": [
    {"text": {"type": "plain_text", "text": "Low"}, "value": "low"}],
    "initial_option": {"text": {"type": "plain_text", "text": "Low"}, "value": "low"}}


def test_element_states_look_like_slacks() -> None:
    assert payloads.element_state(SELECT, "low")["selected_option"]["value"] == "low"
    with pytest.raises(ValueError, match="not an option"):
        payloads.element_state(SELECT, "high")
    external = {"type": "external_select", "action_id": "v"}
    assert payloads.element_state(external, "M-1")["selected_option"]["value"] == "M-1"
    assert payloads.element_state({"type": "plain_text_input", "action_id": "v"}, "") == \
        {"type": "plain_text_input", "value": None}
    assert payloads.element_state({"type": "multi_users_select"}, ["U1"])["selected_users"] == \
        ["U1"]
    assert payloads.element_state({"type": "datepicker"}, "2026-01-02")["selected_date"] == \
        "2026-01-02"
    assert payloads.initial_value(SELECT) == "low"


def test_submission_keeps_initial_values_and_bodies_are_form_encoded() -> None:
    view = {"type": "modal", "callback_id": "m", "blocks": [
        {"type": "input", "block_id": "level", "element": SELECT},
        {"type": "input", "block_id": "note",
         "element": {"type": "plain_text_input", "action_id": "v", "initial_value": "hi"}}]}
    payload = payloads.view_submission(view, {"note": "changed"}, team="T1", user="U1")
    values = payload["view"]["state"]["values"]
    assert values["level"]["v"]["selected_option"]["value"] == "low"
    assert values["note"]["v"]["value"] == "changed"
    body = parse_qs(payloads.interaction_body(payload))
    assert json.loads(body["payload"][0])["type"] == "view_submission"
    form = payloads.slash_command("/decision", "list", team="T1", user="U1", channel="C1",
                                  channel_name="ml", response_url="http://x/r")
    assert parse_qs(payloads.form_body(form))["text"] == ["list"]
    assert form["trigger_id"] != payloads.slash_command(
        "/decision", "", team="T1", user="U1", channel="C1", channel_name="ml",
        response_url="http://x/r")["trigger_id"]


def test_clicks_in_messages_ephemeral_messages_and_views() -> None:
    action = payloads.button_action("go", "7")
    in_channel = payloads.block_actions(action, team="T1", user="U1", channel="C1",
                                        channel_name="ml", response_url="http://x/r",
                                        message={"ts": "1.1", "text": "card"})
    assert in_channel["container"] == {"type": "message", "message_ts": "1.1",
                                       "channel_id": "C1", "is_ephemeral": False}
    assert in_channel["message"]["text"] == "card" and in_channel["actions"][0]["value"] == "7"
    ephemeral = payloads.block_actions(action, team="T1", user="U1", channel="C1",
                                       channel_name="ml", response_url="http://x/r",
                                       message={"ts": "1.2"}, ephemeral=True)
    assert "message" not in ephemeral and ephemeral["container"]["is_ephemeral"] is True
    home = payloads.block_actions(action, team="T1", user="U1", channel=None, channel_name=None,
                                  response_url=None, view={"id": "V1", "type": "home"})
    assert home["container"] == {"type": "view", "view_id": "V1"}
    assert "channel" not in home and "response_url" not in home
