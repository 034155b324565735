"""The gates' clock: the daily digest of sign-offs waiting for each person, gates passing once
their wait is over, and open gates expiring after their due date.

Each is a `@sweep`, registered when this module is imported; `bot.services.gates` imports it at
its end, so the gates' sweeps run in the order they always did (before `gate_promotions`: a gate
that passes after its wait has its alias moved in the same tick).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bot import outbox
from bot.models import Gate, GateStatus, JobClaim
from bot.render import renderer
from bot.scheduler import claim_once, sweep
from bot.services import access, home
from bot.services import roles as role_service
from bot.services.audit import record_event
from bot.services.gate_state import waiting_roles
from bot.services.gates import (
    gate_snapshot,
    lock_gate,
    pass_gate,
    post_in_thread,
    refresh_card,
    role_holders,
    tell_what_waits,
    waiting_signers,
)

# Claim keys looked up per query by the reminder sweep (well within any bind-parameter limit).
CLAIM_LOOKUP_CHUNK = 500
DIGEST_SHOWN = 20


@sweep("gate_digests")
def send_signoff_digests(session: Session, now: datetime) -> None:
    """One DM a day per person listing every sign-off waiting for them (with buttons), once a
    gate has waited the project's reminder delay; until it passes, fails or is withdrawn."""
    gates = session.scalars(
        select(Gate).where(Gate.status == GateStatus.OPEN, Gate.ready_at.is_(None),
                           or_(Gate.expires_at.is_(None), Gate.expires_at > now))
        .order_by(Gate.due_date.is_(None), Gate.due_date, Gate.id)
    ).all()
    holders_of: dict[int, dict[str, list[str]]] = {}
    waiting: dict[tuple[str, str], list[tuple[Gate, list[str]]]] = {}
    for gate in gates:
        if now < gate.created_at + timedelta(hours=gate.project.gate_reminder_hours):
            continue
        if gate.project_id not in holders_of:
            holders_of[gate.project_id] = role_service.holders(session, gate.project)
        for user_id, roles in waiting_signers(session, gate, holders_of[gate.project_id]).items():
            if not access.visible_to_user(gate.project, user_id):
                continue  # a private channel's gate reaches only its members (docs/access.md)
            waiting.setdefault((gate.team_id, user_id), []).append((gate, roles))
    day = now.date().isoformat()
    due = {f"gate-digest:{team}:{user}:{day}": (team, user) for team, user in waiting}
    # The people already sent today's digest, read in a few queries rather than an insert per
    # person per tick.
    keys = list(due)
    done = {key for start in range(0, len(keys), CLAIM_LOOKUP_CHUNK)
            for key in session.scalars(select(JobClaim.key).where(
                JobClaim.key.in_(keys[start:start + CLAIM_LOOKUP_CHUNK])))}
    for key, (team, user) in due.items():
        if key in done or not claim_once(session, key):
            continue
        items = waiting[(team, user)]
        message = renderer.message("gate/digest", items=items[:DIGEST_SHOWN],
                                   more=len(items) - DIGEST_SHOWN)
        outbox.post_message(session, team, user, message)


@sweep("gate_waits")
def pass_gates_after_their_wait(session: Session, now: datetime) -> None:
    """Pass the gates whose wait after the last approval is over (a request for changes in
    the window cleared `ready_at`)."""
    ready = session.scalars(
        select(Gate.id).where(Gate.status == GateStatus.OPEN, Gate.ready_at <= now)
        .order_by(Gate.id)
    ).all()
    for gate_id in ready:
        gate = lock_gate(session, gate_id)
        if gate is None or gate.status != GateStatus.OPEN or gate.ready_at is None \
                or gate.ready_at > now:
            continue
        pass_gate(session, gate, "quorum", now)
        home.queue_home_refresh(session, gate.team_id, role_holders(session, gate))


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
        gate = lock_gate(session, gate_id)
        if gate is None or gate.status != GateStatus.OPEN:
            continue
        before = gate_snapshot(gate)
        gate.status = GateStatus.EXPIRED
        gate.ready_at = None
        gate.updated_at = now
        session.flush()
        record_event(session, actor="quorum", action="gate.expired", entity=gate,
                     project_id=gate.project_id, before=before, after=gate_snapshot(gate))
        refresh_card(session, gate)
        post_in_thread(session, gate, "gate/expired", waiting=waiting_roles(gate))
        tell_what_waits(session, gate)
        home.queue_home_refresh(session, gate.team_id, role_holders(session, gate))
