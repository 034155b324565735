"""`dispatch_until_ack`: Slack gets its answer when the listener acks, not when it finishes."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

from slack_bolt import Ack, App, BoltRequest
from slack_bolt.authorization import AuthorizeResult

from bot.web.slack_dispatch import dispatch_until_ack
from support.slack_requests import SIGNING_SECRET, sign


def _command(text: str, secret: str = SIGNING_SECRET) -> BoltRequest:
    body = urlencode({"team_id": "T0TEAM001", "channel_id": "C0CHURN01", "user_id": "U0EVE0001",
                      "command": "/slow", "text": text, "trigger_id": "t.1",
                      "response_url": "http://127.0.0.1:9/nowhere"})
    headers = {"content-type": "application/x-www-form-urlencoded",
               **{name.lower(): value for name, value in sign(body, secret=secret).items()}}
    return BoltRequest(body=body, headers=headers)


def _app(release: threading.Event, finished: list[str]) -> App:
    app = App(signing_secret=SIGNING_SECRET, process_before_response=True,
              authorize=lambda team_id, **_: AuthorizeResult(
                  enterprise_id=None, team_id=team_id, bot_token="xoxb-unused"))

    @app.command("/slow")
    def slow(ack: Ack, command: dict[str, Any]) -> None:
        if command["text"] == "fail":
            raise RuntimeError("listener failed before acknowledging")
        ack(text="got it")
        release.wait(10)  # stands in for a Slack call made after the acknowledgement
        finished.append(command["text"])

    return app


def test_the_answer_leaves_at_ack_while_the_listener_goes_on() -> None:
    release, finished = threading.Event(), []
    app = _app(release, finished)
    with ThreadPoolExecutor(4) as executor:
        response = asyncio.run(dispatch_until_ack(app, _command("hello"), executor))
        assert response.status == 200 and "got it" in response.body
        assert finished == []  # the listener is still running
        release.set()
    assert finished == ["hello"]


def test_requests_that_never_ack_get_dispatchs_own_answer() -> None:
    release, finished = threading.Event(), []
    release.set()
    app = _app(release, finished)
    with ThreadPoolExecutor(4) as executor:
        refused = asyncio.run(dispatch_until_ack(app, _command("hi", secret="wrong"), executor))
        failed = asyncio.run(dispatch_until_ack(app, _command("fail"), executor))
    assert refused.status == 401
    assert failed.status == 500
    assert finished == []
