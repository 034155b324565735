"""The outbox and its delivery worker against the fake Slack, with injected faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from slack_sdk import WebClient
from sqlalchemy import event, select, update
from sqlalchemy.exc import OperationalError

from bot import metrics, outbox
from bot.database import Database
from bot.delivery import (
    LOOKUP_PAGE_SIZE,
    MAX_ATTEMPTS,
    METADATA_TYPE,
    RETRY_PERIOD,
    OutboxWorker,
)
from bot.models import OutboxMessage, OutboxStatus, SlackMessage, utcnow
from support.fake_slack import FakeSlack
from support.tcp_proxy import TcpProxy
from support.waiting import eventually

TEAM, CHANNEL = "T1", "C0CHURN01"


def message(text: str) -> dict:
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


@pytest.fixture
def worker(db: Database, fake_slack: FakeSlack) -> Iterator[OutboxWorker]:
    client = WebClient(token=fake_slack.token, base_url=fake_slack.url, timeout=0.5)
    client.retry_handlers.clear()
    yield OutboxWorker(db, client, poll_seconds=0.05)


def rows(db: Database) -> list[OutboxMessage]:
    with db.session() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def time_passes(db: Database) -> None:
    """Make every waiting row due now, as if its retry time had come."""
    with db.session() as session:
        session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))


def drain(worker: OutboxWorker, db: Database, passes: int = 10) -> None:
    for _ in range(passes):
        time_passes(db)
        worker.run_once()


def retries(reason: str) -> float:
    return metrics.registry.get_sample_value("quorum_outbox_retries_total", {"reason": reason}) or 0


def test_post_then_update_edits_the_same_message(db: Database, fake_slack: FakeSlack,
                                                 worker: OutboxWorker) -> None:
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("v1"), key="card:1")
    with db.session() as session:
        outbox.update_message(session, TEAM, "card:1", message("v2"))
    worker.run_once()
    worker.run_once()
    post = fake_slack.calls_to("chat.postMessage")[0]
    edit = fake_slack.calls_to("chat.update")[0]
    assert edit.args["ts"] == post.response["ts"] and edit.args["channel"] == CHANNEL
    assert fake_slack.messages[CHANNEL][post.response["ts"]]["text"] == "v2"
    assert all(row.status == OutboxStatus.SENT for row in rows(db))
    with db.session() as session:
        assert session.get(SlackMessage, "card:1").ts == post.response["ts"]


def test_nothing_is_queued_when_the_transaction_fails(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("lost"))
        raise RuntimeError("the change failed")
    assert rows(db) == []


def test_rate_limit_honours_retry_after_and_holds_the_method(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker) -> None:
    before = retries("ratelimited")
    with db.session() as session:
        for n in range(3):
            outbox.post_message(session, TEAM, CHANNEL, message(f"m{n}"))
    fake_slack.inject("chat.postMessage", status=429, retry_after=30)
    started = utcnow()
    worker.run_once()
    waiting = [row for row in rows(db) if row.status == OutboxStatus.PENDING]
    assert len(waiting) == 3
    assert all(row.next_attempt_at >= started + timedelta(seconds=29) for row in waiting)
    assert retries("ratelimited") == before + 1
    worker.run_once()  # nothing is due yet: Slack asked for 30 seconds
    assert len(fake_slack.calls_to("chat.postMessage")) == 0
    drain(worker, db)
    assert [c.args["text"] for c in fake_slack.calls_to("chat.postMessage")] == ["m0", "m1", "m2"]


@pytest.mark.parametrize("fault", [
    {"status": 500}, {"status": 503}, {"delay": 1.0}, {"disconnect": True},
    {"error": "internal_error"},
])
def test_transient_failures_are_retried_until_delivered_once(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker, fault: dict) -> None:
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("hello"), key="card:9")
    late = "delay" in fault  # Slack acts on the call after the client gave up waiting
    fake_slack.inject("chat.postMessage", times=1 if late else 2, **fault)
    tried = utcnow()
    worker.run_once()
    [row] = rows(db)
    assert row.status == OutboxStatus.PENDING and row.attempts == 1 and row.last_error
    # Backed off past the attempt (compared with the attempt's start, not with the clock now:
    # on a loaded machine the short first backoff may already have run out).
    assert row.next_attempt_at > tried
    if late:
        fake_slack.wait_for("chat.postMessage")  # the late post lands before the retry
    drain(worker, db)
    [row] = rows(db)
    assert row.status == OutboxStatus.SENT and row.attempts == (2 if late else 3)
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert len(fake_slack.messages[CHANNEL]) == 1


def test_permanent_error_fails_loudly_and_skips_later_updates(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker,
        caplog: pytest.LogCaptureFixture) -> None:
    fake_slack.missing_channels.add("C0GONE001")
    with db.session() as session:
        outbox.post_message(session, TEAM, "C0GONE001", message("x"), key="card:2")
        outbox.update_message(session, TEAM, "card:2", message("y"))
    drain(worker, db, passes=3)
    post, edit = rows(db)
    assert (post.status, post.last_error) == (OutboxStatus.FAILED, "channel_not_found")
    assert edit.status == OutboxStatus.FAILED and "no message was posted" in edit.last_error
    assert "channel_not_found" in caplog.text
    assert fake_slack.calls_to("chat.update", ok_only=False) == []


def test_not_in_channel_joins_once_then_posts(db: Database, fake_slack: FakeSlack,
                                             worker: OutboxWorker) -> None:
    fake_slack.not_joined_channels.add(CHANNEL)
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("hi"))
    drain(worker, db, passes=2)
    assert [c.method for c in fake_slack.calls if c.method != "response_url"] == [
        "chat.postMessage", "conversations.join", "chat.postMessage"]
    assert rows(db)[0].status == OutboxStatus.SENT
    assert "_joined" not in fake_slack.calls_to("chat.postMessage")[0].args


def test_not_in_channel_twice_gives_up(db: Database, fake_slack: FakeSlack,
                                      worker: OutboxWorker) -> None:
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("hi"))
    fake_slack.inject("chat.postMessage", error="not_in_channel", times=5)
    drain(worker, db, passes=3)
    assert rows(db)[0].status == OutboxStatus.FAILED
    assert len(fake_slack.calls_to("conversations.join")) == 1


def test_update_never_overtakes_its_post(db: Database, fake_slack: FakeSlack,
                                         worker: OutboxWorker) -> None:
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("v1"), key="card:3")
        outbox.update_message(session, TEAM, "card:3", message("v2"))
        outbox.post_message(session, TEAM, CHANNEL, message("other"))
    fake_slack.inject("chat.postMessage", status=500)
    worker.run_once()
    assert fake_slack.calls_to("chat.update", ok_only=False) == []
    assert [c.args["text"] for c in fake_slack.calls_to("chat.postMessage")] == ["other"]
    drain(worker, db)
    delivered = [(c.method, c.args.get("text")) for c in fake_slack.calls if c.ok]
    assert delivered.index(("chat.update", "v2")) > delivered.index(("chat.postMessage", "v1"))


def test_a_burst_of_updates_sends_only_the_latest(db: Database, fake_slack: FakeSlack,
                                                  worker: OutboxWorker) -> None:
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("v0"), key="card:4")
    worker.run_once()
    with db.session() as session:
        for n in range(1, 6):
            outbox.update_message(session, TEAM, "card:4", message(f"v{n}"))
    drain(worker, db, passes=2)
    assert [c.args["text"] for c in fake_slack.calls_to("chat.update")] == ["v5"]
    assert [r.status for r in rows(db)].count(OutboxStatus.SUPERSEDED) == 4


def test_a_dead_workers_lease_expires_and_another_worker_delivers(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker) -> None:
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("after restart"))
    with db.session() as session:
        outbox.claim(session, lease=timedelta(seconds=60))  # a worker that then died
    worker.run_once()
    assert fake_slack.calls_to("chat.postMessage") == []  # its lease still holds
    with db.session() as session:
        session.execute(update(OutboxMessage).values(claimed_until=utcnow() - timedelta(1)))
    worker.run_once()
    assert [c.args["text"] for c in fake_slack.calls_to("chat.postMessage")] == ["after restart"]


def test_a_repost_after_a_lost_reply_edits_instead_of_duplicating(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker) -> None:
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("v1"), key="card:5")
    worker.run_once()
    with db.session() as session:  # as if the worker died after posting, before marking sent
        session.execute(update(OutboxMessage).values(status=OutboxStatus.PENDING))
    worker.run_once()
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert len(fake_slack.calls_to("chat.update")) == 1


def test_gives_up_after_max_attempts_once_the_retry_period_is_over(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker) -> None:
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("doomed"))
        session.flush()
        session.execute(update(OutboxMessage).values(
            created_at=utcnow() - RETRY_PERIOD - timedelta(minutes=1)))
    fake_slack.inject("chat.postMessage", status=500, times=MAX_ATTEMPTS + 5)
    drain(worker, db, passes=MAX_ATTEMPTS + 2)
    [row] = rows(db)
    assert row.status == OutboxStatus.FAILED and row.attempts == MAX_ATTEMPTS


def test_many_failures_within_the_retry_period_are_not_given_up(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker) -> None:
    """An outage that fails a message more than MAX_ATTEMPTS times within the hour loses
    nothing: it is posted once Slack answers."""
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("patient"))
    fake_slack.inject("chat.postMessage", status=500, times=MAX_ATTEMPTS + 5)
    drain(worker, db, passes=MAX_ATTEMPTS + 5)
    [row] = rows(db)
    assert row.status == OutboxStatus.PENDING and row.attempts == MAX_ATTEMPTS + 5
    drain(worker, db, passes=1)
    [row] = rows(db)
    assert row.status == OutboxStatus.SENT and row.attempts == MAX_ATTEMPTS + 6
    assert stored_texts(fake_slack) == ["patient"]


def test_thread_reply_goes_under_the_keyed_message(db: Database, fake_slack: FakeSlack,
                                                   worker: OutboxWorker) -> None:
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("card"), key="card:6")
        outbox.post_message(session, TEAM, CHANNEL, message("reply"), thread_key="card:6")
    drain(worker, db, passes=2)
    card, reply = fake_slack.calls_to("chat.postMessage")
    assert reply.args["thread_ts"] == card.response["ts"] and "thread_key" not in reply.args


def test_a_thread_reply_waits_for_its_card(db: Database, fake_slack: FakeSlack,
                                          worker: OutboxWorker) -> None:
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("card"), key="card:7")
        outbox.post_message(session, TEAM, CHANNEL, message("reply"), thread_key="card:7")
    fake_slack.inject("chat.postMessage", status=429, retry_after=30)
    worker.run_once()
    assert fake_slack.calls_to("chat.postMessage") == []
    drain(worker, db)
    card, reply = fake_slack.calls_to("chat.postMessage")
    assert card.args["text"] == "card" and reply.args["thread_ts"] == card.response["ts"]
    assert all(row.status == OutboxStatus.SENT for row in rows(db))


def test_thread_reply_waits_for_a_parent_that_is_being_retried(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker) -> None:
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("card"), key="card:7")
        outbox.post_message(session, TEAM, CHANNEL, message("reply"), thread_key="card:7")
    fake_slack.inject("chat.postMessage", status=500)
    worker.run_once()
    assert [row.status for row in rows(db)] == [OutboxStatus.PENDING, OutboxStatus.PENDING]
    assert rows(db)[1].attempts == 0
    drain(worker, db, passes=3)
    card, reply = fake_slack.calls_to("chat.postMessage")
    assert reply.args["thread_ts"] == card.response["ts"]
    assert [row.status for row in rows(db)] == [OutboxStatus.SENT, OutboxStatus.SENT]


def test_the_worker_thread_wakes_on_commit(db: Database, fake_slack: FakeSlack,
                                           worker: OutboxWorker) -> None:
    worker.poll_seconds = 30  # only the commit hook can make this fast
    worker.start()
    try:
        with db.session() as session:
            outbox.post_message(session, TEAM, CHANNEL, message("now"))
        fake_slack.wait_for("chat.postMessage", timeout=3)
    finally:
        worker.stop()


def test_only_the_latest_pending_publish_of_a_home_is_sent(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker) -> None:
    def home(text: str) -> dict:
        return {"type": "home", **message(text)}

    with db.session() as session:
        for n in range(4):
            outbox.publish_view(session, TEAM, "U0BOB0001", home(f"bob {n}"), key="home:T1:bob")
        outbox.publish_view(session, TEAM, "U0CAROL01", home("carol"), key="home:T1:carol")
    with db.session() as session:  # a later transaction's publish supersedes the earlier ones
        outbox.publish_view(session, TEAM, "U0BOB0001", home("bob last"), key="home:T1:bob")
    drain(worker, db)
    published = [(c.args["user_id"], c.args["view"]["blocks"][0]["text"]["text"])
                 for c in fake_slack.calls_to("views.publish")]
    assert sorted(published) == [("U0BOB0001", "bob last"), ("U0CAROL01", "carol")]
    assert [r.status for r in rows(db)].count(OutboxStatus.SUPERSEDED) == 4
    # A chat.update under another key is not affected by publishes, nor the other way round.
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("card"), key="card:9")
        outbox.publish_view(session, TEAM, "U0BOB0001", home("again"), key="home:T1:bob")
        outbox.update_message(session, TEAM, "card:9", message("card v2"))
    drain(worker, db)
    assert fake_slack.calls_to("views.publish")[-1].args["view"]["blocks"][0]["text"]["text"] \
        == "again"
    assert len(fake_slack.calls_to("chat.update")) == 1


def client_for(fake_slack: FakeSlack) -> WebClient:
    client = WebClient(token=fake_slack.token, base_url=fake_slack.url, timeout=5)
    client.retry_handlers.clear()
    return client


def expire_leases(db: Database) -> None:
    with db.session() as session:
        session.execute(update(OutboxMessage).values(claimed_until=utcnow() - timedelta(1)))


def stored_texts(fake_slack: FakeSlack, channel: str = CHANNEL) -> list[str]:
    return [m["text"] for m in fake_slack.messages.get(channel, {}).values()]


def test_a_row_taken_over_after_its_call_went_out_is_looked_up_not_posted_again(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker) -> None:
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("card"), key="card:10")
        outbox.post_message(session, TEAM, CHANNEL, message("reply"), thread_key="card:10")
    lease = timedelta(seconds=60)
    # A worker renews the card's lease, Slack posts the card, and the worker dies unrecorded.
    with db.session() as session:
        [card] = outbox.claim(session, lease=lease)
    with db.session() as session:
        assert outbox.renew(session, card.id, card.attempts, lease)
    client_for(fake_slack).chat_postMessage(
        channel=CHANNEL, text="card",
        metadata={"event_type": METADATA_TYPE, "event_payload": {"outbox_id": card.id}})
    worker.run_once()
    assert len(fake_slack.calls_to("chat.postMessage")) == 1  # the dead worker's lease holds
    expire_leases(db)
    drain(worker, db, passes=3)
    assert sorted(stored_texts(fake_slack)) == ["card", "reply"]
    assert len(fake_slack.calls_to("conversations.history")) == 1
    assert all(row.status == OutboxStatus.SENT for row in rows(db))
    first_post = fake_slack.calls_to("chat.postMessage")[0].response["ts"]
    reply = fake_slack.calls_to("chat.postMessage")[-1]
    assert reply.args["thread_ts"] == first_post


def test_a_row_claimed_but_never_sent_is_taken_over_without_a_look_up(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker) -> None:
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("waiting in a batch"))
    with db.session() as session:
        outbox.claim(session)  # a worker that died before it got to this row
    expire_leases(db)
    worker.run_once()
    assert stored_texts(fake_slack) == ["waiting in a batch"]
    assert fake_slack.calls_to("conversations.history") == []


def test_a_worker_whose_lease_was_taken_over_does_not_send(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker) -> None:
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("one owner"))
    with db.session() as session:
        [stale] = outbox.claim(session)
    expire_leases(db)
    with db.session() as session:
        [current] = outbox.claim(session)
    assert current.attempts == stale.attempts + 1
    with db.session() as session:
        assert not outbox.renew(session, stale.id, stale.attempts, timedelta(seconds=60))
        assert not outbox.mark_sent(session, stale.id, attempts=stale.attempts)
        assert not outbox.release(session, stale.id, utcnow(), attempts=stale.attempts)
    [row] = rows(db)
    assert row.status == OutboxStatus.SENDING and row.attempts == current.attempts


def test_slow_live_deliveries_are_never_taken_over_and_repeated(
        db: Database, fake_slack: FakeSlack) -> None:
    """Two workers with a short lease while Slack is slow: the first worker's batch outlasts the
    lease, so the second takes over what the first has not started; nothing is sent twice."""
    lease = timedelta(seconds=1.5)
    first = OutboxWorker(db, client_for(fake_slack), poll_seconds=0.05, lease=lease)
    second = OutboxWorker(db, client_for(fake_slack), poll_seconds=0.05, lease=lease)
    assert first.client.timeout == 0.5  # a call always ends inside its renewed lease
    with db.session() as session:
        for n in range(8):
            outbox.post_message(session, TEAM, CHANNEL, message(f"plain {n}"))
        for n in range(3):
            outbox.post_message(session, TEAM, CHANNEL, message(f"card {n} v1"), key=f"c:{n}")
            outbox.update_message(session, TEAM, f"c:{n}", message(f"card {n} v2"))
    fake_slack.inject("chat.postMessage", delay=0.3, times=100)
    fake_slack.inject("chat.update", delay=0.3, times=100)
    batch = threading.Thread(target=first.run_once)
    batch.start()  # leases every post at once and delivers them one by one
    time.sleep(0.3)
    second.start()
    try:
        batch.join(30)
        first.start()
        eventually(lambda: all(r.status == OutboxStatus.SENT for r in rows(db)), timeout=30)
    finally:
        second.stop()
        first.stop()
    texts = stored_texts(fake_slack)
    assert sorted(texts) == sorted([f"plain {n}" for n in range(8)] +
                                   [f"card {n} v2" for n in range(3)])
    assert any(row.attempts > 1 for row in rows(db))  # the second worker did take some over
    for n in range(3):  # each card posted once, then edited
        calls = [c for c in fake_slack.calls if f"card {n}" in c.args.get("text", "")]
        assert [c.method for c in calls] == ["chat.postMessage", "chat.update"]


def test_an_outcome_the_database_failed_to_record_is_recorded_on_the_next_pass(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("first"), key="card:11")
        outbox.post_message(session, TEAM, CHANNEL, message("second"))
    real_mark_sent = outbox.mark_sent_batch
    failures = iter([True])

    def mark_sent_while_the_database_drops(*args: Any, **kwargs: Any) -> set[int]:
        if next(failures, False):
            raise OperationalError("UPDATE outbox", {}, Exception("server closed the connection"))
        return real_mark_sent(*args, **kwargs)

    monkeypatch.setattr(outbox, "mark_sent_batch", mark_sent_while_the_database_drops)
    with pytest.raises(OperationalError):
        worker.run_once()
    assert [r.status for r in rows(db)] == [OutboxStatus.SENDING, OutboxStatus.SENDING]
    worker.run_once()  # records the first post and hands back the second, untried
    worker.run_once()
    assert sorted(stored_texts(fake_slack)) == ["first", "second"]
    assert len(fake_slack.calls_to("chat.postMessage")) == 2
    assert all(r.status == OutboxStatus.SENT for r in rows(db))
    with db.session() as session:
        assert session.get(SlackMessage, "card:11") is not None


def due_in(db: Database) -> dict[str, float]:
    """Seconds until each waiting row (by its text) is due."""
    now = utcnow()
    return {row.payload["text"]: (row.next_attempt_at - now).total_seconds()
            for row in rows(db) if row.status == OutboxStatus.PENDING}


def test_a_success_after_failures_wakes_the_workspaces_backed_off_calls(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker) -> None:
    """Once Slack answers again, calls that failed meanwhile need not sit out a long backoff;
    calls held for a rate limit keep waiting for the time Slack asked for."""
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("first"))
        outbox.post_message(session, TEAM, CHANNEL, message("second"))
        outbox.post_message(session, TEAM, "C0OTHER01", message("rate-limited"))
        outbox.post_message(session, "T2", CHANNEL, message("other workspace"))
        session.flush()
        # As after many failures: the next backoff would be five minutes.
        session.execute(update(OutboxMessage).values(attempts=12))
    fake_slack.inject("chat.postMessage", status=500, times=2)
    fake_slack.inject("chat.postMessage", status=429, retry_after=30)
    fake_slack.inject("chat.postMessage", status=500)
    worker.run_once()
    assert all(seconds > 20 for seconds in due_in(db).values()), due_in(db)
    with db.session() as session:  # the first one's backoff is over; Slack answers again
        session.execute(update(OutboxMessage).where(OutboxMessage.id == rows(db)[0].id)
                        .values(next_attempt_at=utcnow()))
    worker.run_once()
    waiting = due_in(db)
    assert set(waiting) == {"second", "rate-limited", "other workspace"}
    assert waiting["second"] <= 0  # woken
    assert waiting["rate-limited"] > 20 and waiting["other workspace"] > 20


def test_a_rate_limit_holds_one_channels_posts_or_one_workspaces_method(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker) -> None:
    """Slack limits posting per channel and other methods per workspace: a 429 holds that
    much and no more."""
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("a1"), key="card:a")
        outbox.post_message(session, TEAM, CHANNEL, message("a2"))
        outbox.post_message(session, TEAM, "C0OTHER01", message("b1"), key="card:b")
        outbox.post_message(session, "T2", CHANNEL, message("elsewhere"))
    fake_slack.inject("chat.postMessage", status=429, retry_after=30)
    worker.run_once()
    assert sorted(c.args["text"] for c in fake_slack.calls_to("chat.postMessage")) == [
        "b1", "elsewhere"]
    assert set(due_in(db)) == {"a1", "a2"} and min(due_in(db).values()) > 20

    with db.session() as session:
        outbox.update_message(session, TEAM, "card:b", message("b2"))
        outbox.post_message(session, TEAM, "C0THIRD01", message("c1"))
    fake_slack.inject("chat.update", status=429, retry_after=30)
    worker.run_once()  # the workspace's chat.update is held, posting elsewhere is not
    assert stored_texts(fake_slack, "C0THIRD01") == ["c1"]
    assert stored_texts(fake_slack, "C0OTHER01") == ["b1"]
    assert set(due_in(db)) == {"a1", "a2", "b2"} and min(due_in(db).values()) > 20


def test_an_unanswered_post_is_not_posted_blind_while_the_look_up_fails(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker) -> None:
    """Slack posted but its answer never came; while the look-up for that post fails too, the
    post waits rather than going out a second time."""
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("once"), key="card:7")
    fake_slack.inject("chat.postMessage", delay=1.0, act_first=True)  # the worker waits 0.5 s
    worker.run_once()
    fake_slack.inject("conversations.history", status=500)
    fake_slack.inject("conversations.history", delay=1.0)
    drain(worker, db, passes=2)
    [row] = rows(db)
    assert row.status == OutboxStatus.PENDING and row.attempts == 3
    drain(worker, db, passes=1)
    [row] = rows(db)
    assert row.status == OutboxStatus.SENT
    assert stored_texts(fake_slack) == ["once"]
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


def test_a_post_whose_connection_was_refused_is_retried_without_a_look_up(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker) -> None:
    """A refused connection carried nothing to Slack: the retry posts without searching the
    channel first, and `/metrics` counts it as `connection_refused`."""
    before = retries("connection_refused")
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("knock"), key="card:8")
    with TcpProxy(int(fake_slack.base.rsplit(":", 1)[1])) as proxy:
        worker.client.base_url = f"http://127.0.0.1:{proxy.port}/api/"
        proxy.refuse()
        worker.run_once()
        [row] = rows(db)
        assert row.status == OutboxStatus.PENDING and "Connection refused" in row.last_error
        assert retries("connection_refused") == before + 1
        proxy.accept()
        drain(worker, db, passes=1)
    [row] = rows(db)
    assert row.status == OutboxStatus.SENT
    assert [c.method for c in fake_slack.calls] == ["chat.postMessage"]


def test_an_unanswered_post_is_found_below_a_page_of_newer_messages(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker) -> None:
    """After an outage the channel fills with newer posts; the look-up reads past the first
    page (renewing its lease for each) instead of posting the lost one again."""
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("lost reply"), key="card:12")
    fake_slack.inject("chat.postMessage", delay=1.0, act_first=True)  # the worker waits 0.5 s
    worker.run_once()
    newer = client_for(fake_slack)
    for n in range(LOOKUP_PAGE_SIZE + 20):
        newer.chat_postMessage(channel=CHANNEL, text=f"newer {n}")
    drain(worker, db, passes=1)
    [row] = rows(db)
    assert row.status == OutboxStatus.SENT
    assert stored_texts(fake_slack).count("lost reply") == 1
    assert len(fake_slack.calls_to("conversations.history")) == 2
    with db.session() as session:
        assert session.get(SlackMessage, "card:12") is not None


@pytest.fixture
def statements(db: Database) -> Iterator[list[str]]:
    """Every SQL statement the database runs while the test goes on."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine, "before_cursor_execute", record)


def test_a_batch_is_leased_in_one_statement_and_recorded_in_one(
        db: Database, fake_slack: FakeSlack, worker: OutboxWorker,
        statements: list[str]) -> None:
    with db.session() as session:
        for n in range(10):
            outbox.post_message(session, TEAM, CHANNEL, message(f"plain {n}"))
    with db.session() as session:
        statements.clear()
        batch = outbox.claim(session)
    assert [row.payload["text"] for row in batch] == [f"plain {n}" for n in range(10)]
    leases = [s for s in statements if "RETURNING" in s]
    assert len(leases) == 1
    assert "SKIP LOCKED" in leases[0] or db.is_sqlite
    # The lease and the coalescing of superseded edits; nothing per row.
    assert len([s for s in statements if s.lstrip().upper().startswith(("UPDATE", "SELECT"))]) \
        == 2
    with db.session() as session:
        statements.clear()
        recorded = outbox.mark_sent_batch(
            session, [outbox.Sent(row.id, row.attempts) for row in batch])
    assert recorded == {row.id for row in batch}
    assert len([s for s in statements if s.lstrip().upper().startswith("UPDATE")]) == 1
    assert all(row.status == OutboxStatus.SENT and row.delivered_at for row in rows(db))


def test_deliveries_recorded_together_skip_rows_another_worker_took_over(
        db: Database, fake_slack: FakeSlack) -> None:
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("mine"), key="card:20")
        outbox.post_message(session, TEAM, CHANNEL, message("taken over"), key="card:21")
    with db.session() as session:
        mine, stale = outbox.claim(session)
    with db.session() as session:
        session.execute(update(OutboxMessage).where(OutboxMessage.id == stale.id)
                        .values(claimed_until=utcnow() - timedelta(seconds=1)))
    with db.session() as session:
        [current] = outbox.claim(session)
    assert current.id == stale.id and current.attempts == stale.attempts + 1
    with db.session() as session:
        recorded = outbox.mark_sent_batch(session, [
            outbox.Sent(mine.id, mine.attempts, "card:20", CHANNEL, "1.000100"),
            outbox.Sent(stale.id, stale.attempts, "card:21", CHANNEL, "1.000200")])
    assert recorded == {mine.id}
    by_id = {row.id: row for row in rows(db)}
    assert by_id[mine.id].status == OutboxStatus.SENT
    assert by_id[stale.id].status == OutboxStatus.SENDING
    with db.session() as session:
        assert session.get(SlackMessage, "card:20").ts == "1.000100"
        assert session.get(SlackMessage, "card:21") is None  # its new owner records it


def test_a_renewal_marks_the_call_out_and_recording_clears_the_mark(
        db: Database, fake_slack: FakeSlack) -> None:
    with db.session() as session:
        outbox.post_message(session, TEAM, CHANNEL, message("out"))
    with db.session() as session:
        [row] = outbox.claim(session)
    with db.session() as session:
        assert outbox.renew(session, row.id, row.attempts, timedelta(seconds=60))
    [stored] = rows(db)
    assert stored.payload == {**message("out"), "channel": CHANNEL, outbox.IN_FLIGHT_FLAG: True}
    assert (stored.claimed_until - utcnow()).total_seconds() > 55
    with db.session() as session:
        assert outbox.mark_sent_batch(session, [outbox.Sent(row.id, row.attempts)]) == {row.id}
    [stored] = rows(db)
    assert stored.payload == {**message("out"), "channel": CHANNEL}
