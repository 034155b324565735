"""Acting once on what Slack may send twice: a retried event, a modal submitted twice.

Slack resends an event (same `event_id`, `X-Slack-Retry-Num`) when Quorum was slow or down, and a
double press of Submit sends the same view twice. `first_time` remembers the request's key in
the caller's transaction: the retry of an attempt that committed finds the key and does nothing;
the retry of an attempt that failed (rolled back) finds no key and does the work. Two copies at
the same moment meet on the primary key, and the second waits for the first to commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.models import ProcessedRequest, utcnow
from bot.scheduler import sweep

# Slack retries an event three times within about five minutes, and a modal's second submission
# comes within seconds: a day is far past either.
RETENTION = timedelta(days=1)
KEY_LIMIT = 120


def first_time(session: Session, team_id: str, key: str, now: datetime | None = None) -> bool:
    """True for the first request with this key in the team; its effect must be written in the
    same transaction, so that a rollback forgets the key along with the effect."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stored = session.execute(
        insert(ProcessedRequest).values(team_id=team_id[:32], key=key[:KEY_LIMIT],
                                        processed_at=now or utcnow())
        .on_conflict_do_nothing().returning(ProcessedRequest.key)
    ).scalar()
    return stored is not None


def event_key(event_id: str) -> str:
    return f"event:{event_id}"


def view_key(view_id: str) -> str:
    return f"view:{view_id}"


@sweep("processed_requests")
def forget_old_requests(session: Session, now: datetime) -> None:
    """Delete the keys no retry can match any more."""
    session.execute(delete(ProcessedRequest).where(ProcessedRequest.processed_at < now - RETENTION))
