"""`bot.export`: records are streamed to the output as they are read, in every format."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from bot import export as export_module
from bot.database import Database
from bot.export import export
from bot.services.decisions import (
    DecisionDraft,
    as_record,
    edit_decision,
    export_records,
    get_decision,
    log_decision,
    supersede,
)
from bot.services.hypotheses import HypothesisDraft, log_hypothesis
from bot.services.projects import project_for_channel


def seed(db: Database, count: int) -> None:
    with db.session() as session:
        project = project_for_channel(session, "T1", "C0CHURN01", "churn")
        for number in range(1, count + 1):
            log_decision(session, project, "U0ALICE01",
                         DecisionDraft(title=f"Decision {number}", context="Line one\nline two"))


class Recording(io.StringIO):
    """An output that notes, in one journal with the reader, when something is written."""

    def __init__(self, journal: list[str]) -> None:
        super().__init__()
        self.journal = journal

    def write(self, text: str) -> int:
        self.journal.append("write")
        return super().write(text)


@pytest.mark.parametrize("fmt", ["json", "csv", "md"])
def test_export_writes_each_record_before_reading_the_rest(
        db: Database, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    seed(db, 5)
    journal: list[str] = []
    read, template = export_module.REGISTERS["decisions"]

    def journaled(session: Any) -> Iterator[dict[str, Any]]:
        for record in read(session):
            journal.append(f"read {record['ref']}")
            yield record

    monkeypatch.setitem(export_module.REGISTERS, "decisions", (journaled, template))
    out = Recording(journal)
    with db.session() as session:
        assert export(session, "decisions", fmt, out) == 5
    # Output of the first records reached `out` before the last record was even read.
    assert "write" in journal[:journal.index("read D-5")]
    assert journal.count("read D-5") == 1 and out.getvalue().count("Decision 5") == 1


def test_streamed_json_is_one_list_with_a_record_a_line(db: Database) -> None:
    with db.session() as session:
        out = io.StringIO()
        assert export(session, "decisions", "json", out) == 0
        assert out.getvalue() == "[]\n"
    seed(db, 3)
    with db.session() as session:
        supersede(session, log_decision(session, project_for_channel(session, "T1", "C0CHURN01"),
                                        "U0BOB0001", DecisionDraft(title="Old way")),
                  "U0BOB0001", "New way")
    with db.session() as session:
        out = io.StringIO()
        assert export(session, "decisions", "json", out) == 5
    records = json.loads(out.getvalue())
    lines = out.getvalue().splitlines()
    assert (lines[0], lines[-1], len(lines)) == ("[", "]", 7)  # one record a line
    assert [json.loads(line.rstrip(",")) for line in lines[1:-1]] == records
    assert [r["ref"] for r in records] == ["D-1", "D-2", "D-3", "D-4", "D-5"]
    assert records[0]["context"] == "Line one\nline two"
    assert (records[3]["superseded_by"], records[4]["supersedes"]) == ("D-5", "D-4")


def test_csv_columns_come_from_the_first_record_and_empty_registers_write_nothing(
        db: Database) -> None:
    with db.session() as session:
        out = io.StringIO()
        assert export(session, "decisions", "csv", out) == 0
        assert out.getvalue() == ""
    seed(db, 2)
    with db.session() as session:
        out = io.StringIO()
        export(session, "decisions", "csv", out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(row["ref"], row["title"], row["deciders"]) for row in rows] == [
        ("D-1", "Decision 1", "[]"), ("D-2", "Decision 2", "[]")]


def test_exported_decisions_have_the_shape_of_as_record_links_included(db: Database) -> None:
    seed(db, 2)
    with db.session() as session:
        project = project_for_channel(session, "T1", "C0CHURN01")
        hypothesis = log_hypothesis(session, project, "U0BOB0001",
                                    HypothesisDraft("Tenure lifts recall"))
        first = get_decision(session, "T1", "D-1")
        supersede(session, first, "U0BOB0001", "Use LightGBM")
        edit_decision(session, get_decision(session, "T1", "D-2"), "U0BOB0001", DecisionDraft(
            title="Decision 2", deciders=["U0BOB0001"], hypotheses=[hypothesis.ref]))
    with db.session() as session:
        expected = [as_record(get_decision(session, "T1", f"D-{n}")) for n in (1, 2, 3)]
        exported = list(export_records(session))
    assert exported == expected
    assert [(r["supersedes"], r["superseded_by"], r["hypotheses"]) for r in exported] == [
        (None, "D-3", []), (None, None, ["H-1"]), ("D-1", None, [])]
