"""The outbox delivery worker: posts queued calls to Slack, honouring rate limits and retrying.

Each `quorum serve` process (unless `--no-worker`) and each `quorum worker` runs one worker
thread. A batch of rows is leased in one statement (see `bot.outbox.claim`), so several
replicas share the work and a crashed worker's lease runs out. Before each call the worker
renews the row's lease and notes that the call is out, in one fenced statement (a row taken
over after its call went out is looked up in Slack before it is posted again; one never sent is
simply posted), and it waits on Slack for at most a third of the lease (a post whose earlier
attempt is unanswered costs a look-up and a post), so a live delivery always ends before anyone
else may take the row over. The calls Slack accepted are recorded together, at the end of the
batch or within a sixth of the lease, whichever comes first.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot import metrics, outbox
from bot.database import UNAVAILABLE, Database, database_outage
from bot.models import utcnow
from bot.pacing import PostPacer

log = logging.getLogger("quorum.delivery")

# Slack errors that another attempt may cure; any other `ok: false` is final.
# Marks each post, so that a retry after an unanswered attempt can find it instead of repeating it.
METADATA_TYPE = "quorum_outbox"
TRANSIENT_ERRORS = {"internal_error", "fatal_error", "service_unavailable", "request_timeout",
                    "ratelimited"}
# A call is given up only when it has been tried this often AND has waited this long: a fixed
# count alone would lose messages to a long outage (and `attempts` also counts rate-limited
# tries and take-overs, as it is the lease's fencing token).
MAX_ATTEMPTS = 15
RETRY_PERIOD = timedelta(hours=1)
MAX_BACKOFF_SECONDS = 300.0
# An unanswered post is looked for among this many of the channel's latest messages.
LOOKUP_PAGE_SIZE = 200
LOOKUP_PAGES = 5


# `Session.info` key: the deliveries a transaction recorded (forgotten once it commits).
SENT_RECORDED = "outbox_sent_recorded"


class TakenOver:
    """The row's lease went to another worker while this one was still working on it."""


TAKEN_OVER = TakenOver()


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: ~1 s, 2 s, 4 s … capped at five minutes."""
    base = min(MAX_BACKOFF_SECONDS, 2.0 ** max(0, attempt - 1))
    return base * random.uniform(0.8, 1.2)


def is_transient(exc: SlackApiError) -> bool:
    """Whether another try may cure what Slack answered (a rate limit, a server error)."""
    status = exc.response.status_code
    return status == 429 or status >= 500 or exc.response.get("error") in TRANSIENT_ERRORS


def rate_limit_scope(row: outbox.Claimed) -> tuple[str, str, str | None]:
    """What one `429` holds: posting per channel, any other method across the workspace."""
    channel = row.payload.get("channel") if row.method == "chat.postMessage" else None
    return row.team_id, row.method, channel


def network_failure(exc: BaseException) -> str:
    """The retry reason `/metrics` counts for a call that got no answer from Slack."""
    reason = getattr(exc, "reason", exc)  # urllib wraps connection errors in URLError
    if isinstance(reason, TimeoutError):
        return "timeout"
    if isinstance(reason, ConnectionRefusedError):
        return "connection_refused"
    return "network"


class OutboxWorker:
    """Delivers the outbox in a background thread until stopped."""

    def __init__(self, db: Database, client: WebClient, *, poll_seconds: float = 1.0,
                 batch: int = 20, lease: timedelta = outbox.DEFAULT_LEASE,
                 pacer: PostPacer | None = None) -> None:
        self.db = db
        self.pacer = pacer
        self.client = client
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.lease = lease
        # Two calls (a look-up, then the post) must fit in a lease, with room to record them.
        call_limit = lease.total_seconds() / 3
        if client.timeout is None or client.timeout > call_limit:
            client.timeout = call_limit  # type: ignore[assignment]
        # What a failed database left undone: outcomes to record, leased rows never tried.
        self._unrecorded: list[Callable[[Session], object]] = []
        self._untried: list[outbox.Claimed] = []
        # Calls Slack accepted, recorded together in the next transaction (the next call's lease
        # renewal, or the end of the batch): within one call's time, well inside their lease.
        self._sent: list[outbox.Sent] = []
        self._sent_since = 0.0  # when the oldest of them was sent (time.monotonic)
        # Deliveries wait at most this long to be recorded: their leases, renewed just before
        # each call, then still have most of their time to run.
        self._record_within = lease.total_seconds() / 6
        self._posted: dict[str, tuple[str, str]] = {}
        self._held: dict[tuple[str, str, str | None], datetime] = {}
        # Workspaces whose calls failed since the last success: the next success wakes their
        # backed-off calls.
        self._failing: set[str] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        db.on_commit(self._on_commit)

    def _on_commit(self, session: Session) -> None:
        if session.info.pop(outbox.WAKE_FLAG, False):
            self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="quorum-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delivered = self.run_once()
            except UNAVAILABLE:
                database_outage.failed(log, "outbox pass failed; trying again shortly")
                delivered = 0
            except Exception:
                log.exception("outbox pass failed; trying again shortly")
                delivered = 0
            if delivered == 0:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def run_once(self) -> int:
        """Lease one batch of due calls and deliver them; returns how many were handled."""
        self._settle()
        with self.db.session() as session:
            batch = outbox.claim(session, limit=self.batch, lease=self.lease)
            # Where the batch's keyed messages were posted, in one query: nobody else can post
            # under these keys meanwhile (per-key order; this worker holds the leases).
            self._posted = outbox.posted_messages(session, sorted(
                {key for row in batch for key in (row.key, row.payload.get("thread_key"))
                 if key}))
        # What Slack rate-limited during this batch; the database holds it for later batches.
        self._held = {}
        for index, row in enumerate(batch):
            try:
                held_until = self._held.get(rate_limit_scope(row))
                if self._stop.is_set() or (held_until and held_until > utcnow()):
                    self._untried.append(row)
                    self._settle(held_until, outbox.RATE_LIMITED if held_until else None)
                    continue
                self._deliver(row)
            except SQLAlchemyError:
                # The database failed: the rest of the batch is handed back once it answers.
                self._untried.extend(batch[index + 1:])
                raise
        self._record_sent()
        return len(batch)

    def _settle(self, due: datetime | None = None, reason: str | None = None) -> None:
        """Record what a failed database left unrecorded and hand back rows never tried (each
        only if this worker still holds its lease)."""
        self._record_sent()
        while self._unrecorded:
            with self.db.session() as session:
                self._unrecorded[0](session)
            self._unrecorded.pop(0)
        while self._untried:
            row = self._untried[0]
            with self.db.session() as session:
                outbox.release(session, row.id, due or utcnow(), attempts=row.attempts,
                               reason=reason)
            self._untried.pop(0)

    def _record_sent(self, session: Session | None = None) -> None:
        """Record the deliveries not yet recorded, in `session` or a transaction of their own;
        kept for the next try if the database fails."""
        if not self._sent:
            return
        sent = list(self._sent)
        if session is None:
            with self.db.session() as own:
                outbox.mark_sent_batch(own, sent)
            del self._sent[:len(sent)]
        else:
            outbox.mark_sent_batch(session, sent)
            session.info.setdefault(SENT_RECORDED, []).extend(sent)

    def _record(self, outcome: Callable[[Session], object]) -> None:
        """Write a call's outcome; if the database fails, keep it to write on the next pass."""
        try:
            with self.db.session() as session:
                outcome(session)
        except SQLAlchemyError:
            self._unrecorded.append(outcome)
            raise

    def _deliver(self, row: outbox.Claimed) -> None:
        payload = dict(row.payload)
        try:
            self._pace(row)
            with self.db.session() as session:
                if self._sent and time.monotonic() - self._sent_since > self._record_within:
                    self._record_sent(session)
                renewed = outbox.renew(session, row.id, row.attempts, self.lease)
                method = self._prepare(session, row, payload) if renewed else None
            recorded = session.info.pop(SENT_RECORDED, [])
            del self._sent[:len(recorded)]
            if not renewed:
                log.info("outbox call %s was taken over by another worker", row.id)
                return
        except SQLAlchemyError:
            self._untried.append(row)  # nothing went out
            raise
        if method is None:
            return
        try:
            earlier = None
            if method == "chat.postMessage" and row.payload.get(outbox.MAYBE_SENT_FLAG):
                earlier = self._find_earlier_post(row, payload)
                if isinstance(earlier, TakenOver):
                    return
            response = earlier or self.client.api_call(method, json=payload).data
        except SlackApiError as exc:
            self._handle_slack_error(row, payload, exc)
            return
        except (SlackClientError, OSError, TimeoutError) as exc:
            self._retry(row, network_failure(exc), f"{type(exc).__name__}: {exc}")
            return
        assert isinstance(response, dict)
        keyed_post = method == "chat.postMessage" and "thread_key" not in row.payload
        recovered = row.team_id in self._failing

        if not self._sent:
            self._sent_since = time.monotonic()
        self._sent.append(outbox.Sent(row.id, row.attempts, row.key if keyed_post else None,
                                      response.get("channel"), response.get("ts")))
        if recovered:
            self._record_sent()
            self._record(lambda session: outbox.wake_backed_off(session, row.team_id))
        self._failing.discard(row.team_id)
        metrics.outbox_delivered.labels(method).inc()

    def _pace(self, row: outbox.Claimed) -> None:
        """Wait for the workspace's next post slot (`bot.pacing`), before the lease is renewed."""
        if self.pacer is not None and row.method == "chat.postMessage":
            wait = self.pacer.delay(row.team_id)
            metrics.pacing_wait.observe(wait)
            self._stop.wait(wait)

    def _prepare(self, session: Session, row: outbox.Claimed,
                 payload: dict[str, Any]) -> str | None:
        """Fill in where keyed messages live; the method to call, or None if it cannot be sent."""
        payload.pop(outbox.JOINED_FLAG, None)
        payload.pop(outbox.MAYBE_SENT_FLAG, None)
        thread_key = payload.pop("thread_key", None)
        if thread_key:
            parent = self._posted.get(thread_key)
            if parent is None:
                return self._give_up(session, row, f"no message was posted under {thread_key}")
            payload["thread_ts"] = parent[1]
        if row.method == "chat.update":
            posted = self._posted.get(row.key or "")
            if posted is None:
                return self._give_up(session, row, f"no message was posted under {row.key}")
            payload["channel"], payload["ts"] = posted
        elif row.method == "chat.postMessage" and row.key and not thread_key:
            posted = self._posted.get(row.key)
            if posted is not None:  # posted before a lost reply: edit it rather than repeat it
                payload["channel"], payload["ts"] = posted
                return "chat.update"
        if row.method == "chat.postMessage":
            payload.setdefault("metadata", {"event_type": METADATA_TYPE,
                                            "event_payload": {"outbox_id": row.id}})
        return row.method

    def _find_earlier_post(self, row: outbox.Claimed,
                           payload: dict[str, Any]) -> dict[str, Any] | TakenOver | None:
        """After an attempt that got no answer, look in the channel for the post it may have made.

        Slack has no idempotency key for chat.postMessage; the message metadata carries the outbox
        id instead. If Slack refuses the look-up for good (a missing scope), the call is posted
        again; if Slack is failing for now (rate limit, 5xx, no answer), the error rises and the
        call is retried later, look-up first: posting blind then could post it twice. A busy
        channel is read page by page (every page a call, so the lease is renewed before each).
        """
        channel = payload.get("channel")
        arguments = {"channel": channel, "oldest": f"{row.created_at.timestamp() - 60:.6f}",
                     "limit": LOOKUP_PAGE_SIZE, "include_all_metadata": True}
        for page in range(LOOKUP_PAGES):
            if page and not self._renew(row):
                return TAKEN_OVER
            try:
                if payload.get("thread_ts"):
                    found = self.client.conversations_replies(ts=payload["thread_ts"],
                                                              **arguments)
                else:
                    found = self.client.conversations_history(**arguments)
            except SlackApiError as exc:
                if is_transient(exc):
                    raise
                log.warning("could not check %s for an earlier post of %s: %s", channel, row.id,
                            exc)
                return None
            for message in found.get("messages", []):
                metadata = message.get("metadata") or {}
                if metadata.get("event_type") == METADATA_TYPE and \
                        metadata.get("event_payload", {}).get("outbox_id") == row.id:
                    log.info("outbox call %s was already posted as %s", row.id, message["ts"])
                    return {"channel": channel, "ts": message["ts"]}
            cursor = (found.get("response_metadata") or {}).get("next_cursor")
            if not found.get("has_more") or not cursor:
                return None
            arguments["cursor"] = cursor
        log.warning("outbox call %s: no earlier post in the latest %s messages of %s; posting",
                    row.id, LOOKUP_PAGES * LOOKUP_PAGE_SIZE, channel)
        return None

    def _renew(self, row: outbox.Claimed) -> bool:
        """Extend this worker's lease on `row` before another call for it (False: taken over)."""
        with self.db.session() as session:
            if outbox.renew(session, row.id, row.attempts, self.lease):
                return True
        log.info("outbox call %s was taken over by another worker", row.id)
        return False

    def _give_up(self, session: Session, row: outbox.Claimed, error: str) -> None:
        log.error("giving up on outbox call %s %s: %s", row.id, row.method, error)
        outbox.mark_failed(session, row.id, error, attempts=row.attempts)
        metrics.outbox_failed.labels("no_message").inc()

    def _handle_slack_error(self, row: outbox.Claimed, payload: dict[str, Any],
                            exc: SlackApiError) -> None:
        status = exc.response.status_code
        error = str(exc.response.get("error", f"http_{status}"))
        if status == 429:
            wait = float(exc.response.headers.get("Retry-After", "1") or 1)
            until = utcnow() + timedelta(seconds=wait)
            scope = rate_limit_scope(row)
            self._held[scope] = until
            reason = f"{outbox.RATE_LIMITED} for {wait:g}s"

            def hold(session: Session) -> None:
                outbox.mark_retry(session, row.id, until, reason, attempts=row.attempts)
                outbox.hold(session, *scope[:2], until, reason, channel=scope[2])

            self._record(hold)
            metrics.outbox_retries.labels("ratelimited").inc()
            return
        if is_transient(exc):
            self._retry(row, "server_error", error)
            return
        first_refusal = not row.payload.get(outbox.JOINED_FLAG)
        if error == "not_in_channel" and first_refusal and self._join(payload.get("channel")):
            self._record(lambda session: outbox.mark_retry(
                session, row.id, utcnow(), "joined the channel", note=outbox.JOINED_FLAG,
                attempts=row.attempts))
            metrics.outbox_retries.labels("joined_channel").inc()
            return
        log.error("giving up on outbox call %s %s to %s: %s", row.id, row.method,
                  payload.get("channel"), error)
        self._record(lambda session: outbox.mark_failed(session, row.id, error,
                                                        attempts=row.attempts))
        metrics.outbox_failed.labels(error).inc()

    def _join(self, channel: str | None) -> bool:
        if not channel:
            return False
        try:
            self.client.conversations_join(channel=channel)
            return True
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.error("could not join %s: %s", channel, exc)
            return False

    def _retry(self, row: outbox.Claimed, reason: str, error: str) -> None:
        self._failing.add(row.team_id)
        if row.attempts >= MAX_ATTEMPTS and utcnow() - row.created_at >= RETRY_PERIOD:
            log.error("giving up on outbox call %s %s after %s attempts: %s", row.id,
                      row.method, row.attempts, error)
            self._record(lambda session: outbox.mark_failed(
                session, row.id, f"{error} (after {row.attempts} attempts)",
                attempts=row.attempts))
            metrics.outbox_failed.labels("too_many_attempts").inc()
            return
        at = utcnow() + timedelta(seconds=backoff_seconds(row.attempts))
        # A refused connection carried nothing to Slack; after any other failure Slack may have
        # acted, so a post is looked up before it is sent again.
        note = None if reason == "connection_refused" else outbox.MAYBE_SENT_FLAG
        self._record(lambda session: outbox.mark_retry(
            session, row.id, at, error, note=note, attempts=row.attempts))
        metrics.outbox_retries.labels(reason).inc()

