"""`/quorum`: roles, owners, project settings, model bindings, traces and help for every command.

Later features add their subcommands to `COMMAND` and answer them in `_answer`.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import App
from sqlalchemy.orm import Session

from bot.commands import Command, Subcommand
from bot.models import Project
from bot.render import renderer
from bot.runtime import Runtime
from bot.services import access
from bot.services import github as github_service
from bot.services import model_bindings as binding_service
from bot.services import roles as role_service
from bot.services import trace as trace_service
from handlers.common import ephemeral, notice
from handlers.skeleton import Invocation, slash_command

COMMAND = Command("/quorum", "roles, settings and help for every Quorum command", [
    Subcommand("role add <user:user> <role:word>",
               "give someone a role in this channel's project (`ds`, `eng`, `pm` or any word)"),
    Subcommand("role remove <user:user> <role:word>", "take a role away from someone"),
    Subcommand("roles", "who holds which role in this project, its owners and its settings"),
    Subcommand("owner add <user:user>",
               "make someone an owner: owners and Quorum admins manage this project's roles, "
               "settings and model bindings"),
    Subcommand("owner remove <user:user>", "take ownership of this project away from someone"),
    Subcommand("settings self-approval <value:on|off>",
               "whether a gate's requester may approve it themselves (off by default)"),
    Subcommand("settings reminders <hours:1-168>",
               "hours a gate sign-off waits before its holders get a DM (default 24), then daily"),
    Subcommand("settings new-versions <value:on|off>",
               "whether new MLflow model versions are announced here (off by default)"),
    Subcommand("model add <name:word>",
               "send the promotions and alerts of this registered model to this channel"),
    Subcommand("model remove <name:word>", "stop sending this model's promotions here"),
    Subcommand("models", "the registered models bound to this channel's project"),
    Subcommand("github map <repo:word> <environment:word> [model <model:word>]",
               "hold the GitHub deployments of a repository (`owner/name`) to an environment "
               "until this project's gates pass (for a model: its deployed version's gates)"),
    Subcommand("trace <model:word> <version:version>",
               "one model version's hypotheses, decisions, gates, promotions and incidents"),
], bare="show every Quorum command")


def all_commands() -> list[Command]:
    """`/quorum` first, then the command of every registered feature."""
    import handlers

    commands = [COMMAND]
    for feature in handlers.FEATURES:
        # A module with several commands lists them in COMMANDS (rituals: /standup, /retro).
        for command in (getattr(feature, "COMMAND", None), *getattr(feature, "COMMANDS", ())):
            if isinstance(command, Command) and command not in commands:
                commands.append(command)
    return commands


def roles_view(session: Session, project: Project, actor: str,
               admins: frozenset[str]) -> dict[str, Any]:
    holders = role_service.holders(session, project)
    missing = [role for role in role_service.DEFAULT_ROLES if role not in holders]
    return renderer.message("admin/roles", project=project, holders=holders, missing=missing,
                            settings=role_service.settings_of(project),
                            owners=access.owners(session, project),
                            can_change=access.is_project_admin(session, project, actor, admins))


def register(app: App, runtime: Runtime) -> None:
    def help_listing() -> dict[str, Any]:
        return ephemeral(renderer.message("admin/help", commands=all_commands()))

    @slash_command(app, runtime, COMMAND, help=help_listing)
    def on_command(inv: Invocation) -> dict[str, Any]:
        if inv.subcommand is None:
            return help_listing()
        return _answer(inv.session, inv.subcommand, inv.args, inv.project, inv.user)

    def _answer(session: Session, subcommand: str, args: dict[str, Any], project: Project,
                user: str) -> dict[str, Any]:
        admins = runtime.settings.admins
        if subcommand == "role add":
            assignment = role_service.add_role(session, project, user, args["user"],
                                               args["role"], admins)
            return ephemeral(renderer.message("admin/role_changed", added=True,
                                              user=assignment.user_id, role=assignment.role))
        if subcommand == "role remove":
            role = role_service.normalize_role(args["role"])
            role_service.remove_role(session, project, user, args["user"], role, admins)
            return ephemeral(renderer.message("admin/role_changed", added=False,
                                              user=args["user"], role=role))
        if subcommand == "owner add":
            access.add_owner(session, project, user, args["user"], admins)
            return notice("now owns this project: they manage its roles, settings and model "
                          "bindings.", person=args["user"])
        if subcommand == "owner remove":
            access.remove_owner(session, project, user, args["user"], admins)
            return notice("no longer owns this project.", person=args["user"])
        if subcommand == "roles":
            return ephemeral(roles_view(session, project, user, admins))
        if subcommand == "settings self-approval":
            allowed = args["value"] == "on"
            role_service.set_self_approval(session, project, user, allowed, admins)
            return notice("Requesters can now approve their own gates in this project."
                          if allowed else
                          "Requesters can no longer approve their own gates in this project.")
        if subcommand == "settings new-versions":
            enabled = args["value"] == "on"
            binding_service.set_new_versions(session, project, user, enabled, admins)
            return notice("New MLflow model versions will be announced in this channel."
                          if enabled else
                          "New MLflow model versions will no longer be announced here; "
                          "promotions still are.")
        if subcommand == "model add":
            binding, created = binding_service.bind_model(session, project, user,
                                                          args["name"], admins)
            return notice(f"`{binding.model}` is now bound to this channel: its promotions "
                          f"and alerts are announced here." if created else
                          f"`{binding.model}` was already bound to this channel.")
        if subcommand == "model remove":
            binding_service.unbind_model(session, project, user, args["name"], admins)
            return notice(f"`{args['name']}` is no longer bound to this channel.")
        if subcommand == "models":
            return ephemeral(renderer.message(
                "promotion/models", project=project,
                bindings=binding_service.bindings(session, project)))
        if subcommand == "github map":
            mapping, created = github_service.map_environment(
                session, project, user, args["repo"], args["environment"], args.get("model"),
                admins)
            held = f" for the gates of `{mapping.model}`'s deployed version" \
                if mapping.model else ""
            return notice(f"GitHub deployments of {mapping.repo} to `{mapping.environment}` now "
                          f"wait{held} in this channel." if created else
                          f"{mapping.repo} `{mapping.environment}` was already mapped here; "
                          f"its model is now {mapping.model or 'none'}.")
        if subcommand == "trace":
            found = trace_service.trace(session, project, args["model"], args["version"])
            return ephemeral(renderer.message("promotion/trace", t=found))
        # settings reminders
        role_service.set_reminder_hours(session, project, user, args["hours"], admins)
        return notice(f"Waiting sign-offs are now reminded after {args['hours']} h, then daily.")
