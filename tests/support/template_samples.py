"""Hostile sample contexts for every template, used by the Block Kit validation test.

Every `templates/**/*.json.j2` must have an entry in SAMPLES: a function returning a list of
contexts (hostile text, huge text, empty optional fields) to render it with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.commands import Command, Subcommand
from bot.models import AuditEvent, Decision, Incident, IncidentEvent, Project
from bot.services.decisions import Page
from bot.services.incident_stats import Overview
from bot.services.incidents import SEVERITIES
from support.access_samples import ACCESS_SAMPLES
from support.gate_samples import GATE_SAMPLES
from support.home_samples import HOME_SAMPLES
from support.hypothesis_samples import HYPOTHESIS_SAMPLES, hypothesis
from support.incident_samples import EXTRA_CARD_SAMPLES as INCIDENT_CARDS
from support.incident_samples import INCIDENT_SAMPLES
from support.promotion_samples import PROMOTION_SAMPLES
from support.risk_samples import RISK_SAMPLES
from support.ritual_samples import RITUAL_SAMPLES

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
HOSTILE = [
    "<!channel> <!here> <@U0123ABCD> <#C0123ABCD> <https://evil.example|click me> &amp; &lt;",
    "x" * 5000,
    "🚀🔥 émoji ünïcode 中文 " * 40,
    'quotes " \\ backslash \n newline \t tab {{ jinja }} {% raw %} *bold* _it_ ~s~ `code`',
    "",
]


def project() -> Project:
    return Project(id=1, team_id="T1", channel_id="C0CHURN01", name="<!channel>" + "p" * 300,
                   created_at=NOW)


def decision(text: str, number: int = 1, status: str = "proposed") -> Decision:
    d = Decision(id=number, team_id="T1", number=number, project=project(), title=text[:150],
                 context=text, options=text, decision=text, consequences=text, status=status,
                 deciders=["U0123ABCD", "not-a-user-<!channel>"] if text else [],
                 source_permalink="https://acme.slack.com/archives/C1/p1" if text else None,
                 created_by="U0123ABCD", created_at=NOW, updated_at=NOW,
                 model=text[:100] or None, version=text[:64] or None)
    return d


def linked_decisions(text: str) -> Decision:
    old, new = decision(text, 1, "superseded"), decision(text, 2)
    new.supersedes = old
    old.hypotheses = [hypothesis(text, n) for n in range(1, 40)]
    return old


def _decision_card() -> list[dict[str, Any]]:
    return [{"d": decision(text)} for text in HOSTILE] + [{"d": linked_decisions(HOSTILE[0])}]


def _decision_modal() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        form = {"title": text[:150], "context": text[:3000], "options": text[:3000],
                "decision": text[:3000], "consequences": text[:3000],
                "deciders": ["U0123ABCD"] if text else [], "status": "accepted",
                "hypotheses": ["H-1", "H-2"] if text else [], "model": text[:100],
                "version": text[:64]}
        contexts.append({"form": form, "metadata": json.dumps({"channel": "C1", "t": text[:500]}),
                         "ref": "D-12" if text else None, "permalink": text[:200] or None,
                         "statuses": ["proposed", "accepted", "rejected"],
                         "hypotheses": [hypothesis(t, n) for n, t in enumerate(HOSTILE * 20)]})
    return contexts


def _decision_list() -> list[dict[str, Any]]:
    many = [decision(text, n) for n, text in enumerate(HOSTILE * 2, start=1)]
    return [{"project": project(), "page": Page(many, 2, 5, 50, "1:newer:1", "3:older:20")},
            {"project": project(), "page": Page([], 1, 1, 0)}]


def _decision_search() -> list[dict[str, Any]]:
    results = [decision(text, n) for n, text in enumerate(HOSTILE * 4, start=1)]
    return [{"words": text, "results": results, "limit": 20} for text in HOSTILE]


def _decision_show() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        d = linked_decisions(text)
        events = [AuditEvent(id=n, actor="U0123ABCD", at=NOW, action="decision.edited",
                             entity_type="decisions", entity_id=1, entity_ref="D-1")
                  for n in range(30)]
        contexts.append({"d": d, "history": events,
                         "changes": {e.id: ["context", text[:100]] for e in events}})
    return contexts


INCIDENT_KINDS = ["declared", "acknowledged", "update", "mitigated", "resolved", "channel",
                  "alert", "alert_resolved", "severity", "lead", "silenced", "something_new"]


def incident(text: str, number: int = 1, status: str = "declared") -> Incident:
    i = Incident(id=number, team_id="T1", number=number, project=project(), title=text[:150],
                 severity=SEVERITIES[number % 4], status=status,
                 commander="U0123ABCD" if text else None, model=text[:200] or None,
                 model_version=text[:64] or None, description=text[:3000],
                 channel_id="C0INC0001" if text else None,
                 source=["slack", "alertmanager", "cli"][number % 3], started_at=NOW,
                 acknowledged_at=NOW + timedelta(minutes=4) if status != "declared" else None,
                 mitigated_at=None, last_update_at=NOW,
                 resolved_at=NOW + timedelta(hours=2, minutes=5) if status == "resolved" else None,
                 summary=text[:3000], root_cause=text[:3000], follow_ups=text[:3000],
                 created_by="U0123ABCD" if number % 2 else "alertmanager", created_at=NOW)
    return i


def timeline(text: str, count: int = 9) -> list[IncidentEvent]:
    return [IncidentEvent(id=n, kind=INCIDENT_KINDS[n % len(INCIDENT_KINDS)],
                          text=text if n % 9 != 5 else "C0INC0001",
                          actor="U0123ABCD" if n % 2 else "<!channel>", at=NOW)
            for n in range(count)]


def _incident_card() -> list[dict[str, Any]]:
    return [{"i": incident(text, n, status)} for n, text in enumerate(HOSTILE, start=1)
            for status in ("declared", "acknowledged", "mitigated", "resolved")] \
        + INCIDENT_CARDS()


def _incident_entry() -> list[dict[str, Any]]:
    return [{"i": incident(text), "e": e} for text in HOSTILE for e in timeline(text)]


def _incident_summary() -> list[dict[str, Any]]:
    return [{"i": incident(text, n, "resolved"), "duration": timedelta(hours=2, minutes=5),
             "tta": None if n % 2 else timedelta(minutes=4), "timeline": timeline(text, count),
             "follow_ups": []}
            for n, text in enumerate(HOSTILE, start=1) for count in (0, 3, 75)] \
        + INCIDENT_SAMPLES["incident/summary"]()


def _incident_reminder() -> list[dict[str, Any]]:
    return [{"i": incident(text, n), "silent": timedelta(minutes=n * 45)}
            for n, text in enumerate(HOSTILE, start=1)]


def _incident_list() -> list[dict[str, Any]]:
    many = [incident(text, n, "acknowledged") for n, text in enumerate(HOSTILE * 6, start=1)]
    done = [incident(text, n, "resolved") for n, text in enumerate(HOSTILE * 2, start=1)]
    return [
        {"project": project(), "overview": Overview(many, done, timedelta(minutes=7),
                                                    timedelta(days=1, hours=3), 12, 10)},
        {"project": project(), "overview": Overview([], [], None, None, 0, 0)},
    ]


def _incident_declare_modal() -> list[dict[str, Any]]:
    return [{"form": {"title": text[:150], "severity": SEVERITIES[n % 4], "model": text[:200],
                      "model_version": text[:64], "commander": "U0123ABCD" if text else None,
                      "description": text[:3000]},
             "severities": SEVERITIES, "metadata": json.dumps({"channel": "C1", "t": text[:500]})}
            for n, text in enumerate(HOSTILE)]


def _incident_small_modal() -> list[dict[str, Any]]:
    return [{"i": incident(text, 123456789), "metadata": json.dumps({"incident_id": 1})}
            for text in HOSTILE]


def _error() -> list[dict[str, Any]]:
    return [{"message": text, "usage": [text, "`/decision show D-n` — x"], "mentions": ()}
            for text in HOSTILE] \
        + [{"message": f"{text} belongs to <#C0CHURN01>, ask <@U0BOB0001>", "usage": [],
            "mentions": ("C0CHURN01", "U0BOB0001")} for text in HOSTILE]


def _help() -> list[dict[str, Any]]:
    subs = [Subcommand("<title:text>", text[:300] or "log") for text in HOSTILE]
    return [{"command": Command("/decision", text[:200], subs)} for text in HOSTILE]


def _notice() -> list[dict[str, Any]]:
    return [{"text": text, "emoji": ":white_check_mark:", "person": person}
            for text in HOSTILE for person in ("", "U0BOB0001", text[:40])]


SAMPLES: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "decision/card": _decision_card,
    "decision/modal": _decision_modal,
    "decision/list": _decision_list,
    "decision/search": _decision_search,
    "decision/show": _decision_show,
    "incident/card": _incident_card,
    "incident/entry": _incident_entry,
    "incident/summary": _incident_summary,
    "incident/reminder": _incident_reminder,
    "incident/list": _incident_list,
    "incident/declare_modal": _incident_declare_modal,
    "incident/update_modal": _incident_small_modal,
    "common/error": _error,
    "common/help": _help,
    "common/notice": _notice,
}
SAMPLES.update(RISK_SAMPLES)
SAMPLES["incident/resolve_modal"] = INCIDENT_SAMPLES["incident/resolve_modal"]
SAMPLES["incident/follow_up_overdue"] = INCIDENT_SAMPLES["incident/follow_up_overdue"]
SAMPLES.update(HYPOTHESIS_SAMPLES)
SAMPLES.update(GATE_SAMPLES)
SAMPLES.update(HOME_SAMPLES)
SAMPLES.update(PROMOTION_SAMPLES)
SAMPLES.update(RITUAL_SAMPLES)
SAMPLES.update(ACCESS_SAMPLES)  # after GATE_SAMPLES: its admin/roles adds owners
