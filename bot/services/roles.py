"""Roles in a project (`ds`, `eng`, `pm` or any word) and the project's gate settings.

Only the project's admins may change them (`bot.services.access`: the workspace admins in
`QUORUM_ADMINS` and the project's owners); every change is audited against the project.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import outbox
from bot.errors import Conflict, InvalidInput, NotFound
from bot.models import Project, RoleAssignment
from bot.render import renderer
from bot.services import access
from bot.services.audit import record_event

ROLE_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,23}$")
DEFAULT_ROLES = ("ds", "eng", "pm")
REMINDER_HOURS = (1, 168)


def normalize_role(raw: str, field: str = "role") -> str:
    """A role name as stored: one lowercase word; a clear error for anything else."""
    role = (raw or "").strip().lower()
    if not role:
        raise InvalidInput("Name the role, e.g. `ds`, `eng` or `pm`.", field=field)
    if not ROLE_PATTERN.match(role):
        raise InvalidInput(
            f"`{raw.strip()[:40]}` is not a role name: use one word of letters, digits, `-` or "
            f"`_`, starting with a letter, at most 24 characters (e.g. `ds`, `eng`, `pm`).",
            field=field,
        )
    return role


def _assignment(session: Session, project: Project, user_id: str,
                role: str) -> RoleAssignment | None:
    return session.scalars(
        select(RoleAssignment).where(
            RoleAssignment.project_id == project.id,
            RoleAssignment.user_id == user_id,
            RoleAssignment.role == role,
        )
    ).one_or_none()


def add_role(session: Session, project: Project, actor: str, user_id: str, role: str,
             admins: Collection[str]) -> RoleAssignment:
    """Give `user_id` the role in the project."""
    access.admit_configuration(session, project, actor, admins)
    role = normalize_role(role)
    if _assignment(session, project, user_id, role) is not None:
        raise Conflict(f"They already hold `{role}` in this project.")
    assignment = RoleAssignment(project_id=project.id, user_id=user_id, role=role,
                                assigned_by=actor)
    try:
        # A savepoint: a simultaneous identical add loses cleanly instead of aborting.
        with session.begin_nested():
            session.add(assignment)
    except IntegrityError:
        raise Conflict(f"They already hold `{role}` in this project.") from None
    record_event(session, actor=actor, action="role.added", entity=project,
                 project_id=project.id, after={"user": user_id, "role": role})
    return assignment


def remove_role(session: Session, project: Project, actor: str, user_id: str, role: str,
                admins: Collection[str]) -> None:
    """Take the role away from `user_id` in the project."""
    access.admit_configuration(session, project, actor, admins)
    role = normalize_role(role)
    assignment = _assignment(session, project, user_id, role)
    if assignment is None:
        raise NotFound(f"They do not hold `{role}` in this project, so there is nothing to "
                       f"remove.")
    session.delete(assignment)
    session.flush()
    record_event(session, actor=actor, action="role.removed", entity=project,
                 project_id=project.id, before={"user": user_id, "role": role})


def holders(session: Session, project: Project) -> dict[str, list[str]]:
    """Every role of the project and who holds it, roles and people in a stable order."""
    rows = session.execute(
        select(RoleAssignment.role, RoleAssignment.user_id)
        .where(RoleAssignment.project_id == project.id)
        .order_by(RoleAssignment.role, RoleAssignment.assigned_at, RoleAssignment.id)
    ).all()
    by_role: dict[str, list[str]] = {}
    for role, user_id in rows:
        by_role.setdefault(role, []).append(user_id)
    return by_role


def roles_of(session: Session, project: Project, user_id: str) -> set[str]:
    """The roles `user_id` holds in the project."""
    return set(session.scalars(
        select(RoleAssignment.role).where(RoleAssignment.project_id == project.id,
                                          RoleAssignment.user_id == user_id)
    ))


def settings_of(project: Project) -> dict[str, Any]:
    """The project's gate settings as plain values (audit snapshots, the roles view)."""
    return {"allow_self_approval": bool(project.allow_self_approval),
            "gate_reminder_hours": project.gate_reminder_hours}


def _change_settings(session: Session, project: Project, actor: str,
                     admins: Collection[str], **values: Any) -> Project:
    access.admit_configuration(session, project, actor, admins)
    before = settings_of(project)
    for name, value in values.items():
        setattr(project, name, value)
    session.flush()
    after = settings_of(project)
    if after != before:
        record_event(session, actor=actor, action="project.settings_changed", entity=project,
                     project_id=project.id, before=before, after=after)
    return project


def set_self_approval(session: Session, project: Project, actor: str, allowed: bool,
                      admins: Collection[str]) -> Project:
    """Whether a gate's requester may approve it themselves (off by default). A change is an
    admin's act announced in the project's channel, so that nobody turns it on quietly."""
    before = bool(project.allow_self_approval)
    _change_settings(session, project, actor, admins, allow_self_approval=allowed)
    if before != allowed:
        outbox.post_message(session, project.team_id, project.channel_id, renderer.message(
            "admin/self_approval", allowed=allowed, actor=actor))
    return project


def set_reminder_hours(session: Session, project: Project, actor: str, hours: int,
                       admins: Collection[str]) -> Project:
    """Hours a sign-off may wait before its holders get a reminder (then one a day)."""
    low, high = REMINDER_HOURS
    if not low <= hours <= high:
        raise InvalidInput(f"The reminder delay must be {low} to {high} hours, not {hours}.",
                           field="hours")
    return _change_settings(session, project, actor, admins, gate_reminder_hours=hours)
