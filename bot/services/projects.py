"""A channel's project, created on first use."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.models import Project

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
    except IntegrityError:
        project = session.scalars(query).one()
    return project
