"""The registers as SQLAlchemy 2 typed models, plus the runtime tables (outbox, Slack messages).

One module per concept; everything is re-exported here, so `from bot.models import Decision` works.
"""

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
from bot.models.decisions import (
    Decision,
    DecisionStatus,
)
from bot.models.directory import SlackName
from bot.models.gates import (
    Gate,
    GateSignoff,
    GateStatus,
    PromotionState,
    SignoffDecision,
)
from bot.models.github import (
    DeploymentState,
    GithubDeployment,
    GithubMapping,
)
from bot.models.hypotheses import (
    Hypothesis,
    HypothesisStatus,
    decision_hypotheses,
)
from bot.models.incidents import (
    FollowUpStatus,
    Incident,
    IncidentEvent,
    IncidentFollowUp,
    IncidentSilence,
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
    RetroVote,
    RitualAway,
    RitualKind,
    RitualOccurrence,
    RitualPrompt,
    RitualSchedule,
    RitualSkip,
    RitualUpdate,
    SlackUserZone,
    StandupMode,
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
    "DeploymentState",
    "FollowUpStatus",
    "Gate",
    "GateSignoff",
    "GateStatus",
    "GithubDeployment",
    "GithubMapping",
    "HomeTab",
    "Hypothesis",
    "HypothesisStatus",
    "Incident",
    "IncidentEvent",
    "IncidentFollowUp",
    "IncidentSilence",
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
    "ProjectOwner",
    "Promotion",
    "PromotionKind",
    "PromotionState",
    "RefCounter",
    "Referenced",
    "RetroItem",
    "RetroVote",
    "Risk",
    "RiskAssessment",
    "RiskStatus",
    "RitualAway",
    "RitualKind",
    "RitualOccurrence",
    "RitualPrompt",
    "RitualSchedule",
    "RitualSkip",
    "RitualUpdate",
    "RoleAssignment",
    "SignoffDecision",
    "SlackMessage",
    "SlackName",
    "SlackUserZone",
    "StandupMode",
    "UTCDateTime",
    "decision_hypotheses",
    "pending_ref",
    "utcnow",
]
