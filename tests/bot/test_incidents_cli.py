"""`quorum announce incident` and `quorum export incidents`: as real processes, and in-process
(`main(argv)`) for the many small cases, which keeps them fast."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from bot.cli import main
from bot.database import Database
from bot.models import Incident, OutboxMessage
from bot.services import incidents as service
from bot.services.projects import project_for_channel


def quorum(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("SLACK_", "QUORUM_", "DATABASE_URL"))}
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True,
                          text=True, env={**environment, **env}, timeout=60,
                          stdin=subprocess.DEVNULL)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """`quorum …` in this process, with only the environment variables given."""

    def invoke(*args: str, **env: str) -> Result:
        for key in list(os.environ):
            if key.startswith(("SLACK_", "QUORUM_", "DATABASE_URL")):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return invoke


def test_announce_incident_queues_its_card(db: Database) -> None:
    with db.session() as session:
        project_for_channel(session, "T1", "C0CHURN01", "churn")
    result = quorum("announce", "incident", "--title", "Nightly scoring failed", "--severity",
                    "sev2", "--channel", "churn", "--model", "churn-xgb", "--version", "12",
                    DATABASE_URL=db.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "INC-1"
    with db.session() as session:
        [incident] = session.scalars(select(Incident)).unique().all()
        assert (incident.severity, incident.source, incident.created_by, incident.model,
                incident.model_version, incident.commander) == (
            "sev2", "cli", service.CLI, "churn-xgb", "12", None)
        [card] = session.scalars(select(OutboxMessage)).all()
        assert card.payload["channel"] == "C0CHURN01" and card.message_key == \
            service.card_key(incident)
        assert "Announced from the command line" in json.dumps(card.payload["blocks"])


def test_announce_incident_refuses_bad_input(db: Database, run: Callable[..., Result]) -> None:
    with db.session() as session:
        project_for_channel(session, "T1", "C0CHURN01", "churn")
    for args, message in ((["--title", "x", "--severity", "sev9"], "`sev9` is not a severity"),
                          (["--title", "  "], "The title is empty"),
                          (["--title", "x", "--channel", "nope"], "--channel nope: no project")):
        result = run("announce", "incident", *args, DATABASE_URL=db.url)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert result.stdout == ""
    missing = run("announce", "incident", DATABASE_URL=db.url)
    assert missing.returncode == 2 and "--title" in missing.stderr
    # Without a channel or QUORUM_DEFAULT_CHANNEL the incident is stored, and the script told.
    unrouted = run("announce", "incident", "--title", "Somewhere", DATABASE_URL=db.url)
    assert unrouted.returncode == 0 and unrouted.stdout.strip() == "INC-1"
    assert "unrouted" in unrouted.stderr
    routed = run("announce", "incident", "--title", "Default", DATABASE_URL=db.url,
                 QUORUM_DEFAULT_CHANNEL="C0CHURN01")
    assert routed.stdout.strip() == "INC-2"
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Incident)) == 2
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1


def seed(db: Database) -> None:
    with db.session() as session:
        project = project_for_channel(session, "T1", "C0CHURN01", "churn")
        first = service.declare(session, project, "U0ALICE01", service.IncidentDraft(
            title='Latency "spike", again', severity="sev1", commander="U0ALICE01",
            model="churn-xgb", model_version="12", description="p99 > 2s\nsince 09:00"))
        service.acknowledge(session, first, "U0BOB0001")
        service.add_update(session, first, "U0BOB0001", "Rolled back to v11")
        service.resolve(session, first, "U0BOB0001", "Rollback fixed it",
                        root_cause="A bad feature join", follow_ups="Add a canary")
        service.declare(session, project, "U0CAROL01", service.IncidentDraft(title="Drift"))


def test_export_incidents_json_csv_and_md(db: Database, run: Callable[..., Result]) -> None:
    seed(db)
    result = quorum("export", "incidents", "--format", "json", DATABASE_URL=db.url)
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["ref"] for r in records] == ["INC-1", "INC-2"]
    first = records[0]
    for field in ("ref", "project", "status", "created_at", "created_by", "title", "severity",
                  "commander", "model", "version", "started_at", "acknowledged_at",
                  "resolved_at", "duration_seconds", "time_to_acknowledge_seconds", "summary",
                  "root_cause", "follow_ups", "timeline"):
        assert field in first, field
    assert (first["status"], first["project"], first["severity"]) == ("resolved", "churn",
                                                                      "sev1")
    assert [e["kind"] for e in first["timeline"]] == ["declared", "acknowledged", "update",
                                                      "resolved"]
    assert first["timeline"][2] == {**first["timeline"][2], "actor": "U0BOB0001",
                                    "text": "Rolled back to v11"}
    assert records[1]["status"] == "declared" and records[1]["duration_seconds"] is None

    rows = list(csv.DictReader(io.StringIO(
        run("export", "incidents", "--format", "csv", DATABASE_URL=db.url).stdout)))
    assert rows[0]["title"] == 'Latency "spike", again'
    assert rows[0]["description"] == "p99 > 2s\nsince 09:00"
    assert len(json.loads(rows[0]["timeline"])) == 4

    markdown = run("export", "incidents", "--format", "md", DATABASE_URL=db.url).stdout
    for expected in ('# INC-1: Latency "spike", again (postmortem draft)', "| Severity | sev1 |",
                     "| Affected model | churn-xgb v12 |", "## Summary", "Rollback fixed it",
                     "## Root cause", "A bad feature join", "## Timeline (UTC)",
                     "update · U0BOB0001: Rolled back to v11", "## Follow-ups", "Add a canary",
                     "## Lessons learned", "# INC-2: Drift", "_Not resolved yet._",
                     "| Resolved | not yet |"):
        assert expected in markdown, expected
