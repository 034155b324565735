"""The names of Slack users and channels that the registers mention, cached in the database so
that exports print `@Alice Smith` and `#churn-model` instead of `U0ALICE01` and `C0CHURN01`.

Ids enter the cache when Quorum sees them in a register (`collect_referenced`); the runtime edge
(`bot.directory`) asks Slack for the names of new ones and refreshes each one daily. Exports only
read the cache (`Names`), so they work with no Slack at hand; an id nobody could name yet stays
an id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bot import models
from bot.models import SlackName

USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")
CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,20}$")
MENTION = re.compile(r"<([@#])([UWCG][A-Z0-9]{2,20})(?:\|[^>]*)?>")
REFRESH_AFTER = timedelta(days=1)


def _reference_columns() -> list[tuple[Any, Any]]:
    """Which columns name a person or a channel, per register (with the workspace column); built
    when collecting, so that reading names (`Names`, `quorum gate check`) loads no register."""
    return [
        (models.Project.team_id, models.Project.channel_id),
        (models.Incident.team_id, models.Incident.commander),
        (models.Incident.team_id, models.Incident.created_by),
        (models.Incident.team_id, models.Incident.channel_id),
        (models.IncidentFollowUp.team_id, models.IncidentFollowUp.owner),
        (models.Decision.team_id, models.Decision.created_by),
        (models.Hypothesis.team_id, models.Hypothesis.owner),
        (models.Hypothesis.team_id, models.Hypothesis.created_by),
        (models.Risk.team_id, models.Risk.owner), (models.Risk.team_id, models.Risk.created_by),
        (models.Gate.team_id, models.Gate.requested_by),
        (models.Promotion.team_id, models.Promotion.actor),
    ]


def kind_of(slack_id: str) -> str | None:
    if USER_ID.match(slack_id):
        return "user"
    if CHANNEL_ID.match(slack_id):
        return "channel"
    return None


def _referenced(session: Session) -> Iterator[tuple[str, str]]:
    for team, column in _reference_columns():
        yield from session.execute(select(team, column).where(column.is_not(None)).distinct())
    gate, signoff = models.Gate, models.GateSignoff
    yield from session.execute(
        select(gate.team_id, signoff.user_id).join(gate, gate.id == signoff.gate_id).distinct())
    decision = models.Decision
    for team, deciders in session.execute(
            select(decision.team_id, decision.deciders).execution_options(yield_per=2000)):
        for user in deciders or []:
            yield team, user


def seen(session: Session, pairs: Iterable[tuple[str, str]], now: datetime) -> int:
    """Note `(team, id)` pairs Quorum has seen (only ids shaped like Slack's); how many new."""
    wanted = {(team, slack_id) for team, slack_id in pairs
              if team and slack_id and kind_of(slack_id)}
    if not wanted:
        return 0
    known = {(team, slack_id) for team, slack_id in session.execute(
        select(SlackName.team_id, SlackName.slack_id))}
    new = sorted(wanted - known)
    for team, slack_id in new:
        session.add(SlackName(team_id=team, slack_id=slack_id, kind=kind_of(slack_id),
                              seen_at=now))
    session.flush()
    return len(new)


def collect_referenced(session: Session, now: datetime) -> int:
    """Note every user and channel id the registers mention."""
    return seen(session, _referenced(session), now)


def due_for_refresh(session: Session, now: datetime, limit: int = 100) -> list[tuple[str, str,
                                                                                    str]]:
    """(team, id, kind) of cached ids never fetched or fetched over a day ago."""
    return [tuple(row) for row in session.execute(  # type: ignore[misc]
        select(SlackName.team_id, SlackName.slack_id, SlackName.kind)
        .where(or_(SlackName.fetched_at.is_(None), SlackName.fetched_at < now - REFRESH_AFTER))
        .order_by(SlackName.fetched_at.is_not(None), SlackName.fetched_at, SlackName.slack_id)
        .limit(limit))]


def store(session: Session, team_id: str, slack_id: str, name: str | None,
          now: datetime) -> None:
    """Remember what Slack said (None: it could not name it; asked again tomorrow)."""
    row = session.get(SlackName, (team_id, slack_id))
    if row is None:
        kind = kind_of(slack_id)
        if kind is None:
            return
        row = SlackName(team_id=team_id, slack_id=slack_id, kind=kind, seen_at=now)
        session.add(row)
    if name or row.name is None:
        row.name = (name or None) and name[:255]
    row.fetched_at = now


@dataclass
class Names:
    """The cached names, for exports: ids stay beside names in JSON and CSV (`*_name` fields),
    Markdown shows `@name` and `#name` where they are known and the id where not."""

    by_id: dict[str, str]

    @classmethod
    def load(cls, session: Session) -> Names:
        return cls({slack_id: name for slack_id, name in session.execute(
            select(SlackName.slack_id, SlackName.name).where(SlackName.name.is_not(None)))})

    def display(self, slack_id: str) -> str:
        name = self.by_id.get(slack_id)
        if name is None:
            return slack_id
        return f"#{name}" if CHANNEL_ID.match(slack_id) else f"@{name}"

    def annotate(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record with `<field>_name` (or `_names`) beside each field holding Slack ids
        (added after the record's own fields), and the same in nested records (follow-ups,
        sign-offs, the timeline)."""
        out = dict(record)
        for key, value in record.items():
            kind = type(value)
            if kind is list and value and type(value[0]) is dict:
                out[key] = [self.annotate(item) if type(item) is dict else item
                            for item in value]
            elif kind is dict:
                out[key] = self.annotate(value)
        by_id = self.by_id
        # After the record's own fields, so that columns and keys keep their order.
        for key in [k for k in record if k in ID_FIELDS]:
            value = record[key]
            if type(value) is list:
                out[f"{key}_names"] = [by_id.get(v) if type(v) is str else None for v in value]
            else:
                out[f"{key}_name"] = by_id.get(value) if type(value) is str else None
        return out

    def readable(self, record: Any) -> Any:
        """The record with ids replaced by `@name`/`#name` (and mentions in text), for
        Markdown meant to be published."""
        if isinstance(record, dict):
            return {key: self.readable(value) for key, value in record.items()}
        if isinstance(record, list):
            return [self.readable(value) for value in record]
        if isinstance(record, str):
            if kind_of(record):
                return self.display(record)
            if "<" in record:
                return MENTION.sub(lambda m: self.display(m.group(2)), record)
        return record


# Fields of export records that hold Slack user or channel ids.
ID_FIELDS = frozenset({
    "created_by", "commander", "owner", "channel", "dedicated_channel", "deciders", "actor",
    "requested_by", "user", "done_by", "closed_by", "concluded_by", "signed_by",
})
