"""The registers as SQLAlchemy 2 typed models, plus the runtime tables (outbox, Slack messages).

One module per concept, all reachable from here: `from bot.models import Decision` works. A
register's module is imported the first time one of its names is asked for, so a command pays
only for the tables it touches (`quorum gate check` maps gates, not rituals or incidents).
Whatever needs the whole schema at once (Alembic, the schema tests) asks `schema()` for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bot.models.core import (
    AuditEvent,
    Base,
    BigId,
    JSONType,
    Project,
    ProjectOwner,
    RefCounter,
    Referenced,
    RoleAssignment,
    UTCDateTime,
    pending_ref,
    utcnow,
)

if TYPE_CHECKING:
    from sqlalchemy import MetaData

# Each register module → the names it gives `bot.models`.
REGISTERS: dict[str, tuple[str, ...]] = {
    "decisions": ("Decision", "DecisionStatus"),
    "directory": ("SlackName",),
    "gates": ("Gate", "GateSignoff", "GateStatus", "PromotionState", "SignoffDecision"),
    "github": ("DeploymentState", "GithubDeployment", "GithubMapping"),
    "hypotheses": ("Hypothesis", "HypothesisStatus", "decision_hypotheses"),
    "incidents": ("FollowUpStatus", "Incident", "IncidentEvent", "IncidentFollowUp",
                  "IncidentSilence", "IncidentStatus"),
    "promotions": ("ModelBinding", "Promotion", "PromotionKind"),
    "risks": ("Risk", "RiskAssessment", "RiskStatus"),
    "rituals": ("OccurrenceStatus", "RetroItem", "RetroVote", "RitualAway", "RitualKind",
                "RitualOccurrence", "RitualPrompt", "RitualSchedule", "RitualSkip",
                "RitualUpdate", "SlackUserZone", "StandupMode"),
    "runtime": ("HomeTab", "JobClaim", "OutboxMessage", "OutboxStatus", "PostPace",
                "ProcessedRequest", "SlackMessage"),
}
_MODULE_OF = {name: module for module, names in REGISTERS.items() for name in names}

__all__ = [
    "REGISTERS",
    "AuditEvent",
    "Base",
    "BigId",
    "JSONType",
    "Project",
    "ProjectOwner",
    "RefCounter",
    "Referenced",
    "RoleAssignment",
    "UTCDateTime",
    "pending_ref",
    "schema",
    "utcnow",
]
__all__ += sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """A register's name, importing its module the first time (PEP 562)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'bot.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"bot.models.{module}"), name)
    globals()[name] = value
    return value


def schema() -> MetaData:
    """Every table Quorum has: the metadata once each register's module is imported."""
    for module in REGISTERS:
        importlib.import_module(f"bot.models.{module}")
    return Base.metadata
