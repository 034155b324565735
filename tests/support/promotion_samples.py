"""Hostile sample contexts for the promotion templates, for Block Kit validation.

Shaped like `SAMPLES` of the shared template test (`tests/support/template_samples.py`): each
entry returns the contexts to render one `templates/promotion/*.json.j2` with, passed exactly as
`bot/services/promotions.py` and `handlers/admin.py` pass them. Text is hostile but within each
column's length.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bot.models import (
    Decision,
    Gate,
    GateSignoff,
    Hypothesis,
    Incident,
    ModelBinding,
    Project,
    Promotion,
)
from bot.services.promotions import GateRecord
from bot.services.trace import Trace

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
HOSTILE = [
    "<!channel> <!here> <@U0123ABCD> <#C0123ABCD> <https://evil.example|click me> &amp; &lt;",
    "x" * 5000,
    "🚀🔥 émoji ünïcode 中文 " * 40,
    'quotes " \\ backslash \n newline \t tab {{ jinja }} {% raw %} *bold* _it_ ~s~ `code`',
    "",
]
MANY = 40


def project(new_versions: bool = False) -> Project:
    return Project(id=1, team_id="T1", channel_id="C0CHURN01", name="<!channel>" + "p" * 300,
                   created_at=NOW, announce_new_versions=new_versions)


def gate_record(text: str, passed: int, waiting: int) -> dict[str, Any]:
    signers = [{"role": text[:32] or "ds", "user": "U0123ABCD" if n % 2 else text[:64]}
               for n in range(8)]
    return {
        "model": text[:100], "version": text[:64], "milestone": None, "passed": passed > 0,
        "passed_gates": [{"ref": f"G-{n}", "milestone": text[:40], "passed_at": NOW.isoformat(),
                          "signers": signers} for n in range(passed)],
        "waiting_gates": [{"ref": f"G-{n}", "milestone": text[:40],
                           "status": "changes_requested" if n % 3 == 0 else "open",
                           "waiting_roles": [text[:32]] * (n % 4)} for n in range(waiting)],
    }


def promotion(text: str, number: int = 1, kind: str = "promotion", passed: int = 0,
              waiting: int = 0, source: str = "mlflow", rollback: bool = False) -> Promotion:
    record = gate_record(text, passed, waiting)
    if rollback:
        record["rollback"] = {"from_version": text[:64] or "3", "from_promotion": "P-99",
                              **gate_record(text, waiting, passed)}
    return Promotion(
        id=number, team_id="T1", number=number, project=project(), kind=kind,
        model=text[:100] or "m", version=text[:64] or "1",
        to_stage=(text[:64] or "production") if kind != "new_version" else None,
        from_stage=text[:64] or None, actor=text[:64] or None,
        url="https://ci.example/run/1?a=<b>&c=|d" if text else None, note=text[:2000],
        source=source, status="announced", delivery_id=None,
        gate_record=record, occurred_at=NOW, created_by="mlflow",
        created_at=NOW)


def _announcement() -> list[dict[str, Any]]:
    contexts: list[dict[str, Any]] = []
    for n, text in enumerate(HOSTILE, start=1):
        for kind in ("promotion", "new_version", "alias_deleted"):
            for passed, waiting in ((0, 0), (0, MANY), (MANY, MANY), (1, 0)):
                p = promotion(text, n, kind, passed, waiting,
                              source=["mlflow", "webhook", "cli", text[:16], "quorum"][n % 5],
                              rollback=kind != "new_version" and passed != waiting)
                replaces = promotion(text + "old", n + 1) if n % 2 else None
                p.repeats, p.repeated_at = n - 1, NOW
                contexts.append({"p": p, "gates": GateRecord(), "replaces": replaces})
    return contexts


def _models() -> list[dict[str, Any]]:
    bindings = [ModelBinding(id=n, team_id="T1", model=text[:100], created_by=text[:64],
                             created_at=NOW)
                for n, text in enumerate(HOSTILE * 20)]
    return [{"project": project(True), "bindings": bindings},
            {"project": project(), "bindings": []}]


def _trace() -> list[dict[str, Any]]:
    contexts = []
    for text in HOSTILE:
        hypotheses = [Hypothesis(id=n, team_id="T1", number=n, statement=text[:300],
                                 status="supported") for n in range(1, 11)]
        decisions = []
        for n in range(1, 11):
            d = Decision(id=n, team_id="T1", number=n, title=text[:150], status="accepted")
            d.hypotheses = hypotheses
            decisions.append(d)
        gates = []
        for n in range(1, 11):
            g = Gate(id=n, team_id="T1", number=n, milestone=text[:40] or "launch",
                     status="passed", model=text[:100], version=text[:64])
            g.signoffs = [GateSignoff(id=k, role=text[:32], user_id="U0123ABCD" if k % 2
                                      else text[:64], decision="approve" if k % 3 else "changes",
                                      at=NOW) for k in range(20)]
            gates.append(g)
        promotions = [promotion(text, n, "promotion" if n % 2 else "new_version", n % 2, 3)
                      for n in range(1, 11)]
        incidents = [Incident(id=n, team_id="T1", number=n, title=text[:150], severity="sev1",
                              status="resolved") for n in range(1, 11)]
        here, bound = project(), project(True)
        bound.id, bound.channel_id = 2, "C0FRAUD01"
        contexts.append({"t": Trace(text[:100], text[:64], [here, bound], hypotheses, decisions,
                                    gates, promotions, incidents, bound)})
        contexts.append({"t": Trace(text[:100], text[:64], [here], [], [], [], [], [])})
    return contexts


def _repeated() -> list[dict[str, Any]]:
    return [{"p": promotion(text, n), "source": source, "actor": text[:64] or None, "at": NOW}
            for n, text in enumerate(HOSTILE, start=1)
            for source in ("mlflow", "cli", "webhook", text[:16])]


PROMOTION_SAMPLES: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "promotion/announcement": _announcement,
    "promotion/repeated": _repeated,
    "promotion/models": _models,
    "promotion/trace": _trace,
}
