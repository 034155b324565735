"""Hostile sample contexts for the gate and admin templates, for Block Kit validation.

Shaped like `SAMPLES` of the shared template test (`tests/support/template_samples.py`): each
entry returns the contexts to render one `templates/gate/*.json.j2` or `templates/admin/*.json.j2`
with, passed exactly as `bot/services/gates.py`, `gate_sweeps.py`, `handlers/gates.py` and
`handlers/admin.py` pass them. Text is hostile but within each column's length (and the services'
own limits: 20 criteria of 300 characters, reasons of 2,000).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bot.commands import Command, Subcommand
from bot.models import (
    AuditEvent,
    Gate,
    GateSignoff,
    GateStatus,
    GithubDeployment,
    Project,
    SignoffDecision,
)
from bot.services.gate_drafts import CRITERIA_LINES, CRITERION_LIMIT
from bot.services.gate_state import role_states, signers
from bot.services.gates import REASON_LIMIT, Requested, Signed
from bot.services.roles import DEFAULT_ROLES, settings_of
from handlers.admin import all_commands
from handlers.common import write_metadata

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
DUE = date(2026, 12, 1)
HOSTILE = [
    "<!channel> <!here> <@U0123ABCD> <#C0123ABCD> <https://evil.example|click me> &amp; &lt;",
    "x" * 5000,
    "🚀🔥 émoji ünïcode 中文 " * 40,
    'quotes " \\ backslash \n newline \t tab {{ jinja }} {% raw %} *bold* _it_ ~s~ `code`',
    "",
]
STATUSES = [status.value for status in GateStatus]
USERS = ["U0123ABCD", "W0456EFGH"]
# A person's role is one word of at most 24 characters (roles.ROLE_PATTERN); the column holds 32.
MANY = 40


def project(self_approval: bool = False) -> Project:
    return Project(id=1, team_id="T1", channel_id="C0CHURN01", name="<!channel>" + "p" * 300,
                   created_at=NOW, timezone=None, allow_self_approval=self_approval,
                   gate_reminder_hours=24)


def roles(text: str, count: int) -> list[str]:
    """`count` distinct role names made of hostile text (the column holds 32 characters)."""
    return [f"{text[:28]}{n}" for n in range(count)]


def user(text: str, n: int) -> str:
    """A real user id, or hostile text where a user id belongs (never a mention)."""
    return USERS[n % 2] if n % 3 else text[:64]


def signoff(role: str, text: str, n: int, decision: str = SignoffDecision.APPROVE) -> GateSignoff:
    reason = None
    if decision == SignoffDecision.CHANGES:
        reason = text[:REASON_LIMIT] or "\n".join(["<!channel> line"] * 200)
    return GateSignoff(id=n, role=role, user_id=user(text, n), decision=decision, reason=reason,
                       at=NOW + timedelta(minutes=n))


def gate(text: str, number: int = 1, status: str = GateStatus.OPEN,
         required: list[str] | None = None, model: bool = True, due: bool = True,
         criteria: int = CRITERIA_LINES) -> Gate:
    """A gate in `status`, its sign-offs consistent with it (a superseded one has a successor)."""
    required = list(DEFAULT_ROLES) if required is None else required
    g = Gate(id=number, team_id="T1", number=number, project=project(),
             milestone=text[:80], model=text[:100] if model else None,
             version=text[:64] if model else None, required_roles=required,
             criteria=[f"{n}. {text[:CRITERION_LIMIT - 4]}" for n in range(criteria)],
             status=status, due_date=DUE if due else None,
             expires_at=datetime(2026, 12, 2, tzinfo=UTC) if due else None,
             passed_at=NOW if status == GateStatus.PASSED else None,
             requested_by=user(text, 0 if number % 2 else 1), created_at=NOW, updated_at=NOW,
             role_counts={required[0]: 3} if number % 2 and required else None,
             wait_seconds=93784 if number % 3 == 0 else None,
             ready_at=NOW if number % 3 == 0 and status == GateStatus.OPEN else None,
             promote_alias=text[:64] if model and number % 2 == 0 else None,
             promotion_state=["pending", "moved", None][number % 3],
             promotion_attempts=number % 4, promotion_error=text[:2000] or None,
             promoted_at=NOW if number % 3 == 1 else None)
    if status == GateStatus.WITHDRAWN:
        g.withdrawn_by, g.withdrawn_reason = user(text, number), text[:REASON_LIMIT] or "x\ny"
    if status == GateStatus.PASSED:
        g.signoffs = [signoff(role, text, n) for n, role in enumerate(required)]
    elif status in (GateStatus.CHANGES_REQUESTED, GateStatus.SUPERSEDED):
        g.signoffs = [signoff(role, text, n) for n, role in enumerate(required[:-1])] + \
            [signoff(required[-1], text, len(required), SignoffDecision.CHANGES)]
    else:  # open or expired: about half approved, the rest waiting
        g.signoffs = [signoff(role, text, n) for n, role in enumerate(required[1::2])]
    if status == GateStatus.SUPERSEDED:
        g.superseded_by = Gate(id=number + 1000, team_id="T1", number=number + 1000,
                               project=project(), milestone=text[:40], required_roles=required,
                               criteria=[], status=GateStatus.OPEN,
                               requested_by=user(text, 2), created_at=NOW, updated_at=NOW)
    return g


def variants(text: str) -> list[Gate]:
    """Every status, with and without a model or due date, three roles or forty."""
    gates = [gate(text, n, status) for n, status in enumerate(STATUSES, start=1)]
    gates += [gate(text, 10 + n, status, roles(text, MANY), model=False, due=False, criteria=0)
              for n, status in enumerate(STATUSES)]
    gates += [gate(text, 20, GateStatus.OPEN, ["ds"], model=False, criteria=1)]
    successor = gate(text, 30, GateStatus.OPEN)
    successor.supersedes = gate(text, 29, GateStatus.CHANGES_REQUESTED)
    return [*gates, successor]


def _card() -> list[dict[str, Any]]:
    return [{"g": g, "states": role_states(g)} for text in HOSTILE for g in variants(text)]


def _waiting(g: Gate) -> list[str]:
    return [s.role for s in role_states(g) if s.state == "waiting"]


def _changes() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        for g in variants(text):
            if g.status in (GateStatus.CHANGES_REQUESTED, GateStatus.SUPERSEDED):
                contexts.append({"g": g, "signoff": g.signoffs[-1]})
    return contexts


def _changes_modal() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        for g in variants(text):
            waiting = _waiting(g) or list(g.required_roles[:1])
            for mine in (waiting[:1], waiting[:24]):
                metadata = write_metadata(gate_id=g.id, role=mine[0] if len(mine) == 1 else None)
                contexts.append({"g": g, "roles": mine, "metadata": metadata})
    return contexts


def _choose_role() -> list[dict[str, Any]]:
    # Someone holding up to 24 of the roles a gate still waits for: an actions block takes 25
    # elements, and the template does not cap its buttons, so more would fail.
    return [{"g": g, "roles": waiting[:count]}
            for text in HOSTILE for g in variants(text)
            for waiting in [_waiting(g) or list(g.required_roles)] for count in (2, 24)]


def _expired() -> list[dict[str, Any]]:
    return [{"g": g, "waiting": _waiting(g)} for text in HOSTILE for g in variants(text)
            if g.status == GateStatus.EXPIRED] + \
        [{"g": gate(text, status=GateStatus.EXPIRED, due=False), "waiting": []}
         for text in HOSTILE]


def _list() -> list[dict[str, Any]]:
    many = [g for _ in range(8) for text in HOSTILE for g in variants(text)][:200]
    return [{"project": project(), "gates": many, "total": 250},
            {"project": project(), "gates": many[:20], "total": 20},
            {"project": project(), "gates": [], "total": 0},
            {"project": project(), "gates": [gate("launch")], "total": 1}]


def _passed() -> list[dict[str, Any]]:
    return [{"g": g, "signers": signers(g)} for text in HOSTILE for g in variants(text)
            if g.status == GateStatus.PASSED]


def _digest() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        items = [(g, (_waiting(g) or ["ds"])[:count]) for g in variants(text)
                 for count in (1, 40)][:20]
        contexts += [{"items": items, "more": 500}, {"items": items[:1], "more": -19}]
    return contexts


def _waiting_thread() -> list[dict[str, Any]]:
    return [{"g": g, "signers": signers(g) or [signoff("ds", text, 1)]}
            for text in HOSTILE for g in variants(text) if g.ready_at is not None]


def _promoted() -> list[dict[str, Any]]:
    return [{"g": g} for text in HOSTILE for g in variants(text) if g.promote_alias]


def _promotion_failing() -> list[dict[str, Any]]:
    return [{"g": g, "retry": timedelta(seconds=seconds)} for text in HOSTILE
            for g in variants(text) if g.promote_alias for seconds in (30, 1800)]


def _deployment() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        for n, event in enumerate(("held", "approved", "rejected", "failed", text[:20])):
            d = GithubDeployment(
                id=n, delivery_id=text[:64], team_id="T1", repo=text[:140] or "a/b",
                environment=text[:255], installation_id=1, callback_url=text[:500],
                sha=text[:64] or None, ref=text[:255], model=text[:100] if n % 2 else None,
                version=text[:64] if n % 2 else None, gate_ids=[], state=event,
                comment=text[:1000] or None, attempts=n, last_error=text[:2000] or None)
            contexts.append({"d": d, "event": event})
    return contexts


def _withdrawn() -> list[dict[str, Any]]:
    return [{"g": g} for text in HOSTILE for g in variants(text)
            if g.status == GateStatus.WITHDRAWN]


def _request_modal() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        form = {"milestone": text[:80], "model": text[:100], "version": text[:64],
                "promote": text[:64], "wait": text[:20], "roles": text[:200],
                "criteria": text[:3000]}
        for known in (roles(text, MANY), []):
            metadata = write_metadata(channel="C0CHURN01", channel_name=text[:80] or None)
            contexts.append({"form": form, "known_roles": known, "metadata": metadata})
    default = {"milestone": "", "model": "", "version": "", "promote": "", "wait": "",
               "roles": ", ".join(DEFAULT_ROLES), "criteria": ""}
    return [*contexts, {"form": default, "known_roles": list(DEFAULT_ROLES),
                        "metadata": write_metadata(channel="C0CHURN01", channel_name=None)}]


def _requested() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        for g in variants(text):
            old = [gate(text, n, GateStatus.SUPERSEDED) for n in range(40, 80)]
            contexts += [{"result": Requested(g)},
                         {"result": Requested(g, old, list(g.required_roles))}]
    return contexts


def _signed() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        for g in variants(text):
            last = g.signoffs[-1] if g.signoffs else signoff("ds", text, 1)
            passed = g.status == GateStatus.PASSED
            contexts.append({"signed": Signed(g, last, passed), "waiting": _waiting(g)})
    return contexts


def _status() -> list[dict[str, Any]]:
    actions = ["gate.requested", "gate.approved", "gate.changes_requested", "gate.passed",
               "gate.expired", "gate.superseded", "gate.<!channel>-unknown"]
    contexts = []
    for text in HOSTILE:
        events = [AuditEvent(id=n, team_id="T1", actor="quorum" if n % 5 == 4 else user(text, n),
                             at=NOW + timedelta(hours=n), action=actions[n % len(actions)],
                             entity_type="gates", entity_id=1, entity_ref="G-1")
                  for n in range(MANY)]
        role_of = {e.id: f"{text[:28]}{e.id}" for e in events if e.id % 2}
        reasons = {e.id: text[:REASON_LIMIT] for e in events if e.id % 4 == 1}
        for g in variants(text):
            contexts.append({"g": g, "states": role_states(g), "history": events,
                             "roles": role_of, "reasons": reasons})
            contexts.append({"g": g, "states": role_states(g), "history": [], "roles": {},
                             "reasons": {}})
    return contexts


def _superseded() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        old = gate(text, 1, GateStatus.SUPERSEDED)
        contexts.append({"g": old, "new": old.superseded_by})
        contexts.append({"g": old, "new": gate(text, 2, model=False, due=False)})
    return contexts


def _admin_help() -> list[dict[str, Any]]:
    contexts: list[dict[str, Any]] = [{"commands": all_commands()}]
    for text in HOSTILE:
        subs = [Subcommand("role add <user:user> <role:word>", text[:300]),
                Subcommand("request <milestone:word> [for <model:word> v<version:word>] "
                           "[roles <roles:list>]", text or "request"),
                Subcommand("status <ref:G-n>", text[:50])]
        commands = [Command(f"/{text[:30]}", text[:200], subs, bare=text[:100] or None)
                    for _ in range(30)]
        contexts.append({"commands": commands})
    return contexts


def _role_changed() -> list[dict[str, Any]]:
    return [{"added": added, "user": who, "role": text[:32]}
            for text in HOSTILE for added in (True, False) for who in ("U0123ABCD", text[:32])]


def _roles() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        people = [user(text, n) for n in range(MANY)]
        for holders, can_change in (({role: people for role in roles(text, 60)}, True),
                                    ({"ds": people[:1], text[:32]: people[:3]}, False)):
            missing = [role for role in DEFAULT_ROLES if role not in holders]
            contexts.append({"project": project(), "holders": holders, "missing": missing,
                             "settings": settings_of(project(True)), "can_change": can_change})
    contexts.append({"project": project(), "holders": {}, "missing": list(DEFAULT_ROLES),
                     "settings": settings_of(project()), "can_change": False})
    return contexts


GATE_SAMPLES: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "gate/card": _card,
    "gate/changes": _changes,
    "gate/changes_modal": _changes_modal,
    "gate/choose_role": _choose_role,
    "gate/expired": _expired,
    "gate/list": _list,
    "gate/passed": _passed,
    "gate/digest": _digest,
    "gate/waiting": _waiting_thread,
    "gate/withdrawn": _withdrawn,
    "gate/deployment": _deployment,
    "gate/promoted": _promoted,
    "gate/promotion_failing": _promotion_failing,
    "gate/withdraw_done": _withdrawn,
    "gate/request_modal": _request_modal,
    "gate/requested": _requested,
    "gate/signed": _signed,
    "gate/status": _status,
    "gate/superseded": _superseded,
    "admin/help": _admin_help,
    "admin/role_changed": _role_changed,
    "admin/roles": _roles,
}
