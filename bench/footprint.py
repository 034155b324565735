"""Footprint of `quorum serve`: start-up time to a healthy `/healthz`, and resident memory.

Starts `quorum serve` (with a fake Slack) on a fresh database of each kind, times the start
from spawning the process to the first `200` from `/healthz` (this includes the interpreter,
the imports and the migrations of an empty database), reads its resident memory (VmRSS) idle,
then after signed requests (`/decision list`, `/decision search`, `/risk heatmap`, App Home
opened), and reports their latencies too. `bench/scale.py` calls `measure_server` on the
database it loaded, so "after load" there means against a million decisions.

    python bench/footprint.py [--databases sqlite,postgresql] [--requests 200]

Prints a table and writes bench/results/footprint.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The repository on the path, so that its `templates` package (a regular package) wins over the
# `tests/templates` directory that `tests` on the path would otherwise offer.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from ack import database  # noqa: E402

from support.fake_slack import FakeSlack  # noqa: E402
from support.processes import quorum_serve  # noqa: E402
from support.slack_requests import SlackSender  # noqa: E402

TEAM = "T0BENCH01"
BUSY_USER = "U0BUSY001"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _percentiles(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {"p50_ms": statistics.median(samples),
            "p95_ms": samples[max(0, int(len(samples) * 0.95) - 1)], "n": len(samples)}


def measure_server(database_url: str, requests: int = 200) -> dict[str, Any]:
    """Start `quorum serve` on `database_url`, time it to healthy, and read its memory."""
    with FakeSlack() as fake, tempfile.TemporaryDirectory() as logs:
        started = time.perf_counter()
        with quorum_serve(database_url, fake.url, fake.token,
                          Path(logs) / "serve.log") as (process, url):
            startup = time.perf_counter() - started
            time.sleep(3)  # the scheduler's first tick and the outbox worker settle
            idle = rss_mb(process.pid)
            sender = SlackSender(url, response_url=f"{fake.url}/response", team=TEAM)
            latencies: dict[str, list[float]] = {}
            kinds = {
                "/decision list": lambda n: sender.command(
                    "/decision", "list", user=BUSY_USER, channel=f"C0BENCH{n % 20:02d}"),
                "/decision search": lambda n: sender.command(
                    "/decision", f"search rare{n * 37 % 5000}", user=BUSY_USER,
                    channel=f"C0BENCH{n % 20:02d}"),
                "/risk heatmap": lambda n: sender.command(
                    "/risk", "heatmap", user=BUSY_USER, channel=f"C0BENCH{n % 20:02d}"),
                "app_home_opened": lambda n: sender.event(
                    {"type": "app_home_opened", "user": BUSY_USER, "tab": "home",
                     "channel": "D0BUSY001"}, event_id=f"Ev{n:08d}"),
            }
            for name, send in kinds.items():
                for number in range(requests // len(kinds)):
                    begun = time.perf_counter()
                    response = send(number)
                    latencies.setdefault(name, []).append((time.perf_counter() - begun) * 1000)
                    if response.status_code != 200:
                        raise RuntimeError(f"{name}: {response.status_code} {response.text}")
            sender.close()
            time.sleep(2)
            after = rss_mb(process.pid)
    return {"startup_s": startup, "idle_rss_mb": idle, "after_requests_rss_mb": after,
            "requests": {name: _percentiles(samples) for name, samples in latencies.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3, help="start-ups per database")
    args = parser.parse_args()
    rows = []
    for kind in args.databases.split(","):
        for run in range(args.runs):
            with database(kind) as url:
                rows.append({"database": kind, "run": run + 1,
                             **measure_server(url, args.requests)})
    print(f"{'db':<11} {'run':>3} {'start-up s':>10} {'idle RSS MB':>11} {'after MB':>9}")
    for row in rows:
        print(f"{row['database']:<11} {row['run']:>3} {row['startup_s']:>10.2f} "
              f"{row['idle_rss_mb']:>11.1f} {row['after_requests_rss_mb']:>9.1f}")
    out = ROOT / "bench" / "results" / "footprint.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(),
                                           "platform": platform.platform(),
                                           "python": platform.python_version(),
                                           "uptime": os.popen("uptime").read().strip()},
                               "rows": rows}, indent=2))
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
