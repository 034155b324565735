"""`/decision`, its modal, the card's "Add details" button and the "Log as decision" shortcut."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.commands import Command, Subcommand
from bot.models import Decision, Hypothesis
from bot.render import renderer, slack_unescape
from bot.runtime import Runtime
from bot.services import decisions as service
from bot.services import hypotheses as hypothesis_service
from bot.services.audit import changed_fields, history
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
from handlers.skeleton import Invocation, Modal, guard, slash_command

log = logging.getLogger("quorum.decisions")

COMMAND = Command("/decision", "decision records", [
    Subcommand("<title:text> [for <model:word> v<version:version>]",
               "log a proposed decision now (add the details later), about a model version"),
    Subcommand("list", "this channel's decisions, newest first"),
    Subcommand("search <words:text>", "find decisions by words in their text"),
    Subcommand("show <ref:D-n>", "one decision in full, with its history"),
    Subcommand("supersede <ref:D-n> <title:text>", "replace a decision with a new one"),
])


def modal(*, channel: str, channel_name: str | None = None, decision: Decision | None = None,
          title: str = "", context: str = "", permalink: str | None = None,
          hypotheses: list[Hypothesis] | None = None) -> dict[str, Any]:
    """The decision form, empty, prefilled from a message, or holding an existing decision.

    `hypotheses` are the options of "Based on hypotheses"; the block is left out without any.
    """
    if decision is not None:
        form = {name: getattr(decision, name) or "" for name in
                ("title", "context", "options", "decision", "consequences", "status",
                 "model", "version")}
        form["deciders"] = list(decision.deciders or [])
        form["hypotheses"] = [hypothesis.ref for hypothesis in decision.hypotheses]
    else:
        form = {"title": title, "context": context, "options": "", "decision": "",
                "consequences": "", "status": "proposed", "deciders": [], "hypotheses": [],
                "model": "", "version": ""}
    metadata = write_metadata(channel=channel, channel_name=channel_name,
                              decision_id=decision.id if decision else None, permalink=permalink)
    return renderer.view(
        "decision/modal", form=form, metadata=metadata, ref=decision.ref if decision else None,
        permalink=permalink or (decision.source_permalink if decision else None),
        statuses=[status.value for status in service.SETTABLE_STATUSES],
        hypotheses=hypotheses or [],
    )


def register(app: App, runtime: Runtime) -> None:
    db = runtime.db

    @slash_command(app, runtime, COMMAND)
    def on_command(inv: Invocation) -> dict[str, Any] | Modal:
        session, args, user = inv.session, inv.args, inv.user
        if inv.subcommand is None:
            return Modal(modal(channel=inv.channel, channel_name=inv.channel_name,
                               hypotheses=hypothesis_service.choices_for_decision(
                                   session, inv.team, inv.channel)))
        if inv.subcommand == "":
            decision = service.log_decision(session, inv.project, user,
                                            service.DecisionDraft(
                                                title=args["title"], model=args.get("model"),
                                                version=args.get("version")))
            return notice(f"Logged *{decision.ref}*. Its card is on its way to the channel; "
                          f"use *Add details* there to fill in context, options and consequences.")
        if inv.subcommand == "list":
            page = service.list_decisions(session, inv.project)
            return ephemeral(renderer.message("decision/list", project=inv.project, page=page))
        if inv.subcommand == "search":
            results = service.search_decisions(session, inv.project, args["words"])
            return ephemeral(renderer.message("decision/search", words=args["words"],
                                              results=results, limit=service.SEARCH_LIMIT))
        if inv.subcommand == "show":
            return ephemeral(_show(session, inv.guard.read(Decision, args["ref"], "decision")))
        # supersede
        old = inv.guard.change(Decision, args["ref"], "decision")
        new = service.supersede(session, old, user, args["title"], project=inv.project)
        return notice(f"Logged *{new.ref}*, which supersedes *{old.ref}*.")

    def _show(session: Any, decision: Decision) -> dict[str, Any]:
        events = history(session, decision)
        changes = {event.id: changed_fields(event.before, event.after) if event.before else []
                   for event in events}
        return renderer.message("decision/show", d=decision, history=events, changes=changes)

    @app.view("decision_modal")
    @guarded
    def on_modal_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        values, meta = form_values(view), read_metadata(view)
        draft = service.DecisionDraft(
            title=values.get("title", ""), context=values.get("context", ""),
            options=values.get("options", ""), decision=values.get("decision", ""),
            consequences=values.get("consequences", ""),
            status=values.get("status") or "proposed", deciders=values.get("deciders") or [],
            source_permalink=meta.get("permalink"),
            # Without the block (the channel had no hypotheses) the links stay as they are.
            hypotheses=values.get("hypotheses") if "hypotheses" in values else None,
            model=values.get("model"), version=values.get("version"),
        )
        draft.validated()  # answer field errors before touching the database
        team, user = team_id_of(body), user_id_of(body)
        with db.session() as session:
            if not first_submission(session, body):
                pass  # a second press of Submit: the first one saved it
            elif meta.get("decision_id"):
                decision = guard(session, body).change_id(Decision, meta["decision_id"],
                                                          "decision")
                service.edit_decision(session, decision, user, draft)
            else:
                project = project_for_channel(session, team, meta["channel"],
                                              meta.get("channel_name"))
                service.log_decision(session, project, user, draft)
        ack()

    @app.action("decision_add_details")
    @guarded
    def on_add_details(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                       client: WebClient) -> None:
        ack()
        with db.session() as session:
            decision = guard(session, body).change_id(Decision, action["value"], "decision")
            view = modal(channel=decision.project.channel_id, decision=decision,
                         hypotheses=hypothesis_service.choices_for_decision(
                             session, decision.team_id, decision.project.channel_id,
                             cited=decision.hypotheses))
        client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.action("decision_list_page")
    @guarded
    def on_list_page(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                     respond: Respond) -> None:
        ack()
        with db.session() as session:
            project = project_for_channel(session, team_id_of(body), body["channel"]["id"])
            page = service.list_decisions(session, project, action["value"])
            message = renderer.message("decision/list", project=project, page=page)
        respond(replace_original=True, **message)

    @app.shortcut("log_decision")
    @guarded
    def on_log_shortcut(ack: Ack, shortcut: dict[str, Any], client: WebClient) -> None:
        ack()
        message, channel = shortcut.get("message", {}), shortcut["channel"]["id"]
        permalink = None
        try:
            permalink = client.chat_getPermalink(channel=channel,
                                                 message_ts=message["ts"])["permalink"]
        except SlackApiError as exc:
            log.warning("no permalink for the message: %s", exc.response.get("error"))
        text = slack_unescape(message.get("text") or "").strip()
        first_line = text.splitlines()[0] if text else ""
        with db.session() as session:
            view = modal(channel=channel, channel_name=shortcut["channel"].get("name"),
                         title=first_line[: service.TITLE_LIMIT],
                         context=text[: service.TEXT_LIMIT], permalink=permalink,
                         hypotheses=hypothesis_service.choices_for_decision(
                             session, team_id_of(shortcut), channel))
        client.views_open(trigger_id=shortcut["trigger_id"], view=view)
