"""Footprint of `quorum serve`: start-up time to a healthy `/healthz`, and resident memory;
with `--startup`, the cold start of the commands CI and deployments run.

Starts `quorum serve` (with a fake Slack) on a fresh database of each kind, times the start
from spawning the process to the first `200` from `/healthz` (this includes the interpreter,
the imports and the migrations of an empty database), reads its resident memory (VmRSS) idle,
then after signed requests (`/decision list`, `/decision search`, `/risk heatmap`, App Home
opened), and reports their latencies too. `bench/scale.py` calls `measure_server` on the
database it loaded, so "after load" there means against a million decisions.

    python bench/footprint.py [--databases sqlite,postgresql] [--requests 200]

Prints a table and writes bench/results/footprint.json.

    python bench/footprint.py --startup [--runs 5] [--baseline /work/main/.venv/bin/quorum]

times (wall clock, and CPU time: on a shared, loaded machine the wall clock mostly measures the
wait for a core, the CPU time what a quiet machine would take) as fresh processes (the median
of `--runs`, interleaved with the baseline's when one is
given: the same command of another checkout, run right before each of ours), `quorum --help`,
`quorum gate check` on a migrated database, and `quorum serve` from spawn to its first 200
from `/healthz` on a migrated database (with `--no-migrate`, and migrating, i.e. finding
nothing to do). Writes bench/results/startup.json with the machine's load before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
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
import httpx  # noqa: E402
from ack import database  # noqa: E402

from support.fake_slack import FakeSlack  # noqa: E402
from support.processes import free_port, quorum_serve, stop  # noqa: E402
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


def _timed_command(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of running `command` to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=120)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timed_serve(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds from spawning `command` to the first 200 from its /healthz."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    started = time.perf_counter()
    process = subprocess.Popen(command, env={**env, "PORT": str(port)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return time.perf_counter() - started, _cpu_seconds(process.pid)
            except httpx.TransportError:
                pass
            time.sleep(0.01)
    finally:
        stop(process)


def startup(args: argparse.Namespace) -> None:
    """Cold starts of `quorum --help`, `gate check` and `serve`, ours against a baseline."""
    from bot.database import Database

    programs = {"this": [args.quorum]} | ({"baseline": [args.baseline]} if args.baseline else {})
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    for kind in args.databases.split(","):
        with database(kind) as url:
            Database(url).upgrade()
            env = {key: value for key, value in os.environ.items()
                   if not key.startswith(("SLACK_", "QUORUM_", "DATABASE_URL", "PORT"))}
            env |= {"DATABASE_URL": url, "SLACK_BOT_TOKEN": "xoxb-bench",
                    "SLACK_SIGNING_SECRET": "bench", "SLACK_API_URL": "http://127.0.0.1:9/",
                    "HOST": "127.0.0.1"}
            cases: list[tuple[str, list[str], Any]] = [
                ("quorum --help", ["--help"], _timed_command),
                ("quorum gate check", ["gate", "check", "--model", "churn", "--version", "3"],
                 _timed_command),
                ("serve to healthy", ["serve"], _timed_serve),
                ("serve --no-migrate to healthy", ["serve", "--no-migrate"], _timed_serve),
            ]
            for name, argv, timer in cases:
                if kind != args.databases.split(",")[0] and name == "quorum --help":
                    continue  # no database involved: measured once
                samples: dict[str, list[tuple[float, float]]] = {label: [] for label in programs}
                for _ in range(args.runs):
                    for label, program in reversed(programs.items()):  # baseline first
                        if label == "baseline" and "--no-migrate" in argv:
                            continue  # the baseline has no such option
                        samples[label].append(timer(program + argv, env))
                row = {"database": kind if name != "quorum --help" else "-", "command": name}
                for label, values in samples.items():
                    if values:
                        row[label] = {"median_s": statistics.median(w for w, _ in values),
                                      "median_cpu_s": statistics.median(c for _, c in values),
                                      "runs": values}
                rows.append(row)
                print(f"{row['database']:<10} {name:<30} " + "  ".join(
                    f"{label} {row[label]['median_s']:.3f} s (CPU {row[label]['median_cpu_s']:.3f})"
                    for label in programs if label in row), flush=True)
    out = ROOT / "bench" / "results" / "startup.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(),
                                           "platform": platform.platform(),
                                           "python": platform.python_version(),
                                           "load_before": load_before,
                                           "load_after": os.getloadavg()},
                               "runs": args.runs, "rows": rows}, indent=2))
    print(f"\nload average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}; "
          f"written to {out.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3, help="start-ups per database "
                        "(with --startup: cold starts per command, default 5)")
    parser.add_argument("--startup", action="store_true",
                        help="time the cold start of --help, gate check and serve")
    parser.add_argument("--quorum", default=str(ROOT / ".venv" / "bin" / "quorum"),
                        help="the `quorum` program to time (with --startup)")
    parser.add_argument("--baseline", help="another checkout's `quorum` program, timed "
                        "interleaved with ours (with --startup)")
    args = parser.parse_args()
    if args.startup:
        if "--runs" not in sys.argv:
            args.runs = 5
        startup(args)
        return
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
