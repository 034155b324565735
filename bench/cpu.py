"""CPU-time probe: how much CPU one quick-log costs in the request, and one card in delivery.

In this process, with no HTTP and no load generator, it dispatches signed `/decision <title>`
slash commands through three Bolt apps built as `quorum serve` builds its own (signature check,
`process_before_response=True`): Quorum (`bot.slack_app.build_app`), the same-work baseline
(`bench/same_work_app.py`) and a bare app that only acks, each on its own fresh database, and
measures the calling thread's CPU time (`time.thread_time`) around each `App.dispatch`. The
rounds are interleaved (Quorum, same-work, bare, Quorum, …) and each figure is the median of
the rounds' medians. Then it delivers the cards Quorum queued with `OutboxWorker.run_once` in
this thread (pacing off), against the fake Slack serving from other threads (whose CPU is not
counted), once with the kept-alive client and once with slack_sdk's own `WebClient`, and reports
CPU per delivered card.

    python bench/cpu.py [--requests 200] [--rounds 5] [--databases sqlite,postgresql]

Prints a table and writes bench/results/cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]
from ack import database  # noqa: E402
from same_work_app import build_same_work_app  # noqa: E402
from slack_bolt import App  # noqa: E402
from slack_sdk import WebClient  # noqa: E402
from slack_sdk.signature import SignatureVerifier  # noqa: E402

from bot.config import load_settings  # noqa: E402
from bot.database import Database  # noqa: E402
from bot.runtime import Runtime  # noqa: E402
from bot.slack_app import bolt_request, build_app  # noqa: E402
from support.fake_slack import FakeSlack  # noqa: E402

SECRET = "bench-signing-secret"
TEAM = "T0BENCH01"


def body(number: int) -> str:
    return urlencode({
        "token": "x", "team_id": TEAM, "team_domain": "bench",
        "channel_id": f"C0BENCH{number % 20:02d}", "channel_name": f"bench-{number % 20}",
        "user_id": "U0BENCH01", "user_name": "bench", "command": "/decision",
        "text": f"Benchmark decision number {number}", "api_app_id": "A0001",
        "response_url": "http://127.0.0.1:9/unused", "trigger_id": f"t.{number}",
    })


class Signed:
    """Signed slash-command requests, numbered on."""

    def __init__(self) -> None:
        self.verifier = SignatureVerifier(SECRET)
        self.number = 0

    def next(self) -> Any:
        self.number += 1
        payload = body(self.number)
        timestamp = str(int(time.time()))
        headers = {"content-type": "application/x-www-form-urlencoded",
                   "x-slack-request-timestamp": timestamp,
                   "x-slack-signature": self.verifier.generate_signature(timestamp=timestamp,
                                                                          body=payload)}
        return bolt_request(payload, headers)


def cpu_per_request(app: App, signed: Signed, count: int) -> list[float]:
    """Thread CPU milliseconds of each of `count` dispatches (every answer must be a 200)."""
    spent = []
    for _ in range(count):
        request = signed.next()
        started = time.thread_time()
        response = app.dispatch(request)
        spent.append((time.thread_time() - started) * 1000)
        assert response.status == 200, response.body
    return spent


def bare_app(client: WebClient) -> App:
    app = App(client=client, signing_secret=SECRET, token_verification_enabled=False,
              process_before_response=True)

    @app.command("/decision")
    def ack_only(ack) -> None:  # type: ignore[no-untyped-def]
        ack()

    return app


def delivery_cpu(db: Database, client: WebClient) -> tuple[float, int]:
    """Thread CPU milliseconds per card to deliver everything queued, and how many."""
    from bot.delivery import OutboxWorker

    worker = OutboxWorker(db, client, poll_seconds=0.05, batch=20)
    delivered = 0
    started = time.thread_time()
    while handled := worker.run_once():
        delivered += handled
    spent = (time.thread_time() - started) * 1000
    return spent / max(delivered, 1), delivered


def probe(kind: str, requests: int, rounds: int) -> dict[str, Any]:
    try:
        from bot.slack_http import KeepAliveWebClient
    except ImportError:  # code from before the kept-alive client
        KeepAliveWebClient = None

    with FakeSlack() as fake, database(kind) as quorum_url, database(kind) as same_url:
        fake.keep_alive = True
        settings = load_settings(SLACK_BOT_TOKEN=fake.token, SLACK_SIGNING_SECRET=SECRET,
                                 SLACK_API_URL=fake.url, DATABASE_URL=quorum_url)
        runtime = Runtime.from_settings(settings)
        runtime.db.upgrade()
        Database(same_url).upgrade()
        client = WebClient(token=fake.token, base_url=fake.url)
        apps: dict[str, Callable[[], App]] = {
            "quorum": lambda: build_app(runtime),
            "same_work": lambda: build_same_work_app(same_url, SECRET, client),
            "bare": lambda: bare_app(client),
        }
        built = {name: make() for name, make in apps.items()}
        signed = Signed()
        for app in built.values():
            cpu_per_request(app, signed, 20)  # warm-up: imports, caches, first connections
        medians: dict[str, list[float]] = {name: [] for name in built}
        for _ in range(rounds):
            for name, app in built.items():
                medians[name].append(statistics.median(cpu_per_request(app, signed, requests)))
        figures: dict[str, Any] = {name: statistics.median(values)
                                   for name, values in medians.items()}
        figures["ratio_to_same_work"] = statistics.median(
            q / s for q, s in zip(medians["quorum"], medians["same_work"], strict=True))
        clients = {"urllib": WebClient(token=fake.token, base_url=fake.url, timeout=10)}
        if KeepAliveWebClient is not None:
            clients["keep_alive"] = KeepAliveWebClient(token=fake.token, base_url=fake.url,
                                                       timeout=10)
        spent = dict.fromkeys(clients, 0.0)
        delivered = dict.fromkeys(clients, 0)
        # The queued cards are delivered a slice at a time, the clients taking turns.
        _deliver_some(runtime.db, clients["urllib"], 20)  # warm-up: statements, connections
        while True:
            progress = 0
            for name, client in clients.items():
                client.retry_handlers.clear()
                ms, count = _deliver_some(runtime.db, client, 40)
                spent[name] += ms * count
                delivered[name] += count
                progress += count
            if not progress:
                break
        for name in clients:
            figures[f"delivery_{name}_ms"] = spent[name] / max(delivered[name], 1)
            figures[f"delivered_{name}"] = delivered[name]
        figures["slack_connections"] = fake.connections
        runtime.db.dispose()
    return {"database": kind, **figures}


def _deliver_some(db: Database, client: WebClient, limit: int | None) -> tuple[float, int]:
    """Deliver up to `limit` queued cards (all when None), leaving the rest pending."""
    from sqlalchemy import select, update

    from bot.models import OutboxMessage, OutboxStatus, utcnow

    held = []
    if limit is not None:
        with db.session() as session:
            ids = session.scalars(
                select(OutboxMessage.id)
                .where(OutboxMessage.status == OutboxStatus.PENDING)
                .order_by(OutboxMessage.id).offset(limit)).all()
            held = list(ids)
            session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(held))
                            .values(next_attempt_at=utcnow().replace(year=2100)))
    result = delivery_cpu(db, client)
    if held:
        with db.session() as session:
            session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(held))
                            .values(next_attempt_at=utcnow()))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="per app and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    load = os.getloadavg()
    rows = [probe(kind, args.requests, args.rounds) for kind in args.databases.split(",")]
    print(f"load average before: {load[0]:.2f}, after: {os.getloadavg()[0]:.2f}")
    print(f"{'db':<10} | {'quorum ms':>9} {'same-work':>9} {'bare':>6} {'ratio':>5} | "
          f"{'card ms (kept-alive)':>20} {'card ms (urllib)':>16}")
    for row in rows:
        print(f"{row['database']:<10} | {row['quorum']:>9.2f} {row['same_work']:>9.2f} "
              f"{row['bare']:>6.2f} {row['ratio_to_same_work']:>5.2f} | "
              f"{row.get('delivery_keep_alive_ms', 0):>20.2f} {row['delivery_urllib_ms']:>16.2f}")
    out = ROOT / "bench" / "results" / "cpu.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"load_before": load, "load_after": os.getloadavg(),
                               "requests": args.requests, "rounds": args.rounds,
                               "rows": rows}, indent=2))
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
