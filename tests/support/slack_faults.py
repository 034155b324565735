"""Slack faults while people keep working: the scenario behind `tests/integration/
test_slack_faults.py` and `bench/soak.py` (one implementation, two lengths).

A fault window cycles through the four ways Slack fails Quorum's outbox worker: a burst of
`429` with `Retry-After`, HTTP 500s, time-outs (Slack acts on the call but answers after the
client gave up) and refused connections (a `TcpProxy` in front of the fake Slack stops
listening). Meanwhile users log decisions, request and sign gates and declare incidents through
the signed HTTP endpoint. After the window Slack recovers; the outbox must drain with every
message posted exactly once, each card's edits after its post and in the order queued, thread
replies after their parent, and `/metrics` counting the retries of each kind.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from bot.database import Database
from bot.delivery import METADATA_TYPE
from bot.models import (
    Decision,
    Gate,
    GateSignoff,
    Incident,
    OutboxMessage,
    OutboxStatus,
    SlackMessage,
)
from support.fake_slack import FakeSlack
from support.slack_requests import SlackSender
from support.tcp_proxy import TcpProxy

FAULT_KINDS = ("timeout", "ratelimited", "server_error", "refused")
# The retry reason `/metrics` counts (quorum_outbox_retries_total{reason=…}) for each fault kind.
RETRY_REASONS = {"ratelimited": "ratelimited", "server_error": "server_error",
                 "timeout": "timeout", "refused": "connection_refused"}
CHANNEL = "C0CHURN01"
ALICE = "U0ALICE01"
# Who signs which role of every gate (the default launch roles).
SIGNERS = (("U0BOB0001", "ds"), ("U0CAROL01", "eng"), ("U0DAVE001", "pm"))
# What the users do, in turn: two gates' worth of sign-offs for each gate requested.
ROUND = ("decision", "gate", "approve", "incident", "approve", "approve")
# The lease the scenario's Quorum runs with; its Slack client waits a third of it (1 s).
LEASE_SECONDS = 3.0
RETRY_AFTER_SECONDS = 1


def proxied_api_url(proxy: TcpProxy) -> str:
    """SLACK_API_URL for a Quorum that reaches the fake Slack through `proxy`."""
    return f"http://127.0.0.1:{proxy.port}/api/"


def proxy_for(fake: FakeSlack) -> TcpProxy:
    """A refusable proxy in front of `fake` (started; stop it when done)."""
    return TcpProxy(int(fake.base.rsplit(":", 1)[1])).start()


def scenario_settings(fake: FakeSlack, proxy: TcpProxy) -> dict[str, str]:
    """Settings a Quorum under this scenario needs on top of token, secret and database."""
    return {"SLACK_API_URL": proxied_api_url(proxy),
            "QUORUM_OUTBOX_LEASE_SECONDS": str(LEASE_SECONDS)}


class SlackOutage:
    """Makes the fake Slack fail in each of `FAULT_KINDS` in turn for `window` seconds."""

    def __init__(self, fake: FakeSlack, proxy: TcpProxy, window: float,
                 phase_seconds: float = 5.0, client_timeout: float = LEASE_SECONDS / 3) -> None:
        self.fake, self.proxy, self.window = fake, proxy, window
        # Every kind comes at least once, however short the window.
        self.phase_seconds = min(phase_seconds, window / len(FAULT_KINDS))
        self.answer_after = client_timeout + 0.5
        self.phases: list[str] = []

    def run(self) -> None:
        """Cycle the faults until the window is over, then let Slack recover."""
        ends = time.monotonic() + self.window
        try:
            for kind in itertools.cycle(FAULT_KINDS):
                left = ends - time.monotonic()
                if left <= 0.05:
                    break
                seconds = min(self.phase_seconds, left)
                self.phases.append(kind)
                self._fail(kind, seconds)
                time.sleep(seconds)
                self.recover()
        finally:
            self.recover()

    def _fail(self, kind: str, seconds: float) -> None:
        if kind == "ratelimited":
            self.fake.inject(status=429, retry_after=RETRY_AFTER_SECONDS, seconds=seconds)
        elif kind == "server_error":
            self.fake.inject(status=500, seconds=seconds)
        elif kind == "timeout":
            self.fake.inject(delay=self.answer_after, act_first=True, seconds=seconds)
        else:
            self.proxy.refuse()

    def recover(self) -> None:
        self.fake.clear_faults()
        self.proxy.accept()


@dataclass
class Users:
    """People working in one channel through the signed endpoint; counts what they did."""

    slack: SlackSender
    db: Database
    done: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)
    _gates: list[tuple[int, int]] = field(default_factory=list)  # (gate number, signatures)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def give_roles(self) -> None:
        for user, role in SIGNERS:
            self._expect("role", self.slack.command(
                "/quorum", f"role add <@{user}|{user.lower()}> {role}", channel=CHANNEL),
                "now holds")

    def work(self, stop: threading.Event, pause: float) -> None:
        """Act in `ROUND` order until `stop` is set, `pause` seconds between requests."""
        for action in itertools.cycle(ROUND):
            if stop.is_set():
                return
            getattr(self, action)()
            stop.wait(pause)

    def decision(self) -> None:
        number = next(self._numbers)
        self._expect("decision", self.slack.command(
            "/decision", f"Soak decision {number}", channel=CHANNEL), "D-")

    def gate(self) -> None:
        number = next(self._numbers)
        answer = self.slack.command("/gate", f"request launch for churn v{number}",
                                    user=ALICE, channel=CHANNEL)
        if self._expect("gate", answer, "Requested"):
            self._gates.append((self._gate_count(), 0))

    def approve(self) -> None:
        if not self._gates:
            return
        number, signed = self._gates[0]
        user, _ = SIGNERS[signed]
        answer = self.slack.click("gate_approve", str(self._gate_id(number)), user=user,
                                  channel=CHANNEL)
        if self._expect("approve", answer):
            self._gates[0] = (number, signed + 1)
            if signed + 1 == len(SIGNERS):
                self._gates.pop(0)

    def incident(self) -> None:
        number = next(self._numbers)
        self._expect("incident", self.slack.command(
            "/incident", f"declare sev3 Soak incident {number}", channel=CHANNEL), "INC-")

    def _expect(self, action: str, answer: httpx.Response, text: str = "") -> bool:
        if answer.status_code == 200 and text in answer.text:
            self.done[action] += 1
            return True
        self.refused.append(f"{action}: {answer.status_code} {answer.text[:200]}")
        return False

    def _gate_count(self) -> int:
        with self.db.session() as session:
            return session.scalar(select(func.max(Gate.number))) or 0

    def _gate_id(self, number: int) -> int:
        with self.db.session() as session:
            return session.scalars(select(Gate.id).where(Gate.number == number)).one()


@dataclass
class Report:
    """What the scenario saw; `problems()` lists every broken promise."""

    window_seconds: float
    phases: list[str]
    requests: dict[str, int]
    refused_requests: list[str]
    records: dict[str, int]
    outbox: dict[str, int]
    queued: int
    delivered: int
    duplicates: list[str]
    missing: list[str]
    order_violations: list[str]
    stale_cards: list[str]
    retries: dict[str, float]
    lookups: int  # searches of a channel for a post whose answer never came
    drain_seconds: float | None

    def problems(self) -> list[str]:
        found = [f"request refused: {r}" for r in self.refused_requests]
        if self.drain_seconds is None:
            found.append(f"the outbox did not drain: {self.outbox}")
        found += [f"{n} outbox row(s) {status}" for status, n in self.outbox.items()
                  if status not in (OutboxStatus.SENT, OutboxStatus.SUPERSEDED)]
        for name, expected in (("decisions", "decision"), ("gates", "gate"),
                               ("signoffs", "approve"), ("incidents", "incident")):
            if self.records[name] != self.requests.get(expected, 0):
                found.append(f"{self.records[name]} {name} recorded for "
                             f"{self.requests.get(expected, 0)} requests")
        found += [f"posted twice: {d}" for d in self.duplicates]
        found += [f"never reached Slack: {m}" for m in self.missing]
        found += [f"out of order: {v}" for v in self.order_violations]
        found += [f"stale card: {s}" for s in self.stale_cards]
        found += [f"no {reason} retries counted in /metrics" for kind, reason
                  in RETRY_REASONS.items() if kind in self.phases and not self.retries[reason]]
        return found

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def retry_counts(quorum_url: str) -> dict[str, float]:
    """quorum_outbox_retries_total by reason, read from GET /metrics."""
    text = httpx.get(f"{quorum_url}/metrics", timeout=10).raise_for_status().text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "quorum_outbox_retries_total":
                counts[sample.labels["reason"]] = sample.value
    return counts


def unfinished(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING)))) or 0


def wait_drained(db: Database, deadline: float) -> float | None:
    """Seconds until nothing is left to send, or None if `deadline` seconds pass first."""
    started = time.monotonic()
    while unfinished(db):
        if time.monotonic() - started > deadline:
            return None
        time.sleep(0.05)
    return time.monotonic() - started


def run(quorum_url: str, db: Database, fake: FakeSlack, proxy: TcpProxy, slack: SlackSender,
        window: float, phase_seconds: float = 5.0, pause: float = 0.1,
        drain_deadline: float = 60.0) -> Report:
    """Users work through a `window`-second Slack outage; then Slack recovers and the outbox
    drains. Returns what reached Slack, measured against what was queued."""
    users = Users(slack, db)
    users.give_roles()
    if wait_drained(db, drain_deadline) is None:  # the role messages, before any fault
        raise AssertionError("the outbox did not drain before the faults began")
    before = retry_counts(quorum_url)
    outage = SlackOutage(fake, proxy, window, phase_seconds)
    stop = threading.Event()
    worker = threading.Thread(target=users.work, args=(stop, pause), daemon=True)
    worker.start()
    try:
        outage.run()
    finally:
        stop.set()
        worker.join(30)
    drain = wait_drained(db, drain_deadline)
    after = retry_counts(quorum_url)
    retries = {reason: after.get(reason, 0) - before.get(reason, 0)
               for reason in sorted(set(after) | set(RETRY_REASONS.values()))}
    return _report(db, fake, users, outage, retries, drain)


def _report(db: Database, fake: FakeSlack, users: Users, outage: SlackOutage,
            retries: dict[str, float], drain: float | None) -> Report:
    with db.session() as session:
        rows = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        posted = {m.key: m.ts for m in session.scalars(select(SlackMessage))}
        records = {name: session.scalar(select(func.count()).select_from(model)) or 0
                   for name, model in (("decisions", Decision), ("gates", Gate),
                                       ("signoffs", GateSignoff), ("incidents", Incident))}
        session.expunge_all()
    with fake._cond:  # a consistent copy while late answers may still arrive
        calls = [c for c in fake.calls if c.ok]
        messages = {channel: dict(stored) for channel, stored in fake.messages.items()}
    duplicates, missing = _posted_once(rows, messages)
    return Report(
        window_seconds=outage.window, phases=outage.phases, requests=dict(users.done),
        refused_requests=users.refused, records=records,
        outbox=dict(Counter(str(row.status) for row in rows)),
        queued=len(rows), delivered=sum(row.status == OutboxStatus.SENT for row in rows),
        duplicates=duplicates, missing=missing, order_violations=_order_violations(calls),
        stale_cards=_stale_cards(rows, posted, messages), retries=retries,
        lookups=sum(c.method in ("conversations.history", "conversations.replies")
                    for c in calls),
        drain_seconds=drain)


def _posted_once(rows: list[OutboxMessage],
                 messages: dict[str, dict[str, dict[str, Any]]]) -> tuple[list[str], list[str]]:
    """Every delivered post is in Slack exactly once (its metadata names its outbox row)."""
    copies: Counter[int] = Counter()
    for stored in messages.values():
        for message in stored.values():
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == METADATA_TYPE:
                copies[metadata["event_payload"]["outbox_id"]] += 1
    duplicates, missing = [], []
    for row in rows:
        if row.method != "chat.postMessage" or row.status != OutboxStatus.SENT:
            continue
        if copies[row.id] > 1:
            duplicates.append(f"outbox {row.id} ({row.message_key}) x{copies[row.id]}")
        elif copies[row.id] == 0:
            missing.append(f"outbox {row.id} ({row.message_key})")
    return duplicates, missing


def _order_violations(calls: list[Any]) -> list[str]:
    """Each edit after the post it edits, each thread reply after its parent (Slack's order)."""
    posted_at: dict[str, int] = {}
    violations = []
    for index, call in enumerate(calls):
        if call.method == "chat.postMessage":
            parent = call.args.get("thread_ts")
            if parent and posted_at.get(parent, index) >= index:
                violations.append(f"reply #{index} before its parent {parent}")
            posted_at[call.response["ts"]] = index
        elif call.method == "chat.update" and call.args["ts"] not in posted_at:
            violations.append(f"chat.update #{index} of {call.args['ts']} before its post")
    return violations


def _stale_cards(rows: list[OutboxMessage], posted: dict[str, str],
                 messages: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Every card shows its last queued state: no older edit landed after a newer one."""
    latest: dict[str, OutboxMessage] = {}
    for row in rows:
        top_level = "thread_key" not in row.payload
        if row.message_key and top_level and row.method in ("chat.postMessage", "chat.update"):
            latest[row.message_key] = row  # rows are in queue order
    stale = []
    for key, row in latest.items():
        shown = next((stored[posted[key]] for stored in messages.values()
                      if key in posted and posted[key] in stored), None)
        if shown is None or shown.get("text") != row.payload.get("text"):
            stale.append(f"{key} shows {shown and shown.get('text')!r}, "
                         f"last queued {row.payload.get('text')!r}")
    return stale
