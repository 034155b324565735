"""Fan-out: many projects whose standups fall due in the same minute, under Slack's rate limits.

For each configuration (SQLite with one `quorum serve`; PostgreSQL with one and with two) it
seeds `--projects` projects, each in its own channel with a daily standup, starts the replicas
against a fake Slack that enforces Slack's limits on chat.postMessage (1 a second per channel;
`--per-minute` a minute for the workspace, a token bucket holding one second's worth; past
either, 429 with `Retry-After`), then makes every standup due at once and times how long until
the last one is posted. The theoretical minimum is what the workspace limit allows:
(projects - burst) / rate. It also checks that every standup was posted exactly once.
Two replicas on one SQLite file are not a supported configuration (design §3), so SQLite runs
with one.

    python bench/fanout.py [--projects 500] [--per-minute 600]
                           [--configs sqlite:1,postgresql:1,postgresql:2] [--pace-per-minute N]

Quorum paces its posts at `--pace-per-minute` (QUORUM_SLACK_POSTS_PER_MINUTE; by default the
same as the limit, 0 for no pacing, when only Retry-After slows it down).

Prints a table and writes bench/results/fanout.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from ack import SECRET, database  # noqa: E402

from bot.database import Database  # noqa: E402
from bot.models import (  # noqa: E402
    OutboxMessage,
    OutboxStatus,
    RitualOccurrence,
    RitualSchedule,
    utcnow,
)
from bot.services import rituals  # noqa: E402
from bot.services.projects import project_for_channel  # noqa: E402
from support.fake_slack import FakeSlack  # noqa: E402
from support.processes import free_port, running  # noqa: E402
from support.slack_limits import PostLimits  # noqa: E402

TEAM = "T0BENCH01"
TICK_SECONDS = 1.0
LOGS = ROOT / "bench" / "results" / "fanout-logs"  # each replica's output
# After the last standup, how long the replicas keep running to show that none is posted twice.
SETTLE_SECONDS = 5.0


def channel(number: int) -> str:
    return f"C{number:08d}"


def seed(url: str, projects: int) -> datetime:
    """Migrate, and give every project a daily standup at this minute, not due yet; returns
    the minute."""
    db = Database(url)
    db.upgrade()
    now = utcnow()
    with db.session() as session:
        for number in range(projects):
            project = project_for_channel(session, TEAM, channel(number), f"fanout-{number}")
            schedule, _ = rituals.set_schedule(session, project, "U0BENCH01", "standup",
                                               f"daily {now:%H:%M}", "UTC", now=now)
            schedule.checked_until = now + timedelta(days=1)
    db.dispose()
    return now.replace(second=0, microsecond=0)


def make_all_due(url: str, minute: datetime) -> float:
    """Every standup falls due at once (this minute's occurrence, even if the replicas took
    until the next minute to start); returns the moment (monotonic) it committed."""
    db = Database(url)
    with db.session() as session:
        session.execute(update(RitualSchedule).values(checked_until=minute - timedelta(minutes=1)))
    due_at = time.monotonic()
    db.dispose()
    return due_at


def standup_posts(fake: FakeSlack) -> list[Any]:
    return [call for call in fake.calls_to("chat.postMessage")
            if "Standup" in call.args.get("text", "")]


def run(kind: str, replicas: int, projects: int, per_minute: float, pace: float,
        timeout: float) -> dict[str, Any]:
    limits = PostLimits(workspace_per_minute=per_minute)
    with FakeSlack() as fake, database(kind) as url, ExitStack() as stack:
        minute = seed(url, projects)
        env = {"SLACK_BOT_TOKEN": fake.token, "SLACK_SIGNING_SECRET": SECRET,
               "SLACK_API_URL": fake.url, "DATABASE_URL": url, "HOST": "127.0.0.1",
               "QUORUM_SCHEDULER_TICK_SECONDS": str(TICK_SECONDS)}
        if pace:
            env["QUORUM_SLACK_POSTS_PER_MINUTE"] = str(pace)
        LOGS.mkdir(parents=True, exist_ok=True)
        for number in range(replicas):  # one after the other: each migrates the database
            port = free_port()
            stack.enter_context(running(
                [sys.executable, "-m", "bot.cli", "serve"], cwd=ROOT, timeout=60,
                env={**os.environ, **env, "PORT": str(port)},
                ready_url=f"http://127.0.0.1:{port}/healthz",
                log_path=LOGS / f"{kind}-{replicas}-{number}.log"))
        fake.reset()
        fake.limit_posts(limits)
        due_at = make_all_due(url, minute)
        deadline = due_at + timeout
        while len(standup_posts(fake)) < projects and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(SETTLE_SECONDS)
        posts = standup_posts(fake)
        refused = [call for call in fake.calls_to("chat.postMessage", ok_only=False)
                   if call.status == 429]
        db = Database(url)
        with db.session() as session:
            occurrences = session.scalar(select(func.count()).select_from(RitualOccurrence))
            outbox = dict(session.execute(select(OutboxMessage.status, func.count())
                                          .group_by(OutboxMessage.status)).all())
        db.dispose()
    per_channel = Counter(call.args["channel"] for call in posts)
    first = min((call.at for call in posts), default=due_at) - due_at
    last = max((call.at for call in posts), default=deadline) - due_at
    minimum = limits.minimum_seconds(projects)
    return {
        "database": kind, "replicas": replicas, "projects": projects, "per_minute": per_minute,
        "pace_per_minute": pace or None,
        "posted": len(per_channel), "duplicates": sum(n - 1 for n in per_channel.values()),
        "lost": projects - len(per_channel), "occurrences": occurrences,
        "outbox": {str(status): count for status, count in outbox.items()},
        "first_post_s": round(first, 2), "all_posted_s": round(last, 2),
        "minimum_s": round(minimum, 2), "ratio": round(last / minimum, 3) if minimum else None,
        "ratelimited_429": len(refused),
        "complete": len(per_channel) == projects and outbox.get(OutboxStatus.SENT) == projects,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=500)
    parser.add_argument("--per-minute", type=float, default=600.0,
                        help="the fake Slack's workspace-wide chat.postMessage limit")
    parser.add_argument("--pace-per-minute", type=float, default=None,
                        help="QUORUM_SLACK_POSTS_PER_MINUTE (default: --per-minute; 0: unset)")
    parser.add_argument("--configs", default="sqlite:1,postgresql:1,postgresql:2",
                        help="database:replicas pairs, comma-separated")
    args = parser.parse_args()
    configs = [(kind, int(count)) for kind, count in
               (pair.split(":") for pair in args.configs.split(","))]
    minimum = PostLimits(workspace_per_minute=args.per_minute).minimum_seconds(args.projects)
    pace = args.per_minute if args.pace_per_minute is None else args.pace_per_minute
    print(f"{args.projects} standups due at once; Slack limit {args.per_minute:g}/min; Quorum "
          f"paces at {f'{pace:g}/min' if pace else 'no set rate'}")
    header = (f"{'db':<10} {'replicas':>8} | {'first s':>7} {'all s':>7} {'min s':>6} "
              f"{'ratio':>6} | {'posted':>6} {'lost':>4} {'dupes':>5} {'429s':>5}")
    print(header)
    print("-" * len(header), flush=True)
    rows = []
    for kind, count in configs:
        row = run(kind, count, args.projects, args.per_minute, pace, timeout=3 * minimum + 60)
        rows.append(row)
        print(f"{row['database']:<10} {row['replicas']:>8} | {row['first_post_s']:>7.1f} "
              f"{row['all_posted_s']:>7.1f} {row['minimum_s']:>6.1f} {row['ratio'] or 0:>6.2f} | "
              f"{row['posted']:>6} {row['lost']:>4} {row['duplicates']:>5} "
              f"{row['ratelimited_429']:>5}", flush=True)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(), "uptime": load},
              "tick_seconds": TICK_SECONDS, "rows": rows}
    out = ROOT / "bench" / "results" / "fanout.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\n{load}\nwritten to {out.relative_to(ROOT)}")
    if not all(row["complete"] and row["duplicates"] == 0 for row in rows):
        sys.exit("some standups were lost or posted twice")


if __name__ == "__main__":
    main()
