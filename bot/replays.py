"""A slash command acted on once per `trigger_id`, however often its request arrives.

Slack gives every invocation of a command its own `trigger_id`; a second request carrying one
already acted on is a replay (a proxy's retry, a captured request sent again within the signature's
five minutes). Like a modal's view id, the trigger id is remembered with `idempotency.first_time`
in the transaction of the command's effect, so a rollback forgets it with the effect, and two
copies at the same moment meet on the key. Handlers do nothing for it: the middleware marks the
request, and the first transaction of the request that writes claims the key when it commits.
A command that writes nothing (`list`, `show`, `help`, a form) claims nothing, and a replay of it
is simply answered again. Keys are swept after a day with every other (`idempotency`).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar, copy_context
from dataclasses import dataclass
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.database import UNAVAILABLE, Database, database_outage
from bot.errors import QuorumError
from bot.models import ProcessedRequest
from bot.services import idempotency
from handlers.common import DATABASE_DOWN, error_message, notice

log = logging.getLogger("quorum.replays")

ALREADY_DONE = "Already done: Slack delivered this command twice, and Quorum acted on it the " \
    "first time. Nothing new was saved."


class AlreadyDone(QuorumError):
    """The command's trigger id was claimed by another copy of the request meanwhile."""

    def __init__(self) -> None:
        super().__init__(ALREADY_DONE)


@dataclass
class _Trigger:
    team_id: str
    key: str
    claimed: bool = False


@dataclass
class _Request:
    """The request being dispatched on this thread (or handed to a listener's thread)."""

    trigger: _Trigger | None = None


_current: ContextVar[_Request | None] = ContextVar("quorum_request", default=None)
_WROTE = "quorum_wrote"
_CLAIMED = "quorum_claimed"
_hooked: weakref.WeakSet[Database] = weakref.WeakSet()


def command_key(trigger_id: str) -> str:
    return f"command:{trigger_id}"


def already_done(db: Database, team_id: str, key: str) -> bool:
    """Was this key stored? Peeked at without a transaction: a session would first wait
    (SQLite's `BEGIN IMMEDIATE`) for whatever write holds the database."""
    table = ProcessedRequest.__table__
    return db.peek(select(table.c.key).where(
        table.c.team_id == team_id[:32], table.c.key == key[:idempotency.KEY_LIMIT])) is not None


def track_commands(app: App, db: Database) -> None:
    """Make `app` act once per command trigger id: a middleware answers replays, and the
    sessions of `db` claim the trigger id in the first transaction of the command that writes.

    Bolt's `next()` only lets the next middleware run after this one returns, so the request's
    scope is `dispatch`: the trigger lives in a context variable from the start of `dispatch` to
    its end (and in the copy of that context a Socket Mode listener runs in).
    """
    if db not in _hooked:  # one app per database usually; tests and the manifest build more
        _hooked.add(db)
        db.listen("after_flush", _note_write)
        db.listen("do_orm_execute", _note_statement)
        db.listen("before_commit", _claim)
        db.listen("after_commit", _claimed)
    dispatch = app.dispatch

    def dispatch_in_scope(req: BoltRequest) -> BoltResponse:
        token = _current.set(_Request())
        try:
            return dispatch(req)
        finally:
            _current.reset(token)

    app.dispatch = dispatch_in_scope  # type: ignore[method-assign]

    def once_per_trigger(req: BoltRequest, next: Callable[[], BoltResponse]) -> BoltResponse:
        body, request = req.body, _current.get()
        trigger_id, team_id = body.get("trigger_id"), body.get("team_id")
        if request is None or "command" not in body or not isinstance(trigger_id, str) \
                or not trigger_id or not isinstance(team_id, str):
            return next()
        key = command_key(trigger_id)
        try:
            replayed = already_done(db, team_id, key)
        except UNAVAILABLE:
            # What the listener would answer after waiting on the database a second time.
            database_outage.failed(log, "database error before %s", body.get("command"))
            return _answer(error_message(DATABASE_DOWN))
        if replayed:
            log.info("%s with trigger id %s already acted on: not again", body.get("command"),
                     trigger_id[:40])
            return _answer(notice(ALREADY_DONE, emoji=":information_source:"))
        request.trigger = _Trigger(team_id, key)
        return next()

    app.use(once_per_trigger)


def _answer(message: dict[str, Any]) -> BoltResponse:
    return BoltResponse(status=200, body=message)


def _note_write(session: Session, _flush_context: Any) -> None:
    session.info[_WROTE] = True


def _note_statement(state: Any) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[_WROTE] = True


def _claim(session: Session) -> None:
    request = _current.get()
    trigger = request.trigger if request is not None else None
    wrote = session.info.pop(_WROTE, False) or session.new or session.dirty or session.deleted
    if trigger is None or trigger.claimed or not wrote or _CLAIMED in session.info:
        return
    if not idempotency.first_time(session, trigger.team_id, trigger.key):
        raise AlreadyDone()
    session.info[_CLAIMED] = trigger


def _claimed(session: Session) -> None:
    trigger = session.info.pop(_CLAIMED, None)
    if trigger is not None:
        trigger.claimed = True


class ContextExecutor(ThreadPoolExecutor):
    """Runs each task in a copy of the submitter's context: Bolt's listener runner (Socket Mode)
    then carries the command's trigger to the listener's thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return super().submit(copy_context().run, fn, *args, **kwargs)
