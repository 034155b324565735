"""The fake Slack's rate limits on chat.postMessage, on a clock the test moves by hand."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from .fake_slack import FakeSlack
from .slack_limits import PostLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_post_per_second_per_channel() -> None:
    clock = Clock()
    limits = PostLimits(clock=clock)
    assert limits.admit("C1") == 0.0
    assert limits.admit("C1") == pytest.approx(1.0)
    assert limits.admit("C2") == 0.0  # another channel is not held up
    clock.now += 0.4
    assert limits.admit("C1") == pytest.approx(0.6)  # a refused post does not count
    clock.now += 0.6
    assert limits.admit("C1") == 0.0


def test_workspace_bucket_refills_at_its_rate_and_caps_at_the_burst() -> None:
    clock = Clock()
    limits = PostLimits(workspace_per_minute=120, clock=clock)  # 2 a second, burst of 2
    assert [limits.admit(f"C{n}") for n in range(2)] == [0.0, 0.0]
    assert limits.admit("C2") == pytest.approx(0.5)
    clock.now += 0.5
    assert limits.admit("C2") == 0.0
    clock.now += 60  # idle for a minute: the bucket holds no more than the burst
    assert [limits.admit(f"C{n}") for n in range(3, 6)] == [0.0, 0.0, pytest.approx(0.5)]
    assert limits.minimum_seconds(500) == pytest.approx(249.0)


@pytest.mark.parametrize(("wait", "header"), [(0.01, 1), (1.0, 1), (1.2, 2)])
def test_retry_after_is_whole_seconds_never_shorter_than_the_wait(wait: float,
                                                                  header: int) -> None:
    assert PostLimits.retry_after(wait) == header


def test_fake_slack_answers_429_with_retry_after_and_keeps_nothing(fake_slack: FakeSlack) -> None:
    clock = Clock()
    fake_slack.limit_posts(PostLimits(workspace_per_minute=60, clock=clock))
    client = WebClient(token=fake_slack.token, base_url=fake_slack.url)
    client.chat_postMessage(channel="C1", text="first")
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="C2", text="second")
    assert refused.value.response.status_code == 429
    assert refused.value.response.headers["Retry-After"] == "1"
    assert refused.value.response["error"] == "ratelimited"
    assert [m["text"] for m in fake_slack.messages["C1"].values()] == ["first"]
    assert "C2" not in fake_slack.messages
    client.chat_update(channel="C1", ts=next(iter(fake_slack.messages["C1"])), text="edited")
    clock.now += 1.0
    client.chat_postMessage(channel="C2", text="second")
    assert [(c.method, c.status) for c in fake_slack.calls] == [
        ("chat.postMessage", 200), ("chat.postMessage", 429), ("chat.update", 200),
        ("chat.postMessage", 200)]
    fake_slack.reset()
    client.chat_postMessage(channel="C3", text="after a reset")
    client.chat_postMessage(channel="C4", text="limits are lifted")
