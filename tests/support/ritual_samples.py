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
    RetroVote,
    Risk,
    RitualAway,
    RitualOccurrence,
    RitualPrompt,
    RitualSchedule,
    RitualUpdate,
)
from bot.services.rituals.retros import Digest
from bot.services.rituals.retros import Summary as RetroSummary
from bot.services.rituals.schedules import Status
from bot.services.rituals.standups import (
    DEFAULT_QUESTIONS,
    Answer,
    PersonUpdate,
    Question,
    Summary,
)
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


def questions(text: str) -> list[Question]:
    return [Question(f"q{n}", (text[:150] or "x") + " blocked" * (n == 6), n % 2 == 1)
            for n in range(1, 7)]


def item(text: str, kind: str, n: int = 0) -> RetroItem:
    found = RetroItem(id=n, occurrence_id=7, project_id=1, kind=kind, text=text[:3000] or "x",
                      owner=PEOPLE[n % 60] if kind == "action" else None,
                      due_date=TODAY if kind == "action" else None, number=n + 1000000,
                      state="done" if n % 2 else "open", created_by=PEOPLE[0], created_at=NOW,
                      anonymous=n % 3 == 0)
    found.votes = [RetroVote(user_id=p) for p in PEOPLE[:n % 7]]
    found.occurrence = occurrence("retro")
    return found


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
                if kind == "standup":
                    for text in HOSTILE:
                        found.append({**context, "questions": questions(text)})
                    each = occurrence(kind, status)
                    each.mode = "each"
                    found.append({**context, "o": each, "questions": list(DEFAULT_QUESTIONS)})
                elif kind == "retro":
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
        asked = questions(text)
        updates = [PersonUpdate(PEOPLE[n], [Answer(q, text[:3000] or "x") for q in asked[:5]],
                                [text[:3000] or "x"]) for n in range(60)]
        contexts.append({"o": occurrence(status="closed"), "s": Summary(
            updates=updates, blockers=[(u.user, u.blockers[0]) for u in updates],
            missing=PEOPLE, away=PEOPLE)})
    contexts.append({"o": occurrence(status="closed"), "s": Summary()})
    return contexts


def _retro_summary() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        contexts.append({"o": occurrence("retro", "closed"), "s": RetroSummary(
            went_well=[item(text, "went_well", n) for n in range(40)],
            to_improve=[item(text, "to_improve", n) for n in range(40)],
            actions=[item(text, "action", n) for n in range(40)], voters=60)})
    contexts.append({"o": occurrence("retro", "closed"), "s": RetroSummary()})
    return contexts


def _update() -> list[dict[str, Any]]:
    found = []
    for text in HOSTILE:
        asked = questions(text)
        u = update(text)
        u.answers = {q.key: text[:3000] for q in asked}
        found.append({"u": u, "questions": asked})
        d = update(text)
        d.answers = {"yesterday": text[:3000], "today": text[:3000], "blockers": ""}
        found.append({"u": d, "questions": list(DEFAULT_QUESTIONS)})
    return found


def _item() -> list[dict[str, Any]]:
    return [{"i": item(text, kind, n)} for text in HOSTILE
            for kind in ("went_well", "to_improve", "action") for n in (0, 1)]  # open, done


def _update_modal() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {"o": occurrence(), "metadata": json.dumps({"occurrence_id": 7}),
         "questions": list(DEFAULT_QUESTIONS),
         "form": {"yesterday": text[:3000], "today": text[:3000], "blockers": text[:3000]}}
        for text in HOSTILE]
    found += [{"o": occurrence(), "metadata": json.dumps({"occurrence_id": 7}),
               "questions": questions(text), "form": {f"q{n}": text[:3000] for n in range(7)}}
              for text in HOSTILE]
    return found


def _questions_modal() -> list[dict[str, Any]]:
    return [{"questions": asked, "metadata": json.dumps({"project_id": 1})}
            for asked in ([*questions(t)] for t in HOSTILE)] + \
        [{"questions": list(DEFAULT_QUESTIONS), "metadata": "{}"}]


def _prompt() -> list[dict[str, Any]]:
    found = []
    for text in HOSTILE:
        o = occurrence()
        o.mode = "each"
        prompt = RitualPrompt(occurrence_id=7, user_id=PEOPLE[3], timezone="Asia/Kolkata",
                              prompt_at=NOW, closes_at=NOW + timedelta(hours=3))
        found.append({"o": o, "p": prompt, "project": project(), "questions": questions(text),
                      "closes_local": NOW.astimezone(ZoneInfo("Asia/Kolkata"))})
    return found


def _overdue() -> list[dict[str, Any]]:
    return [{"i": item(text, "action", 2), "project": project()} for text in HOSTILE]


def _meeting_context(text: str, kind: str = "review", status: str = "open") -> dict[str, Any]:
    o = occurrence(kind, status)
    o.items = [item(text, "agenda", n) for n in range(40)]
    o.outcome = text[:3000] or None
    o.outcome_by = PEOPLE[1]
    o.outcome_decisions = [f"D-{n}" for n in range(10)] if text else []
    return {"o": o, "project": project(), "ritual_name": "Design review" if kind == "review" else
            "Sprint demo", "agenda": list(o.items)}


def _meetings() -> list[dict[str, Any]]:
    return [_meeting_context(text, kind, status) for text in HOSTILE
            for kind in ("review", "demo") for status in ("open", "closed")]


def _outcome() -> list[dict[str, Any]]:
    found = []
    for text in HOSTILE:
        context = _meeting_context(text)
        context["decisions"] = [Decision(id=n, team_id="T1", number=n, title=text[:150] or "x")
                                for n in range(10)]
        found.append(context)
    return found


def _agenda_item() -> list[dict[str, Any]]:
    return [{"i": item(text, "agenda", 1)} for text in HOSTILE]


def _plain_modal() -> list[dict[str, Any]]:
    return [{"metadata": json.dumps({"occurrence_id": 7}), "ritual_name": name}
            for name in ("Design review", "Sprint demo")]


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
    "ritual/questions_modal": _questions_modal,
    "ritual/prompt": _prompt,
    "ritual/action_overdue": _overdue,
    "ritual/meeting": _meetings,
    "ritual/meeting_start": _meetings,
    "ritual/outcome_prompt": _meetings,
    "ritual/outcome": _outcome,
    "ritual/agenda_item": _agenda_item,
    "ritual/agenda_modal": _plain_modal,
    "ritual/outcome_modal": _plain_modal,
}
