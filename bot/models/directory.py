"""Names of Slack users and channels, cached so that exports can print names, not ids."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from bot.models.core import Base, utcnow


class SlackName(Base):
    """The name of a user (`U…`/`W…`) or channel (`C…`/`G…`) as Slack last told it."""

    __tablename__ = "slack_names"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    slack_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # "user" or "channel"
    # None while Quorum has seen the id but not yet asked Slack (or Slack did not know it).
    name: Mapped[str | None] = mapped_column(String(255))
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    fetched_at: Mapped[datetime | None]
