"""What every part of a running Quorum shares: its settings and its database."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Settings
from bot.database import Database


@dataclass
class Runtime:
    settings: Settings
    db: Database

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        return cls(settings=settings, db=Database(settings.database_url))
