"""Hostile sample contexts for the incident templates added with follow-ups, links and silences
(shaped like `SAMPLES` in `tests/support/template_samples.py`, which registers them)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bot.models import Incident, IncidentFollowUp, IncidentSilence

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
HOSTILE = [
    "<!channel> <!here> <@U0123ABCD> <#C0123ABCD> <https://evil.example|click me> &amp; &lt;",
    "x" * 5000,
    "🚀🔥 émoji ünïcode 中文 " * 40,
    'quotes " \\ backslash \n newline \t tab {{ jinja }} {% raw %} *bold* _it_ ~s~ `code`',
    "",
]
LINKS = ["https://prometheus.example/graph?g0.expr=a%3Eb&x=<y>|z",
         "http://grafana.example/d/1?a=1&b=2", "javascript:alert(1)", "x" * 2000, None]


def incident(text: str, number: int = 1, status: str = "declared") -> Incident:
    from support.template_samples import incident as shared  # imported late (a cycle)

    i = shared(text, number, status)
    i.impact = text[:3000]
    link = LINKS[number % len(LINKS)]
    i.source_url = i.runbook_url = i.dashboard_url = link
    i.alert_labels = {"alertname": text[:100] or "A", "project": "churn"}
    i.silenceable = bool(number % 2)
    return i


def follow_ups(text: str, i: Incident, count: int = 3) -> list[IncidentFollowUp]:
    items = []
    for n in range(1, count + 1):
        item = IncidentFollowUp(
            id=n, team_id="T1", position=n, text=text[:500] or "Fix it",
            owner="U0123ABCD" if n % 2 else None,
            due_date=date(2026, 11, 20) + timedelta(days=n) if n % 3 else None,
            url=LINKS[n % len(LINKS)], status="done" if n == 2 else "open",
            created_by="U0123ABCD", created_at=NOW)
        item.incident = i
        items.append(item)
    return items


def silences(text: str, i: Incident) -> None:
    for n in range(3):
        IncidentSilence(incident=i, silence_id=f"s{n}", matchers={"matchers": []},
                        starts_at=NOW, ends_at=NOW + timedelta(hours=n + 1),
                        until_resolved=n == 2, created_by="U0123ABCD" if n else text[:64],
                        created_at=NOW, expired_at=None if n else NOW)


def _card() -> list[dict[str, Any]]:
    contexts = []
    for n, text in enumerate(HOSTILE, start=1):
        for status in ("declared", "acknowledged", "resolved"):
            i = incident(text, n, status)
            silences(text, i)
            contexts.append({"i": i})
    return contexts


def _summary() -> list[dict[str, Any]]:
    contexts = []
    for n, text in enumerate(HOSTILE, start=1):
        i = incident(text, n, "resolved")
        for count in (0, 3, 40):
            contexts.append({"i": i, "duration": timedelta(hours=2), "tta": None,
                             "timeline": [], "follow_ups": follow_ups(text, i, count)})
    return contexts


def _resolve_modal() -> list[dict[str, Any]]:
    return [{"i": incident(text, n), "summary": text[:3000], "follow_up_slots": 3,
             "metadata": json.dumps({"incident_id": 1})} for n, text in enumerate(HOSTILE)]


def _follow_up_overdue() -> list[dict[str, Any]]:
    contexts = []
    for n, text in enumerate(HOSTILE, start=1):
        i = incident(text, n, "resolved")
        for item in follow_ups(text, i):
            contexts.append({"f": item, "i": i, "today": date(2026, 12, 1)})
    return contexts


INCIDENT_SAMPLES: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "incident/summary": _summary,
    "incident/resolve_modal": _resolve_modal,
    "incident/follow_up_overdue": _follow_up_overdue,
}
EXTRA_CARD_SAMPLES = _card
