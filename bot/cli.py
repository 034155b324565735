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

    gate = commands.add_parser("gate", help="milestone gates")
    gate_commands = gate.add_subparsers(dest="gate_command", required=True, metavar="ACTION")
    check = gate_commands.add_parser(
        "check", help="exit 0 when the model version passed its gate, 1 otherwise")
    check.add_argument("--model", required=True, help="the model's name")
    check.add_argument("--version", required=True, help="the model version, e.g. 3 or v3")
    check.add_argument("--milestone", help="only a gate of this milestone (e.g. launch)")

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


def _gate(settings: Settings, args: argparse.Namespace) -> int:
    from bot.errors import QuorumError
    from bot.render import renderer
    from bot.services.gates import check, role_states

    runtime = Runtime.from_settings(settings)
    _upgrade_or_exit(runtime)
    try:
        with runtime.db.session() as session:
            result = check(session, args.model, args.version, args.milestone)
            states = role_states(result.gate) if result.gate else []
            print(renderer.text("gate/check.txt.j2", result=result, states=states), end="")
    except QuorumError as exc:
        print(f"quorum: {exc.message}", file=sys.stderr)
        return 2
    return 0 if result.passed else 1


COMMANDS = {"serve": _serve, "db": _db, "export": _export, "gate": _gate}

if __name__ == "__main__":
    sys.exit(main())
