"""The registers as SQLAlchemy 2 typed models, plus the runtime tables (outbox, Slack messages).

One module per concept; everything is re-exported here, so `from bot.models import Decision` works.
"""

from bot.models.core import (
    AuditEvent,
    Base,
    BigId,
    JSONType,
    Project,
    RefCounter,
    Referenced,
    RoleAssignment,
    UTCDateTime,
    pending_ref,
    utcnow,
)
from bot.models.decisions import (
    Decision,
    DecisionStatus,
)
from bot.models.gates import (
    Gate,
    GateSignoff,
    GateStatus,
    SignoffDecision,
)
from bot.models.hypotheses import (
    Hypothesis,
    HypothesisStatus,
    decision_hypotheses,
)
from bot.models.incidents import (
    Incident,
    IncidentEvent,
    IncidentStatus,
)
from bot.models.promotions import (
    ModelBinding,
    Promotion,
    PromotionKind,
)
from bot.models.risks import (
    Risk,
    RiskAssessment,
    RiskStatus,
)
from bot.models.rituals import (
    OccurrenceStatus,
    RetroItem,
    RitualAway,
    RitualKind,
    RitualOccurrence,
    RitualSchedule,
    RitualSkip,
    RitualUpdate,
)
from bot.models.runtime import (
    HomeTab,
    JobClaim,
    OutboxMessage,
    OutboxStatus,
    PostPace,
    ProcessedRequest,
    SlackMessage,
)

__all__ = [
    "AuditEvent",
    "Base",
    "BigId",
    "Decision",
    "DecisionStatus",
    "Gate",
    "GateSignoff",
    "GateStatus",
    "HomeTab",
    "Hypothesis",
    "HypothesisStatus",
    "Incident",
    "IncidentEvent",
    "IncidentStatus",
    "JSONType",
    "JobClaim",
    "ModelBinding",
    "OccurrenceStatus",
    "OutboxMessage",
    "OutboxStatus",
    "PostPace",
    "ProcessedRequest",
    "Project",
    "Promotion",
    "PromotionKind",
    "RefCounter",
    "Referenced",
    "RetroItem",
    "Risk",
    "RiskAssessment",
    "RiskStatus",
    "RitualAway",
    "RitualKind",
    "RitualOccurrence",
    "RitualSchedule",
    "RitualSkip",
    "RitualUpdate",
    "RoleAssignment",
    "SignoffDecision",
    "SlackMessage",
    "UTCDateTime",
    "decision_hypotheses",
    "pending_ref",
    "utcnow",
]
