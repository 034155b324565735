"""Acknowledgement latency and throughput of `quorum serve` against a bare Bolt app.

For each database (SQLite, PostgreSQL) it starts, as separate processes, `quorum serve` (with
its outbox worker posting cards to a fake Slack) and `bench/bare_app.py` (a Bolt app that only
acks, served the same way), then drives both with `bench/load.py` at each concurrency level:
signed `/decision <title>` quick-logs, which write a decision, an audit event and an outbox row.

    python bench/ack.py [--seconds 5] [--levels 1,10,50] [--databases sqlite,postgresql]

Prints a table and writes bench/results/ack.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the app's templates before tests/templates
from support.fake_slack import FakeSlack  # noqa: E402
from support.processes import free_port, running  # noqa: E402

SECRET = "bench-signing-secret"
POSTGRES = os.environ.get("BENCH_DATABASE_URL",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh, empty database of `kind`, removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{directory}/bench.db"
        return
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@contextmanager
def server(command: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    """`command` serving on `port` until the block ends (its output in a temporary log)."""
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as logs, running(
            command, env={**os.environ, **env}, cwd=ROOT, ready_url=f"{url}/healthz",
            log_path=Path(logs) / "server.log"):
        yield url


def load(url: str, concurrency: int, seconds: float) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load.py"), "--url", url, "--concurrency",
         str(concurrency), "--seconds", str(seconds)],
        capture_output=True, text=True, check=True, timeout=seconds + 120)
    return json.loads(output.stdout)


def bench_database(kind: str, levels: list[int], seconds: float) -> list[dict[str, Any]]:
    rows = []
    with FakeSlack() as fake, database(kind) as url:
        env = {"SLACK_BOT_TOKEN": fake.token, "SLACK_SIGNING_SECRET": SECRET,
               "SLACK_API_URL": fake.url, "DATABASE_URL": url, "HOST": "127.0.0.1"}
        quorum_port, bare_port = free_port(), free_port()
        quorum_cmd = [sys.executable, "-m", "bot.cli", "serve"]
        bare_cmd = [sys.executable, str(ROOT / "bench" / "bare_app.py"), "--port",
                    str(bare_port)]
        with server(quorum_cmd, {**env, "PORT": str(quorum_port)}, quorum_port) as quorum, \
                server(bare_cmd, env, bare_port) as bare:
            for concurrency in levels:
                baseline = load(bare, concurrency, seconds)
                measured = load(quorum, concurrency, seconds)
                rows.append({"database": kind, "concurrency": concurrency,
                             "bare": baseline, "quorum": measured,
                             "p99_ratio": measured["p99_ms"] / max(baseline["p99_ms"], 1e-9),
                             "rps_ratio": measured["rps"] / max(baseline["rps"], 1e-9)})
        time.sleep(1)  # let the outbox drain before the fake goes away
        rows[-1]["cards_posted"] = len(fake.calls_to("chat.postMessage"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--levels", default="1,10,50")
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    rows = [row for kind in args.databases.split(",")
            for row in bench_database(kind, levels, args.seconds)]
    header = (f"{'db':<10} {'conc':>4} | {'bare p50':>8} {'p99':>7} {'rps':>6} | "
              f"{'quorum p50':>10} {'p99':>7} {'rps':>6} | {'p99 x':>5} {'rps %':>5}")
    print(header)
    print("-" * len(header))
    for row in rows:
        bare, quorum = row["bare"], row["quorum"]
        print(f"{row['database']:<10} {row['concurrency']:>4} | {bare['p50_ms']:>8.1f} "
              f"{bare['p99_ms']:>7.1f} {bare['rps']:>6.0f} | {quorum['p50_ms']:>10.1f} "
              f"{quorum['p99_ms']:>7.1f} {quorum['rps']:>6.0f} | {row['p99_ratio']:>5.2f} "
              f"{row['rps_ratio'] * 100:>5.0f}")
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "seconds_per_level": args.seconds, "rows": rows}
    out = ROOT / "bench" / "results" / "ack.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
