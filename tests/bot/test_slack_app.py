"""The Bolt app keeps serving when Slack's auth.test cannot be reached."""

from __future__ import annotations

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
