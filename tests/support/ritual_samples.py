"""Hostile sample contexts for the ritual templates, for Block Kit validation.

Shaped like `SAMPLES` of the shared template test (`tests/support/template_samples.py`): each
entry returns the contexts to render one `templates/ritual/*.json.j2` with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.models import (
    Decision,
    Gate,
    Hypothesis,
    Incident,
    Project,
    RetroItem,
    Risk,
    RitualAway,
    RitualOccurrence,
    RitualSchedule,
    RitualUpdate,
)
from bot.services.rituals import Digest, Status, Summary
from support.promotion_samples import promotion

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
TODAY = NOW.date()
HOSTILE = [
    "<!channel> <!here> <@U0123ABCD> <#C0123ABCD> <https://evil.example|click me> &amp; &lt;",
    "x" * 5000,
    "🚀🔥 émoji ünïcode 中文 " * 40,
    'quotes " \\ backslash \n newline \t tab {{ jinja }} {% raw %} *bold* _it_ ~s~ `code`',
    "",
]
PEOPLE = [f"U{n:08d}" for n in range(60)]


def project() -> Project:
    return Project(id=1, team_id="T1", channel_id="C0CHURN01", name="<!channel>" + "p" * 300,
                   created_at=NOW, timezone=None)


def occurrence(kind: str = "standup", status: str = "open",
               tz: str = "Pacific/Chatham") -> RitualOccurrence:
    return RitualOccurrence(
        id=7, team_id="T1", project=project(), project_id=1, kind=kind, scheduled_for=NOW,
        local_date=TODAY, timezone=tz, status=status, participants=PEOPLE, posted_at=NOW,
        closes_at=NOW + timedelta(hours=3), closed_at=NOW + timedelta(hours=3),
        created_by="scheduler", created_at=NOW)


def update(text: str, n: int = 0) -> RitualUpdate:
    return RitualUpdate(id=n, occurrence_id=7, user_id=PEOPLE[n % 60], source="thread",
                        yesterday=text[:3000], today=text[:3000], blockers=text[:3000],
                        text=text, created_at=NOW)


def item(text: str, kind: str, n: int = 0) -> RetroItem:
    return RetroItem(id=n, occurrence_id=7, project_id=1, kind=kind, text=text[:3000] or "x",
                     owner=PEOPLE[n % 60] if kind == "action" else None,
                     due_date=TODAY if kind == "action" else None,
                     state="done" if n % 2 else "open", created_by=PEOPLE[0], created_at=NOW)


def digest(text: str, many: int = 1) -> Digest:
    d = Digest(since=NOW - timedelta(days=14), until=NOW)
    for n in range(many):
        d.decisions.append(Decision(id=n, team_id="T1", number=n, title=text[:150],
                                    status="accepted"))
        d.hypotheses.append(Hypothesis(id=n, team_id="T1", number=n, statement=text[:300],
                                       status="refuted"))
        gate = Gate(id=n, team_id="T1", number=n, milestone=text[:40], model=text[:100] or None,
                    version="3")
        d.gates_passed.append(gate)
        d.gates_changes.append(gate)
        d.incidents.append(Incident(id=n, team_id="T1", number=n, title=text[:150],
                                    severity="sev1", started_at=NOW - timedelta(hours=30),
                                    resolved_at=NOW if n % 2 else None))
        risk = Risk(id=n, team_id="T1", number=n, title=text[:150], score=20, band="critical",
                    next_review=TODAY - timedelta(days=3))
        d.risks_created.append(risk)
        d.risks_rescored.append(risk)
        d.risks_overdue.append(risk)
        d.actions.append(item(text, "action", n))
        d.promotions.append(promotion(text, n))
    return d


def _cards(kind: str) -> Callable[[], list[dict[str, Any]]]:
    def contexts() -> list[dict[str, Any]]:
        found = []
        for status in ("open", "closed"):
            for count in (0, 1, 500):
                context: dict[str, Any] = {"o": occurrence(kind, status), "project": project(),
                                           "count": count}
                if kind == "retro":
                    for text in HOSTILE:
                        found.append({**context, "digest": digest(text, 30 if text else 0)})
                else:
                    found.append(context)
        return found
    return contexts


def _reminder() -> list[dict[str, Any]]:
    return [{"o": occurrence(), "project": project(), "user": PEOPLE[0]}]


def _standup_summary() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        updates = [update(text, n) for n in range(60)]
        contexts.append({"o": occurrence(status="closed"), "s": Summary(
            updates=updates, blockers=[(u.user_id, u.blockers) for u in updates],
            missing=PEOPLE)})
    contexts.append({"o": occurrence(status="closed"), "s": Summary()})
    return contexts


def _retro_summary() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        contexts.append({"o": occurrence("retro", "closed"), "s": Summary(
            went_well=[item(text, "went_well", n) for n in range(40)],
            to_improve=[item(text, "to_improve", n) for n in range(40)],
            actions=[item(text, "action", n) for n in range(40)])})
    contexts.append({"o": occurrence("retro", "closed"), "s": Summary()})
    return contexts


def _update() -> list[dict[str, Any]]:
    return [{"u": update(text)} for text in HOSTILE]


def _item() -> list[dict[str, Any]]:
    return [{"i": item(text, kind, n)} for text in HOSTILE
            for kind in ("went_well", "to_improve", "action") for n in (0, 1)]  # open, done


def _update_modal() -> list[dict[str, Any]]:
    return [{"o": occurrence(), "metadata": json.dumps({"occurrence_id": 7}),
             "form": {"yesterday": text[:3000], "today": text[:3000], "blockers": text[:3000]}}
            for text in HOSTILE]


def _item_modal() -> list[dict[str, Any]]:
    return [{"kind": kind, "owner": owner, "due": TODAY,
             "metadata": json.dumps({"occurrence_id": 7, "kind": kind})}
            for kind in ("went_well", "to_improve", "action") for owner in (None, PEOPLE[1])]


def schedule(text: str) -> RitualSchedule:
    return RitualSchedule(id=1, team_id="T1", project_id=1, kind="standup",
                          cron="30 9 * * mon-fri", every_weeks=1, anchor_week=TODAY,
                          timezone="Europe/Paris", enabled=True, answer_window_minutes=180,
                          description=text[:200], members=PEOPLE, checked_until=NOW,
                          created_by=PEOPLE[0], created_at=NOW)


def _status() -> list[dict[str, Any]]:
    zone = ZoneInfo("Europe/Paris")
    contexts = []
    for text in HOSTILE:
        last = occurrence(status="skipped")
        last.skip_reason = text[:200]
        away = [RitualAway(project_id=1, user_id=p, until=TODAY, created_by=p) for p in PEOPLE]
        contexts.append({"zone": zone, "st": Status("standup", schedule(text), [NOW] * 3,
                                                    [TODAY + timedelta(days=n) for n in range(60)],
                                                    away, last)})
    contexts.append({"zone": zone, "st": Status("retro", None, [], [], [], None)})
    return contexts


def _scheduled() -> list[dict[str, Any]]:
    return [{"kind": "retro", "schedule": schedule(text), "upcoming": [NOW] * 3,
             "zone": ZoneInfo("Europe/Paris")} for text in HOSTILE]


RITUAL_SAMPLES: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "ritual/standup": _cards("standup"),
    "ritual/retro": _cards("retro"),
    "ritual/reminder": _reminder,
    "ritual/standup_summary": _standup_summary,
    "ritual/retro_summary": _retro_summary,
    "ritual/update": _update,
    "ritual/item": _item,
    "ritual/update_modal": _update_modal,
    "ritual/item_modal": _item_modal,
    "ritual/status": _status,
    "ritual/scheduled": _scheduled,
}
