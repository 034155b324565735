"""`kill -9` of a real `quorum serve` mid-delivery and mid-ritual: after a restart on the same
database, every queued message reaches Slack exactly once and in order."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot import outbox
from bot.database import Database
from bot.models import OutboxMessage, OutboxStatus, RitualOccurrence, SlackMessage, utcnow
from bot.services import rituals
from bot.services.projects import project_for_channel
from support.fake_slack import Call, FakeSlack
from support.processes import quorum_serve
from support.waiting import eventually

TEAM = "T0TEAM001"
LEASE = "3"  # seconds: a restarted process takes the dead one's rows over this soon
DELAY = 0.15  # every post and edit takes this long, so one is always in flight


def message(text: str) -> dict[str, object]:
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def kill_9(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait(10)


def all_sent(db: Database) -> bool:
    with db.session() as session:
        statuses = Counter(session.scalars(select(OutboxMessage.status)))
    assert set(statuses) <= {OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.SENT}, \
        statuses
    return set(statuses) == {OutboxStatus.SENT}


def slack_effects(fake_slack: FakeSlack, method: str) -> list[Call]:
    """Calls Slack acted on, whether or not the (killed) caller heard the answer."""
    return [c for c in fake_slack.calls if c.method == method and c.ok]


@pytest.mark.slow
def test_kill_9_mid_delivery_then_restart_posts_everything_exactly_once_in_order(
        database_url: str, db: Database, fake_slack: FakeSlack, tmp_path: Path) -> None:
    cards, channels = 8, ["C0KILL001", "C0KILL002"]
    with db.session() as session:
        for n in range(cards):
            channel, key = channels[n % 2], f"card:{n}"
            outbox.post_message(session, TEAM, channel, message(f"card {n} v1"), key=key)
            outbox.post_message(session, TEAM, channel, message(f"reply {n}"), thread_key=key)
            outbox.update_message(session, TEAM, key, message(f"card {n} v2"))
            outbox.post_message(session, TEAM, channel, message(f"note {n}"))
    fake_slack.inject("chat.postMessage", delay=DELAY, times=1000)
    fake_slack.inject("chat.update", delay=DELAY, times=1000)

    def serve(number: int) -> object:
        return quorum_serve(database_url, fake_slack.url, fake_slack.token,
                            tmp_path / f"serve-{number}.log", QUORUM_OUTBOX_LEASE_SECONDS=LEASE)

    with serve(1) as (process, _):  # killed while a post is out, the rest of its batch leased
        eventually(lambda: len(slack_effects(fake_slack, "chat.postMessage")) >= 6, timeout=30)
        fake_slack.wait_in_flight("chat.postMessage")
        kill_9(process)
    assert not all_sent(db)
    with serve(2):  # the restart, on the same database
        eventually(lambda: all_sent(db), timeout=60)

    for channel in channels:
        texts = Counter(m["text"] for m in fake_slack.messages[channel].values())
        assert set(texts.values()) == {1}, texts  # nothing posted twice
    stored = {m["text"]: m for channel in channels for m in fake_slack.messages[channel].values()}
    for n in range(cards):  # nothing lost, each card edited to its last state
        card = stored[f"card {n} v2"]
        assert stored[f"reply {n}"]["thread_ts"] == card["ts"] and f"note {n}" in stored
    assert not any(text.endswith("v1") for text in stored)
    # In order per card: the post, then the reply in its thread, then the edit.
    for n in range(cards):
        mine = [(c.method, c.args["text"]) for c in fake_slack.calls if c.ok
                and c.args.get("text") in (f"card {n} v1", f"reply {n}", f"card {n} v2")]
        first = [mine.index(step) for step in [("chat.postMessage", f"card {n} v1"),
                                               ("chat.postMessage", f"reply {n}"),
                                               ("chat.update", f"card {n} v2")]]
        assert first == sorted(first), mine
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(SlackMessage)) == cards
        retaken = session.scalar(select(func.count()).select_from(OutboxMessage)
                                 .where(OutboxMessage.attempts > 1))
    assert retaken >= 1  # the call in flight at the kill was taken over after the restart
    lookups = slack_effects(fake_slack, "conversations.history") + \
        slack_effects(fake_slack, "conversations.replies")
    assert lookups  # and looked up in the channel before being posted again


@pytest.mark.slow
def test_kill_9_mid_ritual_then_restart_posts_every_due_ritual_exactly_once(
        database_url: str, db: Database, fake_slack: FakeSlack, tmp_path: Path) -> None:
    now = utcnow()
    channels = [f"C0RIT{n:04d}" for n in range(12)]
    with db.session() as session:
        for n, channel in enumerate(channels):
            project = project_for_channel(session, TEAM, channel, f"project-{n}")
            kind = "retro" if n % 4 == 0 else "standup"
            schedule, _ = rituals.set_schedule(session, project, "U0ALICE01", kind,
                                               f"daily {now:%H:%M}", "UTC", now=now)
            # Checked up to a minute ago, so this minute's occurrence is due now.
            schedule.checked_until = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
    fake_slack.inject("chat.postMessage", delay=DELAY, times=1000)

    def serve(number: int) -> object:
        return quorum_serve(database_url, fake_slack.url, fake_slack.token,
                            tmp_path / f"serve-{number}.log", QUORUM_OUTBOX_LEASE_SECONDS=LEASE,
                            QUORUM_SCHEDULER_TICK_SECONDS="0.5")

    def cards() -> list[Call]:
        return [c for c in slack_effects(fake_slack, "chat.postMessage")
                if c.args["text"].startswith(("Standup", "Retrospective"))]

    with serve(1) as (process, _):  # killed while posting the cards
        eventually(lambda: len(cards()) >= 3, timeout=30)
        fake_slack.wait_in_flight("chat.postMessage")
        kill_9(process)
    assert len(cards()) < len(channels)
    with serve(2) as (process, _):
        eventually(lambda: len(cards()) >= len(channels) and all_sent(db), timeout=60)
        time.sleep(2.0)  # four more ticks, which must post nothing again
        assert process.poll() is None

    for channel in channels:
        posted = list(fake_slack.messages[channel].values())
        assert len(posted) == 1, posted  # every project's ritual once, none twice
    with db.session() as session:
        occurrences = list(session.scalars(select(RitualOccurrence)))
        assert len(occurrences) == len(channels)
        keys = set(session.scalars(select(SlackMessage.key)))
    assert {rituals.card_key(o) for o in occurrences} == keys
    assert Counter(o.kind for o in occurrences) == {"standup": 9, "retro": 3}
