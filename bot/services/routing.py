"""Where records that come from outside Slack (alerts, scripted announcements) belong: the one
function that picks their project."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bot.models import ModelBinding, Project
from bot.render import CHANNEL_ID
from bot.services.projects import project_for_channel


@dataclass(frozen=True)
class Route:
    """Where a record from outside Slack goes: a project, or nowhere (`project` None)."""

    project: Project | None
    team_id: str
    via: str  # "project", "model", "default_channel" or "unrouted"


def _find_project(session: Session, name_or_channel: str) -> Project | None:
    wanted = name_or_channel.strip().lstrip("#")
    if not wanted:
        return None
    return session.scalars(
        select(Project).where(or_(Project.channel_id == wanted, Project.name == wanted))
        .order_by(Project.id).limit(1)
    ).first()


def _single_team(session: Session) -> str | None:
    """The workspace, when Quorum knows exactly one (the usual single-workspace install)."""
    teams = session.scalars(select(Project.team_id).distinct().limit(2)).all()
    return teams[0] if len(teams) == 1 else None


def route(session: Session, *, project: str | None = None, model: str | None = None,
          default_channel: str | None = None) -> Route:
    """The project an alert or a scripted announcement belongs to.

    1. `project`: a project's channel id or name (a channel id that is not yet a project becomes
       one when Quorum knows a single workspace);
    2. `model`: the project the model name is bound to (`/quorum model add <name>`);
    3. `default_channel` (QUORUM_DEFAULT_CHANNEL): its project, created in the single known
       workspace on first use;
    4. otherwise unrouted, stored in the single known workspace (or the unnamed one, "").
    """
    if project:
        found = _find_project(session, project)
        if found is not None:
            return Route(found, found.team_id, "project")
        team = _single_team(session)
        if team and CHANNEL_ID.match(project.strip()):
            return Route(project_for_channel(session, team, project.strip()), team, "project")
    if model and model.strip():
        binding = session.scalars(
            select(ModelBinding).where(ModelBinding.model == model.strip())
            .order_by(ModelBinding.id).limit(1)
        ).first()
        if binding is not None:
            return Route(binding.project, binding.team_id, "model")
    if default_channel:
        found = _find_project(session, default_channel)
        if found is not None:
            return Route(found, found.team_id, "default_channel")
        team = _single_team(session)
        if team:
            channel = default_channel.strip()
            return Route(project_for_channel(session, team, channel, channel.lstrip("#")), team,
                         "default_channel")
    return Route(None, _single_team(session) or "", "unrouted")
