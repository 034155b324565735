"""A gate's state as plain values: which statuses count, the approvals each role still owes,
its signers, its record, and the project whose gates count for a model.

Functions of a loaded gate (and one lookup): no Slack, outbox or renderer, so that what only
reads gates (`quorum gate check`, the portal, exports) loads no more than it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.models import Gate, GateSignoff, GateStatus, ModelBinding, Project, SignoffDecision

ACTIVE = (GateStatus.OPEN, GateStatus.CHANGES_REQUESTED)
# Gates that no longer count for anything: replaced by a newer one, or withdrawn.
RETIRED = (GateStatus.SUPERSEDED, GateStatus.WITHDRAWN)


def needed(gate: Gate, role: str) -> int:
    """How many approvals `role` must give on the gate."""
    return int((gate.role_counts or {}).get(role, 1))


def format_wait(seconds: int | None) -> str:
    if not seconds:
        return ""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return "".join(f"{value}{unit}" for value, unit in ((days, "d"), (hours, "h"),
                                                         (minutes, "m")) if value)


@dataclass(frozen=True)
class RoleState:
    """One required role on the card: waiting, approved, or changes requested."""

    role: str
    state: str  # "waiting", "approve" or "changes"
    signoff: GateSignoff | None = None


def role_states(gate: Gate) -> list[RoleState]:
    """One line per approval the gate needs (`ds:2` gives two), then any request for changes
    made after every approval was in (during a wait)."""
    states: list[RoleState] = []
    changes = [s for s in gate.signoffs if s.decision == SignoffDecision.CHANGES]
    for role in gate.required_roles:
        approvals = sorted((s for s in gate.signoffs
                            if s.role == role and s.decision == SignoffDecision.APPROVE),
                           key=lambda s: s.slot or 0)
        for index in range(needed(gate, role)):
            if index < len(approvals):
                states.append(RoleState(role, SignoffDecision.APPROVE, approvals[index]))
                continue
            objection = next((s for s in changes if s.role == role), None)
            if objection is not None:
                changes.remove(objection)
                states.append(RoleState(role, SignoffDecision.CHANGES, objection))
            else:
                states.append(RoleState(role, "waiting"))
    states += [RoleState(s.role, SignoffDecision.CHANGES, s) for s in changes]
    return states


def waiting_roles(gate: Gate) -> list[str]:
    """The roles still short of approvals, each once."""
    return list(dict.fromkeys(s.role for s in role_states(gate) if s.state == "waiting"))


def approvals_complete(gate: Gate) -> bool:
    approved: dict[str, int] = {}
    for signoff in gate.signoffs:
        if signoff.decision == SignoffDecision.APPROVE:
            approved[signoff.role] = approved.get(signoff.role, 0) + 1
    return all(approved.get(role, 0) >= needed(gate, role) for role in gate.required_roles)


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
        "role_counts": {role: needed(gate, role) for role in gate.required_roles or []},
        "wait": format_wait(gate.wait_seconds) or None,
        "ready_at": gate.ready_at.isoformat() if gate.ready_at else None,
        "promote_to": gate.promote_alias,
        "promotion": gate.promotion_state,
        "promoted_at": gate.promoted_at.isoformat() if gate.promoted_at else None,
        "withdrawn_by": gate.withdrawn_by,
        "withdrawn_reason": gate.withdrawn_reason,
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


def owning_project(session: Session, team_id: str, model: str | None) -> Project | None:
    """The project a model is bound to (`/quorum model add`): the only one its gates count in."""
    if not model:
        return None
    binding = session.scalars(
        select(ModelBinding).where(ModelBinding.team_id == team_id, ModelBinding.model == model)
    ).unique().one_or_none()
    return binding.project if binding is not None else None
