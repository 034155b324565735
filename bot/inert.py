"""User text made inert in exports: no formulas in spreadsheets, no markup in Markdown viewers.

The registers keep text as typed; these only change how it is written out. `spreadsheet_cell`
is the CSV writer's, `markdown_records` the `.md.j2` templates' (the `markdown_inert` filter).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

# A spreadsheet reads a cell starting with one of these as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: Any) -> Any:
    """`value` for a CSV cell: text a spreadsheet would run as a formula gets a leading `'`,
    as OWASP recommends (the `csv` module already quotes separators and quotes)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


_HTML = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# What makes a line a heading, list item, fence, table row or thematic break (also a setext
# underline: `===`, `---`), after up to three spaces of indentation; `>` quotes are HTML-escaped.
_LINE_START = re.compile(r"^( {0,3})([#+*=|`~_-])", re.MULTILINE)
_ORDERED = re.compile(r"^( {0,3}\d{1,9})([.)])", re.MULTILINE)
# Brackets make links and images (`[x](javascript:…)`, `[x][ref]`, `![x](…)`), `|` table cells;
# a backslash of the text's own must not undo the escapes.
_INLINE = re.compile(r"([\[\]|\\])")
_LINE_END = re.compile(r"\r\n?")  # CommonMark ends a line at a lone CR too


def markdown_text(text: str) -> str:
    """`text` as Markdown that shows it as typed: HTML escaped, and no heading, list, table or
    link that the text did not type as text."""
    text = _INLINE.sub(r"\\\1", _LINE_END.sub("\n", text).translate(_HTML))
    return _LINE_START.sub(r"\1\\\2", _ORDERED.sub(r"\1\\\2", text))


def markdown_value(value: Any) -> Any:
    """`markdown_text` applied to every text in `value` (dicts and lists too)."""
    if isinstance(value, str):
        return markdown_text(value)
    if isinstance(value, dict):
        return {key: markdown_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [markdown_value(item) for item in value]
    return value


def markdown_records(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Each record with its text made inert, one at a time (exports stream)."""
    return (markdown_value(record) for record in records)
