"""The `quorum` command line.

Every CI step pays this module's start-up, so it imports only the standard library: each command
imports what it uses when it runs (`quorum --help` loads neither the configuration nor the
database). Add a command with its parser block in `_parser`, its function below, and an entry in
`COMMANDS`; a command that uses the database opens it with `_database(settings, migrate=…)`:
only `serve`, `socket`, `worker` and `db upgrade` migrate, every other command checks the schema
revision and stops with one line when the database is behind or ahead.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot import __version__

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.runtime import Runtime

log = logging.getLogger("quorum")

# The registers `quorum export` writes: the keys of `bot.export.REGISTERS` (importing that module
# for its keys would load every model and service; tests/bot/test_cli.py keeps the two equal).
EXPORT_REGISTERS = ("audit", "decisions", "gates", "hypotheses", "incidents", "promotions",
                    "risks", "rituals")
EXPORT_FORMATS = ("json", "csv", "md")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quorum", description=(
        "Quorum: hypotheses, decisions, gates, risks, rituals, promotions and incidents "
        "for ML teams, in Slack."))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    worker = commands.add_parser(
        "worker", help="deliver the outbox to Slack and run the scheduler, with no HTTP "
                       "server (pair with `quorum serve --no-worker`)")
    _no_migrate_option(worker)
    _no_migrate_option(serve)

    socket = commands.add_parser(
        "socket", help="run the app over Socket Mode (needs SLACK_APP_TOKEN); serves /healthz "
                       "and /metrics on PORT")
    _no_migrate_option(socket)

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

    portal = commands.add_parser(
        "portal", help="serve the portal's pages on loopback, signed in as a chosen person",
        description="The web portal (/portal) for local use with no Slack: every page as "
                    "NAME (a `quorum shell` name), on 127.0.0.1 only.")
    portal.add_argument("--dev-user", required=True, type=_name, metavar="NAME",
                        help="who you are (e.g. alice, as in `quorum shell --user alice`)")
    portal.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")

    manifest = commands.add_parser("manifest", help="print the Slack app manifest")
    manifest.add_argument("--url", help="public https:// address of `quorum serve`")
    manifest.add_argument("--socket-mode", action="store_true",
                          help="for `quorum socket`: no request URLs, Socket Mode on")
    manifest.add_argument("--format", choices=("yaml", "json"), default="yaml")

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help="apply the schema migrations (replicas starting "
                                           "together take turns; the later ones find nothing "
                                           "to do)")
    db_commands.add_parser("check", help="exit 0 when the database is at this Quorum's schema "
                                         "revision, 2 with one line when it is behind or ahead")

    gate = commands.add_parser("gate", help="milestone gates")
    gate_commands = gate.add_subparsers(dest="gate_command", required=True, metavar="ACTION")
    check = gate_commands.add_parser(
        "check", help="exit 0 when the model version passed its gate, 1 otherwise")
    check.add_argument("--model", required=True, help="the model's name")
    check.add_argument("--version", required=True, help="the model version, e.g. 3 or v3")
    check.add_argument("--milestone", help="only a gate of this milestone (e.g. launch); "
                       "without it every gate of the version must have passed")
    check.add_argument("--json", action="store_true",
                       help="print a JSON record (gates, approvers, why not) instead of text")

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
    export.add_argument("register", choices=EXPORT_REGISTERS)
    export.add_argument("--format", choices=EXPORT_FORMATS, default="json")
    export.add_argument("--out", metavar="DIR", help="with --format md: write one file per "
                        "record into DIR (decisions as numbered ADRs, incidents as postmortems)")
    return parser


def _no_migrate_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--no-migrate", dest="migrate", action="store_false",
                         help="do not migrate the database on start (a migration job runs "
                              "`quorum db upgrade`); refuse to start unless it is up to date")


# Commands that run until stopped; every other command does one thing and exits.
LONG_RUNNING = {"serve", "socket", "worker", "shell", "portal"}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command not in LONG_RUNNING:
        _collect_less_for_one_shot()
    from bot.config import ConfigError, load_settings
    from bot.database import SchemaMismatch
    from bot.logs import configure_logging

    try:
        settings = load_settings()
        configure_logging(settings.log_format)
        return COMMANDS[args.command](settings, args)
    except ConfigError as exc:
        print(f"quorum: configuration error: {exc}", file=sys.stderr)
        return 2
    except SchemaMismatch as exc:
        print(f"quorum: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.command not in LONG_RUNNING:
            gc.freeze()  # the exit's final collection then skips everything the command made


def _collect_less_for_one_shot() -> None:
    """Collect cyclic garbage rarely in a command that exits soon (as mypy does): importing
    SQLAlchemy and pydantic makes hundreds of thousands of objects, and collecting as they are
    made, then once more at exit, was a third of `quorum gate check`'s start-up (see
    docs/benchmarks.md). Reference counting still frees the rest at once."""
    gc.set_threshold(200_000, 30, 30)


def _database(settings: Settings, *, migrate: bool) -> Runtime:
    """The runtime, its database at this code's schema revision: migrated to it (`migrate`),
    or checked (a SchemaMismatch, one line, when it is behind or ahead)."""
    from sqlalchemy.exc import OperationalError

    from bot.config import ConfigError
    from bot.runtime import Runtime

    runtime = Runtime.from_settings(settings)
    try:
        if migrate:
            runtime.db.upgrade()
        else:
            runtime.db.check_revision()
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "unreachable"
        raise ConfigError(f"DATABASE_URL: cannot open the database ({reason})") from None
    return runtime


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from bot.serving import serve

    settings.require("slack_bot_token", purpose="to talk to Slack")
    settings.require("slack_signing_secret", purpose="to verify requests from Slack")
    runtime = _database(settings, migrate=args.migrate)
    serve(runtime, workers=args.workers, background=not args.no_worker)
    return 0


def _process_count(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of processes (1 to 64)")
    return int(value)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from bot.serving import run_background

    settings.require("slack_bot_token", purpose="to talk to Slack")
    runtime = _database(settings, migrate=args.migrate)
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


def _socket(settings: Settings, args: argparse.Namespace) -> int:
    from slack_sdk.errors import SlackApiError, SlackClientError

    from bot.config import ConfigError
    from bot.socket_mode import SocketModeRunner

    settings.require("slack_bot_token", purpose="to talk to Slack")
    settings.require("slack_app_token", purpose="for Socket Mode (an app-level token, xapp-…)")
    runtime = _database(settings, migrate=args.migrate)
    try:  # /healthz and /metrics for probes and Prometheus, as `quorum serve` has them
        runner = SocketModeRunner(runtime, health_address=(settings.host, settings.port))
    except OSError as exc:
        raise ConfigError(f"PORT: cannot listen on {settings.host}:{settings.port} "
                          f"({exc.strerror or exc})") from None
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set())
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        runner.run_until(stop)
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
    from bot.config import ConfigError, load_settings
    from bot.shell.session import Shell

    url = args.db if "://" in args.db else f"sqlite:///{args.db}"
    try:
        settings = load_settings(DATABASE_URL=url)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("DATABASE_URL", "--db", 1)) from None
    # The shell's own SQLite file is its playground, migrated like `serve` does; a server
    # database named with --db is only checked, as by every other command.
    runtime = _database(settings, migrate=url.startswith("sqlite"))
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


def _portal(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from bot.config import ConfigError
    from bot.portal.dev import dev_app

    if not 1 <= args.port <= 65535:
        raise ConfigError("--port: must be between 1 and 65535")
    runtime = _database(settings, migrate=False)
    app, person = dev_app(runtime, args.dev_user)
    print(f"quorum portal: http://127.0.0.1:{args.port}/portal/ as {person.name} "
          f"({person.user_id}); loopback only", file=sys.stderr)
    # Loopback only, whatever HOST says: these pages have no sign-in.
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


def _manifest(settings: Settings, args: argparse.Namespace) -> int:
    from bot.config import ConfigError
    from bot.manifest import build_manifest, render
    from bot.runtime import Runtime

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


def _db(settings: Settings, args: argparse.Namespace) -> int:
    _database(settings, migrate=args.db_command == "upgrade")
    print("database is up to date", file=sys.stderr)
    return 0


def _export(settings: Settings, args: argparse.Namespace) -> int:
    from bot.export import export

    if args.out and args.format != "md":
        print("quorum: --out writes one Markdown file per record: add --format md",
              file=sys.stderr)
        return 1
    runtime = _database(settings, migrate=False)
    _refresh_names(runtime)
    if args.out:
        from bot.export_files import write_files

        try:
            with runtime.db.session() as session:
                written = write_files(session, args.register, Path(args.out))
        except OSError as exc:
            print(f"quorum: --out {args.out}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"quorum: wrote {len(written)} files to {args.out}", file=sys.stderr)
        return 0
    with runtime.db.session() as session:
        export(session, args.register, args.format, sys.stdout)
    return 0


def _refresh_names(runtime: Runtime) -> None:
    """With a bot token at hand, name the people and channels the export mentions first; without
    one (or if Slack does not answer) the export uses the names cached by `quorum serve`."""
    if not runtime.settings.slack_bot_token:
        return
    from bot.directory import refresh_names
    from bot.slack_app import web_client

    try:
        client = web_client(runtime)
        while refresh_names(runtime.db, client, collect_now=True):
            pass
    except Exception as exc:  # the export goes on with what is cached
        print(f"quorum: names not refreshed from Slack ({type(exc).__name__}); using the "
              f"cached ones", file=sys.stderr)


def _gate(settings: Settings, args: argparse.Namespace) -> int:
    from bot.errors import QuorumError
    from bot.services.directory import Names
    from bot.services.gate_check import check, reason_not_passed

    runtime = _database(settings, migrate=False)
    try:
        with runtime.db.session() as session:
            result = check(session, args.model, args.version, args.milestone)
            # People by name, from the names `quorum serve` caches (the id where none is known).
            names = Names.load(session)
            if args.json:
                print(json.dumps(names.annotate(result.as_record()), indent=2,
                                 ensure_ascii=False))
            else:
                from bot.render import renderer  # text only: --json needs no templates
                from bot.services.gate_state import role_states

                print(renderer.text("gate/check.txt.j2", result=result, states=role_states,
                                    why_not=reason_not_passed, person=names.display), end="")
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

    runtime = _database(settings, migrate=False)
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
    runtime = _database(settings, migrate=False)
    try:
        with runtime.db.session() as session:
            outcome = promotions.record_promotion(
                session, draft, source="cli", created_by=promotions.CLI,
                default_channel=settings.default_channel,
                repeat_window=settings.promotion_repeat_window)
            assert outcome.promotion is not None
            ref = outcome.promotion.ref
    except QuorumError as exc:
        print(f"quorum: {_option(exc)}{exc.message}", file=sys.stderr)
        return 1
    # The running `quorum serve` delivers the announcement from the outbox.
    print(ref)
    if outcome.repeated:
        print(f"quorum: {ref} was already announced; its card was updated instead of posting "
              f"it again", file=sys.stderr)
    if not outcome.routed:
        print(f"quorum: {ref} is stored but unrouted: bind the model with `/quorum model add "
              f"{draft.model}`, give --channel or set QUORUM_DEFAULT_CHANNEL", file=sys.stderr)
    return 0


def _option(exc: Exception) -> str:
    """`--model: ` for an error about the model field."""
    field = getattr(exc, "field", None)
    return f"--{field}: " if field else ""


# The function that runs each command (its parser is in `_parser`).
COMMANDS = {"serve": _serve, "socket": _socket, "worker": _worker, "shell": _shell,
            "portal": _portal, "manifest": _manifest, "db": _db, "export": _export,
            "gate": _gate, "announce": _announce}

if __name__ == "__main__":
    sys.exit(main())
