"""Button clicks at scale: 50 people pressing Approve at the same moment, and 500 standup updates
submitted within a short window, on Quorum and on the same-work baseline.

For each database it starts `quorum serve --no-worker` and `bench/same_work_app.py` (whose
Approve and standup-update listeners write the same durable facts with the driver: the
sign-off, the gate's new status, an audit row and the outbox rows; the update row, an audit row
and the outbox rows), each on its own database of Quorum's schema, seeded alike in this process
through Quorum's services (50 holders of the `eng` role, 50 open gates needing `eng`, a standup
started with `/standup now`'s service).

- **Approve burst**: 50 threads released together, person i pressing Approve on gate i. Both
  apps acknowledge the click at once and answer the person through `response_url`, so each
  click's latency is from the release to that answer reaching the fake Slack; throughput is
  50 over the time to the last answer.
- **Standup updates**: 500 people submit the "Add my update" modal, evenly spread over
  `--standup-seconds` (500 in a minute is Slack's worst case; shorter windows ask more). The
  submission is acknowledged after its transaction, so latency is the HTTP round trip.

Rounds interleave the apps (the order alternates); figures are medians over rounds, ratios the
medians of per-round ratios.

    python bench/clicks.py [--rounds 3] [--standup-seconds 10] [--databases sqlite,postgresql]

Prints a table and writes bench/results/clicks.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]
from ack import database, server, uptime  # noqa: E402

from bot.database import Database  # noqa: E402
from bot.render import renderer  # noqa: E402
from bot.services import gates, rituals, roles  # noqa: E402
from bot.services.gate_drafts import GateDraft  # noqa: E402
from bot.services.projects import project_for_channel  # noqa: E402
from handlers.common import write_metadata  # noqa: E402
from support.fake_slack import FakeSlack  # noqa: E402
from support.processes import free_port  # noqa: E402
from support.slack_requests import SIGNING_SECRET, SlackSender  # noqa: E402

PEOPLE = 50
UPDATES = 500
ADMIN = "U0ADMIN01"
TEAM = "T0BENCH01"
CHANNEL = "C0CLICK01"


def person(number: int) -> str:
    return f"U0P{number:06d}"


def seed_gates(db: Database, team: str, channel: str, tag: str) -> list[int]:
    """`PEOPLE` open gates needing `eng`, in a channel where `PEOPLE` people hold `eng`."""
    with db.session() as session:
        project = project_for_channel(session, team, channel, channel.lower())
        if not roles.holders(session, project).get("eng"):
            for number in range(PEOPLE):
                roles.add_role(session, project, ADMIN, person(number), "eng", ())
    ids = []
    for number in range(PEOPLE):
        with db.session() as session:
            project = project_for_channel(session, team, channel)
            requested = gates.request_gate(session, project, ADMIN, GateDraft(
                milestone=f"{tag}m{number}", roles=["eng"]))
            ids.append(requested.gate.id)
    return ids


def seed_standup(db: Database, team: str, channel: str) -> dict[str, Any]:
    """A standup started now; the "Add my update" modal as Quorum renders it."""
    with db.session() as session:
        project = project_for_channel(session, team, channel, channel.lower())
        occurrence = rituals.run_now(session, project, ADMIN, "standup")
        view = renderer.view("ritual/update_modal", o=occurrence,
                             form={"yesterday": "", "today": "", "blockers": ""},
                             metadata=write_metadata(occurrence_id=occurrence.id))
    view.pop("id", None)  # each submission is a modal of its own
    return view


def approve_burst(url: str, fake: FakeSlack, gate_ids: list[int]) -> dict[str, Any]:
    response_url = fake.response_url()
    senders = [SlackSender(url, response_url, team=TEAM) for _ in gate_ids]
    before = len(fake.calls_to("response_url"))
    start = threading.Barrier(len(gate_ids) + 1)
    acked: list[float] = []

    def click(index: int) -> None:
        start.wait()
        sent = time.monotonic()
        answer = senders[index].click("gate_approve", str(gate_ids[index]),
                                      user=person(index), channel=CHANNEL)
        assert answer.status_code == 200, answer.text
        acked.append((time.monotonic() - sent) * 1000)

    threads = [threading.Thread(target=click, args=(index,)) for index in range(len(gate_ids))]
    for thread in threads:
        thread.start()
    released = time.monotonic()
    start.wait()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 60
    while len(fake.calls_to("response_url")) < before + len(gate_ids):
        if time.monotonic() > deadline:
            raise TimeoutError("not every click was answered")
        time.sleep(0.01)
    answers = fake.calls_to("response_url")[before:]
    for sender in senders:
        sender.close()
    latencies = sorted((call.at - released) * 1000 for call in answers)
    return {"p50_ms": statistics.median(latencies), "p99_ms": latencies[-1],
            "ack_p99_ms": sorted(acked)[-1],
            "per_second": len(latencies) / (latencies[-1] / 1000),
            "passed": sum("passed" in json.dumps(call.args) for call in answers)}


def standup_updates(url: str, fake: FakeSlack, view: dict[str, Any],
                    seconds: float) -> dict[str, Any]:
    sender = SlackSender(url, fake.response_url(), team=TEAM)
    latencies: list[float] = []
    errors = 0
    started = time.monotonic()

    def submit(number: int) -> None:
        nonlocal errors
        delay = started + number * seconds / UPDATES - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent = time.monotonic()
        answer = sender.submit(view, {"yesterday": f"eval {number}", "today": "ship it",
                                      "blockers": ""}, user=person(number))
        if answer.status_code == 200 and not answer.content.strip(b"{}"):
            latencies.append((time.monotonic() - sent) * 1000)
        else:
            errors += 1

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(submit, range(UPDATES)))
    elapsed = time.monotonic() - started
    sender.close()
    latencies.sort()
    return {"p50_ms": statistics.median(latencies),
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "per_second": len(latencies) / elapsed, "errors": errors}



def bench_database(kind: str, rounds: int, standup_seconds: float) -> dict[str, Any]:
    with FakeSlack() as fake, ExitStack() as stack:
        base = {"SLACK_BOT_TOKEN": fake.token, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": fake.url, "HOST": "127.0.0.1"}
        apps: dict[str, tuple[str, Database]] = {}
        for name in ("quorum", "same_work"):
            url = stack.enter_context(database(kind))
            port = free_port()
            command = [sys.executable, "-m", "bot.cli", "serve", "--no-worker"] \
                if name == "quorum" else \
                [sys.executable, str(ROOT / "bench" / "same_work_app.py"), "--port", str(port)]
            address, _ = stack.enter_context(server(
                command, {**base, "DATABASE_URL": url, "PORT": str(port)}, port))
            db = Database(url)
            stack.callback(db.dispose)
            apps[name] = (address, db)
        results: dict[str, dict[str, list[dict[str, Any]]]] = {
            name: {"approve": [], "standup": []} for name in apps}
        for number in range(-1, rounds):  # round -1 warms both apps up, uncounted
            order = list(apps) if number % 2 else list(reversed(apps))
            seeded = {name: (seed_gates(db, TEAM, CHANNEL, f"r{number + 1}"),
                             seed_standup(db, TEAM, f"C0STAND{number + 1:02d}"))
                      for name, (_, db) in apps.items()}
            for name in order:
                burst = approve_burst(apps[name][0], fake, seeded[name][0])
                updates = standup_updates(apps[name][0], fake, seeded[name][1],
                                          standup_seconds)
                if number >= 0:
                    results[name]["approve"].append(burst)
                    results[name]["standup"].append(updates)
        summary: dict[str, Any] = {"database": kind}
        for scenario in ("approve", "standup"):
            for name in apps:
                runs = results[name][scenario]
                summary[f"{scenario}_{name}"] = {
                    key: statistics.median(run[key] for run in runs)
                    for key in ("p50_ms", "p99_ms", "per_second")}
            pairs = list(zip(results["quorum"][scenario], results["same_work"][scenario],
                             strict=True))
            summary[f"{scenario}_p99_ratio"] = statistics.median(
                q["p99_ms"] / s["p99_ms"] for q, s in pairs)
            summary[f"{scenario}_rate_ratio"] = statistics.median(
                q["per_second"] / s["per_second"] for q, s in pairs)
        summary["runs"] = results
        return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--standup-seconds", type=float, default=10.0)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    before = uptime()
    rows = [bench_database(kind, args.rounds, args.standup_seconds)
            for kind in args.databases.split(",")]
    print(f"load average before: {before}; after: {uptime()}")
    print(f"{'db':<10} {'scenario':<8} | {'same p50':>8} {'p99':>6} {'/s':>5} | "
          f"{'quorum p50':>10} {'p99':>6} {'/s':>5} | {'p99 x':>5} {'rate %':>6}")
    for row in rows:
        for scenario in ("approve", "standup"):
            same, quorum = row[f"{scenario}_same_work"], row[f"{scenario}_quorum"]
            print(f"{row['database']:<10} {scenario:<8} | {same['p50_ms']:>8.1f} "
                  f"{same['p99_ms']:>6.1f} {same['per_second']:>5.0f} | "
                  f"{quorum['p50_ms']:>10.1f} {quorum['p99_ms']:>6.1f} "
                  f"{quorum['per_second']:>5.0f} | {row[f'{scenario}_p99_ratio']:>5.2f} "
                  f"{row[f'{scenario}_rate_ratio'] * 100:>5.0f}%")
    out = ROOT / "bench" / "results" / "clicks.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"load": [before, uptime()], "rounds": args.rounds,
                               "standup_seconds": args.standup_seconds, "rows": rows},
                              indent=2))
    print("\nwritten to bench/results/clicks.json")


if __name__ == "__main__":
    main()
