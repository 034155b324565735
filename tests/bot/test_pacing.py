"""Outbound pacing of chat.postMessage: slots shared through the database, on a frozen clock."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from slack_sdk import WebClient
from sqlalchemy import select

from bot import outbox
from bot.config import load_settings
from bot.database import Database
from bot.delivery import OutboxWorker
from bot.models import PostPace
from bot.pacing import PostPacer, pacer_for
from support.fake_slack import FakeSlack

NOW = 1_800_000_000.0


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """bot.pacing's clock, standing still at NOW until a test moves it."""
    clock = [NOW]
    monkeypatch.setattr("bot.pacing.time.time", lambda: clock[0])
    yield clock


def test_replicas_take_successive_slots_of_one_workspace(db: Database,
                                                         frozen: list[float]) -> None:
    replicas = [PostPacer(db, per_minute=60), PostPacer(db, per_minute=60)]
    delays = [replicas[n % 2].delay("T1") for n in range(4)]
    assert delays == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=1e-5)
    assert replicas[0].delay("T2") == 0.0  # another workspace has its own slots
    frozen[0] += 10  # an idle spell: slots do not pile up, the next post goes at once
    assert replicas[1].delay("T1") == 0.0
    assert replicas[0].delay("T1") == pytest.approx(1.0)


def test_after_a_lull_one_seconds_worth_goes_at_once(db: Database, frozen: list[float]) -> None:
    pacer = PostPacer(db, per_minute=600)  # 10 a second
    delays = [pacer.delay("T1") for _ in range(12)]
    assert delays == pytest.approx([0.0] * 10 + [0.1, 0.2], abs=1e-5)
    frozen[0] += 0.5  # half a second refills five, two of which the last two posts took
    assert [pacer.delay("T1") for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 0.1], abs=1e-5)


def test_concurrent_callers_never_share_a_slot(db: Database, frozen: list[float]) -> None:
    pacers = [PostPacer(Database(db.url), per_minute=60) for _ in range(4)]
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            delays = list(pool.map(lambda n: pacers[n % 4].delay("T1"), range(40)))
    finally:
        for pacer in pacers:
            pacer.db.dispose()
    assert sorted(round(delay) for delay in delays) == list(range(40))


def test_the_worker_paces_posts_only(db: Database, fake_slack: FakeSlack,
                                     frozen: list[float]) -> None:
    client = WebClient(token=fake_slack.token, base_url=fake_slack.url, timeout=2)
    client.retry_handlers.clear()
    worker = OutboxWorker(db, client, pacer=PostPacer(db, per_minute=60_000))
    with db.session() as session:
        for number in range(3):
            outbox.post_message(session, "T1", f"C{number}", {"text": f"post {number}"},
                                key=f"card:{number}")
        outbox.update_message(session, "T1", "card:0", {"text": "edited"})
    worker.run_once()
    worker.run_once()
    assert [c.method for c in fake_slack.calls] == ["chat.postMessage"] * 3 + ["chat.update"]
    with db.session() as session:
        pace = session.scalars(select(PostPace)).one()
        # Three posts took three slots of a millisecond; the edit took none.
        assert (pace.team_id, pace.next_slot) == ("T1", pytest.approx(NOW + 0.003))


def test_pacing_is_off_unless_the_rate_is_set(db: Database) -> None:
    assert pacer_for(db, load_settings()) is None
    pacer = pacer_for(db, load_settings(QUORUM_SLACK_POSTS_PER_MINUTE="300"))
    assert pacer is not None and pacer.interval == pytest.approx(0.2)
