"""Hostile sample contexts for the App Home template, for Block Kit validation.

Shaped like `SAMPLES` of the shared template test (`tests/support/template_samples.py`): the
Home is rendered as `bot.services.home.render_home` renders it, with every section full (the most
items the service shows, and totals in the hundreds), hostile text everywhere, 150 projects for
the filter, a notice at the top, and a rituals section filled in by the hook.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bot.models import Project
from bot.services.home import (
    ALL_PROJECTS,
    ITEMS_SHOWN,
    PROJECT_CHOICES,
    WAITING_SHOWN,
    Home,
    NextRitual,
    Notice,
    Section,
    WaitingSignoff,
)
from support.gate_samples import gate, roles
from support.hypothesis_samples import hypothesis
from support.risk_samples import risk

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
HOSTILE = [
    "<!channel> <!here> <@U0123ABCD> <#C0123ABCD> <https://evil.example|click me> &amp; &lt;",
    "x" * 5000,
    "🚀🔥 émoji ünïcode 中文 " * 40,
    'quotes " \\ backslash \n newline \t tab {{ jinja }} {% raw %} *bold* _it_ ~s~ `code`',
    "",
]


def projects(text: str, count: int) -> list[Project]:
    return [Project(id=n, team_id="T1", channel_id=f"C0P{n:06d}", name=f"{text[:195]}{n}",
                    created_at=NOW) for n in range(1, count + 1)]


def _incident(text: str, number: int) -> Any:
    from support.template_samples import incident  # the shared sample; imported late (a cycle)

    return incident(text, number, ["declared", "acknowledged", "mitigated"][number % 3])


def _decision(text: str, number: int) -> Any:
    from support.template_samples import decision

    return decision(text, number, ["proposed", "accepted"][number % 2])


def home(text: str, *, total: int = 400, project_count: int = 150, chosen: bool = False,
         many_roles: bool = False, rituals: bool = True) -> Home:
    mine = projects(text, project_count)
    shown = 0 if total == 0 else ITEMS_SHOWN
    waiting = [WaitingSignoff(gate(text, n), roles(text, 20) if many_roles else ["ds"])
               for n in range(1, (WAITING_SHOWN if total else 0) + 1)]
    return Home(
        team_id="T1", user_id="U0123ABCD", today=NOW.date(), projects=mine,
        project=mine[0] if chosen and mine else None,
        waiting=Section(waiting, total),
        risks=Section([risk(text, n) for n in range(1, shown + 1)], total),
        overdue_risks=total // 2,
        hypotheses=Section([hypothesis(text, n, ["proposed", "running"][n % 2])
                            for n in range(1, shown + 1)], total),
        incidents=Section([_incident(text, n) for n in range(1, shown + 1)], total),
        decisions=Section([_decision(text, n) for n in range(1, shown + 1)], total),
        rituals=Section([NextRitual(["standup", "retro"][n % 2], "C0CHURN01", NOW,
                                    "America/Argentina/ComodRivadavia")
                         for n in range(shown)] if rituals else [], total if rituals else 0),
        follow_ups=Section(_follow_ups(text, shown), total),
        retro_actions=Section([_action(text, n) for n in range(5)] if rituals else [],
                              total if rituals else 0),
    )


def _action(text: str, n: int) -> Any:
    from support.ritual_samples import item

    return item(text, "action", n)


def _follow_ups(text: str, count: int) -> list[Any]:
    from support.incident_samples import follow_ups, incident

    return follow_ups(text, incident(text, 7, "resolved"), count)


def _home() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        for built in (home(text), home(text, chosen=True, many_roles=True),
                      home(text, total=0, project_count=0, rituals=False),
                      home(text, project_count=1)):
            for notice in (None, Notice(text or "—"), Notice(text or "—", ok=True)):
                contexts.append({"home": built, "notice": notice,
                                 "choices": built.projects[:PROJECT_CHOICES],
                                 "all_projects": ALL_PROJECTS})
    return contexts


HOME_SAMPLES: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "home/home": _home,
}
