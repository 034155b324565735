"""What every handler needs: replying with errors and help, reading modals and payloads."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from bot.commands import Command, UsageError
from bot.database import UNAVAILABLE, database_outage
from bot.errors import QuorumError
from bot.render import renderer
from bot.services import idempotency

log = logging.getLogger("quorum.handlers")

OUR_FAULT = "Something went wrong on our side and nothing was saved. Please try again in a moment."
DATABASE_DOWN = "Quorum cannot reach its database right now, so nothing was saved. " \
    "Please try again in a minute."
# When the answer cannot wait any longer for the work (a database that hangs): it may yet finish.
TOO_SLOW = "Quorum could not finish this in time, so it may not have been saved. " \
    "If you do not see it within a minute, please try again."


def ephemeral(message: dict[str, Any]) -> dict[str, Any]:
    return {"response_type": "ephemeral", **message}


def error_message(message: str, usage: list[str] | None = None,
                  mentions: tuple[str, ...] = ()) -> dict[str, Any]:
    """The ephemeral warning; `mentions` are the ids in `message` shown as mentions/links."""
    return ephemeral(renderer.message("common/error", message=message, usage=usage or [],
                                      mentions=mentions))


def notice(text: str, emoji: str = ":white_check_mark:", person: str = "") -> dict[str, Any]:
    """An ephemeral one-liner; `person` (a user ID) is shown as a mention before the text."""
    return ephemeral(renderer.message("common/notice", text=text, emoji=emoji, person=person))


def help_message(command: Command) -> dict[str, Any]:
    return ephemeral(renderer.message("common/help", command=command))


def team_id_of(body: dict[str, Any]) -> str:
    """The workspace of any payload: slash command, interaction or event."""
    if body.get("team_id"):
        return str(body["team_id"])
    team = body.get("team") or {}
    if team.get("id"):
        return str(team["id"])
    return str((body.get("user") or {}).get("team_id", ""))


def user_id_of(body: dict[str, Any]) -> str:
    return str(body.get("user_id") or (body.get("user") or {}).get("id", ""))


def form_values(view: dict[str, Any]) -> dict[str, Any]:
    """`{block_id: value}` of a submitted modal, whatever the kind of input."""
    values: dict[str, Any] = {}
    for block_id, actions in view.get("state", {}).get("values", {}).items():
        for state in actions.values():
            kind = state.get("type")
            if kind in ("multi_users_select", "multi_conversations_select"):
                values[block_id] = state.get("selected_users") or state.get(
                    "selected_conversations") or []
            elif kind in ("static_select", "radio_buttons", "external_select"):
                option = state.get("selected_option")
                values[block_id] = option.get("value") if option else None
            elif kind in ("multi_static_select", "checkboxes"):
                values[block_id] = [o["value"] for o in state.get("selected_options") or []]
            elif kind == "users_select":
                values[block_id] = state.get("selected_user")
            elif kind == "datepicker":
                values[block_id] = state.get("selected_date")
            else:
                values[block_id] = state.get("value") or ""
    return values


def read_metadata(view: dict[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def write_metadata(**values: Any) -> str:
    return json.dumps({key: value for key, value in values.items() if value is not None})


def first_submission(session: Session, body: dict[str, Any]) -> bool:
    """False when this very modal (its view id) was submitted before and acted on: a double
    press of Submit, or Slack sending it again. Call it in the transaction that does the work."""
    view_id = (body.get("view") or {}).get("id")
    return not view_id or idempotency.first_time(session, team_id_of(body),
                                                 idempotency.view_key(str(view_id)))


def first_delivery(session: Session, body: dict[str, Any]) -> bool:
    """False for Slack's retry (same `event_id`) of an event already acted on; a retry of an
    attempt that failed is acted on. Call it in the transaction that does the work."""
    event_id = body.get("event_id")
    return not event_id or idempotency.first_time(session, team_id_of(body),
                                                  idempotency.event_key(str(event_id)))


def guarded(listener: Callable[..., None]) -> Callable[..., None]:
    """Turn a listener's errors into what the person should see: never a stack trace or silence.

    QuorumError and UsageError carry their own words; anything else is logged and answered with
    an apology (a polite note when the database is unreachable).
    """

    @functools.wraps(listener)
    def wrapper(**kwargs: Any) -> None:
        try:
            listener(**kwargs)
        except UsageError as exc:
            _reply_error(kwargs, exc.message, exc.usage)
        except QuorumError as exc:
            _reply_error(kwargs, exc.message, None, field=exc.field, mentions=exc.mentions)
        except UNAVAILABLE:
            database_outage.failed(log, "database error in %s", listener.__name__)
            _reply_error(kwargs, DATABASE_DOWN, None)
        except Exception:
            log.exception("listener %s failed", listener.__name__)
            _reply_error(kwargs, OUR_FAULT, None)

    return wrapper


def _reply_error(kwargs: dict[str, Any], message: str, usage: list[str] | None,
                 field: str | None = None, mentions: tuple[str, ...] = ()) -> None:
    body = kwargs.get("body") or {}
    ack = kwargs.get("ack")
    acked = ack is not None and getattr(ack, "response", None) is not None
    if body.get("type") == "view_submission" and not acked and ack is not None:
        blocks = [block.get("block_id") for block in body["view"].get("blocks", [])]
        # A field-less error goes on the first input (blocks without an id are None).
        target = field if field and field in blocks else next((b for b in blocks if b), None)
        if target:
            ack(response_action="errors", errors={target: message[:150]})
            return
    reply = error_message(message, usage, mentions)
    if ack is not None and not acked:
        ack(**reply)
        return
    respond = kwargs.get("respond")
    if respond is not None and (body.get("response_url") or body.get("response_urls")):
        respond(replace_original=False, **reply)
        return
    client, channel = kwargs.get("client"), (body.get("channel") or {}).get("id")
    if client is not None and channel:
        client.chat_postEphemeral(channel=channel, user=user_id_of(body), text=reply["text"],
                                  blocks=reply["blocks"])
    else:
        log.warning("could not tell the user: %s", message)
