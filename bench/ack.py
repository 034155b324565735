"""Quick-log throughput and latency of `quorum serve`, against a same-work baseline and a bare ack.

For each database (SQLite, PostgreSQL) it starts, as separate processes served the same way
(`bot.web`'s Starlette app on uvicorn, `dispatch_until_ack`):

- **quorum**: `quorum serve --no-worker` (the request path alone), on its own database;
- **same-work**: `bench/same_work_app.py`, whose `/decision` writes the same durable facts (one
  gapless reference, the decision row, an audit row and an outbox row, committed before the
  ack) with the database driver, on its own database of the same schema;
- **bare**: `bench/bare_app.py`, which only acks;
- and `quorum worker`, which delivers Quorum's outbox to a fake Slack between rounds only: it is
  stopped (SIGSTOP) while a round is measured and resumed (SIGCONT) afterwards until the outbox
  is drained, so that neither delivery nor the fake Slack's validation runs inside a measured
  window, and each round starts with an empty outbox.

`bench/load.py` (its own process) drives each app for `--seconds` per round at each
concurrency level, the three apps interleaved (the order rotates each round); the figures are
medians over the rounds, and the ratios are medians of the per-round ratios. Each server's CPU
time (user + system, from /proc) over its run gives CPU per request (uvicorn included); the
worker's over a drain gives CPU per delivered card and the drain time the delivery throughput.

    python bench/ack.py [--seconds 3] [--rounds 3] [--levels 1,10,50]
                        [--databases sqlite,postgresql]
    python bench/ack.py --processes 1,2 [--levels 10,50]   # quorum serve --workers N, PostgreSQL

Prints tables and writes bench/results/ack.json (or ack-processes.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the app's templates before tests/templates
from support.fake_slack import FakeSlack  # noqa: E402
from support.postgres import scratch_schema  # noqa: E402
from support.processes import free_port, running  # noqa: E402

SECRET = "bench-signing-secret"
POSTGRES = os.environ.get("BENCH_DATABASE_URL",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh, empty database of `kind`, removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{directory}/bench.db"
        return
    with scratch_schema(POSTGRES, "bench") as url:
        yield url


@contextmanager
def server(command: list[str], env: dict[str, str], port: int) -> Iterator[tuple[str, int]]:
    """`command` serving on `port` until the block ends; its URL and process id."""
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as logs, running(
            command, env={**os.environ, **env}, cwd=ROOT, ready_url=f"{url}/healthz",
            log_path=Path(logs) / "server.log", timeout=90) as process:
        yield url, process.pid


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants (uvicorn's workers), so far."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(child) for child in children)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def load(url: str, concurrency: int, seconds: float, pid: int) -> dict[str, Any]:
    before = cpu_seconds(pid)
    output = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load.py"), "--url", url, "--concurrency",
         str(concurrency), "--seconds", str(seconds), "--warmup", "0.5"],
        capture_output=True, text=True, check=True, timeout=seconds + 120)
    result: dict[str, Any] = json.loads(output.stdout)
    # Includes the warm-up's requests, which are not counted: a slight overestimate.
    spent = cpu_seconds(pid) - before
    result["cpu_ms_per_request"] = spent * 1000 / max(result["requests"], 1) \
        * seconds / (seconds + 0.5)
    return result


class Delivery:
    """`quorum worker` on Quorum's database, let run only between measured rounds."""

    def __init__(self, database_url: str, env: dict[str, str], log_path: Path) -> None:
        self.engine = create_engine(database_url)
        self.log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "worker"], env={**os.environ, **env}, cwd=ROOT,
            stdout=self.log, stderr=subprocess.STDOUT)
        self.drains: list[dict[str, float]] = []

    def unfinished(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(text(
                "SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')")).scalar()
                or 0)

    def drain(self, timeout: float = 300) -> dict[str, float]:
        """Resume the worker until the outbox is empty, then stop it again."""
        cards = self.unfinished()
        started, cpu_before = time.perf_counter(), cpu_seconds(self.process.pid)
        self.process.send_signal(signal.SIGCONT)
        while self.unfinished():
            if time.perf_counter() - started > timeout:
                raise TimeoutError("the outbox did not drain")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(self.process.pid) - cpu_before
        time.sleep(0.2)  # let the worker finish recording its batch
        self.process.send_signal(signal.SIGSTOP)
        drained = {"cards": cards, "seconds": elapsed,
                   "cards_per_second": cards / elapsed if elapsed else 0.0,
                   "cpu_ms_per_card": cpu * 1000 / cards if cards else 0.0}
        if cards:
            self.drains.append(drained)
        return drained

    def stop(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        self.process.wait(20)
        self.log.close()
        self.engine.dispose()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per app and medians of the per-round ratios."""
    apps = {name: {key: median([run[key] for run in results])
                   for key in ("p50_ms", "p99_ms", "rps", "cpu_ms_per_request")}
            for name, results in runs.items()}
    for name in apps:
        apps[name]["errors"] = sum(run["errors"] for run in runs[name])
    quorum = runs["quorum"]

    def ratio(other: str, key: str) -> float:
        return median([q[key] / max(o[key], 1e-9)
                       for q, o in zip(quorum, runs[other], strict=True)])

    summary: dict[str, Any] = {"apps": apps}
    for other in runs:
        if other != "quorum":
            summary[f"rps_vs_{other}"] = ratio(other, "rps")
            summary[f"p99_vs_{other}"] = ratio(other, "p99_ms")
    return summary


def bench_database(kind: str, levels: list[int], seconds: float,
                   rounds: int) -> list[dict[str, Any]]:
    rows = []
    with FakeSlack() as fake, database(kind) as quorum_url, database(kind) as same_url, \
            tempfile.TemporaryDirectory() as logs, ExitStack() as stack:
        fake.keep_alive = True
        base = {"SLACK_BOT_TOKEN": fake.token, "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_API_URL": fake.url, "HOST": "127.0.0.1"}
        ports = {name: free_port() for name in ("quorum", "same_work", "bare")}
        commands = {
            "quorum": ([sys.executable, "-m", "bot.cli", "serve", "--no-worker"], quorum_url),
            "same_work": ([sys.executable, str(ROOT / "bench" / "same_work_app.py"), "--port",
                           str(ports["same_work"])], same_url),
            "bare": ([sys.executable, str(ROOT / "bench" / "bare_app.py"), "--port",
                      str(ports["bare"])], same_url),
        }
        servers = {}
        for name, (command, url) in commands.items():
            servers[name] = stack.enter_context(server(
                command, {**base, "DATABASE_URL": url, "PORT": str(ports[name])}, ports[name]))
        delivery = Delivery(quorum_url, {**base, "DATABASE_URL": quorum_url},
                            Path(logs) / "worker.log")
        try:
            # Warm-up, not counted: first requests (imports, caches, connections) and the
            # worker's start-up and first drain.
            for url, pid in servers.values():
                load(url, 10, 1.0, pid)
            delivery.drain()
            delivery.drains.clear()
            for concurrency in levels:
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
                order = list(servers)
                for number in range(rounds):
                    turn = order[number % len(order):] + order[:number % len(order)]
                    for name in turn:
                        url, pid = servers[name]
                        runs[name].append(load(url, concurrency, seconds, pid))
                    delivery.drain()
                summary = summarize(runs)
                rows.append({"database": kind, "concurrency": concurrency, **summary,
                             "runs": runs})
                print(f"  {kind} c={concurrency}: quorum {summary['apps']['quorum']['rps']:.0f}"
                      f" rps, same-work {summary['apps']['same_work']['rps']:.0f} rps",
                      file=sys.stderr)
            drains = delivery.drains
            rows[-1]["delivery"] = {
                "cards": sum(d["cards"] for d in drains),
                "cards_per_second": median([d["cards_per_second"] for d in drains]),
                "cpu_ms_per_card": median([d["cpu_ms_per_card"] for d in drains])}
            rows[-1]["slack_posts"] = len(fake.calls_to("chat.postMessage"))
            rows[-1]["slack_posts_distinct"] = len(
                {c.args.get("text") for c in fake.calls_to("chat.postMessage")})
        finally:
            delivery.stop()
    return rows


def bench_processes(levels: list[int], seconds: float, rounds: int,
                    processes: list[int]) -> list[dict[str, Any]]:
    """`quorum serve --no-worker --workers N` for each N, interleaved, on PostgreSQL."""
    rows = []
    with FakeSlack() as fake, ExitStack() as stack:
        base = {"SLACK_BOT_TOKEN": fake.token, "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_API_URL": fake.url, "HOST": "127.0.0.1"}
        servers = {}
        for count in processes:
            url = stack.enter_context(database("postgresql"))
            port = free_port()
            servers[f"x{count}"] = stack.enter_context(server(
                [sys.executable, "-m", "bot.cli", "serve", "--no-worker", "--workers",
                 str(count)], {**base, "DATABASE_URL": url, "PORT": str(port)}, port))
        for concurrency in levels:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
            order = list(servers)
            for number in range(rounds):
                turn = order[number % len(order):] + order[:number % len(order)]
                for name in turn:
                    url, pid = servers[name]
                    runs[name].append(load(url, concurrency, seconds, pid))
            first = order[0]
            row: dict[str, Any] = {"concurrency": concurrency, "runs": runs, "apps": {
                name: {key: median([run[key] for run in results])
                       for key in ("p50_ms", "p99_ms", "rps", "cpu_ms_per_request")}
                for name, results in runs.items()}}
            for name in order[1:]:
                row[f"rps_{name}_vs_{first}"] = median(
                    [a["rps"] / max(b["rps"], 1e-9)
                     for a, b in zip(runs[name], runs[first], strict=True)])
            rows.append(row)
    return rows


def uptime() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def print_rows(rows: list[dict[str, Any]]) -> None:
    header = (f"{'db':<10} {'conc':>4} | {'same p50':>8} {'p99':>6} {'rps':>5} | {'quorum p50':>10}"
              f" {'p99':>6} {'rps':>5} | {'rps/same':>8} {'p99/same':>8} {'rps/bare':>8} | "
              f"{'cpu ms q':>8} {'same':>5} {'bare':>5}")
    print(header)
    print("-" * len(header))
    for row in rows:
        same, quorum, bare = (row["apps"][name] for name in ("same_work", "quorum", "bare"))
        print(f"{row['database']:<10} {row['concurrency']:>4} | {same['p50_ms']:>8.1f} "
              f"{same['p99_ms']:>6.1f} {same['rps']:>5.0f} | {quorum['p50_ms']:>10.1f} "
              f"{quorum['p99_ms']:>6.1f} {quorum['rps']:>5.0f} | "
              f"{row['rps_vs_same_work'] * 100:>7.0f}% {row['p99_vs_same_work']:>8.2f} "
              f"{row['rps_vs_bare'] * 100:>7.0f}% | {quorum['cpu_ms_per_request']:>8.2f} "
              f"{same['cpu_ms_per_request']:>5.2f} {bare['cpu_ms_per_request']:>5.2f}")
        if "delivery" in row:
            d = row["delivery"]
            print(f"{'':<10} delivery: {d['cards']} cards, {d['cards_per_second']:.0f} cards/s "
                  f"(median of drains), worker CPU {d['cpu_ms_per_card']:.2f} ms per card; "
                  f"{row['slack_posts']} posts at the fake Slack, "
                  f"{row['slack_posts_distinct']} distinct")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per app and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", default="1,10,50")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--processes", help="compare `serve --workers N` for these N instead "
                        "(PostgreSQL), e.g. 1,2")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    load_before = uptime()
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version()}
    if args.processes:
        counts = [int(count) for count in args.processes.split(",")]
        rows = bench_processes(levels, args.seconds, args.rounds, counts)
        print(f"load average before: {load_before}; after: {uptime()}")
        for row in rows:
            apps = "  ".join(f"{name}: {a['rps']:.0f} rps p99 {a['p99_ms']:.1f} ms "
                             f"cpu {a['cpu_ms_per_request']:.2f} ms"
                             for name, a in row["apps"].items())
            ratios = "  ".join(f"{key} {value:.2f}" for key, value in row.items()
                               if key.startswith("rps_"))
            print(f"c={row['concurrency']}: {apps}  |  {ratios}")
        (out / "ack-processes.json").write_text(json.dumps(
            {"machine": machine, "load": [load_before, uptime()], "rows": rows}, indent=2))
        return
    rows = []
    for kind in args.databases.split(","):
        rows.extend(bench_database(kind, levels, args.seconds, args.rounds))
    load_after = uptime()
    print(f"load average before: {load_before}; after: {load_after}")
    print_rows(rows)
    (out / "ack.json").write_text(json.dumps(
        {"machine": machine, "load": [load_before, load_after], "seconds": args.seconds,
         "rounds": args.rounds, "rows": rows}, indent=2))
    print("\nwritten to bench/results/ack.json")


if __name__ == "__main__":
    main()
