"""`/hypothesis`, its forms (details, conclusion) and the card's Start, Conclude, Reopen."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.commands import Command, Subcommand
from bot.models import Hypothesis, HypothesisStatus
from bot.render import renderer
from bot.runtime import Runtime
from bot.services import hypotheses as service
from bot.services.audit import changed_fields, history
from bot.services.projects import project_for_channel
from bot.services.records import lock
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

OUTCOME_WORDS = "|".join(service.OUTCOMES)
COMMAND = Command("/hypothesis", "the hypothesis log", [
    Subcommand("<statement:text> [for <model:word> v<version:version>]",
               "log a proposed hypothesis now (add the details later), about a model version"),
    Subcommand(f"list [<status:{'|'.join(service.LIST_FILTERS)}>]",
               "this channel's hypotheses by status, newest first"),
    Subcommand("show <ref:H-n>", "one hypothesis in full, with its history and decisions"),
    Subcommand("start <ref:H-n>", "the experiment has begun: proposed → running"),
    Subcommand(f"conclude <ref:H-n> [<outcome:{OUTCOME_WORDS}> <evidence:text>]",
               "record what it showed (without an outcome: open a form)"),
])

OUTCOME_HELP = {
    HypothesisStatus.SUPPORTED: "The evidence backs the expected effect",
    HypothesisStatus.REFUTED: "The evidence contradicts it",
    HypothesisStatus.INCONCLUSIVE: "The evidence settles neither way",
}


def modal(*, channel: str, channel_name: str | None = None,
          hypothesis: Hypothesis | None = None, owner: str | None = None,
          cites: Hypothesis | None = None,
          reopen_choices: list[Hypothesis] | None = None) -> dict[str, Any]:
    """The hypothesis form: empty, holding an existing hypothesis, or reopening `cites`."""
    source = hypothesis or cites
    form: dict[str, Any] = {
        name: getattr(source, name) if source else ""
        for name in ("statement", "metric", "expected_effect", "experiment_url", "notes",
                     "model", "version")
    }
    form["owner"] = source.owner if source else owner
    form["cites"] = cites.ref if cites else None
    if cites is not None:  # a new experiment: its own link and notes
        form["experiment_url"] = form["notes"] = ""
    metadata = write_metadata(channel=channel, channel_name=channel_name,
                              hypothesis_id=hypothesis.id if hypothesis else None)
    return renderer.view("hypothesis/modal", form=form, metadata=metadata,
                         ref=hypothesis.ref if hypothesis else None,
                         reopen_choices=[] if hypothesis else reopen_choices or [])


def conclude_modal(hypothesis: Hypothesis) -> dict[str, Any]:
    return renderer.view("hypothesis/conclude_modal", h=hypothesis,
                         metadata=write_metadata(hypothesis_id=hypothesis.id),
                         outcomes=[(o.value, OUTCOME_HELP[o]) for o in service.OUTCOMES])


def register(app: App, runtime: Runtime) -> None:
    """The listeners; buttons take `respond` so that `guarded` answers through response_url."""
    db = runtime.db

    @slash_command(app, runtime, COMMAND)
    def on_command(inv: Invocation) -> dict[str, Any] | Modal:
        session, args, user = inv.session, inv.args, inv.user
        if inv.subcommand is None:
            return Modal(modal(channel=inv.channel, channel_name=inv.channel_name, owner=user,
                               reopen_choices=service.reopen_choices(session, inv.team,
                                                                     inv.channel)))
        if inv.subcommand == "":
            # Slack escapes &, < and > in command text; the renderer escapes on the way out.
            draft = service.HypothesisDraft(statement=args["statement"], owner=user,
                                            model=args.get("model"),
                                            version=args.get("version"))
            hypothesis = service.log_hypothesis(session, inv.project, user, draft)
            return notice(f"Logged *{hypothesis.ref}*. Its card is on its way to the channel; "
                          f"use *Add details* there for the metric, expected effect and "
                          f"experiment link.")
        if inv.subcommand == "list":
            status = args.get("status")
            groups = service.list_hypotheses(session, inv.project, status)
            return ephemeral(renderer.message("hypothesis/list", project=inv.project,
                                              groups=groups, status=status))
        if inv.subcommand == "show":
            return ephemeral(_show(session, inv.guard.read(Hypothesis, args["ref"],
                                                           "hypothesis")))
        hypothesis = inv.guard.change(Hypothesis, args["ref"], "hypothesis")
        if inv.subcommand == "start":
            service.start_hypothesis(session, hypothesis, user)
            return notice(f"*{hypothesis.ref}* is running; conclude it with `/hypothesis "
                          f"conclude {hypothesis.ref} {OUTCOME_WORDS} <evidence>`.")
        if "outcome" not in args:  # `conclude H-n` alone: the form
            service.check_can_conclude(hypothesis)
            return Modal(conclude_modal(hypothesis))
        service.conclude_hypothesis(session, hypothesis, user, args["outcome"],
                                    args["evidence"])
        return notice(f"*{hypothesis.ref}* is concluded: *{hypothesis.status}*. Its card shows "
                      f"the evidence, and the conclusion is announced in its thread.")

    def _show(session: Any, hypothesis: Hypothesis) -> dict[str, Any]:
        events = history(session, hypothesis)
        changes = {event.id: changed_fields(event.before, event.after) if event.before else []
                   for event in events}
        return renderer.message("hypothesis/show", h=hypothesis, history=events,
                                changes=changes)

    @app.view("hypothesis_modal")
    @guarded
    def on_modal_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        values, meta = form_values(view), read_metadata(view)
        draft = service.HypothesisDraft(
            statement=values.get("statement", ""), metric=values.get("metric", ""),
            expected_effect=values.get("expected_effect", ""), owner=values.get("owner"),
            experiment_url=values.get("experiment_url", ""), notes=values.get("notes", ""),
            model=values.get("model"), version=values.get("version"),
        )
        draft.validated()  # answer field errors before touching the database
        team, user = team_id_of(body), user_id_of(body)
        with db.session() as session:
            if not first_submission(session, body):
                pass  # a second press of Submit: the first one saved it
            elif meta.get("hypothesis_id"):
                hypothesis = guard(session, body).change_id(Hypothesis, meta["hypothesis_id"],
                                                            "hypothesis")
                service.edit_hypothesis(session, hypothesis, user, draft)
            else:
                project = project_for_channel(session, team, meta["channel"],
                                              meta.get("channel_name"))
                cites = service.get_cited(session, project, values["cites"]) \
                    if values.get("cites") else None
                service.log_hypothesis(session, project, user, draft, cites=cites)
        ack()

    @app.view("hypothesis_conclude_modal")
    @guarded
    def on_conclude_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        values, meta = form_values(view), read_metadata(view)
        service.clean_conclusion(values.get("outcome"), values.get("evidence"))
        with db.session() as session:
            if first_submission(session, body):
                hypothesis = guard(session, body).change_id(Hypothesis, meta["hypothesis_id"],
                                                            "hypothesis")
                service.conclude_hypothesis(session, hypothesis, user_id_of(body),
                                            values["outcome"], values["evidence"])
        ack()

    @app.action("hypothesis_add_details")
    @guarded
    def on_add_details(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                       client: WebClient, respond: Respond) -> None:
        ack()
        with db.session() as session:
            hypothesis = guard(session, body).change_id(Hypothesis, action["value"], "hypothesis")
            service.check_can_edit(hypothesis)
            view = modal(channel=hypothesis.project.channel_id, hypothesis=hypothesis)
        client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.action("hypothesis_start")
    @guarded
    def on_start(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                 respond: Respond) -> None:
        ack()
        with db.session() as session:
            hypothesis = guard(session, body).change_id(Hypothesis, action["value"], "hypothesis")
            running, ref = lock(session, hypothesis).status == HypothesisStatus.RUNNING, \
                hypothesis.ref
            if not running:
                service.start_hypothesis(session, hypothesis, user_id_of(body))
        if running:  # a double click: the first one started it (its card says so by now)
            respond(replace_original=False, **notice(f"{ref} is already running.",
                                                     ":information_source:"))

    @app.action("hypothesis_conclude")
    @guarded
    def on_conclude(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                    client: WebClient, respond: Respond) -> None:
        ack()
        with db.session() as session:
            hypothesis = guard(session, body).change_id(Hypothesis, action["value"], "hypothesis")
            service.check_can_conclude(hypothesis)
            view = conclude_modal(hypothesis)
        client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.action("hypothesis_reopen")
    @guarded
    def on_reopen(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                  client: WebClient, respond: Respond) -> None:
        ack()
        with db.session() as session:
            cited = guard(session, body).change_id(Hypothesis, action["value"], "hypothesis")
            channel = cited.project.channel_id
            view = modal(channel=channel, cites=cited, owner=user_id_of(body),
                         reopen_choices=service.reopen_choices(session, cited.team_id, channel))
        client.views_open(trigger_id=body["trigger_id"], view=view)
