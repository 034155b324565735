"""Reading incident cards as they stand in the fake Slack: shared by the incident tests."""

from __future__ import annotations

import json
from typing import Any

from bot.render import slack_unescape
from support.fake_slack import FakeSlack

CHANNEL = "C0CHURN01"


def card_of(fake: FakeSlack, ref: str, channel: str = CHANNEL) -> dict[str, Any]:
    """The current state in Slack of the incident card whose header starts with `ref`."""
    for message in fake.messages.get(channel, {}).values():
        header = message.get("blocks", [{}])[0]
        if header.get("type") == "header" and header["text"]["text"].startswith(f"{ref} "):
            return message
    raise AssertionError(f"no card for {ref} in {channel}")


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """`{action_id: value}` of the message's buttons."""
    return {element["action_id"]: element["value"] for block in message.get("blocks", [])
            if block["type"] == "actions" for element in block["elements"]}


def thread_texts(fake: FakeSlack, card: dict[str, Any], channel: str = CHANNEL) -> list[str]:
    """The card's thread replies, oldest first, as text."""
    replies = [m for m in fake.messages.get(channel, {}).values()
               if m.get("thread_ts") == card["ts"]]
    return [slack_unescape(json.dumps(m["blocks"], ensure_ascii=False))
            for m in sorted(replies, key=lambda m: m["ts"])]
