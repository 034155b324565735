"""Two real `quorum serve` processes on one database post a due standup exactly once."""

from __future__ import annotations

import subprocess
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
from support.processes import quorum_serve

TICK = 0.5


@pytest.fixture
def replicas(database_url: str, fake_slack: FakeSlack,
             tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two real `quorum serve` processes on one database, ticking every TICK seconds."""
    with ExitStack() as stack:
        yield [stack.enter_context(quorum_serve(
            database_url, fake_slack.url, fake_slack.token, tmp_path / f"serve-{number}.log",
            QUORUM_SCHEDULER_TICK_SECONDS=str(TICK)))[0] for number in range(2)]


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
