"""`/incident`, its declare/update/resolve modals, the card's buttons (silences in Alertmanager
among them), the summary's "Log a decision" button and the Home's follow-up "Done".

The summary's "Add to risk register" opens the risk form prefilled from the incident.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.alertmanager_api import AlertmanagerClient
from bot.commands import Command, Subcommand
from bot.errors import Conflict, InvalidInput
from bot.models import Incident
from bot.render import renderer
from bot.runtime import Runtime
from bot.services import follow_ups, incident_stats
from bot.services import incidents as service
from bot.services import risks as risk_service
from bot.services.projects import project_for_channel
from bot.silencing import expire_resolved, silence_incident
from handlers import decisions, risks
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
from handlers.home import notify_home, refusals_on_home
from handlers.skeleton import guard

log = logging.getLogger("quorum.incidents")

COMMAND = Command("/incident", "incidents: declare, update, resolve", [
    Subcommand("declare [<severity:sev1|sev2|sev3|sev4>] <title:text>",
               "declare an incident (sev3 unless given); `declare` alone opens the form"),
    Subcommand("update <ref:INC-n> <text:text>", "add an update to the incident's timeline"),
    Subcommand("resolve <ref:INC-n> [<summary:text>]",
               "resolve it and post the incident summary to the channel; without a summary "
               "it opens the form (impact, root cause, follow-ups)"),
    Subcommand("severity <ref:INC-n> <severity:sev1|sev2|sev3|sev4> [<reason:text>]",
               "raise or lower its severity"),
    Subcommand("lead <ref:INC-n> <user:user>", "hand the lead (commander) to someone"),
    Subcommand("list", "open incidents first, with MTTA and MTTR over the last 30 days"),
])
CHANNEL_ATTEMPTS = 10
FOLLOW_UP_SLOTS = 3
SILENCE_WINDOWS = ("1h", "4h", "resolved")


def resolve_form(incident: Any, summary: str = "") -> dict[str, Any]:
    return renderer.view("incident/resolve_modal", i=incident, summary=summary,
                         follow_up_slots=FOLLOW_UP_SLOTS,
                         metadata=write_metadata(incident_id=incident.id))


def follow_up_drafts(values: dict[str, Any]) -> list[service.FollowUpDraft]:
    """The follow-ups filled in on the resolve form (empty rows skipped)."""
    drafts = []
    for n in range(1, FOLLOW_UP_SLOTS + 1):
        field = f"follow_up_{n}"
        text = values.get(field) or ""
        owner, due, link = (values.get(f"{field}_owner"), values.get(f"{field}_due"),
                            values.get(f"{field}_link") or "")
        if not (text.strip() or owner or due or link.strip()):
            continue
        try:
            due_date = date.fromisoformat(due) if due else None
        except ValueError:
            raise InvalidInput("Pick the due date from the calendar.",
                               field=f"{field}_due") from None
        drafts.append(service.FollowUpDraft(text, owner, due_date, link, field=field))
    return drafts


def declare_modal(*, channel: str, channel_name: str | None, user: str) -> dict[str, Any]:
    form = {"title": "", "severity": service.DEFAULT_SEVERITY, "model": "", "model_version": "",
            "commander": user, "description": ""}
    return renderer.view("incident/declare_modal", form=form, severities=service.SEVERITIES,
                         metadata=write_metadata(channel=channel, channel_name=channel_name))


def register(app: App, runtime: Runtime) -> None:
    db = runtime.db
    alertmanager = AlertmanagerClient.from_settings(runtime.settings)

    def expire_silences() -> None:
        """After a resolution: take back its silences in Alertmanager now (if Alertmanager is
        down, the scheduler keeps trying)."""
        try:
            expire_resolved(db, alertmanager)
        except Exception:
            log.exception("silences not expired yet; the scheduler tries again")

    @app.command(COMMAND.name)
    @guarded
    def on_command(ack: Ack, command: dict[str, Any], body: dict[str, Any],
                   client: WebClient) -> None:
        text = command.get("text", "")
        team, channel, user = team_id_of(body), command["channel_id"], command["user_id"]
        if text.strip().lower() in ("", "declare"):
            ack()
            client.views_open(trigger_id=command["trigger_id"], view=declare_modal(
                channel=channel, channel_name=command.get("channel_name"), user=user))
            return
        parsed = COMMAND.parse(text)
        if parsed.wants_help:
            ack(**help_message(COMMAND))
            return
        args = parsed.args
        if parsed.subcommand == "resolve" and not args.get("summary"):
            with db.session() as session:
                incident = guard(session, body, client, runtime).change(
                    Incident, args["ref"], "incident")
                if incident.status == "resolved":
                    raise Conflict(f"{incident.ref} is already resolved.")
                view = resolve_form(incident)
            ack()
            client.views_open(trigger_id=command["trigger_id"], view=view)
            return
        if parsed.subcommand == "declare":
            draft = service.draft_from_command(args.get("severity"), args["title"], user)
            draft.validated()  # refuse bad input before the project is created
        with db.session() as session:
            project = project_for_channel(session, team, channel, command.get("channel_name"))
            if parsed.subcommand == "declare":
                incident = service.declare(session, project, user, draft)
                reply = notice(f"Declared *{incident.ref}* ({incident.severity}). Its card is on "
                               f"its way to the channel; the timeline goes in its thread.",
                               ":rotating_light:")
            elif parsed.subcommand == "update":
                incident = guard(session, body, client, runtime).change(
                    Incident, args["ref"], "incident", lock=True)
                service.add_update(session, incident, user, args["text"])
                reply = notice(f"Added your update to *{incident.ref}*.")
            elif parsed.subcommand == "resolve":
                incident = guard(session, body, client, runtime).change(
                    Incident, args["ref"], "incident", lock=True)
                service.resolve(session, incident, user, args["summary"])
                reply = notice(f"Resolved *{incident.ref}*; its summary is on its way to the "
                               f"project channel.")
            elif parsed.subcommand == "severity":
                incident = guard(session, body, client, runtime).change(
                    Incident, args["ref"], "incident", lock=True)
                service.change_severity(session, incident, user, args["severity"],
                                        args.get("reason") or "")
                reply = notice(f"*{incident.ref}* is now {incident.severity}.")
            elif parsed.subcommand == "lead":
                incident = guard(session, body, client, runtime).change(
                    Incident, args["ref"], "incident", lock=True)
                service.change_lead(session, incident, user, args["user"])
                reply = notice(f"<@{args['user']}> now leads *{incident.ref}*.")
            else:
                reply = ephemeral(renderer.message(
                    "incident/list", project=project,
                    overview=incident_stats.overview(session, project)))
        ack(**reply)
        if parsed.subcommand == "resolve":
            expire_silences()

    @app.view("incident_declare_modal")
    @guarded
    def on_declare_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                          client: WebClient) -> None:
        values, meta = form_values(view), read_metadata(view)
        team, user = team_id_of(body), user_id_of(body)
        draft = service.IncidentDraft(
            title=values.get("title", ""), severity=values.get("severity") or "",
            commander=values.get("commander") or user, model=values.get("model"),
            model_version=values.get("model_version"), description=values.get("description", ""),
        )
        draft.validated()  # answer field errors before touching the database
        with db.session() as session:
            if not first_submission(session, body):
                ack()  # a second press of Submit: the first one declared it
                return
            project = project_for_channel(session, team, meta["channel"], meta.get("channel_name"))
            incident = service.declare(session, project, user, draft)
            incident_id, number, title = incident.id, incident.number, incident.title
            commander = incident.commander
        ack()
        if "yes" in (values.get("dedicated") or []):
            _open_channel(client, team, incident_id, number, title, user, commander,
                          meta["channel"])

    def _open_channel(client: WebClient, team: str, incident_id: int, number: int, title: str,
                      user: str, commander: str | None, project_channel: str) -> None:
        """Create `inc-<n>-<slug>` (a suffix when the name is taken) and record it."""
        error = "name_taken"
        for attempt in range(1, CHANNEL_ATTEMPTS + 1):
            try:
                created = client.conversations_create(
                    name=service.channel_name(number, title, attempt))
            except SlackApiError as exc:
                error = str(exc.response.get("error"))
                if error == "name_taken":
                    continue
                break
            with db.session() as session:
                incident = service.get_by_id(session, incident_id, team, lock=True)
                service.record_channel(session, incident, created["channel"]["id"], user,
                                       invite=[user, commander or user])
            return
        log.warning("could not create a channel for incident %s: %s", incident_id, error)
        message = notice(f"INC-{number} is declared, but Slack would not create its channel "
                         f"(`{error}`).", ":warning:")
        client.chat_postEphemeral(channel=project_channel, user=user, text=message["text"],
                                  blocks=message["blocks"])

    @app.action("incident_ack")
    @guarded
    def on_acknowledge(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                       respond: Respond) -> None:
        ack()
        user = user_id_of(body)
        with db.session() as session:
            incident = guard(session, body).change_id(Incident, action["value"], "incident",
                                                      lock=True)
            if not service.acknowledge(session, incident, user):
                respond(replace_original=False, **notice(
                    f"{incident.ref} was already acknowledged.", ":information_source:"))

    @app.action("incident_mitigate")
    @guarded
    def on_mitigate(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                    respond: Respond) -> None:
        ack()
        with db.session() as session:
            incident = guard(session, body).change_id(Incident, action["value"], "incident",
                                                      lock=True)
            if not service.mitigate(session, incident, user_id_of(body)):
                respond(replace_original=False, **notice(
                    f"{incident.ref} is already marked as mitigated.", ":information_source:"))

    def open_incident_form(template: str, body: dict[str, Any], action: dict[str, Any],
                           client: WebClient) -> None:
        """Open one of an unresolved incident's forms: an update, or its resolution."""
        with db.session() as session:
            incident = guard(session, body).change_id(Incident, action["value"], "incident")
            if incident.status == "resolved":
                raise Conflict(f"{incident.ref} is already resolved.")
            view = resolve_form(incident) if template == "incident/resolve_modal" else \
                renderer.view(template, i=incident,
                              metadata=write_metadata(incident_id=incident.id))
        client.views_open(trigger_id=body["trigger_id"], view=view)

    # Listeners take `respond` so that `guarded` answers refusals in place, as ephemeral replies.
    @app.action("incident_add_update")
    @guarded
    def on_add_update(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                      client: WebClient, respond: Respond) -> None:
        ack()
        open_incident_form("incident/update_modal", body, action, client)

    @app.view("incident_update_modal")
    @guarded
    def on_update_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        values, meta = form_values(view), read_metadata(view)
        with db.session() as session:
            if first_submission(session, body):
                incident = guard(session, body).change_id(Incident, meta["incident_id"],
                                                          "incident", lock=True)
                service.add_update(session, incident, user_id_of(body), values.get("update", ""))
        ack()

    @app.action("incident_resolve")
    @guarded
    def on_resolve(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                   client: WebClient, respond: Respond) -> None:
        ack()
        open_incident_form("incident/resolve_modal", body, action, client)

    @app.view("incident_resolve_modal")
    @guarded
    def on_resolve_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        values, meta = form_values(view), read_metadata(view)
        items = follow_up_drafts(values)
        with db.session() as session:
            if first_submission(session, body):
                incident = guard(session, body).change_id(Incident, meta["incident_id"],
                                                          "incident", lock=True)
                service.resolve(session, incident, user_id_of(body), values.get("summary", ""),
                                root_cause=values.get("root_cause", ""),
                                impact=values.get("impact", ""), items=items)
        ack()
        expire_silences()

    def on_silence(window: str) -> Any:
        def listener(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                     respond: Respond) -> None:
            ack()
            with db.session() as session:  # only from the incident's own project
                guard(session, body).change_id(Incident, action["value"], "incident")
            done = silence_incident(db, alertmanager, team_id_of(body), int(action["value"]),
                                    window, user_id_of(body))
            until = "until it is resolved" if done.until_resolved else \
                f"until {done.ends_at:%H:%M} UTC"
            respond(replace_original=False, **notice(
                f"Silenced {done.ref}'s alerts in Alertmanager {until}.", ":no_bell:"))
        listener.__name__ = f"on_silence_{window}"
        return listener

    for window in SILENCE_WINDOWS:
        app.action(f"incident_silence_{window}")(guarded(on_silence(window)))

    @app.action("incident_follow_up_done")
    @guarded
    def on_follow_up_done(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        with refusals_on_home(db, body):
            with db.session() as session:
                item = follow_ups.complete(session, team_id_of(body), int(action["value"]),
                                           user_id_of(body))
                ref = item.ref
            notify_home(db, body, f"Follow-up {ref} is done.")

    @app.action("incident_add_risk")
    @guarded
    def on_add_risk(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                    client: WebClient) -> None:
        ack()
        with db.session() as session:
            incident = guard(session, body).change_id(Incident, action["value"], "incident")
            project = incident.project
            channel = project.channel_id if project else (body.get("channel") or {}).get("id", "")
            view = risks.modal(
                channel=channel, owner=incident.commander or user_id_of(body),
                today=risk_service.local_today(project, runtime.settings.timezone),
                title=f"Recurrence of {incident.ref}: {incident.title}"[:150],
                description=service.decision_context(incident)[:3000], category="model")
        client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.action("incident_log_decision")
    @guarded
    def on_log_decision(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                        client: WebClient, respond: Respond) -> None:
        ack()
        with db.session() as session:
            incident = guard(session, body).change_id(Incident, action["value"], "incident")
            channel = incident.project.channel_id if incident.project else \
                (body.get("channel") or {}).get("id", "")
            title = f"After {incident.ref}: {incident.title}"
            view = decisions.modal(
                channel=channel, title=title[:150],
                context=service.decision_context(incident)[:3000])
        client.views_open(trigger_id=body["trigger_id"], view=view)
