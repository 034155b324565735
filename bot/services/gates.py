"""Milestone gates' actions: request, sign by role, pass, withdraw; the gate's card, and who is
asked to sign.

A gate passes when every required role has approved. Signing locks the gate's row
(`SELECT … FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` serializes writers anyway), so
two people clicking at the same moment never lose each other's approval, and the unique
`(gate_id, role)` sign-off makes a double click sign once.

What a request says is checked by `gate_drafts`; the clock (digests, waits, expiry) is
`gate_sweeps`; what only reads a gate uses `gate_state`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import outbox
from bot.errors import Conflict, Forbidden, InvalidInput, NotFound
from bot.models import (
    Gate,
    GateSignoff,
    GateStatus,
    Project,
    PromotionState,
    SignoffDecision,
    utcnow,
)
from bot.render import renderer
from bot.services import home
from bot.services import roles as role_service
from bot.services.audit import record_event, snapshot
from bot.services.gate_drafts import GateDraft
from bot.services.gate_state import (
    ACTIVE,
    approvals_complete,
    as_record,
    needed,
    owning_project,
    role_states,
    signers,
    waiting_roles,
)
from bot.services.records import find_by_id, find_by_ref
from bot.services.refs import number_at_commit, pending, settle

REASON_LIMIT = 2000
LIST_LIMIT = 20


def _zone(project: Project) -> ZoneInfo:
    return ZoneInfo(project.timezone or "UTC")


def _end_of_day(day: date, zone: ZoneInfo) -> datetime:
    """The first instant after `day` in `zone`, in UTC: when a gate due that day expires."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)


def gate_snapshot(gate: Gate) -> dict[str, Any]:
    return snapshot(as_record(gate))


def card_key(gate: Gate) -> str:
    return f"gate:{gate.id}:card"


def render_card(gate: Gate) -> dict[str, Any]:
    return renderer.message("gate/card", g=gate, states=role_states(gate))


def refresh_card(session: Session, gate: Gate) -> None:
    outbox.update_message(session, gate.team_id, card_key(gate), render_card(gate))


def post_in_thread(session: Session, gate: Gate, template: str, **context: Any) -> None:
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


def lock_gate(session: Session, gate_id: int) -> Gate | None:
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
                 now: datetime | None = None, *, mlflow_configured: bool = False) -> Requested:
    """Open a gate, audit it, post its card; a changes-requested gate for the same milestone
    and version is superseded by it."""
    now = now or utcnow()
    draft = draft.validated()
    if draft.promote_alias and not mlflow_configured:
        raise InvalidInput("Quorum cannot move MLflow aliases here: MLFLOW_TRACKING_URI is not "
                           "set. Leave out `promote to …`, or ask whoever runs Quorum to set it.",
                           field="promote")
    owner = owning_project(session, project.team_id, draft.model)
    if owner is not None and owner.id != project.id:
        raise Forbidden(f"`{draft.model}` is bound to <#{owner.channel_id}>, so its gates are "
                        f"requested and signed there; a gate here would not count.",
                        mentions=[owner.channel_id])
    zone = _zone(project)
    due = draft.due_date if isinstance(draft.due_date, date) else None
    if due is not None and due < now.astimezone(zone).date():
        raise InvalidInput(f"The due date {due.isoformat()} is in the past; pick today or a "
                           f"later day.", field="due_date")
    holders = role_service.holders(session, project)
    counts = draft.role_counts
    required = list(counts)
    missing = [role for role in required if not holders.get(role)]
    if missing:
        names = ", ".join(f"`{role}`" for role in missing)
        raise InvalidInput(
            f"Nobody holds {names} in this project yet, so the gate could never pass: add "
            f"{'a holder' if len(missing) == 1 else 'holders'} with "
            f"`/quorum role add @user {missing[0]}`.", field="roles")
    short = [role for role in required if len(holders[role]) < counts[role]]
    if short:
        role = short[0]
        raise InvalidInput(
            f"`{role}:{counts[role]}` needs {counts[role]} different people, and only "
            f"{len(holders[role])} hold{'s' if len(holders[role]) == 1 else ''} `{role}` here: "
            f"add holders with `/quorum role add @user {role}`.", field="roles")
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
        role_counts={role: count for role, count in counts.items() if count > 1} or None,
        wait_seconds=draft.wait_seconds,
        promote_alias=draft.promote_alias,
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
                 project_id=project.id, after=gate_snapshot(gate))
    outbox.post_message(session, project.team_id, project.channel_id, render_card(gate),
                        key=card_key(gate))
    for old in earlier:  # only changes-requested gates are left here
        before = gate_snapshot(old)
        old.status = GateStatus.SUPERSEDED
        session.flush()
        session.refresh(old, ["superseded_by"])
        record_event(session, actor=actor, action="gate.superseded", entity=old,
                     project_id=project.id, before=before, after=gate_snapshot(old))
        refresh_card(session, old)
        post_in_thread(session, old, "gate/superseded", new=gate)
    home.queue_home_refresh(session, project.team_id, waiting_signers(session, gate))
    only_requester = [] if project.allow_self_approval else [
        role for role in required
        if actor in holders[role] and len(holders[role]) - 1 < counts[role]]
    settle(session)  # last: the workspace's counter row is held from here to the commit
    return Requested(gate, earlier, only_requester)


# ---------------------------------------------------------------------------- signing


def signable_roles(session: Session, gate: Gate, actor: str, decision: str) -> list[str]:
    """The required roles `actor` may sign for now, in the gate's order; the reason otherwise.

    One person signs one role of a gate, once: nobody passes a gate alone (the requester signs
    only where an admin turned self-approval on)."""
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
    if gate.status == GateStatus.WITHDRAWN:
        raise Conflict(f"{gate.ref} was withdrawn by the requester; there is nothing to sign.")
    if gate.status == GateStatus.CHANGES_REQUESTED:
        raise Conflict(f"Changes were requested on {gate.ref}, so it can no longer be signed; "
                       f"the requester will ask for a fresh gate once they are made.")
    held = role_service.roles_of(session, gate.project, actor)
    mine = [role for role in gate.required_roles if role in held]
    if not mine:
        wanted = ", ".join(f"`{role}`" for role in gate.required_roles)
        raise Forbidden(f"Only holders of {wanted} can sign {gate.ref}, and you hold none of "
                        f"these roles in this project.")
    own = next((s for s in gate.signoffs if s.user_id == actor), None)
    if own is not None:
        did = "approved" if own.decision == SignoffDecision.APPROVE else "requested changes on"
        raise Conflict(f"You already {did} {gate.ref} as `{own.role}` on "
                       f"{own.at:%Y-%m-%d %H:%M} UTC; one person signs one role of a gate, so "
                       f"another holder must sign the rest.")
    if decision == SignoffDecision.CHANGES:
        return mine  # anyone who may sign may object, also while a wait runs
    if (actor == gate.requested_by and not gate.project.allow_self_approval):
        raise Forbidden(f"You requested {gate.ref}, so you cannot approve it yourself; another "
                        f"holder of {', '.join(f'`{r}`' for r in mine)} must. (An admin can "
                        f"allow this with `/quorum settings self-approval on`.)")
    open_roles = set(waiting_roles(gate))
    waiting = [role for role in mine if role in open_roles]
    if not waiting:
        if gate.ready_at is not None:
            raise Conflict(f"{gate.ref} has every approval it needs; it passes at "
                           f"{gate.ready_at:%Y-%m-%d %H:%M} UTC unless someone requests "
                           f"changes.")
        raise Conflict(f"`{mine[0]}` already has every approval {gate.ref} asks of it; "
                       f"each role signs {needed(gate, mine[0])} time(s).")
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
    gate = lock_gate(session, gate_id)
    if gate is None or gate.team_id != team_id:
        raise NotFound("That gate no longer exists.")
    waiting = signable_roles(session, gate, actor, decision)
    if role not in waiting:
        raise Forbidden(f"You cannot sign {gate.ref} as `{role}`; you can sign as "
                        f"{', '.join(f'`{r}`' for r in waiting)}.")
    before = gate_snapshot(gate)
    slot = None
    if decision == SignoffDecision.APPROVE:
        slot = 1 + sum(1 for s in gate.signoffs
                       if s.role == role and s.decision == SignoffDecision.APPROVE)
    signoff = GateSignoff(gate_id=gate.id, role=role, user_id=actor, decision=decision,
                          reason=reason, at=now, slot=slot)
    try:
        with session.begin_nested():  # the unique constraints are the last line of defence
            session.add(signoff)
    except IntegrityError:
        raise Conflict(f"Someone signed {gate.ref} as `{role}` at the same moment, or you "
                       f"already did; look at the card.") from None
    session.refresh(gate, ["signoffs"])
    complete = decision == SignoffDecision.APPROVE and approvals_complete(gate)
    passed = complete and not gate.wait_seconds
    if decision == SignoffDecision.CHANGES:
        gate.status = GateStatus.CHANGES_REQUESTED
        gate.ready_at = None
    elif complete and gate.wait_seconds:
        gate.ready_at = now + timedelta(seconds=gate.wait_seconds)
    gate.updated_at = now
    session.flush()
    action = "gate.approved" if decision == SignoffDecision.APPROVE else "gate.changes_requested"
    record_event(session, actor=actor, action=action, entity=gate, project_id=gate.project_id,
                 before=before, after=gate_snapshot(gate))
    if decision == SignoffDecision.CHANGES:
        refresh_card(session, gate)
        post_in_thread(session, gate, "gate/changes", signoff=signoff)
        tell_what_waits(session, gate)
    elif passed:
        pass_gate(session, gate, actor, now, before)
    else:
        refresh_card(session, gate)
        if gate.ready_at is not None:
            post_in_thread(session, gate, "gate/waiting", signers=signers(gate))
    home.queue_home_refresh(session, gate.team_id, [actor, *role_holders(session, gate)])
    return Signed(gate, signoff, passed)


def pass_gate(session: Session, gate: Gate, actor: str, now: datetime,
          before: dict[str, Any] | None = None) -> None:
    """The gate has every approval (and its wait is over): it passes, loudly, and what waits on
    it (an MLflow alias, a GitHub deployment) is set moving."""
    before = before or gate_snapshot(gate)
    gate.status = GateStatus.PASSED
    gate.passed_at = now
    gate.ready_at = None
    if gate.promote_alias:
        gate.promotion_state = PromotionState.PENDING
        gate.promotion_next_at = now
    gate.updated_at = now
    session.flush()
    record_event(session, actor=actor, action="gate.passed", entity=gate,
                 project_id=gate.project_id, before=before, after=gate_snapshot(gate))
    refresh_card(session, gate)
    announcement = renderer.message("gate/passed", g=gate, signers=signers(gate))
    outbox.post_message(session, gate.team_id, gate.project.channel_id, announcement,
                        thread_key=card_key(gate))
    outbox.post_message(session, gate.team_id, gate.project.channel_id, announcement)
    tell_what_waits(session, gate)


def tell_what_waits(session: Session, gate: Gate) -> None:
    """Tell what waits on the gate that it passed or failed (GitHub deployments it holds)."""
    from bot.services import github  # github builds on gates: imported when used

    github.gate_decided(session, gate)


# ---------------------------------------------------------------------------- withdrawing


def withdraw(session: Session, gate_id: int, actor: str, reason: str, is_admin: bool,
             now: datetime | None = None) -> Gate:
    """The requester (or a project admin) takes back an open gate: nobody signs or is reminded
    any more, and the card and its thread say why."""
    now = now or utcnow()
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Say why the gate is withdrawn: `/gate withdraw G-n <reason>`.",
                           field="reason")
    if len(reason) > REASON_LIMIT:
        raise InvalidInput(f"The reason is {len(reason)} characters long; keep it within "
                           f"{REASON_LIMIT}.", field="reason")
    gate = lock_gate(session, gate_id)
    if gate is None:
        raise NotFound("That gate no longer exists.")
    if actor != gate.requested_by and not is_admin:
        raise Forbidden(f"Only {gate.ref}'s requester or a project admin can withdraw it.")
    if gate.status not in ACTIVE:
        raise Conflict(f"{gate.ref} is {gate.status.replace('_', ' ')}; only an open gate (or "
                       f"one with changes requested) can be withdrawn.")
    before = gate_snapshot(gate)
    gate.status = GateStatus.WITHDRAWN
    gate.ready_at = None
    gate.withdrawn_by = actor
    gate.withdrawn_reason = reason
    gate.updated_at = now
    session.flush()
    record_event(session, actor=actor, action="gate.withdrawn", entity=gate,
                 project_id=gate.project_id, before=before, after=gate_snapshot(gate))
    refresh_card(session, gate)
    post_in_thread(session, gate, "gate/withdrawn")
    tell_what_waits(session, gate)
    home.queue_home_refresh(session, gate.team_id, role_holders(session, gate))
    return gate


# ---------------------------------------------------------------------------- who is asked


def waiting_signers(session: Session, gate: Gate,
                    holders: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Who can still approve the gate, and for which roles: holders of a role short of
    approvals who have not signed it yet (the requester only when self-approval is on)."""
    if gate.ready_at is not None:
        return {}
    open_roles = waiting_roles(gate)
    signed = {signoff.user_id for signoff in gate.signoffs}
    holders = role_service.holders(session, gate.project) if holders is None else holders
    people: dict[str, list[str]] = {}
    for role in open_roles:
        for user_id in holders.get(role, []):
            if user_id in signed:
                continue
            if user_id == gate.requested_by and not gate.project.allow_self_approval:
                continue
            people.setdefault(user_id, []).append(role)
    return people


def role_holders(session: Session, gate: Gate) -> set[str]:
    """Everyone holding one of the gate's required roles: whose Home lists it while it is open."""
    holders = role_service.holders(session, gate.project)
    return {user for role in gate.required_roles for user in holders.get(role, [])}


# The clock (digests, waits, expiry) builds on the actions above: importing it here registers its
# sweeps with them, in the order they always ran (before `gate_promotions`).
from bot.services import gate_sweeps as _gate_sweeps  # noqa: E402,F401
