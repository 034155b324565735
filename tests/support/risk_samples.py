"""Hostile sample contexts for the risk templates, for Block Kit validation.

Shaped like `SAMPLES` of the shared template test (`tests/support/template_samples.py`): each
entry returns the contexts to render one `templates/risk/*.json.j2` with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from bot.models import Project, Risk, RiskAssessment
from bot.services.risks import OPEN_STATUSES, Cell, HeatMap, Page, band_for

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
TODAY = NOW.date()
HOSTILE = [
    "<!channel> <!here> <@U0123ABCD> <#C0123ABCD> <https://evil.example|click me> &amp; &lt;",
    "x" * 5000,
    "🚀🔥 émoji ünïcode 中文 " * 40,
    'quotes " \\ backslash \n newline \t tab {{ jinja }} {% raw %} *bold* _it_ ~s~ `code`',
    "",
]
STATUSES = [status.value for status in OPEN_STATUSES]


def project() -> Project:
    return Project(id=1, team_id="T1", channel_id="C0CHURN01", name="<!channel>" + "p" * 300,
                   created_at=NOW, timezone=None)


def risk(text: str, number: int = 1, likelihood: int = 4, impact: int = 5,
         status: str = "open", history: int = 1) -> Risk:
    score = likelihood * impact
    r = Risk(id=number, team_id="T1", number=number, project=project(), title=text[:150],
             description=text[:3000], category="data", likelihood=likelihood, impact=impact,
             score=score, band=band_for(score), owner="U0123ABCD" if text else None,
             treatment="mitigate", mitigation=text[:3000], status=status,
             next_review=date(2026, 11, 20), created_by="U0123ABCD", created_at=NOW,
             updated_at=NOW)
    if status == "closed":
        r.closed_reason, r.closed_by, r.closed_at = text[:3000] or "—", "not-a-user<!here>", NOW
    r.assessments = [
        RiskAssessment(likelihood=1 + n % 5, impact=1 + n % 5, score=(1 + n % 5) ** 2,
                       band=band_for((1 + n % 5) ** 2), note=text[:1000],
                       assessed_by="U0123ABCD", at=NOW)
        for n in range(history)
    ]
    return r


def _cards() -> list[dict[str, Any]]:
    return [{"r": risk(text, status=status)} for text in HOSTILE
            for status in ("open", "closed")]


def _modal() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        new = {"title": text[:150], "description": text[:3000], "category": "other",
               "likelihood": None, "impact": None, "owner": "U0123ABCD", "treatment": "avoid",
               "mitigation": text[:3000], "next_review": TODAY, "status": "open"}
        metadata = json.dumps({"channel": "C1", "t": text[:500]})
        contexts.append({"form": new, "metadata": metadata, "r": None, "statuses": STATUSES})
        existing = risk(text)
        edit = {name: getattr(existing, name) for name in (
            "title", "description", "category", "owner", "treatment", "mitigation",
            "next_review", "status")}
        contexts.append({"form": edit, "metadata": metadata, "r": existing,
                         "statuses": STATUSES})
    return contexts


def _reassess() -> list[dict[str, Any]]:
    return [{"r": risk(text), "metadata": json.dumps({"risk_id": 1}), "next_review": TODAY}
            for text in HOSTILE]


def _close() -> list[dict[str, Any]]:
    return [{"r": risk(text), "metadata": json.dumps({"risk_id": 1})} for text in HOSTILE]


def _list() -> list[dict[str, Any]]:
    many = [risk(text, n) for n, text in enumerate(HOSTILE * 3, start=1)]
    return [{"project": project(), "page": Page(many, 2, 9, 130, 12)},
            {"project": project(), "page": Page([], 1, 1, 0, 0)},
            {"project": project(), "page": Page(many[:3], 1, 1, 3, 1)}]


def _heatmap() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        rows = [[Cell(likelihood, impact, likelihood * impact * 4321) for impact in range(1, 6)]
                for likelihood in range(5, 0, -1)]
        hottest = [Cell(5, 5, 108025, [risk(text, n) for n in range(1, 11)]),
                   Cell(5, 4, 86420, [risk(text, n) for n in range(11, 21)]),
                   Cell(4, 5, 3, [risk(text, n) for n in range(21, 24)])]
        contexts.append({"project": project(), "heat": HeatMap(rows, hottest, 10 ** 6)})
    empty = [[Cell(likelihood, impact, 0) for impact in range(1, 6)]
             for likelihood in range(5, 0, -1)]
    return [*contexts, {"project": project(), "heat": HeatMap(empty, [], 0)}]


def _show() -> list[dict[str, Any]]:
    return [{"r": risk(text, status=status, history=40), "limit": 15} for text in HOSTILE
            for status in ("open", "closed")]


def _critical() -> list[dict[str, Any]]:
    return [{"r": risk(text, likelihood=5, impact=5), "actor": "U0123ABCD", "logged": logged}
            for text in HOSTILE for logged in (True, False)]


def _reassessed() -> list[dict[str, Any]]:
    before = {"score": 9, "band": "medium", "likelihood": 3, "impact": 3}
    return [{"r": risk(text), "actor": text[:40], "before": before, "note": text[:1000]}
            for text in HOSTILE]


def _closed() -> list[dict[str, Any]]:
    return [{"r": risk(text, status="closed"), "actor": "U0123ABCD"} for text in HOSTILE]


def _digest() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        due = [risk(text, n) for n in range(1, 21)]
        due[0].next_review = TODAY
        for owner in (None, "U0123ABCD"):
            contexts.append({"project": project(), "risks": due, "total": 70, "today": TODAY,
                             "owner": owner})
    contexts.append({"project": project(), "risks": [risk("one")], "total": 1, "today": TODAY,
                     "owner": None})
    return contexts


RISK_SAMPLES: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "risk/card": _cards,
    "risk/modal": _modal,
    "risk/reassess": _reassess,
    "risk/close": _close,
    "risk/list": _list,
    "risk/heatmap": _heatmap,
    "risk/show": _show,
    "risk/critical": _critical,
    "risk/reassessed": _reassessed,
    "risk/closed": _closed,
    "risk/digest": _digest,
}
