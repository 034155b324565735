"""PostgreSQL stopped and started again (and frozen) under a stream of slash commands, with a
real `quorum serve` on a private cluster (never the shared server).

While the database is down every request is answered within Slack's 3 seconds with a polite
ephemeral error and `/healthz` says 503; afterwards no record is half-written, Quorum serves
again without a restart, and the outbox delivers everything queued before and after, once.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from bot.database import Database
from bot.models import (
    AuditEvent,
    Decision,
    Hypothesis,
    OutboxMessage,
    OutboxStatus,
    RefCounter,
    Risk,
    SlackMessage,
)
from bot.services import decisions, hypotheses, risks
from handlers.common import DATABASE_DOWN, TOO_SLOW
from support.fake_slack import FakeSlack
from support.postgres import PrivateCluster, private_postgres
from support.processes import quorum_serve
from support.slack_requests import SlackSender
from support.waiting import eventually

SLACK_LIMIT = 3.0  # seconds Slack waits for the answer to a slash command
OUTAGE = 3.0  # seconds the database stays down
CHANNEL = "C0CHURN01"
# (command, reference prefix, model, what the audit log calls its creation, its card's key)
REGISTERS = [("/decision", "D", Decision, "decision.created", decisions.card_key),
             ("/hypothesis", "H", Hypothesis, "hypothesis.created", hypotheses.card_key),
             ("/risk", "R", Risk, "risk.created", risks.card_key)]
LOGGED = re.compile(r"Logged \*([A-Z]+-\d+)\*")


@dataclass
class Answer:
    command: str
    text: str
    started: float
    elapsed: float
    status: int
    body: dict[str, object]

    @property
    def ref(self) -> str | None:
        match = LOGGED.search(str(self.body.get("text", "")))
        return match[1] if match else None

    @property
    def database_down(self) -> bool:
        return DATABASE_DOWN.split(",")[0] in str(self.body.get("text", ""))

    @property
    def too_slow(self) -> bool:
        """Answered before the work finished: it may still have been saved."""
        return self.body.get("text") == TOO_SLOW


class Load:
    """Signed quick-log commands of three registers, from a few people at once, until stopped."""

    def __init__(self, url: str, response_url: str, people: int = 3) -> None:
        self.url, self.response_url = url, response_url
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._count = 0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(people)]

    def send(self, sender: SlackSender) -> Answer:
        with self._lock:
            self._count += 1
            number = self._count
        command = REGISTERS[number % len(REGISTERS)][0]
        text = f"load item {number}"
        started = time.monotonic()
        response = sender.command(command, text, channel=CHANNEL)
        answer = Answer(command, text, started, time.monotonic() - started,
                        response.status_code, response.json() if response.content else {})
        with self._lock:
            self.answers.append(answer)
        return answer

    def _run(self) -> None:
        with_sender(self.url, self.response_url, lambda sender: self._loop(sender))

    def _loop(self, sender: SlackSender) -> None:
        while not self._stop.is_set():
            self.send(sender)
            time.sleep(0.05)

    def burst(self, size: int) -> list[Answer]:
        """`size` requests at the same moment: they queue for Bolt's threads and the pool."""
        with ThreadPoolExecutor(size) as pool:
            return list(pool.map(lambda _: with_sender(self.url, self.response_url, self.send),
                                 range(size)))

    def logged_since(self, moment: float) -> int:
        with self._lock:
            return sum(1 for a in self.answers if a.started > moment and a.ref)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def with_sender(url: str, response_url: str, use: Callable[[SlackSender], Answer | None]
                ) -> Answer | None:
    sender = SlackSender(url, response_url)
    try:
        return use(sender)
    finally:
        sender.close()


def health(url: str) -> int:
    return httpx.get(f"{url}/healthz", timeout=SLACK_LIMIT).status_code


def outage(pg: PrivateCluster, load: Load, url: str, mode: str) -> list[Answer]:
    """Stop PostgreSQL (`fast` or `immediate`), or freeze it, for OUTAGE seconds while requests
    keep coming."""
    pg.freeze() if mode == "freeze" else pg.stop(mode)
    down = time.monotonic()
    assert health(url) == 503
    during = load.burst(8)
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - down)))
    assert health(url) == 503
    pg.thaw() if mode == "freeze" else pg.start()
    up = time.monotonic()
    eventually(lambda: health(url) == 200, timeout=15)
    eventually(lambda: load.logged_since(up) >= 3, timeout=20)  # no restart of Quorum needed
    return during


@pytest.mark.slow
def test_postgres_restarted_under_load(fake_slack: FakeSlack, tmp_path: Path) -> None:
    with private_postgres() as pg, quorum_serve(
            pg.url, fake_slack.url, fake_slack.token, tmp_path / "serve.log",
            QUORUM_OUTBOX_LEASE_SECONDS="3") as (process, url), \
            Load(url, fake_slack.response_url()) as load:
        eventually(lambda: load.logged_since(0) >= 6, timeout=30)
        refused = outage(pg, load, url, "fast") + outage(pg, load, url, "immediate")
        frozen = outage(pg, load, url, "freeze")
        pg.restart("fast")  # and a quick blip
        blip = time.monotonic()
        eventually(lambda: load.logged_since(blip) >= 3, timeout=20)
        load.__exit__()
        db = Database(pg.url)
        try:
            eventually(lambda: outbox_done(db), timeout=60)
            records = check_records(db, load.answers)
        finally:
            db.dispose()
        assert process.poll() is None

    # While the database was down: a polite ephemeral answer in time, never a 500 or a hang.
    assert refused and all(a.database_down for a in refused), refused
    assert frozen and all(a.database_down or a.too_slow for a in frozen), frozen
    for answer in load.answers:
        assert answer.status == 200, answer
        assert answer.elapsed < SLACK_LIMIT, answer
        assert answer.body.get("response_type") == "ephemeral", answer
        assert answer.ref or answer.database_down or answer.too_slow, answer
    assert sum(1 for a in load.answers if a.database_down) >= len(refused)

    # Every card queued before, during the recovery and after reached Slack once.
    posted = Counter(m["text"] for m in fake_slack.messages[CHANNEL].values())
    assert set(posted.values()) == {1}, posted
    assert len(posted) == records


def outbox_done(db: Database) -> bool:
    with db.session() as session:
        statuses = Counter(session.scalars(select(OutboxMessage.status)))
    assert set(statuses) <= {OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.SENT}
    return set(statuses) == {OutboxStatus.SENT}


def check_records(db: Database, answers: list[Answer]) -> int:
    """No half-written record: each has its audit event, its card and its Slack message; numbers
    run without gaps; nothing refers to a record that does not exist; and what the people were
    told was logged is in the database, plus at most those they were told may not be."""
    told = Counter(a.ref[0] for a in answers if a.ref)
    maybe = Counter(a.command for a in answers if a.too_slow)
    total = 0
    with db.session() as session:
        for command, prefix, model, created, card_key in REGISTERS:
            records = list(session.scalars(select(model).order_by(model.number)))
            assert [r.number for r in records] == list(range(1, len(records) + 1))
            assert session.get(RefCounter, ("T0TEAM001", prefix)).last_value == len(records)
            assert {r.ref for r in records} >= {a.ref for a in answers
                                                if a.ref and a.ref[0] == prefix}
            assert told[prefix] <= len(records) <= told[prefix] + maybe[command]
            total += len(records)
            events = Counter(session.scalars(select(AuditEvent.entity_id).where(
                AuditEvent.action == created)))
            assert events == Counter(r.id for r in records)
            keys = set(session.scalars(select(OutboxMessage.message_key)))
            cards = {card_key(r) for r in records}
            assert keys >= cards
            posted = set(session.scalars(select(SlackMessage.key)))
            assert posted >= cards
        orphans = session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.message_key.not_in(select(SlackMessage.key))))
        assert orphans == 0
    return total
