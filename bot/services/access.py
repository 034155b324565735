"""Who may read and who may change a project's records (docs/access.md). No Slack in here.

Every record belongs to one project, and a project is one channel. A record is changed only from
its own project; it is read from another channel only when its project's channel is public. Whether
a channel is private is Slack's to say: the runtime edge asks (`conversations.info`) and stores the
answer with `set_privacy`; until it is known, a project counts as private (fail closed).

A project's admins are the workspace admins (`QUORUM_ADMINS`) and the project's owners. The first
person to configure a project without owners (roles, settings, model bindings, owners) becomes its
owner; with no workspace admins configured and no owner yet, anyone may be that first person.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.errors import Conflict, Forbidden, NotFound
from bot.models import Project, ProjectOwner
from bot.services.audit import record_event
from bot.services.records import lock

# How long Slack's answer about a channel's privacy is trusted before it is asked again.
PRIVACY_TTL = timedelta(days=1)
# Conversation ids that are private whatever else is known: legacy private channels (`G…`) and
# direct messages (`D…`).
PRIVATE_ID_PREFIXES = ("G", "D")
# The flags of a `conversations.info` channel object that make a conversation private.
PRIVATE_FLAGS = ("is_private", "is_group", "is_mpim", "is_im")

MemberOf = Callable[[str], bool] | Collection[str] | None


# ------------------------------------------------------------------ privacy

def channel_id_is_private(channel_id: str) -> bool:
    """Whether the conversation id alone says it is private (`G…` group, `D…` direct message)."""
    return channel_id.startswith(PRIVATE_ID_PREFIXES)


def privacy_from_channel_info(channel: Mapping[str, Any]) -> bool:
    """Whether a `conversations.info` channel object describes a private conversation."""
    return any(bool(channel.get(flag)) for flag in PRIVATE_FLAGS) or \
        channel_id_is_private(str(channel.get("id") or ""))


def is_private(project: Project) -> bool:
    """Whether the project counts as private: Slack said so, its id says so, or it is not yet
    known (fail closed)."""
    return project.is_private is not False or channel_id_is_private(project.channel_id)


def privacy_is_stale(project: Project, now: datetime) -> bool:
    """Whether Slack should be asked about the channel again (never asked, or over a day ago)."""
    checked = project.privacy_checked_at
    return checked is None or now - checked >= PRIVACY_TTL


def set_privacy(session: Session, project: Project, is_private: bool, now: datetime,
                members: Collection[str] | None = None) -> bool:
    """Store what Slack said about the project's channel; True when the privacy changed.

    `members` (a private channel's members, from `conversations.members`) is kept for private
    channels only: it says whose Home and DMs may show the records. A change of privacy is
    audited (actor `slack`); a confirmation only moves the check time.
    """
    private = bool(is_private) or channel_id_is_private(project.channel_id)
    before = project.is_private
    project.is_private = private
    project.privacy_checked_at = now
    if not private:
        project.member_ids = None
    elif members is not None:
        project.member_ids = sorted(set(members))
    session.flush()
    if before is None or before == private:
        return False
    record_event(session, actor="slack", action="project.privacy_changed", entity=project,
                 project_id=project.id, before={"is_private": before},
                 after={"is_private": private})
    return True


def can_read_from(project: Project, channel_id: str, now: datetime | None = None) -> bool:
    """Whether the project's records may be shown in `channel_id`: it is the project's own
    channel, or the project is public. With `now`, a privacy Slack has not confirmed within
    PRIVACY_TTL counts as private too (the lookup failed: fail closed)."""
    if channel_id == project.channel_id:
        return True
    if is_private(project):
        return False
    return now is None or not privacy_is_stale(project, now)


def can_change_from(project: Project, channel_id: str) -> bool:
    """Whether the project's records may be changed from `channel_id`: only its own channel."""
    return channel_id == project.channel_id


def _member_test(member_of: MemberOf) -> Callable[[str], bool]:
    if member_of is None:
        return lambda _channel: False
    if callable(member_of):
        return member_of
    members = frozenset(member_of)
    return lambda channel: channel in members


def is_visible_to(project: Project, member_of: MemberOf) -> bool:
    """Whether someone may see the project's records outside its channel (Home, DMs): the
    project is public, or they are a member of its channel. `member_of` is a predicate on channel
    ids or the set of channels they belong to; None means their channels are unknown."""
    return not is_private(project) or _member_test(member_of)(project.channel_id)


def is_member(project: Project, user_id: str) -> bool:
    """Whether `user_id` was in the project's private channel when Slack last listed it."""
    return user_id in (project.member_ids or ())


def visible_to_user(project: Project, user_id: str) -> bool:
    """Whether the project's records may reach `user_id` outside the channel (their Home, a
    reminder in a DM): the project is public, or they are a known member of its channel."""
    return not is_private(project) or is_member(project, user_id)


def visible_projects(session: Session, team_id: str, user_id: str,
                     member_of: MemberOf) -> list[Project]:
    """The workspace's projects whose records `user_id` may see outside their channels (the
    public ones and the private ones they are a member of), by name. `user_id` is the person
    whom `member_of` describes."""
    test = _member_test(member_of)
    projects = session.scalars(select(Project).where(Project.team_id == team_id)
                               .order_by(Project.name, Project.id))
    return [project for project in projects if not is_private(project) or test(project.channel_id)]


def require_readable(project: Project, channel_id: str, ref: str,
                     now: datetime | None = None) -> None:
    """Refuse to show `ref` of `project` in `channel_id` unless `can_read_from` allows it."""
    if can_read_from(project, channel_id, now):
        return
    raise NotFound(f"{ref} belongs to a private channel, so it is shown only there.")


def require_changeable(project: Project, channel_id: str, ref: str,
                       now: datetime | None = None) -> None:
    """Refuse to change `ref` of `project` from `channel_id` (another project), saying where it
    can be changed when that channel may be named here."""
    if can_change_from(project, channel_id):
        return
    require_readable(project, channel_id, ref, now)
    raise Forbidden(f"{ref} belongs to <#{project.channel_id}>: it can be changed only from "
                    f"there (its channel, its card's buttons or your Home tab).",
                    mentions=[project.channel_id])


# ------------------------------------------------------------------ owners and admins

def owners(session: Session, project: Project) -> list[str]:
    """The project's owners' user ids, oldest first."""
    return list(session.scalars(
        select(ProjectOwner.user_id).where(ProjectOwner.project_id == project.id)
        .order_by(ProjectOwner.added_at, ProjectOwner.id)))


def is_owner(session: Session, project: Project, user_id: str) -> bool:
    """Whether `user_id` owns the project."""
    return session.scalar(select(ProjectOwner.id).where(
        ProjectOwner.project_id == project.id, ProjectOwner.user_id == user_id)) is not None


def is_project_admin(session: Session, project: Project, user_id: str,
                     workspace_admins: Collection[str]) -> bool:
    """Whether `user_id` may change the project's roles, settings and model bindings: a
    workspace admin, an owner, or anyone while the project has no owner and the workspace
    names no admins (that first person then becomes its owner, see `admit_configuration`)."""
    if user_id in workspace_admins or is_owner(session, project, user_id):
        return True
    return not workspace_admins and not owners(session, project)


def require_project_admin(session: Session, project: Project, user_id: str,
                          workspace_admins: Collection[str],
                          what: str = "change roles and settings") -> None:
    """Refuse with Forbidden unless `is_project_admin`; the sentence says who may and how."""
    if is_project_admin(session, project, user_id, workspace_admins):
        return
    raise Forbidden(f"Only Quorum admins and this project's owners can {what}; ask one of "
                    f"them (`/quorum roles` names the owners).")


def admit_configuration(session: Session, project: Project, actor: str,
                        workspace_admins: Collection[str],
                        what: str = "change roles and settings") -> None:
    """Before a project admin's act: refuse unless `actor` is a project admin, and make the first
    person to configure a project without owners its owner."""
    # The project's row first: two first configurations at once (three `role add` in the same
    # second) queue here, so the first makes its owner and the others are judged against it.
    lock(session, project)
    require_project_admin(session, project, actor, workspace_admins, what)
    if not owners(session, project):
        _add_owner(session, project, actor, actor)


def _add_owner(session: Session, project: Project, actor: str, user_id: str) -> ProjectOwner:
    owner = ProjectOwner(project_id=project.id, user_id=user_id, added_by=actor)
    try:
        # A savepoint: a simultaneous identical add loses cleanly instead of aborting.
        with session.begin_nested():
            session.add(owner)
    except IntegrityError:
        raise Conflict(f"<@{user_id}> already owns this project.", mentions=[user_id]) from None
    record_event(session, actor=actor, action="project.owner_added", entity=project,
                 project_id=project.id, after={"owner": user_id})
    return owner


def add_owner(session: Session, project: Project, actor: str, user_id: str,
              workspace_admins: Collection[str]) -> ProjectOwner:
    """Make `user_id` an owner of the project (a project admin's act)."""
    admit_configuration(session, project, actor, workspace_admins, "add owners")
    if is_owner(session, project, user_id):
        raise Conflict("They already own this project.")
    return _add_owner(session, project, actor, user_id)


def remove_owner(session: Session, project: Project, actor: str, user_id: str,
                 workspace_admins: Collection[str]) -> None:
    """Take ownership of the project away from `user_id`; the last owner stays (a project with
    none would be open to anyone again while QUORUM_ADMINS is unset)."""
    require_project_admin(session, project, actor, workspace_admins, "remove owners")
    owner = session.scalars(select(ProjectOwner).where(
        ProjectOwner.project_id == project.id, ProjectOwner.user_id == user_id)).one_or_none()
    if owner is None:
        raise NotFound("They do not own this project, so there is nothing to remove.")
    if len(owners(session, project)) == 1:
        raise Conflict("They are this project's only owner: add another owner first "
                       "(`/quorum owner add @someone`).")
    session.delete(owner)
    session.flush()
    record_event(session, actor=actor, action="project.owner_removed", entity=project,
                 project_id=project.id, before={"owner": user_id})
