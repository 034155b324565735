"""Soak: a Slack outage of `--seconds` (429 bursts, 500s, time-outs, refused connections in
turn) while users keep working, then recovery. The scenario is the one
`tests/integration/test_slack_faults.py` runs for 8 s (`tests/support/slack_faults.py`).

Runs Quorum in-process (web app and outbox worker) against the fake Slack behind a refusable
proxy, on a fresh SQLite file or on `--database-url` (migrated first; use an empty database).
Prints a table and writes the full report as JSON; exits 1 if a promise was broken.

    python bench/soak.py --seconds 60 --json bench/results/soak.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The app first: its `templates` package would otherwise be shadowed by tests/templates.
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bot.config import load_settings  # noqa: E402
from bot.database import Database  # noqa: E402
from support import slack_faults  # noqa: E402
from support.fake_slack import FakeSlack  # noqa: E402
from support.quorum_server import QuorumServer  # noqa: E402
from support.slack_requests import SIGNING_SECRET, SlackSender  # noqa: E402


def soak(database_url: str, seconds: float, phase_seconds: float) -> slack_faults.Report:
    Database(database_url).upgrade()
    with FakeSlack() as fake:
        proxy = slack_faults.proxy_for(fake)
        settings = load_settings(SLACK_BOT_TOKEN=fake.token, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                                 DATABASE_URL=database_url,
                                 **slack_faults.scenario_settings(fake, proxy))
        quorum = QuorumServer(settings).start()
        sender = SlackSender(quorum.url, fake.response_url(), team=fake.team_id)
        try:
            return slack_faults.run(quorum.url, quorum.runtime.db, fake, proxy, sender,
                                    window=seconds, phase_seconds=phase_seconds,
                                    drain_deadline=max(120.0, seconds * 2))
        finally:
            sender.close()
            quorum.stop()
            proxy.stop()


def table(report: slack_faults.Report) -> str:
    drain = "did not drain" if report.drain_seconds is None else f"{report.drain_seconds:.1f} s"
    rows = [
        ("fault window", f"{report.window_seconds:g} s: {' → '.join(report.phases)}"),
        ("requests made", f"{sum(report.requests.values())} "
                          f"({', '.join(f'{k} {v}' for k, v in sorted(report.requests.items()))})"),
        ("requests refused", str(len(report.refused_requests))),
        ("messages queued", str(report.queued)),
        ("messages delivered", f"{report.delivered} (+{report.outbox.get('superseded', 0)} "
                               "edits superseded by a newer edit)"),
        ("outbox at the end", ", ".join(f"{k} {v}" for k, v in sorted(report.outbox.items()))),
        ("duplicates", str(len(report.duplicates))),
        ("never reached Slack", str(len(report.missing))),
        ("order violations", str(len(report.order_violations))),
        ("stale cards", str(len(report.stale_cards))),
        *((f"retries: {reason}", f"{count:g}") for reason, count in report.retries.items()),
        ("look-ups of unanswered posts", str(report.lookups)),
        ("time to drain after recovery", drain),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"| {name.ljust(width)} | {value} |" for name, value in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the fault window")
    parser.add_argument("--phase-seconds", type=float, default=5.0,
                        help="how long each fault kind lasts before the next")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{scratch}/soak.db"
        report = soak(url, args.seconds, args.phase_seconds)
    print(table(report))
    problems = report.problems()
    for problem in problems:
        print(f"BROKEN: {problem}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**report.as_dict(), "problems": problems}, indent=2) + "\n")
    print(f"written to {args.json}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
