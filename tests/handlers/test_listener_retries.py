"""Slack calls a listener makes during the request (`views.open`, whose trigger id lives 3 s)
are tried again on a dropped connection and on a short 429, and still finish in time; a 429
asking for longer is not waited out."""

from __future__ import annotations

import time

from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import SlackSender
from support.waiting import eventually


def open_form(slack: SlackSender) -> float:
    """Type the bare `/decision` (it opens the form); the seconds until its answer."""
    started = time.monotonic()
    response = slack.command("/decision", "")
    assert response.status_code == 200
    return time.monotonic() - started


def views_opened(fake: FakeSlack) -> list[bool]:
    return [call.ok for call in fake.calls_to("views.open", ok_only=False)]


def test_a_dropped_connection_is_retried_and_the_form_opens_in_time(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    fake_slack.inject("views.open", disconnect=True, times=2)
    started = time.monotonic()
    open_form(slack)
    view = fake_slack.wait_for("views.open", timeout=3)[0].args["view"]
    assert time.monotonic() - started < 3  # inside the trigger id's life
    assert view["callback_id"] == "decision_modal"
    # Both dropped attempts reached the fake (recorded unanswered), then the third succeeded.
    assert views_opened(fake_slack)[-1] is True
    assert len(fake_slack.calls_to("views.open")) == 1


def test_a_short_rate_limit_is_waited_out(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    fake_slack.inject("views.open", status=429, retry_after=1)
    started = time.monotonic()
    open_form(slack)
    fake_slack.wait_for("views.open", timeout=3)
    assert 1 <= time.monotonic() - started < 3
    assert views_opened(fake_slack) == [False, True]


def test_a_long_rate_limit_is_not_waited_out(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    """The trigger id would have expired long before: one attempt, and the listener goes on."""
    fake_slack.inject("views.open", status=429, retry_after=30)
    assert open_form(slack) < 3
    eventually(lambda: views_opened(fake_slack) == [False])
    time.sleep(1.5)
    assert views_opened(fake_slack) == [False]


def test_the_outbox_client_still_leaves_retries_to_the_outbox(quorum: QuorumServer) -> None:
    assert quorum.worker.client.retry_handlers == []
    handlers = quorum.bolt.client.retry_handlers
    assert {type(handler).__name__ for handler in handlers} == {
        "ConnectionErrorRetryHandler", "BoundedRateLimitRetryHandler"}


def test_the_waits_between_connection_retries_fit_well_inside_a_trigger_id(
        quorum: QuorumServer) -> None:
    """At most 0.45 s of waiting for both retries (slack_sdk's default jitter alone could add 2 s,
    and the test above then missed its 3 s on a loaded machine)."""
    [connection] = [handler for handler in quorum.bolt.client.retry_handlers
                    if type(handler).__name__ == "ConnectionErrorRetryHandler"]
    waits = [sum(connection.interval_calculator.calculate_sleep_duration(attempt)
                 for attempt in range(connection.max_retry_count)) for _ in range(200)]
    assert connection.max_retry_count == 2
    assert min(waits) >= 0.3 and max(waits) <= 0.45
