"""A channel's project, created on first use."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.models import Project
from bot.services import access


@dataclass(frozen=True)
class ChannelPrivacy:
    """What Slack said about a channel before its project existed (see `privacy_known`)."""

    team_id: str
    channel_id: str
    is_private: bool
    members: Collection[str] | None
    at: datetime


# Set by the runtime edge around a request whose channel has no project yet, so that the project
# is born knowing its privacy (the domain asks no one).
_KNOWN: ContextVar[ChannelPrivacy | None] = ContextVar("quorum_channel_privacy", default=None)


def expect_privacy(privacy: ChannelPrivacy | None) -> None:
    """From now on in this context (the request being handled), a project created for that
    channel starts with this privacy; None forgets it."""
    _KNOWN.set(privacy)


@contextmanager
def privacy_known(privacy: ChannelPrivacy | None) -> Iterator[None]:
    """Within the block, a project created for that channel starts with this privacy."""
    token = _KNOWN.set(privacy)
    try:
        yield
    finally:
        _KNOWN.reset(token)

# Built once: every slash command looks its channel's project up.
CHANNEL_PROJECT = select(Project).where(Project.team_id == bindparam("team_id"),
                                        Project.channel_id == bindparam("channel_id"))


def project_for_channel(
    session: Session, team_id: str, channel_id: str, channel_name: str | None = None
) -> Project:
    """Return the channel's project, creating it the first time the channel uses Quorum."""
    query = CHANNEL_PROJECT.params(team_id=team_id, channel_id=channel_id)
    project = session.scalars(query).one_or_none()
    if project is not None:
        return project
    try:
        # A savepoint, so that losing a race with another request does not abort our transaction.
        with session.begin_nested():
            project = Project(team_id=team_id, channel_id=channel_id,
                              name=channel_name or channel_id)
            session.add(project)
            known = _KNOWN.get()
            if known is not None and (known.team_id, known.channel_id) == (team_id, channel_id):
                access.set_privacy(session, project, known.is_private, known.at, known.members)
    except IntegrityError:
        project = session.scalars(query).one()
    return project
