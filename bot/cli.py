"""The `quorum` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from bot.config import ConfigError, Settings, load_settings
from bot.runtime import Runtime

log = logging.getLogger("quorum")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quorum", description=(
        "Quorum: hypotheses, decisions, gates, risks, rituals, promotions and incidents "
        "for ML teams, in Slack."))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("serve", help="run the HTTP app (Slack events, webhooks, health, metrics)")

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help="apply the schema migrations")

    announce = commands.add_parser("announce", help="announce to Slack from a script or CI job")
    what = announce.add_subparsers(dest="announce_kind", required=True, metavar="WHAT")
    incident = what.add_parser("incident", help="declare an incident and post its card")
    incident.add_argument("--title", required=True, help="what is broken")
    incident.add_argument("--severity", default="sev3", help="sev1 to sev4 (default sev3)")
    incident.add_argument("--channel", help="the project: its channel id or name "
                          "(default QUORUM_DEFAULT_CHANNEL)")
    incident.add_argument("--model", help="the affected model")
    incident.add_argument("--version", dest="model_version", help="the affected model version")
    incident.add_argument("--description", default="", help="what is known so far")
    incident.add_argument("--commander", help="Slack user id of the incident commander")

    export = commands.add_parser("export", help="write a register to standard output")
    from bot.export import FORMATS, REGISTERS

    export.add_argument("register", choices=sorted(REGISTERS))
    export.add_argument("--format", choices=FORMATS, default="json")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        settings = load_settings()
        return COMMANDS[args.command](settings, args)
    except ConfigError as exc:
        print(f"quorum: configuration error: {exc}", file=sys.stderr)
        return 2


def _serve(settings: Settings, _: argparse.Namespace) -> int:
    import uvicorn

    from bot.delivery import OutboxWorker
    from bot.scheduler import Scheduler
    from bot.slack_app import build_app, web_client
    from bot.web import create_web_app

    settings.require("slack_bot_token", purpose="to talk to Slack")
    settings.require("slack_signing_secret", purpose="to verify requests from Slack")
    runtime = Runtime.from_settings(settings)
    _upgrade_or_exit(runtime)
    worker = OutboxWorker(runtime.db, web_client(runtime))
    web = create_web_app(runtime, build_app(runtime), worker, Scheduler(runtime.db))
    uvicorn.run(web, host=settings.host, port=settings.port, log_level="info",
                access_log=False, timeout_graceful_shutdown=10)
    return 0


def _upgrade_or_exit(runtime: Runtime) -> None:
    from sqlalchemy.exc import OperationalError

    try:
        runtime.db.upgrade()
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "unreachable"
        raise ConfigError(f"DATABASE_URL: cannot open the database ({reason})") from None


def _db(settings: Settings, args: argparse.Namespace) -> int:
    runtime = Runtime.from_settings(settings)
    _upgrade_or_exit(runtime)
    print("database is up to date", file=sys.stderr)
    return 0


def _export(settings: Settings, args: argparse.Namespace) -> int:
    from bot.export import export

    runtime = Runtime.from_settings(settings)
    _upgrade_or_exit(runtime)
    with runtime.db.session() as session:
        export(session, args.register, args.format, sys.stdout)
    return 0


def _announce(settings: Settings, args: argparse.Namespace) -> int:
    from bot.errors import QuorumError
    from bot.services import incidents
    from bot.services.routing import route

    runtime = Runtime.from_settings(settings)
    _upgrade_or_exit(runtime)
    draft = incidents.IncidentDraft(
        title=args.title, severity=args.severity, commander=args.commander, model=args.model,
        model_version=args.model_version, description=args.description)
    try:
        with runtime.db.session() as session:
            where = route(session, project=args.channel, model=args.model,
                          default_channel=settings.default_channel)
            if args.channel and where.via != "project":
                raise QuorumError(f"--channel {args.channel}: no project has that channel id "
                                  f"or name.")
            incident = incidents.declare(session, where.project, incidents.CLI, draft,
                                         team_id=where.team_id, source="cli")
            ref, channel = incident.ref, where.project.channel_id if where.project else None
    except QuorumError as exc:
        print(f"quorum: {exc.message}", file=sys.stderr)
        return 1
    # The running `quorum serve` delivers the card from the outbox.
    print(ref)
    if channel is None:
        print(f"quorum: {ref} is stored but unrouted: give --channel or set "
              f"QUORUM_DEFAULT_CHANNEL", file=sys.stderr)
    return 0


COMMANDS = {"serve": _serve, "db": _db, "export": _export, "announce": _announce}

if __name__ == "__main__":
    sys.exit(main())
