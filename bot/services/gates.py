"""Milestone gates: request, sign by role, pass, remind, expire, and the CI check.

A gate passes when every required role has approved. Signing locks the gate's row
(`SELECT … FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` serializes writers anyway), so
two people clicking at the same moment never lose each other's approval, and the unique
`(gate_id, role)` sign-off makes a double click sign once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import outbox
from bot.errors import Conflict, Forbidden, InvalidInput, NotFound
from bot.models import (
    Gate,
    GateSignoff,
    GateStatus,
    JobClaim,
    Project,
    SignoffDecision,
    utcnow,
)
from bot.render import renderer
from bot.scheduler import claim_once, sweep
from bot.services import home
from bot.services import roles as role_service
from bot.services.audit import record_event, snapshot
from bot.services.records import find_by_id, find_by_ref
from bot.services.refs import number_at_commit, pending, settle

MILESTONE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")
MODEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
CRITERIA_LINES = 20
CRITERION_LIMIT = 300
REASON_LIMIT = 2000
LIST_LIMIT = 20
BULLET = re.compile(r"^(?:[-*•]\s+|\[\s?[xX ]?\]\s*|\d+[.)]\s+)")
SIGNABLE = (GateStatus.OPEN,)
ACTIVE = (GateStatus.OPEN, GateStatus.CHANGES_REQUESTED)
# Claim keys looked up per query by the reminder sweep (well within any bind-parameter limit).
CLAIM_LOOKUP_CHUNK = 500


def normalize_version(raw: str | None) -> str | None:
    """`v3` and `3` name the same version; tags such as `1.2.0` or `rc1` stay as typed."""
    version = (raw or "").strip()
    if len(version) > 1 and version[0] in "vV" and version[1].isdigit():
        version = version[1:]
    return version or None


def _split_roles(raw: Sequence[str] | str | None) -> list[str]:
    if raw is None:
        return list(role_service.DEFAULT_ROLES)
    items = re.split(r"[,\s]+", raw) if isinstance(raw, str) else list(raw)
    return [item for item in (i.strip() for i in items) if item]


def _criteria_lines(raw: Sequence[str] | str | None) -> list[str]:
    lines = raw.splitlines() if isinstance(raw, str) else list(raw or [])
    return [BULLET.sub("", line.strip()).strip() for line in lines if line.strip()]


MAX_ROLES = 20


@dataclass
class GateDraft:
    """What the requester gives; `validated()` checks its shape before anything is read."""

    milestone: str
    model: str | None = None
    version: str | None = None
    roles: Sequence[str] | str | None = None  # None: the default ds, eng, pm
    criteria: Sequence[str] | str | None = None
    due_date: date | str | None = None

    def validated(self) -> GateDraft:
        milestone = (self.milestone or "").strip().lower()
        if not milestone:
            raise InvalidInput("Name the milestone, e.g. `evaluation` or `launch`.",
                               field="milestone")
        if not MILESTONE_PATTERN.match(milestone):
            raise InvalidInput(
                f"`{self.milestone.strip()[:50]}` is not a milestone name: use one word of "
                f"letters, digits, `-` or `_` (e.g. `scoping`, `evaluation`, `launch`).",
                field="milestone")
        model = (self.model or "").strip() or None
        version = normalize_version(self.version)
        if model is not None and not MODEL_PATTERN.match(model):
            raise InvalidInput(
                f"`{model[:50]}` is not a model name: use letters, digits and `. _ - / :`, "
                f"at most 100 characters.", field="model")
        if version is not None and not VERSION_PATTERN.match(version):
            raise InvalidInput(
                f"`{version[:50]}` is not a version: use a number like `3` or a tag like "
                f"`1.2.0` or `rc1`.", field="version")
        if version is not None and model is None:
            raise InvalidInput(f"Name the model that version {version} belongs to.",
                               field="model")
        if model is not None and version is None:
            raise InvalidInput(f"Give the version of {model} this gate is for, e.g. `3`.",
                               field="version")
        roles = list(dict.fromkeys(role_service.normalize_role(role, field="roles")
                                   for role in _split_roles(self.roles)))
        if not roles:
            raise InvalidInput("Name at least one role that must sign, e.g. `ds,eng,pm`.",
                               field="roles")
        if len(roles) > MAX_ROLES:
            # A card offers one button per waiting role, and Slack allows 25 in a row.
            raise InvalidInput(f"A gate can require at most {MAX_ROLES} roles; "
                               f"this one names {len(roles)}.", field="roles")
        criteria = _criteria_lines(self.criteria)
        if len(criteria) > CRITERIA_LINES:
            raise InvalidInput(f"There are {len(criteria)} criteria; keep it to "
                               f"{CRITERIA_LINES} lines.", field="criteria")
        for line in criteria:
            if len(line) > CRITERION_LIMIT:
                raise InvalidInput(f"A criterion is {len(line)} characters long; keep each "
                                   f"line within {CRITERION_LIMIT}.", field="criteria")
        due = self.due_date
        if isinstance(due, str):
            try:
                due = date.fromisoformat(due.strip()) if due.strip() else None
            except ValueError:
                raise InvalidInput(f"`{due[:20]}` is not a date like 2026-03-31.",
                                   field="due_date") from None
        return GateDraft(milestone=milestone, model=model, version=version, roles=roles,
                         criteria=criteria, due_date=due)


def _zone(project: Project) -> ZoneInfo:
    return ZoneInfo(project.timezone or "UTC")


def _end_of_day(day: date, zone: ZoneInfo) -> datetime:
    """The first instant after `day` in `zone`, in UTC: when a gate due that day expires."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)


# ---------------------------------------------------------------------------- plain values


@dataclass(frozen=True)
class RoleState:
    """One required role on the card: waiting, approved, or changes requested."""

    role: str
    state: str  # "waiting", "approve" or "changes"
    signoff: GateSignoff | None = None


def role_states(gate: Gate) -> list[RoleState]:
    signed = {signoff.role: signoff for signoff in gate.signoffs}
    return [RoleState(role, signed[role].decision if role in signed else "waiting",
                      signed.get(role)) for role in gate.required_roles]


def signers(gate: Gate) -> list[GateSignoff]:
    """The approvals of a gate, in the order of its required roles."""
    states = role_states(gate)
    return [s.signoff for s in states if s.state == SignoffDecision.APPROVE and s.signoff]


def signoff_record(signoff: GateSignoff) -> dict[str, Any]:
    return {"role": signoff.role, "user": signoff.user_id, "decision": signoff.decision,
            "reason": signoff.reason, "at": signoff.at.isoformat()}


def as_record(gate: Gate) -> dict[str, Any]:
    """The gate as plain values: the shape of exports, the CI check and audit snapshots."""
    return {
        "ref": gate.ref,
        "project": gate.project.name if gate.project else None,
        "channel": gate.project.channel_id if gate.project else None,
        "status": gate.status,
        "milestone": gate.milestone,
        "model": gate.model,
        "version": gate.version,
        "required_roles": list(gate.required_roles or []),
        "criteria": list(gate.criteria or []),
        "due_date": gate.due_date.isoformat() if gate.due_date else None,
        "expires_at": gate.expires_at.isoformat() if gate.expires_at else None,
        "passed_at": gate.passed_at.isoformat() if gate.passed_at else None,
        "supersedes": gate.supersedes.ref if gate.supersedes else None,
        "superseded_by": gate.superseded_by.ref if gate.superseded_by else None,
        "signoffs": [signoff_record(signoff) for signoff in gate.signoffs],
        "created_by": gate.requested_by,
        "created_at": gate.created_at.isoformat(),
        "updated_at": gate.updated_at.isoformat() if gate.updated_at else None,
    }


def _snapshot(gate: Gate) -> dict[str, Any]:
    return snapshot(as_record(gate))


def card_key(gate: Gate) -> str:
    return f"gate:{gate.id}:card"


def render_card(gate: Gate) -> dict[str, Any]:
    return renderer.message("gate/card", g=gate, states=role_states(gate))


def _refresh_card(session: Session, gate: Gate) -> None:
    outbox.update_message(session, gate.team_id, card_key(gate), render_card(gate))


def _in_thread(session: Session, gate: Gate, template: str, **context: Any) -> None:
    outbox.post_message(session, gate.team_id, gate.project.channel_id,
                        renderer.message(template, g=gate, **context), thread_key=card_key(gate))


# ---------------------------------------------------------------------------- finding gates


def get_gate(session: Session, project: Project, ref: str) -> Gate:
    """The gate named by `ref` in the channel's project, or a NotFound that says why."""
    gate = find_by_ref(session, Gate, project.team_id, ref, "gate")
    if gate.project_id != project.id:
        raise NotFound(f"{gate.ref} belongs to another channel's project; ask about it there.")
    return gate


def get_by_id(session: Session, gate_id: int, team_id: str | None = None) -> Gate:
    return find_by_id(session, Gate, gate_id, "gate", team_id=team_id)


def _lock(session: Session, gate_id: int) -> Gate | None:
    """Load the gate and hold its row lock until the transaction ends (no-op on SQLite)."""
    gate = session.scalars(
        select(Gate).where(Gate.id == gate_id).with_for_update(of=Gate)
        .execution_options(populate_existing=True)
    ).unique().one_or_none()
    if gate is not None:
        session.refresh(gate, ["signoffs"])
    return gate


def list_gates(session: Session, project: Project) -> tuple[list[Gate], int]:
    """The project's gates, open ones first, then the rest, newest first; and how many."""
    where = Gate.project_id == project.id
    total = session.scalar(select(func.count()).select_from(Gate).where(where)) or 0
    order = case((Gate.status == GateStatus.OPEN, 0),
                 (Gate.status == GateStatus.CHANGES_REQUESTED, 1), else_=2)
    gates = session.scalars(
        select(Gate).where(where).order_by(order, Gate.created_at.desc(), Gate.id.desc())
        .limit(LIST_LIMIT)
    ).all()
    return list(gates), total


def _same_milestone(session: Session, project: Project, draft: GateDraft) -> list[Gate]:
    return list(session.scalars(
        select(Gate).where(
            Gate.project_id == project.id,
            Gate.milestone == draft.milestone,
            Gate.model.is_(None) if draft.model is None else Gate.model == draft.model,
            Gate.version.is_(None) if draft.version is None else Gate.version == draft.version,
            Gate.status.in_((*ACTIVE, GateStatus.PASSED)),
        ).order_by(Gate.id)
    ))


def describe(gate: Gate | GateDraft) -> str:
    """`launch of churn v3`, or `launch` for a gate without a model."""
    if gate.model:
        return f"{gate.milestone} of {gate.model} v{gate.version}"
    return str(gate.milestone)


# ---------------------------------------------------------------------------- requesting


@dataclass
class Requested:
    gate: Gate
    superseded: list[Gate] = field(default_factory=list)
    # Required roles that only the requester holds while self-approval is off.
    only_requester: list[str] = field(default_factory=list)


def request_gate(session: Session, project: Project, actor: str, draft: GateDraft,
                 now: datetime | None = None) -> Requested:
    """Open a gate, audit it, post its card; a changes-requested gate for the same milestone
    and version is superseded by it."""
    now = now or utcnow()
    draft = draft.validated()
    zone = _zone(project)
    due = draft.due_date if isinstance(draft.due_date, date) else None
    if due is not None and due < now.astimezone(zone).date():
        raise InvalidInput(f"The due date {due.isoformat()} is in the past; pick today or a "
                           f"later day.", field="due_date")
    holders = role_service.holders(session, project)
    required = list(draft.roles or [])
    missing = [role for role in required if not holders.get(role)]
    if missing:
        names = ", ".join(f"`{role}`" for role in missing)
        raise InvalidInput(
            f"Nobody holds {names} in this project yet, so the gate could never pass: add "
            f"{'a holder' if len(missing) == 1 else 'holders'} with "
            f"`/quorum role add @user {missing[0]}`.", field="roles")
    # Serialize requests in a project, so that two identical requests cannot both open a gate.
    session.execute(select(Project.id).where(Project.id == project.id).with_for_update())
    earlier = _same_milestone(session, project, draft)
    for gate in earlier:
        if gate.status == GateStatus.OPEN:
            raise Conflict(f"{gate.ref} for {describe(gate)} is still open: sign it, or ask "
                           f"for changes on it before requesting a fresh one.")
        if gate.status == GateStatus.PASSED:
            raise Conflict(f"{gate.ref} for {describe(gate)} already passed on "
                           f"{gate.passed_at:%Y-%m-%d}.")
    gate = Gate(
        team_id=project.team_id,
        number=number_at_commit(session, Gate, project.team_id),
        project=project,
        milestone=draft.milestone,
        model=draft.model,
        version=draft.version,
        required_roles=required,
        criteria=list(draft.criteria or []),
        status=GateStatus.OPEN,
        due_date=due,
        expires_at=_end_of_day(due, zone) if due else None,
        supersedes=earlier[-1] if earlier else None,
        requested_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(gate)
    pending(session, gate)
    session.flush()
    session.refresh(gate, ["signoffs"])
    record_event(session, actor=actor, action="gate.requested", entity=gate,
                 project_id=project.id, after=_snapshot(gate))
    outbox.post_message(session, project.team_id, project.channel_id, render_card(gate),
                        key=card_key(gate))
    for old in earlier:  # only changes-requested gates are left here
        before = _snapshot(old)
        old.status = GateStatus.SUPERSEDED
        session.flush()
        session.refresh(old, ["superseded_by"])
        record_event(session, actor=actor, action="gate.superseded", entity=old,
                     project_id=project.id, before=before, after=_snapshot(old))
        _refresh_card(session, old)
        _in_thread(session, old, "gate/superseded", new=gate)
    home.queue_home_refresh(session, project.team_id, waiting_signers(session, gate))
    only_requester = [] if project.allow_self_approval else [
        role for role in required if holders.get(role) == [actor]]
    settle(session)  # last: the workspace's counter row is held from here to the commit
    return Requested(gate, earlier, only_requester)


# ---------------------------------------------------------------------------- signing


def signable_roles(session: Session, gate: Gate, actor: str, decision: str) -> list[str]:
    """The required roles `actor` may sign for now, in the gate's order; the reason otherwise."""
    if gate.status == GateStatus.PASSED:
        raise Conflict(f"{gate.ref} already passed on {gate.passed_at:%Y-%m-%d}; there is "
                       f"nothing left to sign.")
    if gate.status == GateStatus.EXPIRED:
        due = gate.due_date.isoformat() if gate.due_date else "its due date"
        raise Conflict(f"{gate.ref} expired on {due} without every sign-off; request a fresh "
                       f"gate with `/gate request {gate.milestone}`.")
    if gate.status == GateStatus.SUPERSEDED:
        newer = f" by {gate.superseded_by.ref}" if gate.superseded_by else ""
        raise Conflict(f"{gate.ref} was superseded{newer}; sign the new gate instead.")
    if gate.status == GateStatus.CHANGES_REQUESTED:
        raise Conflict(f"Changes were requested on {gate.ref}, so it can no longer be signed; "
                       f"the requester will ask for a fresh gate once they are made.")
    held = role_service.roles_of(session, gate.project, actor)
    mine = [role for role in gate.required_roles if role in held]
    if not mine:
        wanted = ", ".join(f"`{role}`" for role in gate.required_roles)
        raise Forbidden(f"Only holders of {wanted} can sign {gate.ref}, and you hold none of "
                        f"these roles in this project.")
    signed = {signoff.role: signoff for signoff in gate.signoffs}
    waiting = [role for role in mine if role not in signed]
    if not waiting:
        done = signed[mine[0]]
        who = "You" if done.user_id == actor else "Someone"
        raise Conflict(f"{who} already approved {gate.ref} as `{done.role}` on "
                       f"{done.at:%Y-%m-%d %H:%M} UTC; each role signs once.")
    if (decision == SignoffDecision.APPROVE and actor == gate.requested_by
            and not gate.project.allow_self_approval):
        raise Forbidden(f"You requested {gate.ref}, so you cannot approve it yourself; another "
                        f"holder of {', '.join(f'`{r}`' for r in waiting)} must. (An admin can "
                        f"allow this with `/quorum settings self-approval on`.)")
    return waiting


@dataclass
class Signed:
    gate: Gate
    signoff: GateSignoff
    passed: bool


def sign(session: Session, gate_id: int, team_id: str, actor: str, decision: str, role: str,
         reason: str | None = None, now: datetime | None = None) -> Signed:
    """Sign the gate for one role: approve it, or request changes with a reason."""
    now = now or utcnow()
    if decision not in (SignoffDecision.APPROVE, SignoffDecision.CHANGES):
        raise InvalidInput(f"`{decision}` is not a sign-off: approve or changes.")
    reason = (reason or "").strip() or None
    if decision == SignoffDecision.CHANGES:
        if not reason:
            raise InvalidInput("Say what has to change: the reason is required.", field="reason")
        if len(reason) > REASON_LIMIT:
            raise InvalidInput(f"The reason is {len(reason)} characters long; keep it within "
                               f"{REASON_LIMIT}.", field="reason")
    gate = _lock(session, gate_id)
    if gate is None or gate.team_id != team_id:
        raise NotFound("That gate no longer exists.")
    waiting = signable_roles(session, gate, actor, decision)
    if role not in waiting:
        if role in gate.required_roles and role in {s.role for s in gate.signoffs}:
            raise Conflict(f"`{role}` already signed {gate.ref}; each role signs once.")
        raise Forbidden(f"You cannot sign {gate.ref} as `{role}`; you can sign as "
                        f"{', '.join(f'`{r}`' for r in waiting)}.")
    before = _snapshot(gate)
    signoff = GateSignoff(gate_id=gate.id, role=role, user_id=actor, decision=decision,
                          reason=reason, at=now)
    try:
        with session.begin_nested():  # the unique (gate, role) is the last line of defence
            session.add(signoff)
    except IntegrityError:
        raise Conflict(f"`{role}` already signed {gate.ref}; each role signs once.") from None
    session.refresh(gate, ["signoffs"])
    approved = {s.role for s in gate.signoffs if s.decision == SignoffDecision.APPROVE}
    passed = decision == SignoffDecision.APPROVE and set(gate.required_roles) <= approved
    if decision == SignoffDecision.CHANGES:
        gate.status = GateStatus.CHANGES_REQUESTED
    elif passed:
        gate.status = GateStatus.PASSED
        gate.passed_at = now
    gate.updated_at = now
    session.flush()
    action = "gate.approved" if decision == SignoffDecision.APPROVE else "gate.changes_requested"
    record_event(session, actor=actor, action=action, entity=gate, project_id=gate.project_id,
                 before=before, after=_snapshot(gate))
    if passed:
        record_event(session, actor=actor, action="gate.passed", entity=gate,
                     project_id=gate.project_id, before=before, after=_snapshot(gate))
    _refresh_card(session, gate)
    if decision == SignoffDecision.CHANGES:
        _in_thread(session, gate, "gate/changes", signoff=signoff)
    elif passed:
        announcement = renderer.message("gate/passed", g=gate, signers=signers(gate))
        outbox.post_message(session, gate.team_id, gate.project.channel_id, announcement,
                            thread_key=card_key(gate))
        outbox.post_message(session, gate.team_id, gate.project.channel_id, announcement)
    home.queue_home_refresh(session, gate.team_id, [actor, *role_holders(session, gate)])
    return Signed(gate, signoff, passed)


# ---------------------------------------------------------------------------- the clock


def waiting_signers(session: Session, gate: Gate) -> dict[str, list[str]]:
    """Who can still sign the gate, and for which roles (the requester only when allowed)."""
    signed = {signoff.role for signoff in gate.signoffs}
    holders = role_service.holders(session, gate.project)
    people: dict[str, list[str]] = {}
    for role in gate.required_roles:
        if role in signed:
            continue
        for user_id in holders.get(role, []):
            if user_id == gate.requested_by and not gate.project.allow_self_approval:
                continue
            people.setdefault(user_id, []).append(role)
    return people


def role_holders(session: Session, gate: Gate) -> set[str]:
    """Everyone holding one of the gate's required roles: whose Home lists it while it is open."""
    holders = role_service.holders(session, gate.project)
    return {user for role in gate.required_roles for user in holders.get(role, [])}


@sweep("gate_reminders")
def remind_waiting_signers(session: Session, now: datetime) -> None:
    """DM the holders of roles that have not signed, once the project's delay has passed and
    then once a day, until the gate passes, changes are requested or it expires."""
    gates = session.scalars(
        select(Gate).where(Gate.status == GateStatus.OPEN,
                           or_(Gate.expires_at.is_(None), Gate.expires_at > now))
        .order_by(Gate.id)
    ).all()
    due: dict[str, Gate] = {}
    for gate in gates:
        first = gate.created_at + timedelta(hours=gate.project.gate_reminder_hours)
        if now < first:
            continue
        due[f"gate:{gate.id}:reminder:{(now - first) // timedelta(days=1)}"] = gate
    # The days already handled, read in a few queries rather than an insert per open gate per
    # tick: with thousands of open gates those inserts held SQLite's writer lock for seconds.
    keys = list(due)
    done = {key for start in range(0, len(keys), CLAIM_LOOKUP_CHUNK)
            for key in session.scalars(select(JobClaim.key).where(
                JobClaim.key.in_(keys[start:start + CLAIM_LOOKUP_CHUNK])))}
    for key, gate in due.items():
        if key in done or not claim_once(session, key):
            continue
        for user_id, waiting in waiting_signers(session, gate).items():
            message = renderer.message("gate/reminder", g=gate, roles=waiting,
                                       states=role_states(gate))
            outbox.post_message(session, gate.team_id, user_id, message)


@sweep("gate_expiry")
def expire_overdue_gates(session: Session, now: datetime) -> None:
    """Expire open gates past their due date; the card and the thread say so."""
    due = session.scalars(
        select(Gate.id).where(Gate.status == GateStatus.OPEN, Gate.expires_at <= now)
        .order_by(Gate.id)
    ).all()
    for gate_id in due:
        if not claim_once(session, f"gate:{gate_id}:expired"):
            continue
        gate = _lock(session, gate_id)
        if gate is None or gate.status != GateStatus.OPEN:
            continue
        before = _snapshot(gate)
        gate.status = GateStatus.EXPIRED
        gate.updated_at = now
        session.flush()
        record_event(session, actor="quorum", action="gate.expired", entity=gate,
                     project_id=gate.project_id, before=before, after=_snapshot(gate))
        _refresh_card(session, gate)
        _in_thread(session, gate, "gate/expired",
                   waiting=[s.role for s in role_states(gate) if s.state == "waiting"])
        home.queue_home_refresh(session, gate.team_id, role_holders(session, gate))


# ---------------------------------------------------------------------------- the CI check


@dataclass
class GateCheck:
    """Whether a model version passed its gate, and the gate that says so (or the latest)."""

    model: str
    version: str
    milestone: str | None
    gate: Gate | None

    @property
    def passed(self) -> bool:
        return self.gate is not None and self.gate.status == GateStatus.PASSED

    def as_record(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "milestone": self.milestone,
            "passed": self.passed,
            "gate": as_record(self.gate) if self.gate else None,
            "signers": [signoff_record(s) for s in signers(self.gate)] if self.gate else [],
        }


def check(session: Session, model: str, version: str, milestone: str | None = None) -> GateCheck:
    """The CI question: did `model` `version` pass (its `milestone`) gate?

    A passed gate answers yes (the latest one); otherwise the latest matching gate explains why
    not. Used by `quorum gate check` and `GET /api/gates`.
    """
    model = (model or "").strip()
    normalized = normalize_version(version)
    if not model or normalized is None:
        raise InvalidInput("Give both the model and the version.", field="model")
    wanted = (milestone or "").strip().lower() or None
    query = select(Gate).where(Gate.model == model, Gate.version == normalized)
    if wanted:
        query = query.where(Gate.milestone == wanted)
    passed_first = case((Gate.status == GateStatus.PASSED, 0), else_=1)
    gate = session.scalars(query.order_by(passed_first, Gate.id.desc()).limit(1)).first()
    return GateCheck(model, normalized, wanted, gate)
