"""`quorum serve --no-worker` beside `quorum worker`, and `quorum serve --workers N`: real
processes, signed requests, cards counted at the fake Slack and references checked in the
database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.database import Database
from bot.models import Decision, OutboxMessage, OutboxStatus
from support.fake_slack import FakeSlack
from support.processes import ROOT, quorum_serve, stop
from support.slack_requests import SlackSender
from support.waiting import eventually

CHANNEL = "C0CHURN01"


@contextmanager
def quorum_worker(database_url: str, fake_slack: FakeSlack,
                  log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real `quorum worker` process (the outbox worker and the scheduler, no HTTP)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SLACK_", "QUORUM_", "DATABASE_URL", "PORT", "HOST"))}
    env.update({"SLACK_BOT_TOKEN": fake_slack.token, "SLACK_API_URL": fake_slack.url,
                "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT),
                "QUORUM_SCHEDULER_TICK_SECONDS": "0.5"})
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], env=env,
                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            stop(process)


def quick_log(sender: SlackSender, count: int) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(
            lambda n: sender.command("/decision", f"Split decision {n}", channel=CHANNEL),
            range(count)))
    assert [answer.status_code for answer in answers] == [200] * count
    assert all("Logged *D-" in answer.text for answer in answers), answers[0].text


def card_headers(fake_slack: FakeSlack) -> list[str]:
    return [call.args["blocks"][0]["text"]["text"]
            for call in fake_slack.calls_to("chat.postMessage")]


def statuses(db: Database) -> Counter[str]:
    with db.session() as session:
        return Counter(session.scalars(select(OutboxMessage.status)))


def references(db: Database) -> list[int]:
    with db.session() as session:
        return sorted(session.scalars(select(Decision.number)))


@pytest.mark.slow
def test_serve_without_worker_leaves_delivery_to_quorum_worker(
        db: Database, database_url: str, fake_slack: FakeSlack, tmp_path: Path) -> None:
    with quorum_serve(database_url, fake_slack.url, fake_slack.token, tmp_path / "serve.log",
                      args=["--no-worker"], QUORUM_SCHEDULER_TICK_SECONDS="0.5") as (_, url):
        sender = SlackSender(url, fake_slack.response_url())
        try:
            quick_log(sender, 12)
            time.sleep(2)  # a worker in `serve` would have posted by now (it wakes on commit)
            assert fake_slack.calls_to("chat.postMessage") == []
            assert statuses(db) == {OutboxStatus.PENDING: 12}
            with quorum_worker(database_url, fake_slack, tmp_path / "worker.log") as worker:
                eventually(lambda: statuses(db) == {OutboxStatus.SENT: 12}, timeout=30)
                quick_log(sender, 3)  # the worker finds new rows by polling the table
                eventually(lambda: statuses(db) == {OutboxStatus.SENT: 15}, timeout=30)
                assert worker.poll() is None
        finally:
            sender.close()
    headers = card_headers(fake_slack)
    assert len(headers) == 15 and len(set(headers)) == 15  # each card once
    assert references(db) == list(range(1, 16))


@pytest.mark.slow
def test_serve_with_two_processes_shares_the_work_and_keeps_references_gapless(
        db: Database, database_url: str, fake_slack: FakeSlack, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    # Two processes each import and build the whole app: on a loaded machine that takes long.
    with quorum_serve(database_url, fake_slack.url, fake_slack.token, log,
                      args=["--workers", "2"], ready_timeout=240) as (_, url):
        sender = SlackSender(url, fake_slack.response_url())
        try:
            quick_log(sender, 24)
            eventually(lambda: statuses(db) == {OutboxStatus.SENT: 24}, timeout=30)
        finally:
            sender.close()
    text = log.read_text()
    if database_url.startswith("sqlite"):
        assert "SQLite runs one writer at a time, so Quorum serves it from one process" in text
        assert text.count("Started server process") == 1
    else:
        assert text.count("Started server process") == 2, text[-2000:]
    headers = card_headers(fake_slack)
    assert len(headers) == 24 and len(set(headers)) == 24
    assert references(db) == list(range(1, 25))


def test_workers_must_be_a_number_of_processes(tmp_path: Path) -> None:
    answer = subprocess.run([sys.executable, "-m", "bot.cli", "serve", "--workers", "zero"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert answer.returncode == 2
    assert "'zero' is not a number of processes (1 to 64)" in answer.stderr
