"""`quorum shell`: the real app in a terminal, driven by piped commands."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from slack_bolt import Ack
from slack_sdk import WebClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import cli, outbox
from bot.config import load_settings
from bot.models import AuditEvent, Decision
from bot.runtime import Runtime
from bot.scheduler import SWEEPS
from bot.shell.session import Shell
from bot.shell.slack import TEAM_ID
from support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


def decisions(runtime: Runtime) -> list[Decision]:
    with runtime.db.session() as session:
        return list(session.scalars(select(Decision).order_by(Decision.number)))


@pytest.fixture
def runtime(database_url: str) -> Iterator[Runtime]:
    runtime = Runtime.from_settings(load_settings(DATABASE_URL=database_url))
    yield runtime
    runtime.db.dispose()


@pytest.fixture
def shell(runtime: Runtime) -> Iterator[Shell]:
    """A shell whose lines are fed with `feed`; the outbox worker runs, the clock does not."""
    shell = Shell(runtime, user="alice", channel="churn-model", stdin=io.StringIO(),
                  stdout=io.StringIO())
    shell.worker.start()
    yield shell
    shell.worker.stop()
    shell.slack.stop()


def feed(shell: Shell, line: str, *answers: str) -> str:
    """Type `line` (and `answers` at the prompts it leads to); the text it printed."""
    out = shell.out
    assert isinstance(out, io.StringIO)
    start = len(out.getvalue())
    shell.stdin = io.StringIO("".join(f"{answer}\n" for answer in answers))
    assert shell.handle(line)
    assert shell.stdin.read() == "", "not every answer was asked for"
    return out.getvalue()[start:]


def run_cli(args: list[str], stdin: bytes, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """`quorum …` as a subprocess, on this checkout's code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], input=stdin, cwd=cwd,
                          env=env, capture_output=True, timeout=60)


def test_piped_transcript_logs_a_decision_through_the_modal(database_url: str,
                                                            tmp_path: Path) -> None:
    """The newcomer's first session: modal, card, button, list; then the database agrees."""
    script = "\n".join([
        "/decision",                       # the form
        "Serve churn model from batch",    # Title
        r"Features drift\nbetween teams",  # Context (multi-line)
        "",                                # Options considered (skipped)
        "Batch nightly",                   # The decision
        "",                                # Consequences
        "alice, @bob",                     # Deciders
        "accepted",                        # Status
        "", "",                            # Model and version (skipped)
        "press 1",                         # Add details on the card
        "",                                # Title kept
        "-",                               # Context cleared
        "Batch or streaming", "", "Needs a nightly job", "", "", "", "",
        "/decision list",
        "/user bob",
        "/decision show D-1",
        "quit",
        "/decision never reached",
    ]) + "\n"
    result = run_cli(["shell", "--db", database_url, "--channel", "churn-model"],
                     script.encode(), tmp_path)
    out = result.stdout.decode()

    assert result.returncode == 0, result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
    assert "[form] Log a decision" in out
    assert "Status — choose by number or name: 1) proposed   2) accepted   3) rejected" in out
    card = out[out.index("[#churn-model] Quorum:"):]
    assert card.splitlines()[1:5] == ["  D-1 · Serve churn model from batch",
                                      "  ──────────────────────────────────",
                                      "  Status: ✅ accepted", "  Deciders: @alice, @bob"]
    assert "  Features drift\n  between teams" in card
    assert "[1] Add details" in card
    assert "[form] Edit D-1" in out and "Title [Serve churn model from batch]: " in out
    assert "Quorum updated a message:" in out
    updated = out[out.index("Quorum updated a message:"):]
    assert "Needs a nightly job" in updated and "Features drift" not in updated.split("[2]")[0]
    assert "Decisions · churn-model" in out and "D-1 Serve churn model from batch" in out
    assert "bob@#churn-model> /decision show D-1" in out
    assert "never reached" not in out

    settings = load_settings(DATABASE_URL=database_url)
    check = Runtime.from_settings(settings)
    [decision] = decisions(check)
    assert (decision.title, decision.status, decision.context) == (
        "Serve churn model from batch", "accepted", "")
    assert decision.decision == "Batch nightly" and decision.options == "Batch or streaming"
    assert decision.consequences == "Needs a nightly job"
    assert decision.deciders == ["UALICE", "UBOB"] and decision.created_by == "UALICE"
    assert decision.project.name == "churn-model" and decision.team_id == TEAM_ID
    with check.db.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 2
        assert outbox.pending_count(session) == 0
    check.db.dispose()


def test_bad_lines_get_one_line_and_the_session_goes_on(tmp_path: Path) -> None:
    script = b"hello there\n/nope do it\npress 7\npress\n/user not a name\n\xff\xfe\n" \
             b"/decision show D-9\n/decision Still works\n"
    result = run_cli(["shell", "--db", str(tmp_path / "q.db")], script, tmp_path)
    out = result.stdout.decode()
    assert result.returncode == 0 and "Traceback" not in result.stderr.decode()
    assert (tmp_path / "q.db").exists()
    lines = out.splitlines()

    def answer_to(command: str) -> str:
        return lines[lines.index(f"alice@#general> {command}") + 1]

    assert answer_to("hello there").startswith("Not understood: “hello there”.")
    assert answer_to("/nope do it").startswith("Unknown command /nope. Quorum's commands: ")
    assert answer_to("press 7").startswith("There is no button [7] to press")
    assert answer_to("press") == "Say which button: `press 1` presses the button marked [1]."
    assert answer_to("/user not a name").startswith("Usage: /user NAME")
    assert "There is no decision D-9 in this workspace." in out
    assert "Logged D-1." in out and "D-1 · Still works" in out


def test_end_of_input_inside_a_form_exits_cleanly_without_saving(runtime: Runtime) -> None:
    out = io.StringIO()
    shell = Shell(runtime, user="alice", channel="general",
                  stdin=io.StringIO("/decision\nHalf a title"), stdout=out)
    assert shell.run() == 0
    assert "(form closed: end of input)" in out.getvalue()
    assert decisions(runtime) == []


def test_bad_database_or_name_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["shell", "--db", "mysql://nope"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "quorum: configuration error: --db: must be a sqlite:// or postgresql:// URL"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["shell", "--user", "not a name"])
    assert exit_info.value.code == 2
    assert "'not a name' is not a name" in capsys.readouterr().err


def test_modal_fields_are_validated_and_server_errors_asked_again(shell: Shell) -> None:
    """Selects, people, dates and optional fields at prompts; `errors` re-asks the field."""
    submissions: list[dict[str, Any]] = []
    view = {"type": "modal", "callback_id": "probe", "title": {"type": "plain_text",
                                                                 "text": "Probe"},
            "submit": {"type": "plain_text", "text": "Go"}, "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": "Fill *this*"}},
                {"type": "input", "block_id": "level", "label": {"type": "plain_text",
                                                                  "text": "Level"},
                 "element": {"type": "static_select", "action_id": "v", "options": [
                     {"text": {"type": "plain_text", "text": f"L{i}"}, "value": str(i)}
                     for i in (1, 2, 3)]}},
                {"type": "input", "block_id": "owner", "label": {"type": "plain_text",
                                                                  "text": "Owner"},
                 "element": {"type": "users_select", "action_id": "v"}},
                {"type": "input", "block_id": "due", "optional": True,
                 "label": {"type": "plain_text", "text": "Due"},
                 "element": {"type": "datepicker", "action_id": "v"}},
                {"type": "input", "block_id": "note", "optional": True,
                 "label": {"type": "plain_text", "text": "Note"},
                 "element": {"type": "plain_text_input", "action_id": "v", "max_length": 5,
                             "initial_value": "hey"}},
            ]}

    @shell.app.command("/probe")
    def open_probe(ack: Ack, command: dict[str, Any], client: WebClient) -> None:
        ack()
        client.views_open(trigger_id=command["trigger_id"], view=view)

    @shell.app.view("probe")
    def submit_probe(ack: Ack, view: dict[str, Any]) -> None:
        submissions.append(view["state"]["values"])
        if len(submissions) == 1:
            ack(response_action="errors", errors={"owner": "Bob is away; pick someone else."})
        else:
            ack()

    shell.commands["/probe"] = shell.commands["/decision"]
    out = feed(shell, "/probe",
               "9", "L2",                   # a number out of range, then a name
               "",                          # Owner is required
               "bob",
               "tomorrow", "2026-04-01",    # a bad date, then a good one
               "too long", "-",             # over max_length, then cleared
               "carol")                     # Owner asked again after the app's error
    assert "Fill this" in out and "1) L1   2) L2   3) L3" in out
    assert "Choose one of 1 to 3, by number or name." in out
    assert "This field is required." in out
    assert "Give a date like 2026-03-31." in out
    assert "Keep it within 5 characters (this is 8)." in out
    assert "Note (optional) [hey]: " in out
    assert "Owner: Bob is away; pick someone else." in out
    assert "Owner [@bob]: carol" in out and "(Go: sent)" in out
    first, second = submissions
    assert first["level"]["v"]["selected_option"]["value"] == "2"
    assert first["owner"]["v"]["selected_user"] == "UBOB"
    assert first["due"]["v"]["selected_date"] == "2026-04-01"
    assert first["note"]["v"]["value"] is None
    assert second["owner"]["v"]["selected_user"] == "UCAROL"
    assert second["level"] == first["level"]


def test_cancel_closes_the_form_and_ephemeral_pages_can_be_pressed(shell: Shell,
                                                                    runtime: Runtime) -> None:
    out = feed(shell, "/decision", "A title", "/cancel")
    assert "(form closed without saving)" in out and decisions(runtime) == []

    for number in range(1, 13):
        feed(shell, f"/decision Decision number {number}")
    listing = feed(shell, "/decision list")
    assert "Page 1 of 2" in listing and "Decision number 12" in listing
    older = listing.split("Older")[0].rsplit("[", 1)[1].split("]")[0]
    page_two = feed(shell, f"press {older}")
    assert "Quorum updated its reply (only you can see this):" in page_two
    assert "Decision number 1\n" in page_two and "Decision number 12" not in page_two


def test_people_and_channels_switch(shell: Shell, runtime: Runtime) -> None:
    assert "(you are now @bob)" in feed(shell, "/user @bob")
    assert "(you are now in #fraud)" in feed(shell, "/channel #fraud")
    out = feed(shell, "/decision Block risky merchants")
    assert "[#fraud] Quorum:" in out and "Logged by @bob" in out
    [decision] = decisions(runtime)
    assert decision.created_by == "UBOB" and decision.project.channel_id == "CFRAUD"
    home = feed(shell, "home")
    assert "Quorum has no App Home tab yet." in home or "[App Home of @bob]" in home
    help_text = feed(shell, "help")
    assert re.search(r"/decision +Decision records", help_text) and "press N" in help_text


def test_scheduled_posts_reach_the_open_shell(runtime: Runtime, monkeypatch:
                                              pytest.MonkeyPatch) -> None:
    """The scheduler runs while the shell is open: a due job's message is printed."""

    def standup(session: Session, now: datetime) -> None:
        from bot.scheduler import claim_once

        if claim_once(session, "shell-test-standup"):
            outbox.post_message(session, TEAM_ID, "CGENERAL",
                                {"text": "Standup time: *what did you do?*"})

    monkeypatch.setitem(SWEEPS, "shell_test_standup", standup)

    class WaitForTheTick(io.StringIO):
        """Input that ends only once the scheduled message has reached the shell's Slack."""

        def readline(self, *_: Any) -> str:
            eventually(lambda: any("Standup" in m.get("text", "")
                                   for m in shell.slack.messages.values()))
            return ""

    out = io.StringIO()
    shell = Shell(runtime, user="alice", channel="general", stdin=WaitForTheTick(),
                  stdout=out, scheduler_tick=3600)
    assert shell.run() == 0
    assert "[#general] Quorum:\n  Standup time: what did you do?" in out.getvalue()


def test_two_sessions_on_one_database_never_reuse_an_id(database_url: str,
                                                       tmp_path: Path) -> None:
    """`make run` twice: each session's form is saved, its quick-logs too (view and trigger ids
    restarted at 1 in every session, so the second one's were dropped as already acted on),
    and `@dana` is a mention, as Slack sends it for commands with `should_escape` on."""
    first = "\n".join([
        "/decision", "Decided in the first session", "", "", "", "", "", "", "", "",
        "/quorum role add @dana ds",
        "/decision Quick log of the first session",
        "quit"]) + "\n"
    second = "\n".join([
        "/decision", "Decided in the second session", "", "", "", "", "", "", "", "",
        "/decision Quick log of the second session",
        "/quorum role add @Erin eng",
        "/quorum roles",
        "quit"]) + "\n"
    outputs = []
    for script in (first, second):
        result = run_cli(["shell", "--db", database_url, "--channel", "churn-model"],
                         script.encode(), tmp_path)
        assert result.returncode == 0, result.stderr.decode()
        outputs.append(result.stdout.decode())
    assert "@dana now holds ds in this project" in outputs[0]
    assert "@erin now holds eng in this project" in outputs[1]
    roles = outputs[1][outputs[1].index("/quorum roles"):]
    assert "@dana" in roles and "@erin" in roles
    assert "Already done" not in "".join(outputs)
    check = Runtime.from_settings(load_settings(DATABASE_URL=database_url))
    try:
        assert [d.title for d in decisions(check)] == [
            "Decided in the first session", "Quick log of the first session",
            "Decided in the second session", "Quick log of the second session"]
    finally:
        check.db.dispose()


def test_the_shell_escapes_mentions_as_slack_does(shell: Shell, runtime: Runtime) -> None:
    feed(shell, "/channel fraud-model")
    feed(shell, "/channel churn-model")
    escaped = shell._escaped("role add @Dana ds, cc @here and #fraud-model, not #12, a@b.com")
    assert escaped == ("role add <@UDANA|dana> ds, cc <!here> and <#CFRAUDMODEL|fraud-model>, "
                       "not #12, a@b.com")
    assert "@bob now holds pm" in feed(shell, "/quorum role add @bob pm")
