"""Slack's requests run on worker threads and are answered the moment a listener calls `ack()`.

Bolt's own Starlette adapter calls the synchronous `App.dispatch` on the event loop, which would
serialize every request. Here each dispatch runs on a worker thread instead, so slow listeners
never hold up other requests, and the event loop only moves bytes. Slack's request is answered
the moment the listener calls `ack()` (see `dispatch_until_ack`); the listener then goes on, on its
thread, with whatever Slack calls follow the acknowledgement.

A slash command whose listener is still busy after `ANSWER_WITHIN` seconds is told that it may not
be saved (`late_command_answer`), and every Slack request's log lines say what it is about
(`slack_context`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from slack_bolt import Ack, App, BoltRequest, BoltResponse
from starlette.responses import JSONResponse, Response

from handlers.common import TOO_SLOW, error_message

log = logging.getLogger("quorum.web")

# Threads that run Bolt listeners; a request holds one only while its listener runs.
LISTENER_THREADS = 32


class _SignallingAck(Ack):
    """Bolt's `ack` that also hands its response to the waiting request the moment it is called."""

    def __init__(self, on_ack: Callable[[BoltResponse], None]) -> None:
        super().__init__()
        self._on_ack = on_ack

    def __call__(self, *args: Any, **kwargs: Any) -> BoltResponse:
        response = super().__call__(*args, **kwargs)
        self._on_ack(response)
        return response


async def dispatch_until_ack(bolt_app: App, request: BoltRequest,
                             executor: Executor) -> BoltResponse:
    """Run `bolt_app.dispatch` on `executor` and answer as soon as the listener acknowledges.

    Bolt's own "ack first, then go on" mode (`process_before_response=False`) polls for the ack
    every 10 ms from a second thread; with an app built with `process_before_response=True` this
    gives the same behaviour with no polling: the HTTP answer leaves when `ack()` is called (or
    when dispatch returns without one: a refused signature, an unhandled request, an event), and
    the listener finishes on its thread.
    """
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[BoltResponse] = loop.create_future()

    def settle(outcome: BoltResponse | BaseException) -> None:
        if answered.done():
            return
        if isinstance(outcome, BaseException):
            answered.set_exception(outcome)
        else:
            answered.set_result(outcome)

    def answer(outcome: BoltResponse | BaseException) -> None:
        loop.call_soon_threadsafe(settle, outcome)

    request.context["ack"] = _SignallingAck(answer)

    def run() -> None:
        try:
            answer(bolt_app.dispatch(request))
        except BaseException as exc:  # dispatch handles listener errors; this is Bolt failing
            answer(exc)

    # The listener's thread carries the request's log context (request id, team, command).
    executor.submit(contextvars.copy_context().run, run)
    return await answered


# Slack shows an error unless a slash command is answered within 3 s (network included).
ANSWER_WITHIN = 2.5  # Slack counts its own network time too; Bolt gives up at 3 s


def late_command_answer(payload: dict[str, Any], waited: float) -> Response | None:
    """What a (verified) slash command gets when its listener is still busy (say, on a database
    that accepts connections but does not answer): a polite ephemeral before Slack gives up at
    3 s, instead of Slack's own error. None for anything else, which waits for Bolt as before."""
    command = payload.get("command")
    if not isinstance(command, str):  # only a slash command's form has one
        return None
    log.warning("%s did not finish within %ss; answered that it may not be saved",
                command[:40], waited)
    return JSONResponse(error_message(TOO_SLOW))


def slack_context(bolt: BoltRequest) -> dict[str, str]:
    """What a Slack request is about, for its log lines: the workspace and the slash command
    (or the interaction or event type)."""
    body = bolt.body if isinstance(bolt.body, dict) else {}
    what = body.get("command") or body.get("type")
    if what == "event_callback" and isinstance(body.get("event"), dict):
        what = body["event"].get("type")
    found = {"team": bolt.context.team_id, "command": what}
    return {key: str(value)[:64] for key, value in found.items() if value}
