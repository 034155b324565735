"""`/metrics` for operators: process and runtime series, the outbox's backlog and its age, the
scheduler's heartbeat and failures, pacing waits (the request counters: `test_web.py`)."""

from __future__ import annotations

import time
from datetime import timedelta
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from bot.delivery import OutboxWorker
from bot.models import OutboxMessage, utcnow
from bot.pacing import PostPacer
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import SlackSender
from support.waiting import eventually


def scrape(quorum: QuorumServer) -> dict[str, float]:
    """Every sample of `/metrics` as `{name{labels}: value}` (parsed as Prometheus does)."""
    response = httpx.get(f"{quorum.url}/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_process_and_runtime_series_are_exported(quorum: QuorumServer) -> None:
    samples = scrape(quorum)
    assert samples["process_resident_memory_bytes"] > 10_000_000
    assert samples["process_start_time_seconds"] <= time.time()
    assert "process_open_fds" in samples and "python_gc_collections_total{generation=\"0\"}" \
        in samples
    assert any(name.startswith("python_info{") for name in samples)


def test_the_oldest_pending_outbox_message_has_an_age(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    assert scrape(quorum)["quorum_outbox_oldest_pending_seconds"] == 0
    # Slack says "later": the card waits in the outbox.
    fake_slack.inject("chat.postMessage", status=429, retry_after=60, times=5)
    slack.command("/decision", "Ship the churn model on Monday")
    eventually(lambda: fake_slack.calls_to("chat.postMessage", ok_only=False))
    with quorum.runtime.db.session() as session:  # queued two minutes ago
        session.execute(update(OutboxMessage).values(
            created_at=utcnow() - timedelta(seconds=120)))
    samples = scrape(quorum)
    assert samples["quorum_outbox_pending"] == 1
    assert 120 <= samples["quorum_outbox_oldest_pending_seconds"] < 180


def test_scheduler_heartbeat_and_sweep_failures(
        quorum: QuorumServer, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(session: object, now: object) -> None:
        raise RuntimeError("the sweep broke")

    before = scrape(quorum)
    monkeypatch.setitem(quorum.scheduler.sweeps, "broken_for_test", broken)
    quorum.scheduler.run_due()
    after = scrape(quorum)
    assert after['quorum_scheduler_sweep_failures_total{sweep="broken_for_test"}'] == \
        before.get('quorum_scheduler_sweep_failures_total{sweep="broken_for_test"}', 0) + 1
    assert time.time() - 60 < after["quorum_scheduler_last_tick_timestamp_seconds"] <= time.time()


def test_pacing_waits_are_observed(quorum: QuorumServer) -> None:
    before = scrape(quorum)
    # Six posts a minute and no burst: the second post waits 10 s for its slot, the third 20 s.
    # This worker is never started and its stop event is set, so it records each wait without
    # sitting through it.
    worker = OutboxWorker(quorum.runtime.db, quorum.worker.client,
                          pacer=PostPacer(quorum.runtime.db, per_minute=6))
    worker._stop.set()
    row = SimpleNamespace(method="chat.postMessage", team_id="T0PACED01")
    for _ in range(3):
        worker._pace(row)  # type: ignore[arg-type]
    after = scrape(quorum)
    count, total = "quorum_slack_pacing_wait_seconds_count", "quorum_slack_pacing_wait_seconds_sum"
    assert after[count] == before.get(count, 0) + 3
    assert 29 < after[total] - before.get(total, 0) <= 30
