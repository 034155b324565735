"""`/standup`, `/retro` and `/ritual`, the ritual buttons and modals, and the messages that
answer rituals: standup replies in threads (and their edits and deletions), DM answers of
`each` standups, agenda replies of reviews and demos, and `user_change` (time zones)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.commands import Command, Subcommand
from bot.errors import NotFound
from bot.models import Project, RetroItem, RitualKind, RitualOccurrence, SlackMessage, utcnow
from bot.render import renderer, slack_unescape
from bot.runtime import Runtime
from bot.services import home
from bot.services import rituals as service
from bot.services.projects import project_for_channel
from bot.services.rituals import reviews, standups, zones
from bot.services.rituals.base import schedule_of
from handlers.common import (
    ephemeral,
    first_delivery,
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
               "for a time zone, `each` to ask everyone at that time in their own zone); "
               + WHEN_HELP),
    Subcommand("now", "post a standup right now"),
    Subcommand("off", "stop the scheduled standup"),
    Subcommand("status", "the schedule, the next standups, skipped days and who is away"),
    Subcommand("questions", "set the standup's questions (a form: 1 to 6 questions)"),
    Subcommand("skip <date:date>", "no standup on that day (a holiday)"),
    Subcommand("away <user:user> until <date:date>", "do not expect someone until a date"),
], bare="show the schedule")
RETRO = Command("/retro", "scheduled retrospectives", [
    Subcommand("schedule <when:text>", "post the retrospective at these times (add "
               "`tz Area/City` for a time zone, `votes N` for each person's votes); "
               + WHEN_HELP),
    Subcommand("now", "open a retrospective right now"),
    Subcommand("off", "stop the scheduled retrospective"),
    Subcommand("status", "the schedule and the next retrospectives"),
    Subcommand("done <ref:A-n>", "mark an action item done"),
], bare="show the schedule")
RITUAL = Command("/ritual", "design reviews and sprint demos", [
    Subcommand("schedule <kind:review|demo> <when:text>", "hold a design review or a demo at "
               "these times (add `tz Area/City`): the agenda thread opens a day before; "
               + WHEN_HELP),
    Subcommand("now <kind:review|demo>", "open a review's or demo's agenda thread now"),
    Subcommand("off <kind:review|demo>", "stop the scheduled review or demo"),
    Subcommand("status <kind:review|demo>", "the schedule and the next ones"),
], bare="show how to schedule a review or demo")
COMMAND = STANDUP  # the manifest reads COMMAND; COMMANDS lists them all
COMMANDS = (STANDUP, RETRO, RITUAL)
ITEM_ACTIONS = {"retro_went_well": "went_well", "retro_to_improve": "to_improve",
                "retro_action": "action"}
# Zones asked of `users.info` per command, so the acknowledgement stays within Slack's 3 s;
# the others are asked on their `user_change` or the next time the schedule is set.
ZONE_LOOKUPS = 40


def occurrence_of(session: Any, body: dict[str, Any], value: Any) -> RitualOccurrence:
    """The ritual behind a button or form, if it may be changed from where it was pressed."""
    return guard(session, body).change_id(RitualOccurrence, value, "ritual")


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

    def look_up_zones(client: WebClient, team: str, users: Sequence[str]) -> None:
        """Each person's `tz` from `users.info`, for those not cached in the last day."""
        with db.session() as session:
            wanted = zones.stale(session, team, users, utcnow())[:ZONE_LOOKUPS]
        found: dict[str, str | None] = {}
        for user in wanted:
            try:
                found[user] = (client.users_info(user=user).get("user") or {}).get("tz")
            except SlackApiError as exc:
                log.warning("no time zone for %s: %s", user, exc.response.get("error"))
        if found:
            with db.session() as session:
                zones.remember(session, team, found, utcnow())

    def answer(command: Command, kind: str | None, ack: Ack, body: dict[str, Any],
               payload: dict[str, Any], client: WebClient) -> None:
        parsed = command.parse(payload.get("text", ""))
        if parsed.wants_help:
            ack(**help_message(command))
            return
        team, channel, user = team_id_of(body), payload["channel_id"], payload["user_id"]
        subcommand = parsed.subcommand or "status"
        args = parsed.args
        kind = kind or args.get("kind")
        if kind is None:  # bare `/ritual`
            ack(**help_message(command))
            return
        if subcommand == "done":  # an action item, changed only from its own project
            with db.session() as session:
                item = guard(session, body, client, runtime).check(
                    service.find_action(session, team, args["ref"]), change=True)
                item, changed = service.complete_item(session, item.id, user)
                reply = notice(f"{item.ref} is done: {item.text[:200]}") if changed else \
                    notice(f"{item.ref} is already done.", ":information_source:")
            ack(**reply)
            return
        if subcommand == "questions":
            with db.session() as session:
                project = project_for_channel(session, team, channel, payload.get("channel_name"))
                schedule = schedule_of(session, project, RitualKind.STANDUP)
                if schedule is None:
                    raise NotFound(
                        "Schedule the standup first (`/standup schedule weekdays 09:30`); its "
                        "questions belong to the schedule.")
                view = renderer.view("ritual/questions_modal",
                                     questions=standups.questions_of(schedule),
                                     metadata=write_metadata(project_id=project.id))
            ack()
            client.views_open(trigger_id=payload["trigger_id"], view=view)
            return
        members: list[str] = []
        if subcommand == "schedule":
            # Validate before asking Slack anything, so bad input is answered at once.
            when = service.split_when(args["when"])
            service.check_options(kind, when.each, when.votes)
            with db.session() as session:
                project = project_for_channel(session, team, channel, payload.get("channel_name"))
                service.check_schedule(project, when.when, when.tz, utcnow(), default_tz)
            members = channel_members(client, channel)
            if when.each:
                with db.session() as session:
                    project = project_for_channel(session, team, channel)
                    people = service.people(session, project, None) or members
                look_up_zones(client, team, people)
        with db.session() as session:
            project = project_for_channel(session, team, channel, payload.get("channel_name"))
            reply = _reply(session, project, kind, subcommand, args, user, members)
        ack(**reply)

    def _reply(session: Any, project: Project, kind: str, subcommand: str, args: dict[str, Any],
               user: str, members: list[str]) -> dict[str, Any]:
        now = utcnow()
        if subcommand == "schedule":
            when = service.split_when(args["when"])
            schedule, upcoming = service.set_schedule(
                session, project, user, kind, when.when, when.tz, members=members, now=now,
                default_tz=default_tz, each=when.each, votes=when.votes)
            return ephemeral(renderer.message("ritual/scheduled", kind=kind, schedule=schedule,
                                              upcoming=upcoming,
                                              zone=ZoneInfo(schedule.timezone)))
        if subcommand == "now":
            occurrence = service.run_now(session, project, user, kind, now, default_tz)
            return notice(f"Started the {kind} of {occurrence.local_date.isoformat()}; it is on "
                          f"its way to the channel.")
        if subcommand == "off":
            service.turn_off(session, project, user, kind)
            command = f"/ritual schedule {kind}" if kind in reviews.MEETINGS else \
                f"/{kind} schedule"
            return notice(f"The scheduled {kind} is off. Turn it back on with `{command} …`.")
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

    @app.command(RITUAL.name)
    @guarded
    def on_ritual(ack: Ack, command: dict[str, Any], body: dict[str, Any],
                  client: WebClient) -> None:
        answer(RITUAL, None, ack, body, command, client)

    @app.view("ritual_questions_modal")
    @guarded
    def on_questions_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        values, meta = form_values(view), read_metadata(view)
        rows = [(str(values.get(f"question_{n}") or ""), bool(values.get(f"required_{n}")))
                for n in range(1, 7)]
        with db.session() as session:
            project = guard(session, body).change_id(Project, meta.get("project_id"), "project")
            if first_submission(session, body):
                service.set_questions(session, project, user_id_of(body), rows)
        ack()

    @app.action("ritual_add_update")
    @guarded
    def on_add_update(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                      client: WebClient) -> None:
        ack()
        user = user_id_of(body)
        with db.session() as session:
            occurrence = occurrence_of(session, body, action["value"])
            service.ensure_open(occurrence)
            mine = standups.update_of(session, occurrence, user)
            view = renderer.view("ritual/update_modal", o=occurrence,
                                 questions=standups.questions_of(occurrence),
                                 form=dict(mine.answers or {}) if mine else {},
                                 metadata=write_metadata(occurrence_id=occurrence.id))
        client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.view("ritual_update_modal")
    @guarded
    def on_update_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        values, meta = form_values(view), read_metadata(view)
        with db.session() as session:
            occurrence = occurrence_of(session, body, meta["occurrence_id"])
            standups.validate_form(occurrence, values)  # field errors before any write
            if first_submission(session, body):
                service.add_update(session, occurrence, user_id_of(body), values)
        ack()

    def on_item_button(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                       client: WebClient) -> None:
        ack()
        kind = ITEM_ACTIONS[action["action_id"]]
        with db.session() as session:
            occurrence = occurrence_of(session, body, action["value"])
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
                                  owner=values.get("owner"), due_date=values.get("due_date"),
                                  anonymous=bool(values.get("anonymous")))
        with db.session() as session:
            if first_submission(session, body):
                occurrence = occurrence_of(session, body, meta["occurrence_id"])
                service.add_item(session, occurrence, user_id_of(body), draft)
        ack()

    def on_vote(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                respond: Respond) -> None:
        ack()
        cast = action["action_id"] == "retro_vote"
        with db.session() as session:
            guard(session, body).change_id(RetroItem, action["value"], "retro item")
            item, changed, left = service.vote(session, int(action["value"]),
                                               user_id_of(body), cast=cast)
            text = item.text[:80]
        votes = f"{left} vote{'' if left == 1 else 's'} left"
        if not changed:
            respond(replace_original=False, **notice(
                f"You already voted for “{text}”; {votes}." if cast else
                f"You have no vote on “{text}” to take back; {votes}.",
                ":information_source:"))
            return
        respond(replace_original=False, **notice(
            f"Voted for “{text}”; {votes}." if cast else
            f"Took your vote back from “{text}”; {votes}.", ":ballot_box:"))

    for action_id in ("retro_vote", "retro_unvote"):
        app.action(action_id)(guarded(on_vote))

    @app.action("retro_item_done")
    @guarded
    def on_item_done(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                     respond: Respond) -> None:
        ack()
        on_home = (body.get("view") or {}).get("type") == "home"
        with db.session() as session:
            guard(session, body).change_id(RetroItem, action["value"], "action item")
            item, changed = service.complete_item(session, int(action["value"]),
                                                  user_id_of(body))
            message = renderer.message("ritual/item", i=item)
            if on_home:  # a Home has no response_url: it is published again, with a note
                home.publish_home(session, team_id_of(body), user_id_of(body), home.Notice(
                    f"{item.ref} is done." if changed else f"{item.ref} was already done.",
                    ok=changed))
        if on_home:
            return
        if changed:  # the item in the thread shows it done, without its button
            respond(replace_original=True, **message)
        else:
            respond(replace_original=False, **notice(
                "That action item is already done.", ":information_source:"))

    @app.action("ritual_agenda_add")
    @guarded
    def on_agenda_button(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                         client: WebClient) -> None:
        ack()
        with db.session() as session:
            occurrence = occurrence_of(session, body, action["value"])
            service.ensure_open(occurrence)
            view = renderer.view("ritual/agenda_modal",
                                 metadata=write_metadata(occurrence_id=occurrence.id))
        client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.view("ritual_agenda_modal")
    @guarded
    def on_agenda_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        values, meta = form_values(view), read_metadata(view)
        with db.session() as session:
            if first_submission(session, body):
                occurrence = occurrence_of(session, body, meta["occurrence_id"])
                service.add_agenda_item(session, occurrence, user_id_of(body),
                                        values.get("text", ""))
        ack()

    @app.action("ritual_outcome")
    @guarded
    def on_outcome_button(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                          client: WebClient) -> None:
        ack()
        with db.session() as session:
            occurrence = occurrence_of(session, body, action["value"])
            reviews.ensure_no_outcome(occurrence)
            view = renderer.view("ritual/outcome_modal",
                                 ritual_name=reviews.NAMES.get(
                                     occurrence.kind, occurrence.kind),
                                 metadata=write_metadata(occurrence_id=occurrence.id))
        client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.view("ritual_outcome_modal")
    @guarded
    def on_outcome_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                          client: WebClient) -> None:
        values, meta = form_values(view), read_metadata(view)
        reviews.check_outcome(values.get("outcome", ""), values.get("decisions", ""))
        with db.session() as session:
            occurrence = occurrence_of(session, body, meta["occurrence_id"])
            card = session.get(SlackMessage, service.card_key(occurrence))
            where = (card.channel, card.ts) if card and card.ts else None
        permalink = None
        if where:
            try:
                permalink = client.chat_getPermalink(channel=where[0],
                                                     message_ts=where[1]).get("permalink")
            except SlackApiError as exc:
                log.warning("no permalink for the review: %s", exc.response.get("error"))
        with db.session() as session:
            occurrence = occurrence_of(session, body, meta["occurrence_id"])
            if first_submission(session, body):
                service.record_outcome(session, occurrence, user_id_of(body),
                                       values.get("outcome", ""), values.get("decisions", ""),
                                       permalink)
        ack()

    @app.event("user_change")
    def on_user_change(event: dict[str, Any]) -> None:
        user = event.get("user") or {}
        team = user.get("team_id") or user.get("team")
        if user.get("id") and team and user.get("tz"):
            with db.session() as session:
                zones.remember(session, str(team), {str(user["id"]): str(user["tz"])}, utcnow())

    @app.event("message")
    def on_message(body: dict[str, Any], event: dict[str, Any]) -> None:
        subtype = event.get("subtype")
        message, edited = event, False
        if subtype == "message_changed":
            message, edited = event.get("message") or {}, True
        elif subtype == "message_deleted":
            old = event.get("previous_message") or {}
            if old.get("user") and old.get("thread_ts") and old.get("ts") != old.get("thread_ts"):
                with db.session() as session:
                    standups.forget_message(session, str(event.get("channel")),
                                            str(old["thread_ts"]), str(old["user"]),
                                            str(old["ts"]))
            return
        elif subtype:
            return  # joins, bot messages and the like
        # Only people's messages: not bots (Quorum's own cards change too).
        if message.get("bot_id") or not message.get("user") or message.get("subtype"):
            return
        user, ts = str(message["user"]), str(message.get("ts") or "")
        thread_ts = message.get("thread_ts")
        text = slack_unescape(message.get("text") or "")
        channel = str(event.get("channel"))
        team = team_id_of(body)
        if event.get("channel_type") == "im" and not thread_ts:
            with db.session() as session:
                occurrence = zones.open_prompt(session, team, user)
                if occurrence is not None:
                    standups.record_message(session, occurrence, user, text, ts, "dm",
                                            edited=edited)
            return
        if not thread_ts or not ts or thread_ts == ts:
            return
        with db.session() as session:
            occurrence = standups.thread_occurrence(session, channel, str(thread_ts))
            if occurrence is None:
                return
            if occurrence.kind == RitualKind.STANDUP:
                standups.record_message(session, occurrence, user, text, ts, edited=edited)
            elif occurrence.kind in reviews.MEETINGS and not edited and \
                    first_delivery(session, body):
                reviews.agenda_reply(session, occurrence, user, text, utcnow())

