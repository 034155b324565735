"""`/standup` and `/retro`, the ritual buttons and modals, and standup replies in threads."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.commands import Command, Subcommand
from bot.models import Project, RetroItem, RitualKind, RitualOccurrence, utcnow
from bot.render import renderer, slack_unescape
from bot.runtime import Runtime
from bot.services import rituals as service
from bot.services.projects import project_for_channel
from handlers.common import (
    ephemeral,
    first_submission,
    form_values,
    guarded,
    help_message,
    notice,
    read_metadata,
    team_id_of,
    user_id_of,
    write_metadata,
)
from handlers.skeleton import guard

log = logging.getLogger("quorum.rituals")

WHEN_HELP = "`<when>`: `weekdays 09:30`, `mon,thu 10:00`, `every 2 weeks on friday 15:00` or " \
    "a quoted cron expression"
STANDUP = Command("/standup", "scheduled standup threads", [
    Subcommand("schedule <when:text>", "post the standup at these times (add `tz Area/City` "
               "for a time zone); " + WHEN_HELP),
    Subcommand("now", "post a standup right now"),
    Subcommand("off", "stop the scheduled standup"),
    Subcommand("status", "the schedule, the next standups, skipped days and who is away"),
    Subcommand("skip <date:date>", "no standup on that day (a holiday)"),
    Subcommand("away <user:user> until <date:date>", "do not expect someone until a date"),
], bare="show the schedule")
RETRO = Command("/retro", "scheduled retrospectives", [
    Subcommand("schedule <when:text>", "post the retrospective at these times (add "
               "`tz Area/City` for a time zone); " + WHEN_HELP),
    Subcommand("now", "open a retrospective right now"),
    Subcommand("off", "stop the scheduled retrospective"),
    Subcommand("status", "the schedule and the next retrospectives"),
], bare="show the schedule")
COMMAND = STANDUP  # the manifest reads COMMAND; COMMANDS lists both
COMMANDS = (STANDUP, RETRO)
ITEM_ACTIONS = {"retro_went_well": "went_well", "retro_to_improve": "to_improve",
                "retro_action": "action"}


def register(app: App, runtime: Runtime) -> None:
    db = runtime.db
    default_tz = runtime.settings.timezone

    def channel_members(client: WebClient, channel: str) -> list[str]:
        """Who is in the channel: the participants when nobody in the project holds a role."""
        try:
            answer = client.conversations_members(channel=channel, limit=200)
        except SlackApiError as exc:
            log.warning("no channel members for %s: %s", channel, exc.response.get("error"))
            return []
        return [str(member) for member in answer.get("members") or []]

    def answer(command: Command, kind: str, ack: Ack, body: dict[str, Any],
               payload: dict[str, Any], client: WebClient) -> None:
        parsed = command.parse(payload.get("text", ""))
        if parsed.wants_help:
            ack(**help_message(command))
            return
        team, channel, user = team_id_of(body), payload["channel_id"], payload["user_id"]
        subcommand = parsed.subcommand or "status"
        args = parsed.args
        members: list[str] = []
        if subcommand == "schedule":
            # Validate before asking Slack for the members, so bad input is answered at once.
            when, tz = service.split_when(args["when"])
            with db.session() as session:
                project = project_for_channel(session, team, channel, payload.get("channel_name"))
                service.check_schedule(project, when, tz, utcnow(), default_tz)
            members = channel_members(client, channel)
        with db.session() as session:
            project = project_for_channel(session, team, channel, payload.get("channel_name"))
            reply = _reply(session, project, kind, subcommand, args, user,
                           members)
        ack(**reply)

    def _reply(session: Any, project: Project, kind: str, subcommand: str, args: dict[str, Any],
               user: str, members: list[str]) -> dict[str, Any]:
        now = utcnow()
        if subcommand == "schedule":
            when, tz = service.split_when(args["when"])
            schedule, upcoming = service.set_schedule(session, project, user, kind, when, tz,
                                                      members=members, now=now,
                                                      default_tz=default_tz)
            return ephemeral(renderer.message("ritual/scheduled", kind=kind, schedule=schedule,
                                              upcoming=upcoming,
                                              zone=ZoneInfo(schedule.timezone)))
        if subcommand == "now":
            occurrence = service.run_now(session, project, user, kind, now, default_tz)
            return notice(f"Started the {kind} of {occurrence.local_date.isoformat()}; it is on "
                          f"its way to the channel.")
        if subcommand == "off":
            service.turn_off(session, project, user, kind)
            return notice(f"The scheduled {kind} is off. Turn it back on with "
                          f"`/{kind} schedule …`.")
        if subcommand == "skip":
            skip = service.skip_date(session, project, user, kind, args["date"], now=now,
                                     default_tz=default_tz)
            return notice(f"No {kind} on {skip.on_date.isoformat()}.")
        if subcommand == "away":
            away = service.set_away(session, project, user, args["user"], args["date"], now=now,
                                    default_tz=default_tz)
            return notice(f"is away until {away.until.isoformat()}; the standup will not "
                          f"expect them.", person=away.user_id)
        status = service.status(session, project, kind, now, default_tz)
        zone = ZoneInfo(status.schedule.timezone if status.schedule else
                        service.zone_name(project, default_tz))
        return ephemeral(renderer.message("ritual/status", st=status, zone=zone))

    @app.command(STANDUP.name)
    @guarded
    def on_standup(ack: Ack, command: dict[str, Any], body: dict[str, Any],
                   client: WebClient) -> None:
        answer(STANDUP, RitualKind.STANDUP, ack, body, command, client)

    @app.command(RETRO.name)
    @guarded
    def on_retro(ack: Ack, command: dict[str, Any], body: dict[str, Any],
                 client: WebClient) -> None:
        answer(RETRO, RitualKind.RETRO, ack, body, command, client)

    @app.action("ritual_add_update")
    @guarded
    def on_add_update(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                      client: WebClient) -> None:
        ack()
        user = user_id_of(body)
        with db.session() as session:
            occurrence = guard(session, body).change_id(RitualOccurrence, action["value"],
                                                        "ritual")
            service.ensure_open(occurrence)
            mine = next((u for u in occurrence.updates
                         if u.user_id == user and u.source == "modal"), None)
            form = {"yesterday": mine.yesterday if mine else "",
                    "today": mine.today if mine else "",
                    "blockers": mine.blockers if mine else ""}
            view = renderer.view("ritual/update_modal", o=occurrence, form=form,
                                 metadata=write_metadata(occurrence_id=occurrence.id))
        client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.view("ritual_update_modal")
    @guarded
    def on_update_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        values, meta = form_values(view), read_metadata(view)
        draft = service.UpdateDraft(values.get("yesterday", ""), values.get("today", ""),
                                    values.get("blockers", ""))
        draft.validated()  # field errors before touching the database
        with db.session() as session:
            if first_submission(session, body):
                occurrence = guard(session, body).change_id(
                    RitualOccurrence, meta["occurrence_id"], "ritual")
                service.add_update(session, occurrence, user_id_of(body), draft)
        ack()

    def on_item_button(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                       client: WebClient) -> None:
        ack()
        kind = ITEM_ACTIONS[action["action_id"]]
        with db.session() as session:
            occurrence = guard(session, body).change_id(RitualOccurrence, action["value"],
                                                        "ritual")
            service.ensure_open(occurrence)
            today = utcnow().astimezone(ZoneInfo(occurrence.timezone)).date()
            view = renderer.view("ritual/item_modal", kind=kind, owner=user_id_of(body),
                                 due=today + timedelta(days=7),
                                 metadata=write_metadata(occurrence_id=occurrence.id, kind=kind))
        client.views_open(trigger_id=body["trigger_id"], view=view)

    for action_id in ITEM_ACTIONS:
        app.action(action_id)(guarded(on_item_button))

    @app.view("retro_item_modal")
    @guarded
    def on_item_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        values, meta = form_values(view), read_metadata(view)
        draft = service.ItemDraft(kind=str(meta.get("kind")), text=values.get("text", ""),
                                  owner=values.get("owner"), due_date=values.get("due_date"))
        with db.session() as session:
            if first_submission(session, body):
                occurrence = guard(session, body).change_id(
                    RitualOccurrence, meta["occurrence_id"], "ritual")
                service.add_item(session, occurrence, user_id_of(body), draft)
        ack()

    @app.action("retro_item_done")
    @guarded
    def on_item_done(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                     respond: Respond) -> None:
        ack()
        with db.session() as session:
            guard(session, body).change_id(RetroItem, action["value"], "action item")
            item, changed = service.complete_item(session, int(action["value"]),
                                                  user_id_of(body))
            message = renderer.message("ritual/item", i=item)
        if changed:  # the item in the thread shows it done, without its button
            respond(replace_original=True, **message)
        else:
            respond(replace_original=False, **notice(
                "That action item is already done.", ":information_source:"))

    @app.event("message")
    def on_message(body: dict[str, Any], event: dict[str, Any]) -> None:
        # Only people's new replies in a thread: not bots, edits, deletions or joins.
        if event.get("bot_id") or event.get("subtype") or not event.get("user"):
            return
        thread_ts, ts = event.get("thread_ts"), event.get("ts")
        if not thread_ts or not ts or thread_ts == ts:
            return
        with db.session() as session:
            service.record_reply(session, str(event.get("channel")), str(thread_ts),
                                 str(event["user"]), slack_unescape(event.get("text") or ""),
                                 str(ts), body.get("event_id"))
