"""`/quorum trace <model> v<version>`: what one project knows about one model version.

The records come from the caller's project and from the project the model is bound to
(`/quorum model add`) when its records may be read from the caller's channel, never from
another. Hypotheses and decisions belong to a version by
their `model` and `version` fields (set in their forms or by `… for <model> v<version>`);
hypotheses cited by those decisions come along.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from bot.errors import InvalidInput
from bot.models import Decision, Gate, Hypothesis, Incident, Project, Promotion, utcnow
from bot.services import access
from bot.services.model_bindings import binding_for, check_model_name
from bot.services.model_versions import VERSION_PATTERN, normalize_version

TRACE_LIMIT = 10  # records of each kind


@dataclass
class Trace:
    """Everything the projects in `projects` know about one model version."""

    model: str
    version: str
    projects: list[Project]
    hypotheses: list[Hypothesis]
    decisions: list[Decision]
    gates: list[Gate]
    promotions: list[Promotion]
    incidents: list[Incident]
    bound: Project | None = None  # the project the model is bound to, if any


def trace(session: Session, project: Project, model: str, version: str) -> Trace:
    """The trace of `model` `version` as seen from `project` (`v3` and `3` alike)."""
    model = check_model_name(model)
    normalized = normalize_version(version)
    if normalized is None or not VERSION_PATTERN.match(normalized):
        raise InvalidInput(f"`{(version or '')[:50]}` is not a version: e.g. `v3`.",
                           field="version")
    binding = binding_for(session, project.team_id, model)
    bound = binding.project if binding is not None else None
    # The bound project's records come along only where they may be read (docs/access.md): a
    # private channel's records never leave it.
    shown = bound is not None and bound.id != project.id \
        and access.can_read_from(bound, project.channel_id, utcnow())
    projects = [project] + ([bound] if shown and bound is not None else [])
    return trace_in(session, projects, model, normalized, bound)


def trace_in(session: Session, projects: list[Project], model: str, version: str,
             bound: Project | None = None) -> Trace:
    """What `projects` (of one workspace) know about `model` `version` (already checked and
    normalized): `/quorum trace` and the portal's version page, each choosing the projects its
    reader may see."""
    normalized = version
    ids = [p.id for p in projects]
    team_id = projects[0].team_id if projects else ""

    def about(register: Any) -> list[Any]:
        return [register.team_id == team_id, register.project_id.in_(ids),
                register.model == model]

    decisions = list(reversed(session.scalars(
        select(Decision).options(selectinload(Decision.hypotheses))
        .where(*about(Decision), Decision.version == normalized)
        .order_by(Decision.number.desc()).limit(TRACE_LIMIT)).unique().all()))
    hypotheses = {h.id: h for h in session.scalars(
        select(Hypothesis).where(*about(Hypothesis), Hypothesis.version == normalized)
        .order_by(Hypothesis.number.desc()).limit(TRACE_LIMIT))}
    for decision in decisions:  # what the decisions were based on, from these projects only
        hypotheses.update({h.id: h for h in decision.hypotheses if h.project_id in ids})
    gates = session.scalars(
        select(Gate).where(*about(Gate), Gate.version == normalized)
        .order_by(Gate.number).limit(TRACE_LIMIT)).all()
    promotions = session.scalars(
        select(Promotion).where(*about(Promotion), Promotion.version == normalized)
        .order_by(Promotion.number).limit(TRACE_LIMIT)).unique().all()
    incidents = session.scalars(
        select(Incident).where(*about(Incident),
                               Incident.model_version.in_((normalized, f"v{normalized}")))
        .order_by(Incident.number).limit(TRACE_LIMIT)).unique().all()
    return Trace(model, normalized, projects,
                 sorted(hypotheses.values(), key=lambda h: h.number)[:TRACE_LIMIT],
                 decisions, list(gates), list(promotions), list(incidents), bound)
