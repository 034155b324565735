"""The `quorum` command line."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from bot.config import ConfigError, Settings, load_settings
from bot.runtime import Runtime

log = logging.getLogger("quorum")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quorum", description=(
        "Quorum: hypotheses, decisions, gates, risks, rituals, promotions and incidents "
        "for ML teams, in Slack."))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the HTTP app (Slack events, webhooks, health, metrics)")
    # --workers / --no-worker: see bot/serving.py for how the work is split into processes.
    serve.add_argument("--workers", type=_process_count, default=1, metavar="N",
                       help="HTTP processes to start (default 1; PostgreSQL only, SQLite "
                            "keeps 1)")
    serve.add_argument("--no-worker", action="store_true",
                       help="answer HTTP only: leave the outbox and the scheduler to "
                            "`quorum worker`")
    commands.add_parser("worker", help="deliver the outbox to Slack and run the scheduler, "
                        "with no HTTP server (pair with `quorum serve --no-worker`)")
    commands.add_parser("socket", help="run the app over Socket Mode (needs SLACK_APP_TOKEN)")

    shell = commands.add_parser(
        "shell", help="talk to Quorum in this terminal, with no Slack at all",
        description="Type slash commands as a chosen person in a chosen channel and see the "
                    "bot's messages as text; press buttons by number and fill forms at prompts. "
                    "Reads commands from standard input when it is not a terminal.")
    shell.add_argument("--db", default="quorum.db", metavar="URL_OR_FILE",
                       help="database: a SQLAlchemy URL or a SQLite file (default ./quorum.db; "
                            "DATABASE_URL is ignored so that a shell never writes to production)")
    shell.add_argument("--user", default="alice", type=_name, help="who you are (default alice)")
    shell.add_argument("--channel", default="general", type=_name,
                       help="the channel you type in (default general)")

    manifest = commands.add_parser("manifest", help="print the Slack app manifest")
    manifest.add_argument("--url", help="public https:// address of `quorum serve`")
    manifest.add_argument("--socket-mode", action="store_true",
                          help="for `quorum socket`: no request URLs, Socket Mode on")
    manifest.add_argument("--format", choices=("yaml", "json"), default="yaml")

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
    # Checked by the service rather than argparse, so that bad input is one line and exit 1.
    promotion = what.add_parser("promotion", help="announce a model version's promotion, "
                                "with its gate record")
    promotion.add_argument("--model", help="the registered model's name (required)")
    promotion.add_argument("--version", help="the promoted version, e.g. 3 or v3 (required)")
    promotion.add_argument("--to", help="the alias or stage it now holds, e.g. production "
                           "(required)")
    promotion.add_argument("--from", dest="from_", help="the alias or stage it leaves")
    promotion.add_argument("--url", help="a link: the pipeline run, the model page")
    promotion.add_argument("--note", help="a short note for the channel")
    promotion.add_argument("--actor", help="who promoted it (a Slack user id or a name)")
    promotion.add_argument("--channel", help="the project: its channel id or name (default: the "
                           "model's binding, then QUORUM_DEFAULT_CHANNEL)")

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


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from bot.serving import serve

    settings.require("slack_bot_token", purpose="to talk to Slack")
    settings.require("slack_signing_secret", purpose="to verify requests from Slack")
    runtime = Runtime.from_settings(settings)
    _upgrade_or_exit(runtime)
    serve(runtime, workers=args.workers, background=not args.no_worker)
    return 0


def _process_count(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of processes (1 to 64)")
    return int(value)


def _worker(settings: Settings, _: argparse.Namespace) -> int:
    from bot.serving import run_background

    settings.require("slack_bot_token", purpose="to talk to Slack")
    runtime = Runtime.from_settings(settings)
    _upgrade_or_exit(runtime)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run_background(runtime, stop)
    return 0


def _name(value: str) -> str:
    from bot.shell.slack import Directory

    name = Directory.valid(value)
    if name is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not a name (letters, digits, dots, dashes)")
    return name


def _socket(settings: Settings, _: argparse.Namespace) -> int:
    from slack_sdk.errors import SlackApiError, SlackClientError

    from bot.socket_mode import SocketModeRunner

    settings.require("slack_bot_token", purpose="to talk to Slack")
    settings.require("slack_app_token", purpose="for Socket Mode (an app-level token, xapp-…)")
    runtime = Runtime.from_settings(settings)
    _upgrade_or_exit(runtime)
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set())
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        SocketModeRunner(runtime).run_until(stop)
    except SlackApiError as exc:
        error = exc.response.get("error", "refused")
        raise ConfigError(f"SLACK_APP_TOKEN: Slack refused the connection ({error})") from None
    except (SlackClientError, OSError) as exc:
        raise ConfigError(f"SLACK_API_URL: cannot reach Slack ({exc})") from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def _shell(settings: Settings, args: argparse.Namespace) -> int:
    from bot.shell.session import Shell

    url = args.db if "://" in args.db else f"sqlite:///{args.db}"
    try:
        settings = load_settings(DATABASE_URL=url)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("DATABASE_URL", "--db", 1)) from None
    runtime = Runtime.from_settings(settings)
    _upgrade_or_exit(runtime)
    logging.getLogger().setLevel(logging.WARNING)  # the terminal is for the conversation
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
    # Emoji on a terminal that cannot show them, and stray bytes in piped input, are replaced
    # rather than fatal.
    for stream in (sys.stdin, sys.stdout):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    shell = Shell(runtime, user=args.user, channel=args.channel, stdin=sys.stdin,
                  stdout=sys.stdout, interactive=interactive, color=color)
    try:
        return shell.run()
    finally:
        runtime.db.dispose()  # the last connection closing folds SQLite's WAL back in


def _manifest(settings: Settings, args: argparse.Namespace) -> int:
    from bot.manifest import build_manifest, render

    url = (args.url or "").strip()
    if not args.socket_mode and not url:
        raise ConfigError("--url: required (the public https:// address of quorum serve), "
                          "unless you use --socket-mode")
    if url and not url.startswith("https://"):
        raise ConfigError("--url: must be an https:// address (Slack only calls https)")
    url = url.rstrip("/").removesuffix("/slack/events")
    runtime = Runtime.from_settings(settings)
    sys.stdout.write(render(build_manifest(runtime, url or None, args.socket_mode), args.format))
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


def _announce(settings: Settings, args: argparse.Namespace) -> int:
    if args.announce_kind == "promotion":
        return _announce_promotion(settings, args)
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


def _announce_promotion(settings: Settings, args: argparse.Namespace) -> int:
    from bot.errors import QuorumError
    from bot.services import promotions

    draft = promotions.PromotionDraft(
        model=args.model, version=args.version, to=args.to, from_=args.from_, url=args.url,
        note=args.note, actor=args.actor, channel=args.channel)
    try:
        draft.validated()  # before the database is even opened
    except QuorumError as exc:
        print(f"quorum: {_option(exc)}{exc.message}", file=sys.stderr)
        return 1
    runtime = Runtime.from_settings(settings)
    _upgrade_or_exit(runtime)
    try:
        with runtime.db.session() as session:
            outcome = promotions.record_promotion(
                session, draft, source="cli", created_by=promotions.CLI,
                default_channel=settings.default_channel)
            assert outcome.promotion is not None
            ref = outcome.promotion.ref
    except QuorumError as exc:
        print(f"quorum: {_option(exc)}{exc.message}", file=sys.stderr)
        return 1
    # The running `quorum serve` delivers the announcement from the outbox.
    print(ref)
    if not outcome.routed:
        print(f"quorum: {ref} is stored but unrouted: bind the model with `/quorum model add "
              f"{draft.model}`, give --channel or set QUORUM_DEFAULT_CHANNEL", file=sys.stderr)
    return 0


def _option(exc: Exception) -> str:
    """`--model: ` for an error about the model field."""
    field = getattr(exc, "field", None)
    return f"--{field}: " if field else ""


COMMANDS = {"serve": _serve, "socket": _socket, "shell": _shell, "manifest": _manifest,
            "db": _db, "export": _export, "gate": _gate, "announce": _announce}
COMMANDS["worker"] = _worker

if __name__ == "__main__":
    sys.exit(main())
