"""The App Home: each person's dashboard of what waits for them, and keeping it current.

`build_home` reads the registers into plain sections (a total and the few most relevant items
each); `publish_home` renders `templates/home/home.json.j2` and queues a `views.publish` through
the outbox under one key per person, so that a burst of changes publishes once (the outbox drops
superseded pending publishes). Services call `queue_home_refresh` after changes that affect
people. No Slack imports here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, or_, select, union_all
from sqlalchemy.orm import Session

from bot import outbox
from bot.errors import NotFound
from bot.models import (
    Decision,
    Gate,
    GateSignoff,
    GateStatus,
    HomeTab,
    Hypothesis,
    HypothesisStatus,
    Incident,
    IncidentStatus,
    Project,
    Risk,
    RiskStatus,
    RitualSchedule,
    RoleAssignment,
    SignoffDecision,
    utcnow,
)
from bot.render import renderer
from bot.services import access
from bot.services.refs import settle
from bot.services.ritual_times import next_occurrences

T = TypeVar("T")

# Items shown per section; the rest are counted with the command that lists them. A Home has
# at most 100 blocks: a gate takes two (its line and its buttons), other items one each.
WAITING_SHOWN = 6
ITEMS_SHOWN = 6
ACTIONS_SHOWN = 5
RECENT_DECISION_DAYS = 30
# A static select holds at most 100 options; one is "All projects".
PROJECT_CHOICES = 99
OPEN_RISK_STATUSES = (RiskStatus.OPEN, RiskStatus.MITIGATING, RiskStatus.MONITORING,
                      RiskStatus.ACCEPTED)
ACTIVE_HYPOTHESES = (HypothesisStatus.PROPOSED, HypothesisStatus.RUNNING)
ALL_PROJECTS = "all"


@dataclass(frozen=True)
class Section(Generic[T]):
    """One part of the Home: the items to show and how many there are in all."""

    items: list[T] = field(default_factory=list)
    total: int = 0

    @property
    def more(self) -> int:
        return max(0, self.total - len(self.items))


@dataclass(frozen=True)
class WaitingSignoff:
    """A gate the person can sign, and the roles they can sign it as."""

    gate: Gate
    roles: list[str]


@dataclass(frozen=True)
class Notice:
    """A one-line note at the top of the Home: what a click did, or why it did nothing."""

    text: str
    ok: bool = False
    mentions: tuple[str, ...] = ()  # ids in `text` shown as mentions (see QuorumError)


@dataclass(frozen=True)
class Home:
    team_id: str
    user_id: str
    today: date
    projects: list[Project]
    project: Project | None  # the project filter; None shows them all
    waiting: Section[WaitingSignoff]
    risks: Section[Risk]
    overdue_risks: int
    hypotheses: Section[Hypothesis]
    incidents: Section[Incident]
    decisions: Section[Decision]
    rituals: Section[Any]
    # Incident follow-ups the person owns (every project: the filter does not hide them).
    follow_ups: Section[Any] = field(default_factory=Section)
    # Open retro action items the person owns (`bot.services.rituals.retros`).
    retro_actions: Section[Any] = field(default_factory=Section)


def home_key(team_id: str, user_id: str) -> str:
    return f"home:{team_id}:{user_id}"


# ---------------------------------------------------------------------------- reading


def user_projects(session: Session, team_id: str, user_id: str) -> list[Project]:
    """The projects a person takes part in (`projects_taking_part`) whose records may reach them:
    of private channels, only those they are a member of (docs/access.md)."""
    return [project for project in projects_taking_part(session, team_id, user_id)
            if access.visible_to_user(project, user_id)]


def projects_taking_part(session: Session, team_id: str, user_id: str) -> list[Project]:
    """The projects a person takes part in: a role there, or a risk, hypothesis, incident or
    decision of theirs, whatever their channel.

    One index probe per project and kind (`EXISTS` on the `(person, project_id)` indexes) rather
    than reading every record of a person who has made thousands of them.
    """
    def has(model: Any, *where: Any) -> Any:
        return select(model.id).where(model.project_id == Project.id, *where).exists()

    return list(session.scalars(
        select(Project).where(Project.team_id == team_id, or_(
            has(RoleAssignment, RoleAssignment.user_id == user_id),
            has(Risk, Risk.team_id == team_id, Risk.owner == user_id),
            has(Hypothesis, Hypothesis.team_id == team_id, Hypothesis.owner == user_id),
            has(Hypothesis, Hypothesis.team_id == team_id, Hypothesis.created_by == user_id),
            has(Incident, Incident.commander == user_id),
            has(Decision, Decision.team_id == team_id, Decision.created_by == user_id),
        )).order_by(Project.name, Project.id)
    ))


def waiting_signoffs(session: Session, team_id: str, user_id: str, project_ids: list[int],
                     now: datetime) -> Section[WaitingSignoff]:
    """Open gates the person can sign for a role they hold, the soonest due first."""
    held: dict[int, set[str]] = {}
    for project_id, role in session.execute(
            select(RoleAssignment.project_id, RoleAssignment.role)
            .where(RoleAssignment.user_id == user_id,
                   RoleAssignment.project_id.in_(project_ids))):
        held.setdefault(project_id, set()).add(role)
    if not held:
        return Section()
    # Which open gates wait for them is worked out from ids and roles alone; only the gates
    # shown are loaded whole (a busy person may be able to sign hundreds).
    open_gates = session.execute(
        select(Gate.id, Gate.project_id, Gate.required_roles, Gate.role_counts,
               Gate.requested_by, Project.allow_self_approval)
        .join(Project, Project.id == Gate.project_id)
        .where(Gate.team_id == team_id, Gate.status == GateStatus.OPEN,
               Gate.ready_at.is_(None), Gate.project_id.in_(list(held)),
               or_(Gate.expires_at.is_(None), Gate.expires_at > now))
        .order_by(Gate.due_date.is_(None), Gate.due_date, Gate.created_at, Gate.id)
    ).all()
    approvals: dict[int, dict[str, int]] = {}
    signed_by_them: set[int] = set()
    for gate_id, role, signer, decision in session.execute(
            select(GateSignoff.gate_id, GateSignoff.role, GateSignoff.user_id,
                   GateSignoff.decision)
            .where(GateSignoff.gate_id.in_([row.id for row in open_gates]))):
        if signer == user_id:
            signed_by_them.add(gate_id)  # one person signs one role of a gate
        if decision == SignoffDecision.APPROVE:
            counts = approvals.setdefault(gate_id, {})
            counts[role] = counts.get(role, 0) + 1
    waiting: list[tuple[int, list[str]]] = []
    for row in open_gates:
        if row.id in signed_by_them:
            continue
        if row.requested_by == user_id and not row.allow_self_approval:
            continue  # they cannot approve their own gate (see gates.signable_roles)
        needs = row.role_counts or {}
        done = approvals.get(row.id, {})
        roles = [role for role in row.required_roles
                 if role in held[row.project_id] and done.get(role, 0) < needs.get(role, 1)]
        if roles:
            waiting.append((row.id, roles))
    shown = waiting[:WAITING_SHOWN]
    gates = {gate.id: gate for gate in session.scalars(
        select(Gate).where(Gate.id.in_([gate_id for gate_id, _ in shown])))}
    return Section([WaitingSignoff(gates[gate_id], roles) for gate_id, roles in shown],
                   len(waiting))


def _section(session: Session, query: Any, order: Iterable[Any],
             shown: int = ITEMS_SHOWN) -> Section[Any]:
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(query.order_by(*order).limit(shown)).all() if total else []
    return Section(list(items), total)


def build_home(session: Session, team_id: str, user_id: str,
               now: datetime | None = None) -> Home:
    """Everything the person's Home shows, within the project filter they chose."""
    now = now or utcnow()
    today = now.date()
    projects = user_projects(session, team_id, user_id)
    tab = session.get(HomeTab, (team_id, user_id))
    chosen = next((p for p in projects if tab and p.id == tab.project_id), None)
    ids = [chosen.id] if chosen else [p.id for p in projects]

    risks = select(Risk).where(Risk.team_id == team_id, Risk.owner == user_id,
                               Risk.status.in_(OPEN_RISK_STATUSES))
    # Theirs: owned, or made and owned by nobody. Two index searches joined, since SQLite
    # answers an OR across two columns by reading the whole workspace.
    theirs = union_all(
        select(Hypothesis.id).where(Hypothesis.team_id == team_id, Hypothesis.owner == user_id),
        select(Hypothesis.id).where(Hypothesis.team_id == team_id, Hypothesis.owner.is_(None),
                                    Hypothesis.created_by == user_id))
    hypotheses = select(Hypothesis).where(Hypothesis.status.in_(ACTIVE_HYPOTHESES),
                                          Hypothesis.id.in_(theirs))
    mine = Incident.commander == user_id
    incidents = select(Incident).where(Incident.team_id == team_id,
                                       Incident.status != IncidentStatus.RESOLVED)
    if chosen:
        risks = risks.where(Risk.project_id == chosen.id)
        hypotheses = hypotheses.where(Hypothesis.project_id == chosen.id)
        incidents = incidents.where(Incident.project_id == chosen.id)
    else:
        # Only the projects whose records may reach them (a private channel's, if a member).
        risks = risks.where(Risk.project_id.in_(ids))
        hypotheses = hypotheses.where(Hypothesis.project_id.in_(ids))
        incidents = incidents.where(or_(and_(mine, Incident.project_id.is_(None)),
                                        Incident.project_id.in_(ids)))
    decisions = select(Decision).where(
        Decision.project_id.in_(ids),
        Decision.created_at >= now - timedelta(days=RECENT_DECISION_DAYS))
    overdue = Risk.next_review < today
    from bot.services.follow_ups import open_for  # it refreshes Homes: imported late

    follow_ups = Section(*open_for(session, team_id, user_id))
    return Home(
        team_id=team_id,
        user_id=user_id,
        today=today,
        projects=projects,
        project=chosen,
        waiting=waiting_signoffs(session, team_id, user_id, ids, now),
        risks=_section(session, risks, (case((overdue, 0), else_=1), Risk.next_review,
                                        Risk.score.desc(), Risk.number)),
        overdue_risks=session.scalar(select(func.count()).select_from(
            risks.where(overdue).subquery())) or 0,
        hypotheses=_section(session, hypotheses, (
            case((Hypothesis.status == HypothesisStatus.RUNNING, 0), else_=1),
            Hypothesis.created_at.desc(), Hypothesis.number.desc())),
        incidents=_section(session, incidents, (case((mine, 0), else_=1), Incident.severity,
                                                Incident.started_at.desc(),
                                                Incident.number.desc())),
        decisions=_section(session, decisions, (Decision.created_at.desc(),
                                                Decision.number.desc())),
        rituals=next_rituals(session, team_id, user_id, ids, now),
        follow_ups=follow_ups,
        retro_actions=Section(*retro_actions_of(session, team_id, user_id, ACTIONS_SHOWN)),
    )


def retro_actions_of(session: Session, team_id: str, user_id: str,
                     limit: int) -> tuple[list[Any], int]:
    """The person's open retro action items (a section of its own, next to the rituals)."""
    # Imported here: the rituals package's services import this module to refresh Homes.
    from bot.services.rituals.retros import open_actions_of
    return open_actions_of(session, team_id, user_id, limit)


@dataclass(frozen=True)
class NextRitual:
    """A standup or retro coming up, at its local time in its schedule's time zone."""

    kind: str
    channel_id: str
    local: datetime
    zone: str


def next_rituals(session: Session, team_id: str, user_id: str, project_ids: list[int],
                 now: datetime) -> Section[NextRitual]:
    """The next standup or retro of each of the person's projects, soonest first."""
    schedules = session.scalars(select(RitualSchedule).where(
        RitualSchedule.project_id.in_(project_ids), RitualSchedule.enabled.is_(True))).all()
    upcoming = []
    for schedule in schedules:
        times = next_occurrences(schedule.cron, schedule.timezone, schedule.every_weeks,
                                 schedule.anchor_week, now, count=1)
        if times:
            upcoming.append(NextRitual(schedule.kind, schedule.project.channel_id,
                                       times[0].astimezone(ZoneInfo(schedule.timezone)),
                                       schedule.timezone))
    upcoming.sort(key=lambda ritual: ritual.local)
    return Section(upcoming[:ITEMS_SHOWN], len(upcoming))


# ---------------------------------------------------------------------------- publishing


def render_home(home: Home, notice: Notice | None = None) -> dict[str, Any]:
    return renderer.view("home/home", home=home, notice=notice,
                         choices=home.projects[:PROJECT_CHOICES], all_projects=ALL_PROJECTS)


def publish_home(session: Session, team_id: str, user_id: str,
                 notice: Notice | None = None) -> None:
    """Queue the person's Home as it is now; the latest queued publish is the one sent."""
    view = render_home(build_home(session, team_id, user_id), notice)
    outbox.publish_view(session, team_id, user_id, view, key=home_key(team_id, user_id))


def home_opened(session: Session, team_id: str, user_id: str,
                now: datetime | None = None) -> None:
    """The person opened the Home tab: remember them (for later refreshes) and publish it."""
    tab = session.get(HomeTab, (team_id, user_id))
    if tab is None:
        session.add(HomeTab(team_id=team_id, user_id=user_id, opened_at=now or utcnow()))
        session.flush()
    else:
        tab.opened_at = now or utcnow()
    publish_home(session, team_id, user_id)


def choose_project(session: Session, team_id: str, user_id: str, value: str) -> None:
    """The project filter at the top: one of the person's projects, or all of them."""
    projects = {str(p.id): p for p in user_projects(session, team_id, user_id)}
    if value != ALL_PROJECTS and value not in projects:
        raise NotFound("That project is not one of yours any more; showing all your projects.")
    tab = session.get(HomeTab, (team_id, user_id))
    if tab is None:
        tab = HomeTab(team_id=team_id, user_id=user_id, opened_at=utcnow())
        session.add(tab)
    tab.project_id = projects[value].id if value != ALL_PROJECTS else None
    session.flush()
    publish_home(session, team_id, user_id)


def queue_home_refresh(session: Session, team_id: str, user_ids: Iterable[str | None]) -> None:
    """Re-publish the Home of each of these people who has opened it, as it is after the change
    being made in `session` (queued in the same transaction, coalesced per person)."""
    wanted = sorted({user for user in user_ids if user})
    if not wanted:
        return
    session.flush()
    opened = session.scalars(
        select(HomeTab.user_id).where(HomeTab.team_id == team_id, HomeTab.user_id.in_(wanted))
    ).all()
    if opened:
        # A record created in this transaction must be listed under its number, in its place.
        settle(session)
    for user_id in sorted(opened):
        publish_home(session, team_id, user_id)
