"""Hostile sample contexts for the hypothesis templates (see template_samples.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bot.models import AuditEvent, Decision, Hypothesis, Project
from bot.services.hypotheses import Group

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
HOSTILE = [
    "<!channel> <!here> <@U0123ABCD> <https://evil.example|click me> &amp; &lt;",
    "x" * 5000,
    "🚀🔥 émoji ünïcode 中文 " * 40,
    'quotes " \\ backslash \n newline {{ jinja }} *bold* `code`',
    "",
]


def _project() -> Project:
    return Project(id=1, team_id="T1", channel_id="C0CHURN01", name="<!channel>" + "p" * 300,
                   created_at=NOW)


def hypothesis(text: str, number: int = 1, status: str = "proposed") -> Hypothesis:
    concluded = status in ("supported", "refuted", "inconclusive")
    return Hypothesis(
        id=number, team_id="T1", number=number, project=_project(),
        statement=text[:300] or "s", metric=text[:3000], expected_effect=text[:3000],
        owner="U0123ABCD" if text else None,
        experiment_url="https://mlflow.example.com/#/runs/1?a=1&b=2" if text else text[:200],
        notes=text[:3000], status=status, evidence=text[:3000] if concluded else "",
        started_at=NOW if status != "proposed" else None,
        concluded_at=NOW if concluded else None, concluded_by="U0123ABCD" if concluded else None,
        created_by="U0123ABCD", created_at=NOW, updated_at=NOW,
        model=text[:100] or None, version=text[:64] or None)


def linked(text: str) -> Hypothesis:
    old = hypothesis(text, 1, "refuted")
    new = hypothesis(text, 2)
    new.cites = old
    old.decisions = [Decision(id=n, team_id="T1", number=n, title=text[:150] or "d",
                              status="accepted", created_at=NOW) for n in range(1, 30)]
    return old


def _card() -> list[dict[str, Any]]:
    statuses = ["proposed", "running", "supported", "refuted", "inconclusive"]
    return [{"h": hypothesis(text, 1, status)} for text in HOSTILE for status in statuses] + \
        [{"h": linked(text)} for text in HOSTILE]


def _thread(template_extra: Callable[[Hypothesis], dict[str, Any]]) -> Callable[[], list]:
    def samples() -> list[dict[str, Any]]:
        return [{"h": linked(text), **template_extra(linked(text))} for text in HOSTILE]
    return samples


def _list() -> list[dict[str, Any]]:
    groups = [Group(status, [hypothesis(t, n, status) for n, t in enumerate(HOSTILE * 3)], 99)
              for status in ("proposed", "running", "supported")]
    return [{"project": _project(), "groups": groups, "status": None},
            {"project": _project(), "groups": [], "status": "running"}]


def _show() -> list[dict[str, Any]]:
    events = [AuditEvent(id=n, actor="U0123ABCD", at=NOW, action="hypothesis.edited",
                         entity_type="hypotheses", entity_id=1, entity_ref="H-1")
              for n in range(40)]
    return [{"h": linked(text), "history": events,
             "changes": {e.id: ["metric", text[:100]] for e in events}} for text in HOSTILE]


def _modal() -> list[dict[str, Any]]:
    contexts = []
    choices = [hypothesis(text, n, "supported") for n, text in enumerate(HOSTILE * 30)][:100]
    for text in HOSTILE:
        form = {"statement": text[:300], "metric": text[:3000], "expected_effect": text[:3000],
                "experiment_url": text[:200], "notes": text[:3000],
                "owner": "U0123ABCD" if text else None, "cites": "H-1" if text else None,
                "model": text[:100], "version": text[:64]}
        contexts.append({"form": form, "metadata": json.dumps({"channel": "C1"}),
                         "ref": "H-3" if text else None, "reopen_choices": choices})
    return contexts


def _conclude_modal() -> list[dict[str, Any]]:
    outcomes = [("supported", "backs it"), ("refuted", "contradicts"), ("inconclusive", "neither")]
    return [{"h": hypothesis(text, 1, "running"), "metadata": json.dumps({"hypothesis_id": 1}),
             "outcomes": outcomes} for text in HOSTILE]


HYPOTHESIS_SAMPLES: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "hypothesis/card": _card,
    "hypothesis/concluded": _thread(lambda h: {}),
    "hypothesis/reopened": _thread(lambda h: {"new": hypothesis("n", 2), "actor": "U0123ABCD"}),
    "hypothesis/list": _list,
    "hypothesis/show": _show,
    "hypothesis/modal": _modal,
    "hypothesis/conclude_modal": _conclude_modal,
}
