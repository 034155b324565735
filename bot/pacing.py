"""Outbound pacing of `chat.postMessage`, so that a burst of posts rarely meets a 429.

Slack limits each workspace to a number of posts a minute; past it, it answers 429 with a
`Retry-After` of whole seconds, and a worker that waits it out loses most of that second. When
`QUORUM_SLACK_POSTS_PER_MINUTE` is set, every post first takes the workspace's next free slot,
evenly spaced at that rate, and waits for it. Like Slack, the pacer allows a short burst (one
second's worth of posts) after a lull, so a worker that fell behind for a moment catches up
instead of losing the time for good. The slots live in the database (`post_pace`, one
row per team), so any number of replicas together keep to the one rate. The 429 handling in
`bot.delivery` stays as it is, for when Slack counts differently.
"""

from __future__ import annotations

import time

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.config import Settings
from bot.database import Database
from bot.models import PostPace


class PostPacer:
    """Hands out each workspace's post slots, `60 / per_minute` seconds apart.

    The row holds the workspace's theoretical arrival time (GCRA): the moment the next post is
    due if posts go evenly spaced. A post may go up to `burst - 1` intervals before it, so after
    a lull `burst` posts go at once, like a token bucket holding `burst` tokens.
    """

    def __init__(self, db: Database, per_minute: float, burst_seconds: float = 1.0) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.db = db
        self.interval = 60.0 / per_minute
        burst = max(1.0, per_minute / 60 * burst_seconds)
        self.tolerance = (burst - 1.0) * self.interval

    def delay(self, team_id: str) -> float:
        """Take `team_id`'s next slot; the seconds to wait before posting in it (0: post now)."""
        now = time.time()
        insert = pg_insert if self.db.engine.dialect.name == "postgresql" else sqlite_insert
        latest = func.greatest if self.db.engine.dialect.name == "postgresql" else func.max
        statement = insert(PostPace).values(team_id=team_id, next_slot=now + self.interval)
        # One statement, so that two replicas asking at once get two different slots.
        statement = statement.on_conflict_do_update(
            index_elements=[PostPace.team_id],
            set_={"next_slot": latest(PostPace.next_slot, now) + self.interval},
        ).returning(PostPace.next_slot)
        with self.db.session() as session:
            next_slot = session.execute(statement).scalar_one()
        return max(0.0, next_slot - self.interval - self.tolerance - now)


def pacer_for(db: Database, settings: Settings) -> PostPacer | None:
    """The pacer `QUORUM_SLACK_POSTS_PER_MINUTE` asks for, or None when it is unset."""
    rate = settings.slack_posts_per_minute
    return PostPacer(db, rate) if rate else None
