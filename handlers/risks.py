"""`/risk`, its modals (log or edit, re-assess, close) and the buttons of the risk card."""

from __future__ import annotations

from datetime import date
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.commands import Command, Subcommand
from bot.models import Project, Risk
from bot.render import renderer
from bot.runtime import Runtime
from bot.services import risks as service
from bot.services.projects import project_for_channel
from handlers.common import (
    ephemeral,
    first_submission,
    form_values,
    guarded,
    notice,
    read_metadata,
    team_id_of,
    user_id_of,
    write_metadata,
)
from handlers.home import refusals_on_home
from handlers.skeleton import Invocation, Modal, guard, slash_command

COMMAND = Command("/risk", "risk register", [
    Subcommand("<title:text>", "log a risk now, scored 3x3 until you re-assess it"),
    Subcommand("list", "this channel's open risks, highest score first"),
    Subcommand("heatmap", "the likelihood x impact heat map of the open risks"),
    Subcommand("show <ref:R-n>", "one risk in full, with its score history"),
    Subcommand("update <ref:R-n> likelihood <likelihood:1-5> impact <impact:1-5> "
               "[note <note:text>]", "re-assess a risk (its review counts as done)"),
    Subcommand("close <ref:R-n> <reason:text>", "close a risk, saying why"),
])
HISTORY_SHOWN = 15


def modal(*, channel: str, today: date, channel_name: str | None = None,
          risk: Risk | None = None, owner: str | None = None, title: str = "",
          description: str = "", category: str = "other") -> dict[str, Any]:
    """The risk form: new (owner, review date and any given text prefilled) or holding a risk."""
    if risk is not None:
        form: dict[str, Any] = {name: getattr(risk, name) for name in (
            "title", "description", "category", "owner", "treatment", "mitigation",
            "next_review", "status")}
    else:
        form = {"title": title, "description": description, "category": category,
                "likelihood": None,
                "impact": None, "owner": owner, "treatment": "mitigate", "mitigation": "",
                "next_review": today + service.REVIEW_INTERVAL, "status": "open"}
    metadata = write_metadata(channel=channel, channel_name=channel_name,
                              risk_id=risk.id if risk else None)
    return renderer.view("risk/modal", form=form, metadata=metadata, r=risk,
                         statuses=[status.value for status in service.OPEN_STATUSES])


def reassess_modal(risk: Risk, today: date) -> dict[str, Any]:
    return renderer.view("risk/reassess", r=risk, metadata=write_metadata(risk_id=risk.id),
                         next_review=service.next_review_after_assessment(risk, today))


def close_modal(risk: Risk) -> dict[str, Any]:
    return renderer.view("risk/close", r=risk, metadata=write_metadata(risk_id=risk.id))


def register(app: App, runtime: Runtime) -> None:
    db = runtime.db
    default_tz = runtime.settings.timezone

    def today_in(project: Project) -> date:
        return service.local_today(project, default_tz)

    @slash_command(app, runtime, COMMAND)
    def on_command(inv: Invocation) -> dict[str, Any] | Modal:
        session, args, user, project = inv.session, inv.args, inv.user, inv.project
        if inv.subcommand is None:
            return Modal(modal(channel=inv.channel, channel_name=inv.channel_name,
                               today=today_in(project), owner=user))
        if inv.subcommand == "":
            risk = service.log_risk(session, project, user,
                                    service.RiskDraft(title=args["title"], owner=user),
                                    default_tz=default_tz)
            return notice(f"Logged *{risk.ref}* with the default score {risk.score} "
                          f"({risk.band}). Use *Re-assess* on its card to score it and "
                          f"*Add details* for the owner, mitigation and review date.")
        if inv.subcommand == "list":
            page = service.list_risks(session, project)
            return ephemeral(renderer.message("risk/list", project=project, page=page))
        if inv.subcommand == "heatmap":
            heat = service.heat_map(session, project)
            return ephemeral(renderer.message("risk/heatmap", project=project, heat=heat))
        if inv.subcommand == "show":
            risk = inv.guard.read(Risk, args["ref"], "risk")
            return ephemeral(renderer.message("risk/show", r=risk, limit=HISTORY_SHOWN))
        risk = inv.guard.change(Risk, args["ref"], "risk")
        if inv.subcommand == "update":
            before = risk.score
            service.reassess(session, risk, user, args["likelihood"], args["impact"],
                             args.get("note", ""), default_tz=default_tz)
            return notice(f"Re-assessed *{risk.ref}*: score {before} → {risk.score} "
                          f"({risk.band}); next review {risk.next_review.isoformat()}.")
        # close
        service.close_risk(session, risk, user, args["reason"])
        return notice(f"Closed *{risk.ref}*.")

    @app.view("risk_modal")
    @guarded
    def on_modal_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        values, meta = form_values(view), read_metadata(view)
        scored = "likelihood" in values  # only the form that logs a new risk asks for a score
        draft = service.RiskDraft(
            title=values.get("title", ""), description=values.get("description", ""),
            category=values.get("category") or "other",
            likelihood=(values.get("likelihood") or "") if scored else None,
            impact=(values.get("impact") or "") if scored else None,
            owner=values.get("owner"), treatment=values.get("treatment") or "mitigate",
            mitigation=values.get("mitigation", ""), next_review=values.get("next_review"),
            status=values.get("status") or "open",
        )
        draft.validated()  # answer field errors before touching the database
        team, user = team_id_of(body), user_id_of(body)
        with db.session() as session:
            if not first_submission(session, body):
                pass  # a second press of Submit: the first one saved it
            elif meta.get("risk_id"):
                risk = guard(session, body).change_id(Risk, meta["risk_id"], "risk")
                service.edit_risk(session, risk, user, draft, default_tz=default_tz)
            else:
                project = project_for_channel(session, team, meta["channel"],
                                              meta.get("channel_name"))
                service.log_risk(session, project, user, draft, default_tz=default_tz)
        ack()

    @app.view("risk_reassess_modal")
    @guarded
    def on_reassess_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        values, meta = form_values(view), read_metadata(view)
        with db.session() as session:
            if first_submission(session, body):
                risk = guard(session, body).change_id(Risk, meta["risk_id"], "risk")
                service.reassess(session, risk, user_id_of(body), values.get("likelihood"),
                                 values.get("impact"), values.get("note", ""),
                                 values.get("next_review"), default_tz=default_tz)
        ack()

    @app.view("risk_close_modal")
    @guarded
    def on_close_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        values, meta = form_values(view), read_metadata(view)
        with db.session() as session:
            if first_submission(session, body):
                risk = guard(session, body).change_id(Risk, meta["risk_id"], "risk")
                service.close_risk(session, risk, user_id_of(body), values.get("reason", ""))
        ack()

    def _open(body: dict[str, Any], action: dict[str, Any], client: WebClient,
              build: Any) -> None:
        with refusals_on_home(db, body):  # the Home's Re-assess button comes here too
            with db.session() as session:
                risk = guard(session, body).change_id(Risk, action["value"], "risk")
                service.ensure_not_closed(risk, "changed")
                view = build(risk)
            client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.action("risk_reassess")
    @guarded
    def on_reassess(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                    client: WebClient) -> None:
        ack()
        _open(body, action, client, lambda risk: reassess_modal(risk, today_in(risk.project)))

    @app.action("risk_add_details")
    @guarded
    def on_add_details(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                       client: WebClient) -> None:
        ack()
        _open(body, action, client, lambda risk: modal(
            channel=risk.project.channel_id, today=today_in(risk.project), risk=risk))

    @app.action("risk_close")
    @guarded
    def on_close(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                 client: WebClient) -> None:
        ack()
        _open(body, action, client, close_modal)

    @app.action("risk_list_page")
    @guarded
    def on_list_page(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                     respond: Respond) -> None:
        ack()
        with db.session() as session:
            project = project_for_channel(session, team_id_of(body), body["channel"]["id"])
            page = service.list_risks(session, project, int(action["value"]))
            message = renderer.message("risk/list", project=project, page=page)
        respond(replace_original=True, **message)
