"""The `quorum` command line, run as a real process."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from bot.database import Database
from bot.services import gates, roles
from bot.services.decisions import DecisionDraft, log_decision, supersede
from bot.services.gate_drafts import GateDraft
from bot.services.projects import project_for_channel
from support.cli import run_quorum


@pytest.fixture
def quorum(monkeypatch: pytest.MonkeyPatch) -> Callable[..., SimpleNamespace]:
    """`quorum ARGS` in this process; the result has returncode, stdout and stderr."""

    def run(*args: str, **env: str) -> SimpleNamespace:
        code, out, err = run_quorum(monkeypatch, *args, **env)
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run


def seed(db: Database) -> None:
    with db.session() as session:
        project = project_for_channel(session, "T1", "C0CHURN01", "churn")
        first = log_decision(session, project, "U0ALICE01", DecisionDraft(
            title="Use XGBoost, not \"deep\" nets", context="Tabular data\nwith commas, too",
            deciders=["U0ALICE01", "U0BOB0001"], status="accepted"))
        supersede(session, first, "U0BOB0001", "Use LightGBM")


def test_export_decisions_json(db: Database, quorum: Callable[..., SimpleNamespace]) -> None:
    seed(db)
    result = quorum("export", "decisions", "--format", "json", DATABASE_URL=db.url)
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["ref"] for r in records] == ["D-1", "D-2"]
    first = records[0]
    for field in ("ref", "project", "status", "created_at", "created_by", "title", "context",
                  "deciders", "superseded_by"):
        assert field in first
    assert (first["status"], first["superseded_by"], first["project"]) == (
        "superseded", "D-2", "churn")
    assert records[1]["supersedes"] == "D-1"


def test_export_decisions_csv_and_md(db: Database, quorum: Callable[..., SimpleNamespace]) -> None:
    seed(db)
    rows = list(csv.DictReader(io.StringIO(
        quorum("export", "decisions", "--format", "csv", DATABASE_URL=db.url).stdout)))
    assert rows[0]["title"] == 'Use XGBoost, not "deep" nets'
    assert rows[0]["context"] == "Tabular data\nwith commas, too"
    assert json.loads(rows[0]["deciders"]) == ["U0ALICE01", "U0BOB0001"]
    markdown = quorum("export", "decisions", "--format", "md", DATABASE_URL=db.url).stdout
    for heading in ("# D-1. Use XGBoost", "* Status: superseded", "## Context and problem",
                    "## Considered options", "## Decision outcome", "## Consequences",
                    "## Links", "* Superseded by D-2", "# D-2. Use LightGBM", "* Supersedes D-1"):
        assert heading in markdown


def test_export_audit(db: Database, quorum: Callable[..., SimpleNamespace]) -> None:
    seed(db)
    records = json.loads(quorum("export", "audit", "--format", "json", DATABASE_URL=db.url).stdout)
    assert [(r["ref"], r["action"]) for r in records] == [
        ("D-1", "decision.created"), ("D-2", "decision.created"), ("D-1", "decision.superseded")]
    assert records[2]["before"]["status"] == "accepted"
    assert records[2]["after"]["status"] == "superseded"
    markdown = quorum("export", "audit", "--format", "md", DATABASE_URL=db.url).stdout
    assert "| decision.superseded | D-1 | status, superseded_by |" in markdown


def test_db_upgrade_creates_the_default_sqlite_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "quorum.db").exists()


def test_configuration_errors_are_one_line(quorum: Callable[..., SimpleNamespace]) -> None:
    cases = [
        (("serve",), {}, "SLACK_BOT_TOKEN: required to talk to Slack"),
        (("serve",), {"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET: required"),
        (("db", "upgrade"), {"DATABASE_URL": "mysql://x"}, "DATABASE_URL: must be"),
        (("db", "upgrade"), {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"},
         "DATABASE_URL: cannot open the database"),
        (("export", "decisions"), {"PORT": "x"}, "PORT: input should be a valid integer"),
        (("serve",), {"QUORUM_ADMINS": ","}, "QUORUM_ADMINS: names no user id"),
        (("export", "decisions"), {"QUORUM_ADMINS": " "}, "QUORUM_ADMINS: names no user id"),
    ]
    for args, env, expected in cases:
        result = quorum(*args, **env)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr
        assert expected in result.stderr and "Traceback" not in result.stderr


def test_a_real_process_prints_one_line_and_exits_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "QUORUM_"))}
    result = subprocess.run([sys.executable, "-m", "bot.cli", "serve"], capture_output=True,
                            text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert result.stderr == "quorum: configuration error: SLACK_BOT_TOKEN: required to talk to " \
                            "Slack\n"


def test_the_cli_lists_exactly_the_registers_export_writes() -> None:
    from bot import cli
    from bot.export import FORMATS, REGISTERS

    assert tuple(sorted(REGISTERS)) == cli.EXPORT_REGISTERS
    assert cli.EXPORT_FORMATS == FORMATS


def imported_by(*argv: str, **env: str) -> tuple[set[str], set[str]]:
    """The top-level packages and the `bot` modules a `quorum ARGV` process has imported when
    it exits."""
    program = ("import atexit, sys\n"
               "atexit.register(lambda: sys.__stderr__.write('MODULES ' + ' '.join(sorted("
               "sys.modules)) + '\\n'))\n"
               "from bot.cli import main\n"
               f"sys.exit(main({list(argv)!r}))\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=60, env={**os.environ, **env})
    [line] = [line for line in result.stderr.splitlines() if line.startswith("MODULES ")]
    modules = line.split()[1:]
    return ({name.split(".")[0] for name in modules},
            {name for name in modules if name.startswith("bot.")})


HEAVY = {"sqlalchemy", "pydantic", "pydantic_settings", "alembic", "slack_bolt", "slack_sdk",
         "uvicorn", "starlette", "apscheduler", "jinja2", "prometheus_client", "handlers"}


def test_help_and_version_import_none_of_the_heavy_packages() -> None:
    """Start-up time is import time (bench/footprint.py measures it): `--help` loads neither
    the configuration nor the database."""
    assert imported_by("--help")[0] & HEAVY == set()
    assert imported_by("gate", "--help")[0] & HEAVY == set()


def test_gate_check_imports_only_what_it_uses(db: Database) -> None:
    """A CI step: the configuration, the database and the gates' state; no web server, Slack
    client, scheduler, migrations tool or metrics, and of the registers only what it reads."""
    with db.session() as session:
        project = project_for_channel(session, "T0CLI0001", "C0CLI0001", "churn")
        roles.add_role(session, project, "U0ALICE01", "U0BOB0001", "ds", frozenset())
        gates.request_gate(session, project, "U0ALICE01", GateDraft(
            milestone="launch", model="churn", version="3", roles="ds"))
    for output in ([], ["--json"]):
        packages, modules = imported_by("gate", "check", "--model", "churn", "--version", "3",
                                        *output, DATABASE_URL=db.url)
        assert {"sqlalchemy", "pydantic_settings"} <= packages
        assert packages & {"alembic", "slack_bolt", "slack_sdk", "uvicorn", "starlette",
                           "apscheduler", "prometheus_client", "handlers"} == set()
        registers = {name for name in modules if name.startswith("bot.models.")}
        assert registers == {"bot.models.core", "bot.models.directory", "bot.models.gates",
                             "bot.models.promotions"}
        # Reading a gate loads none of what changes one (outbox, Homes, audit, the scheduler).
        assert modules & {"bot.services.gates", "bot.outbox", "bot.services.home",
                          "bot.services.audit", "bot.scheduler"} == set()
        assert ("jinja2" in packages) == (not output)  # --json renders no template


def test_a_one_shot_command_leaves_its_objects_to_exit_uncollected(db: Database) -> None:
    """The collector runs rarely in `gate check` and skips its objects at exit (a third of its
    start-up, bench/footprint.py --startup); reference counting still frees garbage."""
    program = ("import gc, sys\n"
               "from bot.cli import main\n"
               "code = main(['gate', 'check', '--model', 'churn', '--version', '3'])\n"
               "print(gc.get_threshold()[0], gc.get_freeze_count() > 10_000, code)\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "DATABASE_URL": db.url})
    assert result.stdout.splitlines()[-1] == "200000 True 1"
