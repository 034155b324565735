"""The risk register's domain: bands, validation, scoring history, audit, outbox and export."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.database import Database
from bot.errors import Conflict, InvalidInput, NotFound
from bot.export import export
from bot.models import AuditEvent, OutboxMessage, Project, Risk
from bot.services import risks as service
from bot.services.projects import project_for_channel

NOW = datetime(2031, 6, 10, 12, 0, tzinfo=UTC)
TODAY = NOW.date()


@pytest.mark.parametrize(("score", "band"), [
    (1, "low"), (4, "low"), (5, "medium"), (9, "medium"), (10, "high"), (15, "high"),
    (16, "critical"), (25, "critical"),
])
def test_bands_at_their_edges(score: int, band: str) -> None:
    assert service.band_for(score) == band


@pytest.mark.parametrize("score", [0, 26, -3])
def test_scores_outside_the_grid_have_no_band(score: int) -> None:
    with pytest.raises(ValueError, match="1 to 25"):
        service.band_for(score)


def test_every_cell_of_the_grid_has_the_band_of_its_product() -> None:
    cells: dict[str, list[tuple[int, int]]] = {"low": [], "medium": [], "high": [],
                                               "critical": []}
    for likelihood in range(1, 6):
        for impact in range(1, 6):
            cells[service.band_for(likelihood * impact)].append((likelihood, impact))
    assert {band: len(found) for band, found in cells.items()} == \
        {"low": 8, "medium": 7, "high": 6, "critical": 4}
    assert cells["critical"] == [(4, 4), (4, 5), (5, 4), (5, 5)]


@pytest.mark.parametrize(("raw", "value"), [("1", 1), (" 5 ", 5), (3, 3)])
def test_ratings_accept_whole_numbers_from_one_to_five(raw: object, value: int) -> None:
    assert service.rating(raw, "impact") == value


@pytest.mark.parametrize("raw", ["0", "6", "2.5", "high", "٣", "-1", "1e1", "99999999"])
def test_ratings_refuse_anything_else(raw: str) -> None:
    with pytest.raises(InvalidInput, match="must be a number from 1 to 5") as caught:
        service.rating(raw, "impact")
    assert caught.value.field == "impact"


@pytest.mark.parametrize("raw", [None, "", "  "])
def test_a_missing_rating_asks_for_one(raw: object) -> None:
    with pytest.raises(InvalidInput, match="Choose the likelihood"):
        service.rating(raw, "likelihood")


@pytest.mark.parametrize(("changes", "field"), [
    ({"title": " \n "}, "title"),
    ({"title": "t" * 151}, "title"),
    ({"category": "weather"}, "category"),
    ({"treatment": "ignore"}, "treatment"),
    ({"status": "closed"}, "status"),
    ({"description": "d" * 3001}, "description"),
    ({"likelihood": "7", "impact": "2"}, "likelihood"),
    ({"likelihood": "2", "impact": ""}, "impact"),
    ({"next_review": "next week"}, "next_review"),
    ({"next_review": TODAY - timedelta(days=1)}, "next_review"),
])
def test_drafts_name_the_field_that_is_wrong(changes: dict[str, object], field: str) -> None:
    draft = service.RiskDraft(**{"title": "Data drift", **changes})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput) as caught:
        draft.validated(TODAY)
    assert caught.value.field == field


def test_review_dates_today_or_later_or_unchanged_are_accepted() -> None:
    draft = service.RiskDraft(title="  Data   drift ", next_review=TODAY.isoformat())
    assert draft.validated(TODAY).next_review == TODAY
    assert draft.validated(TODAY).title == "Data drift"
    overdue = TODAY - timedelta(days=5)
    kept = service.RiskDraft(title="x", next_review=overdue).validated(TODAY, overdue)
    assert kept.next_review == overdue
    assert service.RiskDraft(title="x").validated(TODAY).next_review is None


def test_time_zone_falls_back_to_the_default_then_utc() -> None:
    project = Project(team_id="T", channel_id="C", name="p", timezone="Mars/Olympus")
    assert service.zone_of(project, "Europe/Paris").key == "Europe/Paris"
    assert service.zone_of(project, "Nowhere/Else").key == "UTC"
    project.timezone = "Pacific/Auckland"
    assert service.local_today(project, "UTC", datetime(2031, 6, 10, 13, 0, tzinfo=UTC)) == \
        date(2031, 6, 11)


def test_default_timezone_reads_quorum_timezone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUORUM_TIMEZONE", "Asia/Kolkata")
    assert service.default_timezone() == "Asia/Kolkata"
    monkeypatch.setenv("QUORUM_TIMEZONE", "Not/AZone")
    assert service.default_timezone() == "UTC"
    monkeypatch.delenv("QUORUM_TIMEZONE")
    assert service.default_timezone() == "UTC"


# --- with a database -----------------------------------------------------------------------


def _project(session: Session, channel: str = "C0CHURN01") -> Project:
    return project_for_channel(session, "T1", channel, "churn-model")


def _queued(session: Session) -> list[OutboxMessage]:
    return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_logging_scores_audits_and_queues_the_card(db: Database) -> None:
    with db.session() as session:
        logged = service.log_risk(session, _project(session), "U1", service.RiskDraft(
            title="Leakage", likelihood=2, impact=3, owner="U2"), now=NOW)
        assert (logged.ref, logged.score, logged.band) == ("R-1", 6, "medium")
        assert logged.next_review == TODAY + timedelta(days=14)
        [card] = _queued(session)
        assert card.message_key == f"risk:{logged.id}:card" and card.method == "chat.postMessage"
        [event] = session.scalars(select(AuditEvent)).all()
        assert (event.action, event.entity_type, event.entity_ref) == \
            ("risk.created", "risks", "R-1")
        assert event.after["score"] == 6 and event.after["owner"] == "U2"


def test_entering_the_critical_band_is_announced_once(db: Database) -> None:
    with db.session() as session:
        risk = service.log_risk(session, _project(session), "U1",
                                service.RiskDraft(title="Outage", likelihood=4, impact=4),
                                now=NOW)
        announced = [m for m in _queued(session) if m.message_key is None]
        assert len(announced) == 1 and "is now critical" in announced[0].payload["text"]
        service.reassess(session, risk, "U1", 5, 5, now=NOW)  # stays critical: no alarm
        service.reassess(session, risk, "U1", 3, 5, now=NOW)  # high
        service.reassess(session, risk, "U1", 4, 4, "back up", now=NOW)  # enters again
        alarms = [m for m in _queued(session) if "is now critical" in m.payload["text"]]
        assert len(alarms) == 2
        assert [(a.score, a.note) for a in risk.assessments] == [
            (16, ""), (25, ""), (15, ""), (16, "back up")]


def test_reassessment_moves_the_review_and_is_audited_with_before_and_after(
        db: Database) -> None:
    with db.session() as session:
        risk = service.log_risk(session, _project(session), "U1", service.RiskDraft(title="x"),
                                now=NOW)
        risk.next_review = TODAY - timedelta(days=3)
        service.reassess(session, risk, "U2", "2", "4", "fine", now=NOW)
        assert risk.next_review == TODAY + timedelta(days=14)
        far = TODAY + timedelta(days=60)
        risk.next_review = far
        service.reassess(session, risk, "U2", 2, 4, now=NOW)
        assert risk.next_review == far  # an assessment never brings a planned review forward
        service.reassess(session, risk, "U2", 2, 4, next_review=TODAY.isoformat(), now=NOW)
        assert risk.next_review == TODAY
        event = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "risk.reassessed").order_by(AuditEvent.id)).first()
        assert (event.before["score"], event.after["score"]) == (9, 8)
        with pytest.raises(InvalidInput, match="in the past"):
            service.reassess(session, risk, "U2", 2, 4, next_review=TODAY - timedelta(days=1),
                             now=NOW)


def test_bad_values_are_refused_before_anything_is_written(db: Database) -> None:
    with db.session() as session:
        risk = service.log_risk(session, _project(session), "U1", service.RiskDraft(title="x"),
                                now=NOW)
    for attempt in (
        lambda s, r: service.reassess(s, r, "U1", 0, 3, now=NOW),
        lambda s, r: service.reassess(s, r, "U1", 3, "many", now=NOW),
        lambda s, r: service.reassess(s, r, "U1", 3, 3, "n" * 1001, now=NOW),
        lambda s, r: service.close_risk(s, r, "U1", "  "),
        lambda s, r: service.edit_risk(s, r, "U1", service.RiskDraft(
            title="x", next_review=TODAY - timedelta(days=1)), now=NOW),
    ):
        with pytest.raises(InvalidInput), db.session() as session:
            attempt(session, session.get(Risk, risk.id))
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 1
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
        assert len(session.get(Risk, risk.id).assessments) == 1


def test_a_closed_risk_stays_as_it_was_closed(db: Database) -> None:
    with db.session() as session:
        risk = service.log_risk(session, _project(session), "U1", service.RiskDraft(title="x"),
                                now=NOW)
        service.close_risk(session, risk, "U2", "Gone", now=NOW)
        assert (risk.status, risk.closed_by, risk.closed_at) == ("closed", "U2", NOW)
        with pytest.raises(Conflict, match="already closed"):
            service.close_risk(session, risk, "U2", "Again")
        with pytest.raises(Conflict, match="no longer be re-assessed"):
            service.reassess(session, risk, "U2", 1, 1)
        with pytest.raises(Conflict, match="no longer be edited"):
            service.edit_risk(session, risk, "U2", service.RiskDraft(title="y"))
        actions = list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
        assert actions == ["risk.created", "risk.closed"]


def test_editing_without_changes_writes_nothing(db: Database) -> None:
    with db.session() as session:
        risk = service.log_risk(session, _project(session), "U1", service.RiskDraft(
            title="x", owner="U1"), now=NOW)
        service.edit_risk(session, risk, "U1", service.RiskDraft(title=" x ", owner="U1"),
                          now=NOW)
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 1
        service.edit_risk(session, risk, "U1", service.RiskDraft(
            title="x", owner="U1", status="monitoring"), now=NOW)
        assert risk.status == "monitoring" and risk.score == 9
        assert len(_queued(session)) == 2


def test_references_are_per_workspace_and_unknown_ones_are_refused(db: Database) -> None:
    with db.session() as session:
        service.log_risk(session, _project(session), "U1", service.RiskDraft(title="a"), now=NOW)
        other = project_for_channel(session, "T2", "C0OTHER01")
        service.log_risk(session, other, "U1", service.RiskDraft(title="b"), now=NOW)
        assert service.get_risk(session, "T2", "r-1").title == "b"
        with pytest.raises(NotFound, match="no risk R-2"):
            service.get_risk(session, "T1", "R-2")
        with pytest.raises(InvalidInput, match="not a risk reference"):
            service.get_risk(session, "T1", "D-1")


def test_heat_map_counts_only_open_risks_of_the_project(db: Database) -> None:
    with db.session() as session:
        project = _project(session)
        for likelihood, impact in [(5, 5), (5, 5), (1, 2), (1, 2), (1, 2), (3, 4)]:
            service.log_risk(session, project, "U1", service.RiskDraft(
                title="r", likelihood=likelihood, impact=impact), now=NOW)
        closed = service.log_risk(session, project, "U1", service.RiskDraft(
            title="c", likelihood=5, impact=5), now=NOW)
        service.close_risk(session, closed, "U1", "done")
        service.log_risk(session, _project(session, "C0OTHER01"), "U1", service.RiskDraft(
            title="o", likelihood=5, impact=5), now=NOW)
        heat = service.heat_map(session, project)
        by_cell = {(c.likelihood, c.impact): c.count for row in heat.rows for c in row}
        assert by_cell[(5, 5)] == 2 and by_cell[(1, 2)] == 3 and by_cell[(3, 4)] == 1
        assert heat.total == 6 == sum(by_cell.values()) and heat.widest == 3
        assert [row[0].likelihood for row in heat.rows] == [5, 4, 3, 2, 1]
        assert [c.score for c in heat.hottest] == [25, 12, 2]
        assert [r.number for r in heat.hottest[0].risks] == [1, 2]


def test_export_has_plain_fields_and_the_score_history(db: Database) -> None:
    with db.session() as session:
        risk = service.log_risk(session, _project(session), "U1", service.RiskDraft(
            title="Label | leakage", description="desc", category="data", owner="U2",
            mitigation="plan"), now=NOW)
        service.reassess(session, risk, "U2", 4, 5, "worse | much\nworse", now=NOW)
        service.close_risk(session, risk, "U2", "fixed", now=NOW)
    with db.session() as session:
        out = io.StringIO()
        assert export(session, "risks", "json", out) == 1
        [record] = json.loads(out.getvalue())
        for name in ("ref", "project", "status", "created_at", "created_by", "title",
                     "description", "category", "likelihood", "impact", "score", "band",
                     "owner", "treatment", "mitigation", "next_review", "closed_reason",
                     "history"):
            assert name in record, name
        assert (record["ref"], record["project"], record["status"]) == \
            ("R-1", "churn-model", "closed")
        assert (record["score"], record["band"], record["closed_reason"]) == \
            (20, "critical", "fixed")
        assert [(h["score"], h["band"], h["by"], h["at"]) for h in record["history"]] == [
            (9, "medium", "U1", NOW.isoformat()), (20, "critical", "U2", NOW.isoformat())]
        assert record["history"][1]["note"] == "worse | much\nworse"

        out = io.StringIO()
        export(session, "risks", "csv", out)
        [row] = list(csv.DictReader(io.StringIO(out.getvalue())))
        assert row["ref"] == "R-1" and row["score"] == "20"
        assert json.loads(row["history"])[1]["likelihood"] == 4

        out = io.StringIO()
        export(session, "risks", "md", out)
        markdown = out.getvalue()
        assert "## R-1. Label \\| leakage" in markdown  # a `|` of the text shown as typed
        assert "* Score: 20 (critical) = likelihood 4 \N{MULTIPLICATION SIGN} impact 5" in markdown
        assert "| worse \\| much worse |" in markdown
        assert "* Closed: 2031-06-10 by U2: fixed" in markdown
        assert "| 2031-06-10 12:00 | 4 | 5 | 20 | critical | U2 |" in markdown


def test_cli_exports_risks(db: Database, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    with db.session() as session:
        service.log_risk(session, _project(session), "U1", service.RiskDraft(title="a"), now=NOW)
    monkeypatch.setenv("DATABASE_URL", db.url)
    assert main(["export", "risks", "--format", "json"]) == 0
    [record] = json.loads(capsys.readouterr().out)
    assert record["ref"] == "R-1" and record["history"][0]["score"] == 9
