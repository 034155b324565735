"""The portal at scale: p50/p95 of every page type over a million decisions.

For each database it loads a fresh one with `bench/scale.py`'s bulk loader (1M decisions, 100k
hypotheses and risks, 10k gates over 100 projects), adds what the portal also reads (an audit
event per decision, an assessment per risk, incidents, promotions and model bindings), then
requests every page type through the portal's ASGI app in this process (routing, database,
template rendering; signed in as `quorum portal --dev-user` does, so no Slack is asked), each
`--repeat` times after two warm-ups.

    python bench/portal.py [--decisions 1000000] [--repeat 30] [--databases sqlite,postgresql]
    python bench/portal.py --measure-url URL   # measure a database an earlier load filled

Prints a table and writes bench/results/portal.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from ack import database  # noqa: E402
from scale import TEAM, load, minutes_ago, series  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from bot.config import load_settings  # noqa: E402
from bot.database import Database  # noqa: E402
from bot.portal.dev import dev_app  # noqa: E402
from bot.runtime import Runtime  # noqa: E402

TARGET_P95_MS = 200.0
MODELS = 50


def load_portal_extras(db: Database, sizes: dict[str, int], projects: int) -> dict[str, float]:
    """What `scale.load` leaves out and the portal reads."""
    dialect = db.engine.dialect.name
    spread = 3 * 365 * 24 * 60
    incidents = max(1000, sizes["decisions"] // 100)
    promotions = max(1000, sizes["decisions"] // 100)
    json_null = "NULL"
    statements = {
        "audit_events": f"""
            INSERT INTO audit_events (team_id, project_id, actor, at, action, entity_type,
                                      entity_id, entity_ref, before, after)
            SELECT d.team_id, d.project_id, d.created_by, d.created_at, 'decision.created',
                   'decisions', d.id, 'D-' || d.number, {json_null}, {json_null}
            FROM decisions d""",
        "risk_assessments": """
            INSERT INTO risk_assessments (risk_id, likelihood, impact, score, band, note,
                                          assessed_by, at)
            SELECT r.id, r.likelihood, r.impact, r.score, r.band, '', r.created_by, r.created_at
            FROM risks r""",
        "incidents": f"""
            INSERT INTO incidents (team_id, number, project_id, title, severity, status, model,
                                   model_version, description, source, started_at,
                                   acknowledged_at, resolved_at, last_update_at, summary,
                                   root_cause, follow_ups, created_by, created_at, updated_at)
            SELECT '{TEAM}', i, 1 + i % {projects}, 'Incident ' || i, 'sev' || (1 + i % 4),
                   'resolved', 'model-' || (i % {MODELS}), '' || (i % 200), '', 'slack',
                   {minutes_ago(dialect, f"({spread} - i * {spread} / {incidents}) + 1")},
                   {minutes_ago(dialect, f"({spread} - i * {spread} / {incidents}) - 5")},
                   {minutes_ago(dialect, f"({spread} - i * {spread} / {incidents}) - 90")},
                   {minutes_ago(dialect, "1")}, '', '', '', 'U1',
                   {minutes_ago(dialect, f"({spread} - i * {spread} / {incidents}) + 1")},
                   {minutes_ago(dialect, "1")}
            FROM {series(dialect, incidents)}""",
        "model_bindings": f"""
            INSERT INTO model_bindings (team_id, project_id, model, created_by, created_at)
            SELECT '{TEAM}', 1 + (i - 1) % {min(projects, 20)}, 'model-' || (i - 1), 'U1',
                   {minutes_ago(dialect, "1")}
            FROM {series(dialect, MODELS)}""",
        "promotions": f"""
            INSERT INTO promotions (team_id, number, project_id, kind, model, version, to_stage,
                                    actor, note, source, status, occurred_at, created_by,
                                    created_at)
            SELECT '{TEAM}', i, 1 + (i % {MODELS}) % {min(projects, 20)}, 'promotion',
                   'model-' || (i % {MODELS}), '' || (i / {MODELS}),
                   CASE WHEN i % 3 = 0 THEN 'production' ELSE 'staging' END, 'U1', '', 'cli',
                   'announced', {minutes_ago(dialect, f"{promotions} - i + 1")}, 'U1',
                   {minutes_ago(dialect, f"{promotions} - i + 1")}
            FROM {series(dialect, promotions)}""",
        "ref_counters": f"""
            INSERT INTO ref_counters (team_id, prefix, last_value)
            SELECT '{TEAM}', 'INC', {incidents} UNION ALL SELECT '{TEAM}', 'P', {promotions}""",
    }
    seconds: dict[str, float] = {}
    for table, statement in statements.items():
        started = time.perf_counter()
        with db.engine.begin() as connection:
            connection.execute(text(statement))
        seconds[table] = time.perf_counter() - started
        print(f"  loaded {table} in {seconds[table]:.1f} s", flush=True)
    if dialect == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    return seconds


def timed(repeat: int, request: Callable[[int], Any]) -> dict[str, float]:
    samples = []
    for index in range(repeat + 2):
        started = time.perf_counter()
        request(index)
        if index >= 2:  # two warm-ups, as a running server's caches would be
            samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"p50_ms": statistics.median(samples),
            "p95_ms": samples[max(0, int(len(samples) * 0.95) - 1)],
            "max_ms": samples[-1], "n": len(samples)}


def measure(url: str, repeat: int, projects: int) -> dict[str, dict[str, float]]:
    runtime = Runtime.from_settings(load_settings(DATABASE_URL=url))
    app, _ = dev_app(runtime, "bench")
    client = TestClient(app)
    busy = min(projects, 20)

    def get(path: str) -> str:
        answer = client.get(path)
        if answer.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {answer.status_code}")
        return answer.text

    def project(index: int) -> int:
        return 1 + index % busy

    # The "Older" link 50 pages into each busy project's decision log and audit log.
    deep: dict[tuple[str, int], str] = {}
    for p in range(1, busy + 1):
        for register in ("decisions", "audit"):
            path = f"/portal/projects/{p}/{register}"
            for _ in range(50):
                older = re.search(r'href="([^"]+)" rel="next"', get(path))
                if not older:
                    break
                path = older.group(1).replace("&amp;", "&")
            deep[(register, p)] = path
    refs = lambda prefix, count, i: f"{prefix}-{1 + (i * 7919) % count}"  # noqa: E731
    counts = {"D": 0, "H": 0, "G": 0, "R": 0, "INC": 0}
    with runtime.db.session() as session:
        for prefix in counts:
            counts[prefix] = session.execute(text(
                "SELECT last_value FROM ref_counters WHERE prefix = :p"), {"p": prefix}).scalar()
    pages: dict[str, Callable[[int], Any]] = {
        "projects (first 20, counts)": lambda i: get("/portal/"),
        "project overview": lambda i: get(f"/portal/projects/{project(i)}"),
        "decision log, first page": lambda i: get(f"/portal/projects/{project(i)}/decisions"),
        "decision log, page 51": lambda i: get(deep[("decisions", project(i))]),
        "decision log, status filter": lambda i: get(
            f"/portal/projects/{project(i)}/decisions?status=accepted"),
        "decision search, rare word": lambda i: get(
            f"/portal/projects/{project(i)}/decisions?q=rare{(i * 31) % 5000}"),
        "decision (ADR page)": lambda i: get(f"/portal/decisions/{refs('D', counts['D'], i)}"),
        "hypothesis board": lambda i: get(f"/portal/projects/{project(i)}/hypotheses"),
        "hypothesis page": lambda i: get(f"/portal/hypotheses/{refs('H', counts['H'], i)}"),
        "gates": lambda i: get(f"/portal/projects/{project(i)}/gates"),
        "gate page": lambda i: get(f"/portal/gates/{refs('G', counts['G'], i)}"),
        "risk register + heat map": lambda i: get(f"/portal/projects/{project(i)}/risks"),
        "risk page (score chart)": lambda i: get(f"/portal/risks/{refs('R', counts['R'], i)}"),
        "rituals": lambda i: get(f"/portal/projects/{project(i)}/rituals"),
        "incidents (MTTA/MTTR chart)": lambda i: get(
            f"/portal/projects/{project(i)}/incidents"),
        "incident page": lambda i: get(f"/portal/incidents/{refs('INC', counts['INC'], i)}"),
        "audit log, first page": lambda i: get(f"/portal/projects/{project(i)}/audit"),
        "audit log, page 51": lambda i: get(deep[("audit", project(i))]),
        "models": lambda i: get("/portal/models"),
        "model (deployment history)": lambda i: get(f"/portal/models/model-{i % MODELS}"),
        "version (lineage)": lambda i: get(
            f"/portal/models/model-{i % MODELS}/versions/{(i * 13) % 200}"),
    }
    figures = {}
    for name, request in pages.items():
        figures[name] = timed(repeat, request)
        print(f"  {name:<32} p50 {figures[name]['p50_ms']:7.1f}  p95 "
              f"{figures[name]['p95_ms']:7.1f} ms", flush=True)
    client.close()
    runtime.db.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--hypotheses", type=int, default=100_000)
    parser.add_argument("--risks", type=int, default=100_000)
    parser.add_argument("--gates", type=int, default=10_000)
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--measure-url", help="measure this already loaded database only")
    args = parser.parse_args()
    if args.measure_url:
        figures = measure(args.measure_url, args.repeat, args.projects)
        worst = max(row["p95_ms"] for row in figures.values())
        print(f"worst p95 {worst:.1f} ms ({os.popen('uptime').read().strip()})")
        return
    sizes = {"decisions": args.decisions, "hypotheses": args.hypotheses, "risks": args.risks,
             "gates": args.gates}
    out = ROOT / "bench" / "results" / "portal.json"
    out.parent.mkdir(exist_ok=True)
    results = []
    for kind in args.databases.split(","):
        with database(kind) as url:
            db = Database(url)
            db.upgrade()
            print(f"{kind}: loading {sizes}", flush=True)
            loaded = {**load(db, sizes, args.projects),
                      **load_portal_extras(db, sizes, args.projects)}
            db.dispose()
            print(f"{kind}: measuring ({os.popen('uptime').read().strip()})", flush=True)
            figures = measure(url, args.repeat, args.projects)
        worst = max(row["p95_ms"] for row in figures.values())
        results.append({"database": kind, "sizes": sizes, "load_seconds": loaded,
                        "pages": figures, "worst_p95_ms": worst,
                        "uptime": os.popen("uptime").read().strip()})
        print(f"{kind}: worst p95 {worst:.1f} ms (target {TARGET_P95_MS:.0f} ms: "
              f"{'met' if worst < TARGET_P95_MS else 'NOT met'})", flush=True)
        out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(),
                                               "platform": platform.platform(),
                                               "python": platform.python_version()},
                                   "results": results}, indent=2, default=str))
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
