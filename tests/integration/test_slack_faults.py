"""Slack fails for a while — 429 bursts with Retry-After, 500s, time-outs, refused connections —
while people keep logging decisions, signing gates and declaring incidents. After recovery every
queued message reaches Slack exactly once, in causal order, and `/metrics` shows the retries.
The scenario is `support.slack_faults` (`bench/soak.py` runs it at full length)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support import slack_faults
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import SlackSender
from support.tcp_proxy import TcpProxy

WINDOW_SECONDS = 10.0  # each of the four fault kinds for 2.5 s (the soak runs 60 s)


@pytest.fixture
def proxy(fake_slack: FakeSlack) -> Iterator[TcpProxy]:
    proxy = slack_faults.proxy_for(fake_slack)
    yield proxy
    proxy.stop()


@pytest.fixture
def faulty_quorum(make_settings: Callable[..., Any], fake_slack: FakeSlack,
                  proxy: TcpProxy) -> Iterator[QuorumServer]:
    """Quorum reaching the fake Slack through the refusable proxy, with a 1 s Slack time-out."""
    server = QuorumServer(make_settings(**slack_faults.scenario_settings(fake_slack, proxy)))
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_a_slack_outage_loses_nothing_posts_nothing_twice_and_keeps_causal_order(
        faulty_quorum: QuorumServer, fake_slack: FakeSlack, proxy: TcpProxy) -> None:
    sender = SlackSender(faulty_quorum.url, fake_slack.response_url(), team=fake_slack.team_id)
    try:
        report = slack_faults.run(faulty_quorum.url, faulty_quorum.runtime.db, fake_slack, proxy,
                                  sender, window=WINDOW_SECONDS, drain_deadline=30)
    finally:
        sender.close()
    assert report.phases == list(slack_faults.FAULT_KINDS)
    assert report.requests["decision"] and report.requests["approve"], report.requests
    assert report.problems() == [], json.dumps(report.as_dict(), indent=1)
