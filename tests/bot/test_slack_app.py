"""The Bolt app keeps serving when Slack's auth.test cannot be reached; Slack's HTTP bodies
become Bolt requests in one place, and their text loses what no database stores."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from bot.render import storable
from bot.slack_app import bolt_request, parse_slack_body
from support.fake_slack import FakeSlack
from support.slack_requests import SlackSender


def test_requests_are_served_while_auth_test_fails(slack: SlackSender,
                                                   fake_slack: FakeSlack) -> None:
    fake_slack.inject("auth.test", status=500, times=1)
    first = slack.command("/decision", "Logged during a Slack outage")
    assert first.status_code == 200 and "D-1" in first.json()["text"]
    second = slack.command("/decision", "And after it")
    assert second.status_code == 200 and "D-2" in second.json()["text"]
    assert len(fake_slack.calls_to("auth.test")) == 1  # learned once, then cached
    fake_slack.wait_for("chat.postMessage", count=2)


# ---------------------------------------------------------------------------- bolt_request

def test_a_command_whose_text_names_payload_stays_a_command() -> None:
    """Bolt's own parser takes any form body holding the word "payload" for an interaction."""
    body = urlencode({"command": "/decision", "text": "Raise the payload limits",
                      "team_id": "T1", "user_id": "U1", "channel_id": "C1"})
    request = bolt_request(body, {"content-type": "application/x-www-form-urlencoded"})
    assert request.body["command"] == "/decision"
    assert request.body["text"] == "Raise the payload limits"
    assert request.context.team_id == "T1"


def test_an_interaction_is_the_json_of_its_payload_field() -> None:
    payload = {"type": "block_actions", "team": {"id": "T1"}, "user": {"id": "U1"}, "actions": []}
    request = bolt_request(urlencode({"payload": json.dumps(payload)}),
                           {"content-type": "application/x-www-form-urlencoded"})
    assert request.body == payload
    assert request.context.team_id == "T1"


@pytest.mark.parametrize(("body", "content_type"), [
    ("[1, 2]", "application/json"), ("{nope", "application/x-www-form-urlencoded"),
    ("payload=%5B1%5D", "application/x-www-form-urlencoded"),
    ("payload=not-json", "application/x-www-form-urlencoded")])
def test_a_body_that_is_no_slack_payload_is_refused(body: str, content_type: str) -> None:
    with pytest.raises(ValueError):
        parse_slack_body(body, content_type)


def test_storable_drops_nul_and_lone_surrogates_from_every_text() -> None:
    payload = {"text\x00": "a\x00b\ud800c", "view": {"values": ["x\udfff", 3, None, {"k": "\x00"}]}}
    assert storable(payload) == {"text": "abc", "view": {"values": ["x", 3, None, {"k": ""}]}}
    flag = "ok \U0001f3f3\ufe0f\u200d\U0001f308 é\u202e"  # valid Unicode stays as it is
    assert storable(flag) == flag
