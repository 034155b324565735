"""The CI question: did this model version pass its gates? (`quorum gate check`, `/api/gates`,
the gate record of a promotion, a GitHub deployment's decision.)

Gates belong to the project that owns the model: a model bound to a project
(`/quorum model add`) is judged by that project's gates only. For an unbound model every
project's gates count, and the answer names the project of each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.errors import InvalidInput
from bot.models import Gate, GateStatus, Project
from bot.services.gate_state import (
    RETIRED,
    as_record,
    owning_project,
    signers,
    signoff_record,
    waiting_roles,
)
from bot.services.model_versions import normalize_version


def counted_gates(session: Session, model: str, version: str, milestone: str | None = None,
                  team_id: str | None = None) -> tuple[list[Gate], Project | None]:
    """The gates that decide the version: in the owning project when the model is bound, the
    latest live gate of each milestone (a re-request after an expired gate replaces it); and
    that project."""
    query = select(Gate).where(Gate.model == model, Gate.version == version,
                               Gate.status.not_in(RETIRED))
    if team_id is not None:
        query = query.where(Gate.team_id == team_id)
    if milestone:
        query = query.where(Gate.milestone == milestone)
    found = list(session.scalars(query.order_by(Gate.id)).unique())
    teams = {gate.team_id for gate in found} if team_id is None else {team_id}
    owners = {team: owning_project(session, team, model) for team in teams}
    latest: dict[tuple[int, str], Gate] = {}
    for gate in found:
        owner = owners.get(gate.team_id)
        if owner is not None and gate.project_id != owner.id:
            continue  # a gate outside the owning project never counts
        key = (gate.project_id, gate.milestone)
        # A passed gate stands; otherwise the newest gate of the milestone speaks for it.
        if key not in latest or latest[key].status != GateStatus.PASSED:
            latest[key] = gate
    owner = next((o for o in owners.values() if o is not None), None)
    return sorted(latest.values(), key=lambda g: g.number), owner


def reason_not_passed(gate: Gate) -> str:
    if gate.status == GateStatus.OPEN:
        if gate.ready_at is not None:
            return f"waiting until {gate.ready_at:%Y-%m-%d %H:%M} UTC (wait timer)"
        return "waiting for " + ", ".join(waiting_roles(gate))
    return {GateStatus.CHANGES_REQUESTED: "changes requested",
            GateStatus.EXPIRED: "expired"}.get(GateStatus(gate.status), gate.status)


@dataclass
class GateCheck:
    """Whether a model version passed every gate that counts, and those gates."""

    model: str
    version: str
    milestone: str | None
    gates: list[Gate] = field(default_factory=list)
    owner: Project | None = None

    @property
    def passed(self) -> bool:
        return bool(self.gates) and all(g.status == GateStatus.PASSED for g in self.gates)

    @property
    def failing(self) -> list[Gate]:
        return [g for g in self.gates if g.status != GateStatus.PASSED]

    @property
    def gate(self) -> Gate | None:
        """The gate that decides: the first that has not passed, else the latest."""
        return (self.failing or self.gates[-1:] or [None])[0]

    def as_record(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "milestone": self.milestone,
            "passed": self.passed,
            "owner": {"project": self.owner.name, "channel": self.owner.channel_id}
            if self.owner else None,
            "gates": [{**as_record(g), "approvers": [signoff_record(s) for s in signers(g)],
                       "why_not": None if g.status == GateStatus.PASSED
                       else reason_not_passed(g)} for g in self.gates],
            "gate": as_record(self.gate) if self.gate else None,
            "signers": [signoff_record(s) for s in signers(self.gate)] if self.gate else [],
        }


def check(session: Session, model: str, version: str, milestone: str | None = None,
          team_id: str | None = None) -> GateCheck:
    """Did `model` `version` pass? With `milestone`, that milestone's gate; without, every gate
    of the version that counts (none at all is a no)."""
    model = (model or "").strip()
    normalized = normalize_version(version)
    if not model or normalized is None:
        raise InvalidInput("Give both the model and the version.", field="model")
    wanted = " ".join((milestone or "").split()).lower() or None
    gates, owner = counted_gates(session, model, normalized, wanted, team_id)
    return GateCheck(model, normalized, wanted, gates, owner)
