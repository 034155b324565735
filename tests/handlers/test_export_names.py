"""Exports people can publish: names of users and channels from `users.info` and
`conversations.info`, cached in the database by the scheduler (refreshed daily) and read by
`quorum export`; one Markdown file per record with `--out DIR`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.models import Incident, SlackName, utcnow
from bot.services.decisions import DecisionDraft, log_decision
from bot.services.incidents import FollowUpDraft, IncidentDraft, declare, resolve
from bot.services.projects import project_for_channel
from support.cli import run_quorum
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import TEAM

CHANNEL = "C0CHURN01"
ALICE, BOB, ZED = "U0ALICE01", "U0BOB0001", "U0ZED0001"


@pytest.fixture
def server(make_settings: Callable[..., Any], fake_slack: FakeSlack) -> Iterator[QuorumServer]:
    fake_slack.users[ALICE] = {"real_name": "Alice Smith",
                               "profile": {"display_name": "alice", "real_name": "Alice Smith"}}
    fake_slack.users[BOB] = {"profile": {"display_name": "", "real_name": "Bob Jones"}}
    fake_slack.channels[CHANNEL] = {"id": CHANNEL, "name": "churn-model", "is_channel": True}
    server = QuorumServer(make_settings(), with_edge_jobs=True).start()
    with server.runtime.db.session() as session:
        project = project_for_channel(session, TEAM, CHANNEL, "churn-model")
        log_decision(session, project, ALICE, DecisionDraft(
            title="Use XGBoost for churn", context="Tabular data; <@U0BOB0001> benchmarked it",
            options="XGBoost, a deep net", decision="XGBoost", consequences="Retrain weekly",
            deciders=[ALICE, BOB], status="accepted"))
        log_decision(session, project, BOB, DecisionDraft(
            title="Score nightly, not hourly!", deciders=[BOB], status="proposed"))
        incident = declare(session, project, ALICE, IncidentDraft(title="Churn scores stale"))
        resolve(session, incident, ALICE, "Backfilled", impact="EU scores 6 h old",
                items=[FollowUpDraft("Alert on freshness", BOB, utcnow().date(),
                                     "https://github.com/acme/churn/issues/12")])
    yield server
    server.stop()


def export(monkeypatch: pytest.MonkeyPatch, server: QuorumServer, *args: str,
           **env: str) -> tuple[int, str, str]:
    return run_quorum(monkeypatch, "export", *args,
                      DATABASE_URL=server.settings.database_url, **env)


def cached(server: QuorumServer) -> dict[str, str | None]:
    with server.runtime.db.session() as session:
        return {row.slack_id: row.name for row in session.scalars(select(SlackName))}


def test_the_scheduler_names_people_and_channels_and_exports_show_them(
        server: QuorumServer, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    server.scheduler.run_due(now)
    assert cached(server) == {ALICE: "alice", BOB: "Bob Jones", CHANNEL: "churn-model"}
    asked = {c.args.get("user") or c.args.get("channel") for c in
             fake_slack.calls_to("users.info") + fake_slack.calls_to("conversations.info")}
    assert asked == {ALICE, BOB, CHANNEL}
    server.scheduler.run_due(now + timedelta(minutes=1))  # fresh names are not asked again
    assert len(fake_slack.calls_to("users.info")) == 2

    # Someone Quorum never managed to name stays an id (its `_name` is null).
    with server.runtime.db.session() as session:
        session.get(Incident, 1).commander = ZED

    code, out, err = export(monkeypatch, server, "incidents", "--format", "json")
    assert code == 0, err
    [record] = json.loads(out)
    assert (record["commander"], record["commander_name"]) == (ZED, None)
    assert (record["created_by"], record["created_by_name"]) == (ALICE, "alice")
    assert (record["channel"], record["channel_name"]) == (CHANNEL, "churn-model")
    [item] = record["follow_up_items"]
    assert (item["owner"], item["owner_name"]) == (BOB, "Bob Jones")

    code, out, err = export(monkeypatch, server, "decisions", "--format", "csv")
    header = out.splitlines()[0].split(",")
    assert header[:4] == ["ref", "project", "channel", "status"]
    assert "deciders_names" in header and "created_by_name" in header

    code, out, err = export(monkeypatch, server, "incidents", "--format", "md")
    assert "| Commander | U0ZED0001 |" in out and "Declared by | @alice" in out
    assert "owner @Bob Jones" in out and "EU scores 6 h old" in out
    assert "U0ALICE01" not in out and "U0BOB0001" not in out

    # A day later the names are asked again, and a renamed person shows the new name.
    fake_slack.users[ALICE] = {"profile": {"display_name": "alice.s"}}
    server.scheduler.run_due(now + timedelta(days=1, minutes=5))
    assert cached(server)[ALICE] == "alice.s"


def test_export_without_slack_uses_the_cache_and_with_a_token_fills_it(
        server: QuorumServer, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    # No token and nothing cached yet: ids, as they are.
    code, out, err = export(monkeypatch, server, "decisions", "--format", "md")
    assert code == 0 and "Deciders: U0ALICE01, U0BOB0001" in out
    assert not fake_slack.calls_to("users.info")
    # With SLACK_BOT_TOKEN, the CLI asks Slack itself before exporting.
    code, out, err = export(monkeypatch, server, "decisions", "--format", "md",
                            SLACK_BOT_TOKEN=fake_slack.token, SLACK_API_URL=fake_slack.url)
    assert code == 0, err
    assert "Deciders: @alice, @Bob Jones" in out and "@Bob Jones benchmarked it" in out


def test_decisions_export_as_one_adr_file_each_and_incidents_as_postmortems(
        server: QuorumServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    server.scheduler.run_due(utcnow())
    adr = tmp_path / "adr"
    code, out, err = export(monkeypatch, server, "decisions", "--format", "md", "--out", str(adr))
    assert (code, out) == (0, "") and "wrote 2 files" in err
    assert sorted(p.name for p in adr.iterdir()) == ["0001-use-xgboost-for-churn.md",
                                                      "0002-score-nightly-not-hourly.md"]
    first = (adr / "0001-use-xgboost-for-churn.md").read_text()
    for expected in ("status: accepted", "deciders: @alice, @Bob Jones", "# Use XGBoost for churn",
                     "## Context and Problem Statement", "## Considered Options",
                     "## Decision Outcome", "### Consequences", "Retrain weekly",
                     "project churn-model", "logged by @alice"):
        assert expected in first, expected
    assert "Score nightly" not in first

    postmortems = tmp_path / "postmortems"
    code, out, err = export(monkeypatch, server, "incidents", "--format", "md", "--out",
                            str(postmortems))
    assert code == 0, err
    [path] = list(postmortems.iterdir())
    assert path.name == "inc-1-churn-scores-stale.md"
    text = path.read_text()
    assert "# INC-1: Churn scores stale" in text
    assert "[Alert on freshness](https://github.com/acme/churn/issues/12)" in text


def test_out_needs_markdown_and_a_writable_directory(
        server: QuorumServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    code, out, err = export(monkeypatch, server, "decisions", "--format", "json", "--out",
                            str(tmp_path / "x"))
    assert code == 1 and out == "" and err.count("\n") == 1 and "--format md" in err
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, out, err = export(monkeypatch, server, "decisions", "--format", "md", "--out",
                            str(blocker / "adr"))
    assert code == 1 and err.count("\n") == 1 and err.startswith("quorum: --out ")
