"""Two real `quorum serve` processes on one database post a due standup exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.database import Database
from bot.models import RitualOccurrence, RitualSchedule, utcnow
from bot.services import rituals
from bot.services.projects import project_for_channel
from support.fake_slack import FakeSlack
from support.processes import free_port, running
from support.slack_requests import SIGNING_SECRET

ROOT = Path(__file__).resolve().parents[2]
TICK = 0.5


@pytest.fixture
def replicas(database_url: str, fake_slack: FakeSlack,
             tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two real `quorum serve` processes on one database, ticking every TICK seconds."""
    base = {key: value for key, value in os.environ.items()
            if not key.startswith(("SLACK_", "QUORUM_", "DATABASE_URL", "PORT", "HOST"))}
    with ExitStack() as stack:
        processes = []
        for number in range(2):
            port = free_port()
            env = {**base, "SLACK_BOT_TOKEN": fake_slack.token,
                   "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": fake_slack.url,
                   "DATABASE_URL": database_url, "HOST": "127.0.0.1", "PORT": str(port),
                   "QUORUM_SCHEDULER_TICK_SECONDS": str(TICK), "PYTHONPATH": str(ROOT)}
            processes.append(stack.enter_context(running(
                [sys.executable, "-m", "bot.cli", "serve"], env=env, cwd=ROOT, timeout=90,
                ready_url=f"http://127.0.0.1:{port}/healthz",
                log_path=tmp_path / f"serve-{number}.log")))
        yield processes


@pytest.mark.slow
def test_two_serve_processes_post_a_due_standup_exactly_once(
        db: Database, fake_slack: FakeSlack,
        replicas: list[subprocess.Popen[bytes]]) -> None:
    now = utcnow()
    with db.session() as session:
        project = project_for_channel(session, "T0TEAM001", "C0CHURN01", "churn-model")
        schedule, _ = rituals.set_schedule(session, project, "U0ALICE01", "standup",
                                           f"daily {now:%H:%M}", "UTC", now=now)
        # Set a minute before, so this minute's occurrence is due (and within the grace period).
        schedule.checked_until = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
    fake_slack.wait_for("chat.postMessage", timeout=20,
                        predicate=lambda c: "Standup" in c.args["text"])
    # Both processes keep ticking: give them several more ticks to post it again.
    deadline = time.monotonic() + 8 * TICK
    while time.monotonic() < deadline:
        time.sleep(TICK)
        assert all(process.poll() is None for process in replicas)
    posts = [c for c in fake_slack.calls_to("chat.postMessage", ok_only=False)
             if "Standup" in c.args.get("text", "")]
    assert len(posts) == 1
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(RitualOccurrence)) == 1
        assert session.scalars(select(RitualSchedule)).one().enabled
