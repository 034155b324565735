"""`/gate`, its request modal, and the card's Approve / Request changes buttons."""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from sqlalchemy.orm import Session

from bot.commands import Command, Parsed, Subcommand, convert
from bot.errors import InvalidInput
from bot.models import Gate, Project, SignoffDecision
from bot.render import renderer
from bot.runtime import Runtime
from bot.services import access
from bot.services import gates as service
from bot.services import roles as role_service
from bot.services.audit import history
from bot.services.gate_drafts import GateDraft
from bot.services.gate_state import role_states
from bot.services.projects import project_for_channel
from handlers.common import (
    ephemeral,
    first_submission,
    form_values,
    guarded,
    help_message,
    read_metadata,
    team_id_of,
    user_id_of,
    write_metadata,
)
from handlers.home import from_home, notify_home, refusals_on_home
from handlers.skeleton import Guard, guard

COMMAND = Command("/gate", "milestone gates with role sign-offs", [
    Subcommand("request <milestone:words> [for <model:word> <version:version>] "
               "[promote to <alias:word>] [roles <roles:list>] [due <due:date>] "
               "[wait <wait:duration>]",
               "ask the roles (default ds, eng, pm; `ds:2` for two ds approvals) to sign off a "
               "milestone (quote it if it holds a keyword); `promote to champion` moves that "
               "MLflow alias when it passes; `wait 2h` passes it 2 h after the last approval; "
               "`/gate request` alone opens the form"),
    Subcommand("withdraw <ref:G-n> <reason:text>",
               "take back a gate you requested (or, as a project admin, any gate)"),
    Subcommand("list", "this channel's gates, open ones first"),
    Subcommand("status <ref:G-n>", "one gate and its whole history: who signed what, and when"),
])
APPROVE_AS = re.compile(r"^gate_approve_as_\d+$")


def request_modal(session: Session, project: Project, channel_name: str | None,
                  milestone: str = "") -> dict[str, Any]:
    """The empty request form; the hint lists the roles held in the project."""
    known_roles = sorted(role_service.holders(session, project))
    form = {"milestone": milestone, "model": "", "version": "", "promote": "", "wait": "",
            "roles": ", ".join(role_service.DEFAULT_ROLES), "criteria": ""}
    return renderer.view("gate/request_modal", form=form, known_roles=known_roles,
                         metadata=write_metadata(channel=project.channel_id,
                                                 channel_name=channel_name))


def status_view(session: Session, gate: Gate) -> dict[str, Any]:
    """`/gate status`: the gate, its sign-offs and every audited change."""
    events = history(session, gate)
    roles: dict[int, str] = {}
    reasons: dict[int, str] = {}
    for event in events:
        if event.action not in ("gate.approved", "gate.changes_requested"):
            continue
        before = {(s["role"], s["at"]) for s in (event.before or {}).get("signoffs", [])}
        for signoff in (event.after or {}).get("signoffs", []):
            if (signoff["role"], signoff["at"]) not in before:
                roles[event.id] = signoff["role"]
                if signoff.get("reason"):
                    reasons[event.id] = signoff["reason"]
    return renderer.message("gate/status", g=gate, states=role_states(gate),
                            history=events, roles=roles, reasons=reasons)


def _wait(raw: str | None) -> int | None:
    """The form's wait (`2h`) in seconds, or a field error."""
    if not (raw or "").strip():
        return None
    try:
        return int(convert("duration", raw.strip(), "The wait"))
    except Exception as exc:  # the parser's own message names the problem
        raise InvalidInput(getattr(exc, "message", str(exc)), field="wait") from None


def register(app: App, runtime: Runtime) -> None:
    db = runtime.db
    mlflow_configured = bool(runtime.settings.mlflow_tracking_uri)

    @app.command(COMMAND.name)
    @guarded
    def on_command(ack: Ack, command: dict[str, Any], body: dict[str, Any],
                   client: WebClient) -> None:
        text = command.get("text", "")
        # `/gate request` with nothing after it opens the form, like the bare `/gate`.
        parsed = Parsed(None) if text.strip().lower() == "request" else COMMAND.parse(text)
        if parsed.wants_help:
            ack(**help_message(COMMAND))
            return
        team, channel, user = team_id_of(body), command["channel_id"], command["user_id"]
        if parsed.subcommand is None:
            ack()
            with db.session() as session:
                project = project_for_channel(session, team, channel,
                                              command.get("channel_name"))
                view = request_modal(session, project, command.get("channel_name"))
            client.views_open(trigger_id=command["trigger_id"], view=view)
            return
        with db.session() as session:
            project = project_for_channel(session, team, channel, command.get("channel_name"))
            records = guard(session, body, client, runtime)
            reply = records.annotate(_answer(session, parsed.subcommand, parsed.args, project,
                                             user, records))
        ack(**reply)

    def _answer(session: Session, subcommand: str, args: dict[str, Any], project: Project,
                user: str, records: Guard) -> dict[str, Any]:
        if subcommand == "request":
            draft = GateDraft(milestone=args["milestone"], model=args.get("model"),
                                      version=args.get("version"), roles=args.get("roles"),
                                      due_date=args.get("due"), wait_seconds=args.get("wait"),
                                      promote_alias=args.get("alias"))
            result = service.request_gate(session, project, user, draft,
                                          mlflow_configured=mlflow_configured)
            return ephemeral(renderer.message("gate/requested", result=result))
        if subcommand == "withdraw":
            found = records.change(Gate, args["ref"], "gate")
            admin = access.is_project_admin(session, found.project, user,
                                            runtime.settings.admins)
            gate = service.withdraw(session, found.id, user, args["reason"], is_admin=admin)
            return ephemeral(renderer.message("gate/withdraw_done", g=gate))
        if subcommand == "list":
            gates, total = service.list_gates(session, project)
            return ephemeral(renderer.message("gate/list", project=project, gates=gates,
                                              total=total))
        # status
        return ephemeral(status_view(session, records.read(Gate, args["ref"], "gate")))

    @app.view("gate_request_modal")
    @guarded
    def on_request_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                          client: WebClient) -> None:
        values, meta = form_values(view), read_metadata(view)
        draft = GateDraft(
            milestone=values.get("milestone") or "", model=values.get("model"),
            version=values.get("version"), roles=values.get("roles") or "",
            criteria=values.get("criteria") or "", due_date=values.get("due_date"),
            promote_alias=values.get("promote"), wait_seconds=_wait(values.get("wait")),
        )
        draft.validated()  # answer field errors before touching the database
        team, user = team_id_of(body), user_id_of(body)
        warning = None
        with db.session() as session:
            if first_submission(session, body):
                project = project_for_channel(session, team, meta["channel"],
                                              meta.get("channel_name"))
                result = service.request_gate(session, project, user, draft,
                                              mlflow_configured=mlflow_configured)
                warning = renderer.message("gate/requested", result=result) \
                    if result.only_requester else None
        ack()
        if warning is not None:
            client.chat_postEphemeral(channel=meta["channel"], user=user, text=warning["text"],
                                      blocks=warning["blocks"])

    def _approve(team: str, user: str, gate_id: int, role: str | None,
                 body: dict[str, Any]) -> dict[str, Any]:
        """Sign as `role`, or as the one role the person can sign for; else ask which role."""
        with db.session() as session:
            gate = guard(session, body).change_id(Gate, gate_id, "gate")
            waiting = service.signable_roles(session, gate, user, SignoffDecision.APPROVE)
            if role is None and len(waiting) > 1:
                return renderer.message("gate/choose_role", g=gate, roles=waiting)
            signed = service.sign(session, gate_id, team, user, SignoffDecision.APPROVE,
                                  role or waiting[0])
            still = [s.role for s in role_states(signed.gate) if s.state == "waiting"]
            return renderer.message("gate/signed", signed=signed, waiting=still)

    @app.action("gate_approve")
    @guarded
    def on_approve(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                   respond: Respond) -> None:
        ack()
        reply = _approve(team_id_of(body), user_id_of(body), int(action["value"]), None, body)
        respond(response_type="ephemeral", replace_original=False, **reply)

    @app.action(APPROVE_AS)
    @guarded
    def on_approve_as(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                      respond: Respond) -> None:
        ack()
        gate_id, _, role = str(action["value"]).partition(":")
        if from_home(body):  # the Home's buttons name the role; the Home says what was signed
            with refusals_on_home(db, body):
                reply = _approve(team_id_of(body), user_id_of(body), int(gate_id), role, body)
                notify_home(db, body, f"{reply['text']} as `{role}`.")
            return
        reply = _approve(team_id_of(body), user_id_of(body), int(gate_id), role, body)
        respond(response_type="ephemeral", replace_original=True, **reply)

    @app.action("gate_request_changes")
    @guarded
    def on_request_changes(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                           client: WebClient, respond: Respond) -> None:
        # `respond` is for @guarded: a refusal goes back as an ephemeral through response_url.
        ack()
        user = user_id_of(body)
        with refusals_on_home(db, body):
            with db.session() as session:
                gate = guard(session, body).change_id(Gate, action["value"], "gate")
                waiting = service.signable_roles(session, gate, user, SignoffDecision.CHANGES)
                metadata = write_metadata(gate_id=gate.id,
                                          role=waiting[0] if len(waiting) == 1 else None)
                view = renderer.view("gate/changes_modal", g=gate, roles=waiting,
                                     metadata=metadata)
            client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.view("gate_changes_modal")
    @guarded
    def on_changes_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        values, meta = form_values(view), read_metadata(view)
        role = meta.get("role") or values.get("role")
        if not role:
            raise InvalidInput("Choose the role you are signing as.", field="role")
        with db.session() as session:
            if first_submission(session, body):
                guard(session, body).change_id(Gate, meta["gate_id"], "gate")
                service.sign(session, int(meta["gate_id"]), team_id_of(body), user_id_of(body),
                             SignoffDecision.CHANGES, str(role), values.get("reason"))
        ack()
