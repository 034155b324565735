"""Registers at scale: query latency over a million decisions, and streamed export.

For each database (SQLite, PostgreSQL) it loads a fresh database in bulk (one `INSERT … SELECT`
per table over a number series: `generate_series` on PostgreSQL, a recursive CTE on SQLite;
SQLite's FTS5 table is filled by its trigger, PostgreSQL's GIN index as rows arrive), then
times, in this process, what a user's request runs: the service function plus the rendering
of its Block Kit message, in one `db.session()` — the same calls the handlers make (no HTTP:
`bench/footprint.py`, run at the end against the loaded database, sends signed requests to a
real `quorum serve`). `quorum export decisions` runs as its own process; its wall time and its
resident memory (sampled every 0.2 s) are reported.

    python bench/scale.py [--decisions 1000000] [--hypotheses 100000] [--risks 100000]
                          [--gates 10000] [--projects 100] [--repeat 100]
                          [--databases sqlite,postgresql] [--no-footprint]

Prints a table and writes bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from ack import database  # noqa: E402

from bot.database import Database  # noqa: E402
from bot.models import Project  # noqa: E402
from bot.render import renderer  # noqa: E402
from bot.services import decisions, home, risks  # noqa: E402

TEAM = "T0BENCH01"
BUSY_USER = "U0BUSY001"
# The busy user holds a role in this many projects and made this share of the records.
BUSY_PROJECTS = 20
BUSY_EVERY = 50
# Words of the generated text: `common` is in every decision, `rare<n>` in one in RARE_WORDS.
RARE_WORDS = 5000


def series(dialect: str, count: int) -> str:
    """A FROM clause naming the integers 1..count as `n.i`."""
    if dialect == "postgresql":
        return f"generate_series(1::bigint, {count}) AS n(i)"
    return (f"(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {count})"
            f" SELECT i FROM s) AS n")


def minutes_ago(dialect: str, minutes: str) -> str:
    if dialect == "postgresql":
        return f"(now() - ({minutes}) * interval '1 minute')"
    return f"datetime('now', '-' || ({minutes}) || ' minutes')"


def days_from_today(dialect: str, days: str) -> str:
    if dialect == "postgresql":
        return f"(current_date + ({days})::int)"
    return f"date('now', ({days}) || ' days')"


def json_list(dialect: str, literal: str) -> str:
    return f"'{literal}'::jsonb" if dialect == "postgresql" else f"'{literal}'"


def load(db: Database, sizes: dict[str, int], projects: int) -> dict[str, float]:
    """Fill the registers; returns seconds per table."""
    dialect = db.engine.dialect.name
    seconds: dict[str, float] = {}
    # The newest record is a minute old; the spread is about three years for a million.
    spread = 3 * 365 * 24 * 60
    statements = {
        "projects": f"""
            INSERT INTO projects (id, team_id, channel_id, name, created_at, allow_self_approval,
                                  gate_reminder_hours, announce_new_versions)
            SELECT i, '{TEAM}', 'C0BENCH' || lpad_(i - 1), 'bench-' || (i - 1),
                   {minutes_ago(dialect, str(spread))}, false, 24, false
            FROM {series(dialect, projects)}""",
        "role_assignments": f"""
            INSERT INTO role_assignments (project_id, user_id, role, assigned_by, assigned_at)
            SELECT i, '{BUSY_USER}', 'ds', '{BUSY_USER}', {minutes_ago(dialect, "1")}
            FROM {series(dialect, min(BUSY_PROJECTS, projects))}""",
        "decisions": f"""
            INSERT INTO decisions (team_id, number, project_id, title, context, options,
                                   decision, consequences, status, deciders, created_by,
                                   created_at, updated_at)
            SELECT '{TEAM}', i, 1 + i % {projects},
                   'Choose model ' || (i % 997) || ' for rare' || (i % {RARE_WORDS}),
                   'Common context of decision ' || i || ' about latency and cost',
                   'Option A or option B', 'We chose option ' || (i % 2),
                   'Consequences follow', 'accepted', {json_list(dialect, '[]')},
                   CASE WHEN i % {BUSY_EVERY} = 0 THEN '{BUSY_USER}' ELSE 'U' || (i % 500) END,
                   {minutes_ago(dialect, f"{spread} - i * {spread} / {sizes['decisions']} + 1")},
                   {minutes_ago(dialect, "1")}
            FROM {series(dialect, sizes['decisions'])}""",
        "hypotheses": f"""
            INSERT INTO hypotheses (team_id, number, project_id, statement, metric,
                                    expected_effect, owner, experiment_url, notes, status,
                                    evidence, created_by, created_at, updated_at)
            SELECT '{TEAM}', i, 1 + i % {projects}, 'Hypothesis ' || i || ' lifts recall',
                   'recall', '+1%', CASE WHEN i % {BUSY_EVERY} = 0 THEN '{BUSY_USER}'
                   ELSE 'U' || (i % 500) END, '', '',
                   CASE i % 4 WHEN 0 THEN 'proposed' WHEN 1 THEN 'running'
                   WHEN 2 THEN 'supported' ELSE 'refuted' END, '', 'U' || (i % 500),
                   {minutes_ago(dialect, f"{spread} - i * 10")}, {minutes_ago(dialect, "1")}
            FROM {series(dialect, sizes['hypotheses'])}""",
        "risks": f"""
            INSERT INTO risks (team_id, number, project_id, title, description, category,
                               likelihood, impact, score, band, owner, treatment, mitigation,
                               status, next_review, created_by, created_at, updated_at)
            SELECT '{TEAM}', i, 1 + i % {projects}, 'Risk ' || i || ' of drift', '', 'other',
                   1 + i % 5, 1 + (i / 5) % 5, (1 + i % 5) * (1 + (i / 5) % 5),
                   CASE WHEN (1 + i % 5) * (1 + (i / 5) % 5) >= 20 THEN 'critical'
                        WHEN (1 + i % 5) * (1 + (i / 5) % 5) >= 12 THEN 'high'
                        WHEN (1 + i % 5) * (1 + (i / 5) % 5) >= 5 THEN 'medium'
                        ELSE 'low' END,
                   CASE WHEN i % {BUSY_EVERY} = 0 THEN '{BUSY_USER}' ELSE 'U' || (i % 500) END,
                   'mitigate', '', CASE WHEN i % 3 = 0 THEN 'closed' ELSE 'open' END,
                   {days_from_today(dialect, "i % 60 - 30")}, 'U' || (i % 500),
                   {minutes_ago(dialect, f"{spread} - i * 10")}, {minutes_ago(dialect, "1")}
            FROM {series(dialect, sizes['risks'])}""",
        "gates": f"""
            INSERT INTO gates (team_id, number, project_id, milestone, model, version,
                               required_roles, criteria, status, requested_by, created_at,
                               updated_at)
            SELECT '{TEAM}', i, 1 + i % {projects}, 'launch', 'model-' || (i % 50),
                   '' || i, {json_list(dialect, '["ds", "eng"]')}, {json_list(dialect, '[]')},
                   CASE WHEN i % 3 = 0 THEN 'open' ELSE 'passed' END, 'U' || (i % 500),
                   {minutes_ago(dialect, f"{spread} - i * 100")}, {minutes_ago(dialect, "1")}
            FROM {series(dialect, sizes['gates'])}""",
        # Every passed gate has both sign-offs (two people); open gates have the engineer's only.
        "gate_signoffs": """
            INSERT INTO gate_signoffs (gate_id, role, user_id, decision, at, slot)
            SELECT g.id, r.role, 'U' || ((g.id + r.n) % 500), 'approved', g.created_at, 1
            FROM gates g, (SELECT 'ds' AS role, 0 AS n UNION ALL SELECT 'eng', 1) r
            WHERE g.status = 'passed' OR r.role = 'eng'""",
        "ref_counters": f"""
            INSERT INTO ref_counters (team_id, prefix, last_value)
            SELECT '{TEAM}', 'D', {sizes['decisions']} UNION ALL
            SELECT '{TEAM}', 'H', {sizes['hypotheses']} UNION ALL
            SELECT '{TEAM}', 'R', {sizes['risks']} UNION ALL
            SELECT '{TEAM}', 'G', {sizes['gates']}""",
    }
    lpad = ("lpad((i)::text, 2, '0')" if dialect == "postgresql"
            else "substr('00' || (i), -2, 2)")
    for table, statement in statements.items():
        started = time.perf_counter()
        with db.engine.begin() as connection:
            connection.execute(text(statement.replace("lpad_(i - 1)",
                                                      lpad.replace("(i)", "(i - 1)"))))
        seconds[table] = time.perf_counter() - started
        print(f"  loaded {table} in {seconds[table]:.1f} s", flush=True)
    # The state tables reach in service. PostgreSQL: autovacuum's statistics and visibility map
    # (without it a count reads every row's heap page). SQLite: none, as Quorum never runs
    # ANALYZE there, so the plans measured are the ones chosen without statistics.
    if dialect == "postgresql":
        started = time.perf_counter()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
        seconds["vacuum_analyze"] = time.perf_counter() - started
    return seconds


def timed(db: Database, repeat: int, work: Callable[[Session, int], Any]) -> dict[str, float]:
    """Run `work` `repeat` times, each in its own session as a request would; p50/p95 in ms."""
    samples = []
    for index in range(repeat + 2):
        started = time.perf_counter()
        with db.session() as session:
            work(session, index)
        if index >= 2:  # the first two warm the caches, as a running server would have them
            samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"p50_ms": statistics.median(samples),
            "p95_ms": samples[max(0, int(len(samples) * 0.95) - 1)],
            "max_ms": samples[-1], "n": len(samples)}


def project_of(session: Session, index: int, projects: int) -> Project:
    channel = f"C0BENCH{index % min(projects, BUSY_PROJECTS):02d}"
    return session.scalars(select(Project).where(Project.team_id == TEAM,
                                                 Project.channel_id == channel)).one()


def measure(db: Database, projects: int, repeat: int) -> dict[str, dict[str, float]]:
    rng = random.Random(7)

    def search(session: Session, index: int, words: str | None = None) -> None:
        project = project_of(session, index, projects)
        words = words or f"rare{rng.randrange(RARE_WORDS)}"
        results = decisions.search_decisions(session, project, words)
        renderer.message("decision/search", words=words, results=results,
                         limit=decisions.SEARCH_LIMIT)

    def list_first(session: Session, index: int) -> None:
        project = project_of(session, index, projects)
        page = decisions.list_decisions(session, project)
        renderer.message("decision/list", project=project, page=page)

    def list_deep(session: Session, index: int) -> None:
        # The "Older" button 50 pages in: the cursor of page 50's last item is what it sends.
        project = project_of(session, index, projects)
        page = decisions.list_decisions(session, project, deep_cursors[project.id])
        renderer.message("decision/list", project=project, page=page)

    def heatmap(session: Session, index: int) -> None:
        project = project_of(session, index, projects)
        renderer.message("risk/heatmap", project=project, heat=risks.heat_map(session, project))

    def busy_home(session: Session, _: int) -> None:
        home.render_home(home.build_home(session, TEAM, BUSY_USER))

    deep_cursors: dict[int, Any] = {}
    with db.session() as session:
        for index in range(min(projects, BUSY_PROJECTS)):
            project = project_of(session, index, projects)
            page = decisions.list_decisions(session, project)
            for _ in range(50):  # follow the Older button as a person would
                page = decisions.list_decisions(session, project, page.older)
            deep_cursors[project.id] = page.older

    return {
        "decision search (rare word)": timed(db, repeat, search),
        "decision search (common word)": timed(db, repeat,
                                               lambda s, i: search(s, i, "common latency")),
        "decision search (partial word)": timed(db, repeat, lambda s, i: search(s, i, "odel")),
        "decision list (first page)": timed(db, repeat, list_first),
        "decision list (page 51, Older)": timed(db, repeat, list_deep),
        "risk heatmap": timed(db, repeat, heatmap),
        "home (busy user)": timed(db, max(10, repeat // 5), busy_home),
    }


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def export(url: str, fmt: str) -> dict[str, Any]:
    """`quorum export decisions` as its own process: wall time, records/s and RSS over time."""
    env = {**os.environ, "DATABASE_URL": url}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "export", "decisions",
                                "--format", fmt], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    samples: list[tuple[float, int]] = []
    written = 0
    assert process.stdout is not None
    next_sample = 0.0
    while chunk := process.stdout.read(1 << 16):
        written += len(chunk)
        now = time.perf_counter() - started
        if now >= next_sample:
            samples.append((round(now, 1), rss_kb(process.pid)))
            next_sample = now + 0.2
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    rss = [kb for _, kb in samples if kb]
    return {"format": fmt, "seconds": seconds, "bytes": written, "exit": status,
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "rss_mb_at_10pct": rss[len(rss) // 10] / 1024 if rss else None,
            "rss_mb_at_90pct": rss[len(rss) * 9 // 10] / 1024 if rss else None,
            "rss_samples_kb": samples[:: max(1, len(samples) // 50)]}


def bench_database(kind: str, sizes: dict[str, int], projects: int, repeat: int,
                   formats: list[str], footprint: bool) -> dict[str, Any]:
    with database(kind) as url:
        db = Database(url)
        db.upgrade()
        print(f"{kind}: loading {sizes}", flush=True)
        loaded = load(db, sizes, projects)
        print(f"{kind}: measuring", flush=True)
        figures = measure(db, projects, repeat)
        db.dispose()
        exports = [export(url, fmt) for fmt in formats]
        result = {"database": kind, "sizes": sizes, "projects": projects,
                  "load_seconds": loaded, "queries": figures, "exports": exports,
                  "uptime": os.popen("uptime").read().strip()}
        if footprint:
            from footprint import measure_server
            result["footprint"] = measure_server(url, requests=200)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--hypotheses", type=int, default=100_000)
    parser.add_argument("--risks", type=int, default=100_000)
    parser.add_argument("--gates", type=int, default=10_000)
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--formats", default="json", help="export formats, e.g. json,csv,md")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--no-footprint", action="store_true")
    args = parser.parse_args()
    sizes = {"decisions": args.decisions, "hypotheses": args.hypotheses, "risks": args.risks,
             "gates": args.gates}
    out = ROOT / "bench" / "results" / "scale.json"
    out.parent.mkdir(exist_ok=True)
    results = []
    for kind in args.databases.split(","):
        result = bench_database(kind, sizes, args.projects, args.repeat,
                                args.formats.split(","), not args.no_footprint)
        results.append(result)
        report(result)
        # Written after each database, so that a later failure keeps the earlier figures.
        out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(),
                                               "platform": platform.platform(),
                                               "python": platform.python_version()},
                                   "results": results}, indent=2, default=str))
    print(f"\nwritten to {out.relative_to(ROOT)}")


def report(result: dict[str, Any]) -> None:
    print(f"\n{result['database']} ({result['uptime']})")
    print(f"{'operation':<34} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, row in result["queries"].items():
        print(f"{name:<34} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} {row['max_ms']:>8.1f}")
    for row in result["exports"]:
        rate = result["sizes"]["decisions"] / row["seconds"]
        print(f"export decisions --format {row['format']}: {row['seconds']:.1f} s "
              f"({rate:,.0f} records/s, {row['bytes'] / 1e6:.0f} MB), RSS "
              f"{row['rss_mb_at_10pct'] or 0:.0f} MB at 10 % -> "
              f"{row['rss_mb_at_90pct'] or 0:.0f} MB at 90 %, peak {row['peak_rss_mb']:.0f} MB")
    if "footprint" in result:
        print("footprint:", json.dumps({k: v for k, v in result["footprint"].items()
                                        if k != "requests"}))
        for name, row in result["footprint"].get("requests", {}).items():
            print(f"  signed {name:<26} p50 {row['p50_ms']:.1f} ms  p95 {row['p95_ms']:.1f} ms")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
