"""The hypothesis log's domain: rules, listings, decision links, exports, templates, schema."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.cli import main as cli
from bot.commands import Command, Subcommand, UsageError
from bot.database import Database
from bot.errors import Conflict, InvalidInput, NotFound
from bot.export import export
from bot.models import AuditEvent, Hypothesis, Project
from bot.render import renderer
from bot.services import decisions as decision_service
from bot.services import hypotheses as service
from bot.services.audit import changed_fields, history
from bot.services.projects import project_for_channel
from handlers import decisions as decision_handlers
from handlers import hypotheses as handlers

TEAM = "T0TEAM001"
HOSTILE = "<!channel> & <@U0BOB0001> <https://evil.example|click> \"quoted\" \\ *bold* " + "é" * 3


def project(session: Session, channel: str = "C0CHURN01") -> Project:
    return project_for_channel(session, TEAM, channel, channel.lower())


def log(session: Session, statement: str, channel: str = "C0CHURN01",
        **fields: Any) -> Hypothesis:
    return service.log_hypothesis(session, project(session, channel), "U0ALICE01",
                                  service.HypothesisDraft(statement=statement, **fields))


def concluded(session: Session, statement: str, outcome: str = "refuted",
              channel: str = "C0CHURN01") -> Hypothesis:
    hypothesis = log(session, statement, channel)
    service.start_hypothesis(session, hypothesis, "U0ALICE01")
    return service.conclude_hypothesis(session, hypothesis, "U0BOB0001", outcome, "Evidence")


# ---------------------------------------------------------------- the command parser


def test_optional_group_led_by_a_placeholder_is_taken_when_text_remains() -> None:
    command = Command("/x", "x", [
        Subcommand("list [<status:open|closed>]", "list"),
        Subcommand("conclude <ref:H-n> [<outcome:yes|no> <evidence:text>]", "conclude"),
        Subcommand("request <milestone:word> [for <model:word>]", "request"),
    ])
    assert command.parse("list").args == {}
    assert command.parse("list Closed").args == {"status": "closed"}
    assert command.parse("conclude h-3").args == {"ref": "H-3"}
    assert command.parse("conclude H-3 yes it did work").args == {
        "ref": "H-3", "outcome": "yes", "evidence": "it did work"}
    assert command.parse("request data for churn").args == {"milestone": "data",
                                                            "model": "churn"}
    assert command.parse("request data").args == {"milestone": "data"}
    for text, words in (("list someday", "`someday` must be one of open, closed"),
                        ("conclude H-3 maybe", "`maybe` must be one of yes, no"),
                        ("conclude H-3 yes", "<evidence> is missing"),
                        ("request data with churn", "Unexpected `with churn`")):
        with pytest.raises(UsageError) as error:
            command.parse(text)
        assert words in error.value.message
    assert "`/x list [<open|closed>]` — list" in command.usage()


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("url", [
    "https://mlflow.example.com/#/experiments/4/runs/0a1b2c",
    "http://10.0.0.5:5000/runs/1?x=1&y=2", "HTTPS://Example.com",
])
def test_http_urls_are_accepted(url: str) -> None:
    assert service.clean_url(f"  {url} ") == url


@pytest.mark.parametrize("url", [
    "ftp://example.com/x", "example.com/run", "https://", "https:///path", "mailto:a@b.c",
    "javascript:alert(1)", "https://exa mple.com", "https://example.com/<x>",
    "https://example.com/a|b", "http://[::1", "https://example.com/" + "a" * 3000,
])
def test_other_links_are_refused_on_the_field(url: str) -> None:
    with pytest.raises(InvalidInput) as error:
        service.clean_url(url)
    assert error.value.field == "experiment_url" and "http(s) URL" in error.value.message


def test_conclusion_needs_a_known_outcome_and_evidence() -> None:
    assert service.clean_conclusion("Refuted", " no lift ") == ("refuted", "no lift")
    for outcome, evidence, field in ((None, "x", "outcome"), ("maybe", "x", "outcome"),
                                     ("proposed", "x", "outcome"), ("running", "x", "outcome"),
                                     ("supported", " ", "evidence"),
                                     ("supported", "e" * 3001, "evidence")):
        with pytest.raises(InvalidInput) as error:
            service.clean_conclusion(outcome, evidence)
        assert error.value.field == field


# ---------------------------------------------------------------- lifecycle and citations


def test_lifecycle_and_every_refusal_leave_the_record_unchanged(db: Database) -> None:
    with db.session() as session:
        hypothesis = log(session, "Tenure lifts recall")
        with pytest.raises(Conflict, match="has not started"):
            service.conclude_hypothesis(session, hypothesis, "U1", "supported", "yes")
        service.start_hypothesis(session, hypothesis, "U1")
        with pytest.raises(Conflict, match="already running since"):
            service.start_hypothesis(session, hypothesis, "U1")
        service.edit_hypothesis(session, hypothesis, "U1",
                                service.HypothesisDraft(statement="Tenure lifts recall",
                                                        metric="Recall@P80"))
        service.conclude_hypothesis(session, hypothesis, "U2", "supported", "+3 points")
        snapshot = service.as_record(hypothesis)
        with pytest.raises(Conflict, match="cannot be concluded twice"):
            service.conclude_hypothesis(session, hypothesis, "U1", "refuted", "no")
        with pytest.raises(Conflict, match="cannot be started again"):
            service.start_hypothesis(session, hypothesis, "U1")
        with pytest.raises(Conflict, match="can no longer change"):
            service.edit_hypothesis(session, hypothesis, "U1",
                                    service.HypothesisDraft(statement="Rewritten"))
        assert service.as_record(hypothesis) == snapshot
        actions = [event.action for event in history(session, hypothesis)]
        assert actions == ["hypothesis.created", "hypothesis.started", "hypothesis.edited",
                           "hypothesis.concluded"]
        concluded_event = history(session, hypothesis)[-1]
        assert changed_fields(concluded_event.before, concluded_event.after) == [
            "concluded_at", "concluded_by", "evidence", "status"]
        assert concluded_event.before["status"] == "running"
        assert concluded_event.after["evidence"] == "+3 points"


def test_only_a_concluded_hypothesis_of_the_same_channel_can_be_cited(db: Database) -> None:
    with db.session() as session:
        running = log(session, "Running")
        service.start_hypothesis(session, running, "U1")
        proposed = log(session, "Proposed")
        done = concluded(session, "Done")
        elsewhere = concluded(session, "Elsewhere", channel="C0FRAUD01")
        here = project(session)
        for cited, error, words in ((running, Conflict, "still running"),
                                    (proposed, Conflict, "still proposed"),
                                    (elsewhere, InvalidInput, "another channel")):
            with pytest.raises(error, match=words) as raised:
                service.log_hypothesis(session, here, "U1", service.HypothesisDraft("Again"),
                                       cites=cited)
            assert raised.value.field == "cites"
        with pytest.raises(InvalidInput, match="no hypothesis H-99"):
            service.get_cited(session, here, "H-99")
        count = session.scalar(select(func.count()).select_from(Hypothesis))

        again = service.log_hypothesis(session, here, "U1", service.HypothesisDraft("Again"),
                                       cites=service.get_cited(session, here, done.ref))
        third = service.log_hypothesis(session, here, "U1", service.HypothesisDraft("Third"),
                                       cites=done)
        assert session.scalar(select(func.count()).select_from(Hypothesis)) == count + 2
        assert [h.ref for h in done.reopened_by] == [again.ref, third.ref]
        assert again.cites is done and done.status == "refuted"
        reopened = [e for e in history(session, done) if e.action == "hypothesis.reopened"]
        assert [e.after["reopened_by"] for e in reopened] == [[again.ref],
                                                              [again.ref, third.ref]]
        assert reopened[0].before["reopened_by"] == []


def test_foreign_and_unknown_references_are_not_found(db: Database) -> None:
    with db.session() as session:
        hypothesis = log(session, "Ours")
        assert service.get_hypothesis(session, TEAM, "h-1") is hypothesis
        with pytest.raises(NotFound, match="no hypothesis H-1 in this workspace"):
            service.get_hypothesis(session, "T0OTHER01", "H-1")
        with pytest.raises(NotFound):
            service.get_by_id(session, hypothesis.id, "T0OTHER01")
        with pytest.raises(InvalidInput, match="not a hypothesis reference"):
            service.get_hypothesis(session, TEAM, "D-1")


# ---------------------------------------------------------------- listings and form options


def test_long_lists_stay_within_slack_limits(db: Database) -> None:
    with db.session() as session:
        for number in range(1, 61):
            log(session, f"Idea {number}")
        for number in (1, 2, 3):
            service.start_hypothesis(
                session, service.get_hypothesis(session, TEAM, f"H-{number}"), "U1")
        here = project(session)
        groups = service.list_hypotheses(session, here)
        assert [(g.status, g.total, len(g.items)) for g in groups] == [
            ("proposed", 57, 7), ("running", 3, 3), ("supported", 0, 0), ("refuted", 0, 0),
            ("inconclusive", 0, 0)]
        assert groups[0].items[0].ref == "H-60"
        message = renderer.message("hypothesis/list", project=here, groups=groups, status=None)
        assert len(message["blocks"]) <= 50 and "50 older" in json.dumps(message["blocks"])
        groups = service.list_hypotheses(session, here, "proposed")
        message = renderer.message("hypothesis/list", project=here, groups=groups,
                                   status="proposed")
        assert len(message["blocks"]) <= 50 and "17 older" in json.dumps(message["blocks"])
        with pytest.raises(InvalidInput):
            service.list_hypotheses(session, here, "someday")


def test_decision_form_options_are_capped_newest_first_keeping_cited_ones(db: Database) -> None:
    with db.session() as session:
        assert service.choices_for_decision(session, TEAM, "C0CHURN01") == []
        for number in range(1, 106):
            log(session, f"Idea {number}")
        log(session, "Other channel", channel="C0FRAUD01")
        choices = service.choices_for_decision(session, TEAM, "C0CHURN01")
        assert len(choices) == 100 and choices[0].ref == "H-105" and choices[-1].ref == "H-6"
        view = decision_handlers.modal(channel="C0CHURN01", hypotheses=choices)
        options = _block(view, "hypotheses")["element"]["options"]
        assert [o["value"] for o in options] == [h.ref for h in choices]
        View(**view).validate_json()

        decision = decision_service.log_decision(
            session, project(session), "U1",
            decision_service.DecisionDraft(title="Ship", hypotheses=["H-1", "H-104", "H-1"]))
        assert [h.ref for h in decision.hypotheses] == ["H-1", "H-104"]
        choices = service.choices_for_decision(session, TEAM, "C0CHURN01",
                                               cited=decision.hypotheses)
        refs = [h.ref for h in choices]
        assert len(refs) == 100 and refs[0] == "H-105" and refs[-1] == "H-1" and "H-6" not in refs
        view = decision_handlers.modal(channel="C0CHURN01", decision=decision,
                                       hypotheses=choices)
        element = _block(view, "hypotheses")["element"]
        assert [o["value"] for o in element["initial_options"]] == ["H-104", "H-1"]
        View(**view).validate_json()


def test_decisions_are_based_only_on_their_own_channels_hypotheses(db: Database) -> None:
    with db.session() as session:
        log(session, "Churn idea")
        log(session, "Fraud idea", channel="C0FRAUD01")
        here = project(session)
        for refs, words in ((["H-2"], "another channel"), (["H-7"], "no hypothesis H-7"),
                            (["D-1"], "not a hypothesis reference")):
            with pytest.raises(InvalidInput, match=words) as error:
                decision_service.log_decision(session, here, "U1", decision_service.DecisionDraft(
                    title="Forged", hypotheses=refs))
            assert error.value.field == "hypotheses"
        decision = decision_service.log_decision(
            session, here, "U1", decision_service.DecisionDraft(title="Real", hypotheses=[]))
        with pytest.raises(InvalidInput, match="another channel"):
            decision_service.edit_decision(session, decision, "U1", decision_service.DecisionDraft(
                title="Real", hypotheses=["H-2"]))
        # Edits that do not mention hypotheses (None) leave the links alone.
        decision_service.edit_decision(session, decision, "U1", decision_service.DecisionDraft(
            title="Real", hypotheses=["H-1"]))
        decision_service.edit_decision(session, decision, "U1",
                                       decision_service.DecisionDraft(title="Real, renamed"))
        assert [h.ref for h in decision.hypotheses] == ["H-1"]
        assert decision_service.as_record(decision)["hypotheses"] == ["H-1"]


# ---------------------------------------------------------------- exports


def _fill(db: Database) -> None:
    with db.session() as session:
        first = log(session, "Tenure lifts recall", metric="Recall@P80",
                    expected_effect="+3 points", owner="U0BOB0001",
                    experiment_url="https://mlflow.example.com/#/runs/1", notes="March data")
        service.start_hypothesis(session, first, "U0ALICE01")
        service.conclude_hypothesis(session, first, "U0BOB0001", "refuted", "No lift, 0.1 pts")
        service.log_hypothesis(session, project(session), "U0ALICE01",
                               service.HypothesisDraft("Tenure lifts recall, fixed data"),
                               cites=first)
        decision_service.log_decision(session, project(session), "U0ALICE01",
                                      decision_service.DecisionDraft(
                                          title="Keep the current features",
                                          hypotheses=["H-1"]))


def test_export_hypotheses_json_csv_and_markdown(db: Database) -> None:
    _fill(db)
    with db.session() as session:
        out = io.StringIO()
        assert export(session, "hypotheses", "json", out) == 2
        first, second = json.loads(out.getvalue())
        assert {key: first[key] for key in (
            "ref", "project", "status", "statement", "metric", "expected_effect", "owner",
            "experiment_url", "notes", "evidence", "concluded_by", "cites", "reopened_by",
            "decisions", "created_by")} == {
            "ref": "H-1", "project": "c0churn01", "status": "refuted",
            "statement": "Tenure lifts recall", "metric": "Recall@P80",
            "expected_effect": "+3 points", "owner": "U0BOB0001",
            "experiment_url": "https://mlflow.example.com/#/runs/1", "notes": "March data",
            "evidence": "No lift, 0.1 pts", "concluded_by": "U0BOB0001", "cites": None,
            "reopened_by": ["H-2"], "decisions": ["D-1"], "created_by": "U0ALICE01"}
        assert first["created_at"] and first["concluded_at"] and first["started_at"]
        assert [(h["action"], h["by"]) for h in first["history"]] == [
            ("created", "U0ALICE01"), ("started", "U0ALICE01"), ("concluded", "U0BOB0001"),
            ("reopened", "U0ALICE01")]
        assert second["cites"] == "H-1" and second["status"] == "proposed"

        out = io.StringIO()
        export(session, "hypotheses", "csv", out)
        rows = list(csv.DictReader(io.StringIO(out.getvalue())))
        assert [row["ref"] for row in rows] == ["H-1", "H-2"]
        assert json.loads(rows[0]["decisions"]) == ["D-1"]

        out = io.StringIO()
        export(session, "hypotheses", "md", out)
        markdown = out.getvalue()
        assert "## H-1. Tenure lifts recall" in markdown
        assert "* Status: refuted (concluded" in markdown and "No lift, 0.1 pts" in markdown
        assert "* Reopened by: H-2" in markdown and "* Reopens: H-1" in markdown
        assert "* Decisions based on it: D-1" in markdown

        out = io.StringIO()
        export(session, "decisions", "json", out)
        assert json.loads(out.getvalue())[0]["hypotheses"] == ["H-1"]
        out = io.StringIO()
        export(session, "decisions", "md", out)
        links = out.getvalue().split("## Links")[1]
        assert "* Based on hypothesis H-1" in links and "* None" not in links


def test_cli_exports_hypotheses(db: Database, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    _fill(db)
    monkeypatch.setenv("DATABASE_URL", db.url)
    assert cli(["export", "hypotheses", "--format", "json"]) == 0
    assert [h["ref"] for h in json.loads(capsys.readouterr().out)] == ["H-1", "H-2"]


def test_every_change_is_audited(db: Database) -> None:
    _fill(db)
    with db.session() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.entity_type == "hypotheses")
                                 .order_by(AuditEvent.id)).all()
        assert [(e.entity_ref, e.action) for e in events] == [
            ("H-1", "hypothesis.created"), ("H-1", "hypothesis.started"),
            ("H-1", "hypothesis.concluded"), ("H-2", "hypothesis.created"),
            ("H-1", "hypothesis.reopened")]


# ---------------------------------------------------------------- templates are valid Block Kit


def _block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


def _valid_message(message: dict[str, Any]) -> None:
    assert message["text"] and len(message["blocks"]) <= 50
    for raw in message["blocks"]:
        Block.parse(raw).validate_json()  # type: ignore[union-attr]
    text = json.dumps([b for b in message["blocks"] if b["type"] != "header"])
    assert "<!channel>" not in text and "<https://evil" not in text and "<@U0BOB0001>" not in text


def test_every_template_is_valid_block_kit_with_hostile_input(db: Database) -> None:
    long_text = (HOSTILE + " ") * 120  # well over every Slack text limit
    with db.session() as session:
        here = project(session)
        draft = service.HypothesisDraft(
            statement=(HOSTILE * 10)[:300], metric=long_text[:3000],
            expected_effect=long_text[:3000], owner="U0ALICE01",
            experiment_url="https://mlflow.example.com/#/runs/1?a=1&b=2",
            notes=long_text[:3000])
        old = service.log_hypothesis(session, here, "U0ALICE01", draft)
        service.start_hypothesis(session, old, "U0ALICE01")
        _valid_message(service.render_card(old))
        service.conclude_hypothesis(session, old, "U0ALICE01", "supported", long_text[:3000])
        new = service.log_hypothesis(session, here, "U0ALICE01", draft, cites=old)
        decision = decision_service.log_decision(
            session, here, "U0ALICE01",
            decision_service.DecisionDraft(title=HOSTILE[:150], hypotheses=[old.ref, new.ref]))
        events = history(session, old)
        changes = {e.id: changed_fields(e.before, e.after) for e in events}
        for message in (
            service.render_card(old), service.render_card(new),
            renderer.message("hypothesis/concluded", h=old),
            renderer.message("hypothesis/reopened", h=old, new=new, actor="U0ALICE01"),
            renderer.message("hypothesis/show", h=old, history=events, changes=changes),
            renderer.message("hypothesis/show", h=new, history=[], changes={}),
            renderer.message("hypothesis/list", project=here,
                             groups=service.list_hypotheses(session, here), status=None),
            renderer.message("hypothesis/list", project=here, groups=[], status="running"),
            decision_service.render_card(decision),
            renderer.message("decision/show", d=decision, history=[], changes={}),
        ):
            _valid_message(message)
        assert "<https://mlflow.example.com/#/runs/1?a=1&amp;b=2|experiment run>" in json.dumps(
            service.render_card(old)["blocks"])
        choices = service.reopen_choices(session, TEAM, here.channel_id)
        for view in (
            handlers.modal(channel=here.channel_id, owner="U0ALICE01", reopen_choices=choices),
            handlers.modal(channel=here.channel_id, hypothesis=new),
            handlers.modal(channel=here.channel_id, cites=old, reopen_choices=choices),
            handlers.conclude_modal(new),
            decision_handlers.modal(channel=here.channel_id, decision=decision,
                                    hypotheses=service.choices_for_decision(
                                        session, TEAM, here.channel_id, decision.hypotheses)),
        ):
            View(**view).validate_json()
        reopen = handlers.modal(channel=here.channel_id, cites=old, reopen_choices=choices)
        assert _block(reopen, "cites")["element"]["initial_option"] == \
            _block(reopen, "cites")["element"]["options"][0]
