"""`quorum export`: every register as JSON, CSV or Markdown on standard output."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from bot.inert import spreadsheet_cell
from bot.models import AuditEvent, Gate, Hypothesis, Incident, Project, Promotion
from bot.render import renderer
from bot.services.audit import changed_fields
from bot.services.decisions import export_records as decision_records
from bot.services.directory import Names
from bot.services.gate_state import as_record as gate_record
from bot.services.hypotheses import as_record as hypothesis_record
from bot.services.hypotheses import history_records as hypothesis_history
from bot.services.incidents import as_record as incident_record
from bot.services.promotions import as_record as promotion_record
from bot.services.risks import export_records as risk_records
from bot.services.rituals import export_records as ritual_records

FORMATS = ("json", "csv", "md")


def _hypotheses(session: Session) -> Iterator[dict[str, Any]]:
    query = select(Hypothesis).order_by(Hypothesis.team_id, Hypothesis.number)
    for hypothesis in session.scalars(query.execution_options(yield_per=500)):
        yield {**hypothesis_record(hypothesis), "history": hypothesis_history(session, hypothesis)}


def _gates(session: Session) -> Iterator[dict[str, Any]]:
    query = select(Gate).order_by(Gate.team_id, Gate.number)
    for gate in session.scalars(query.execution_options(yield_per=500)):
        yield gate_record(gate)


def _incidents(session: Session) -> Iterator[dict[str, Any]]:
    query = select(Incident).options(selectinload(Incident.events),
                                     selectinload(Incident.follow_up_items),
                                     selectinload(Incident.silences)) \
        .order_by(Incident.team_id, Incident.number)
    for incident in session.scalars(query).unique():
        yield incident_record(incident)


def _promotions(session: Session) -> Iterator[dict[str, Any]]:
    query = select(Promotion).order_by(Promotion.team_id, Promotion.number)
    for promotion in session.scalars(query).unique():
        yield promotion_record(promotion)


def _audit(session: Session) -> Iterator[dict[str, Any]]:
    projects = {p.id: p.name for p in session.scalars(select(Project))}
    for event in session.scalars(select(AuditEvent).order_by(AuditEvent.id)
                                 .execution_options(yield_per=1000)):
        yield {
            "id": event.id,
            "ref": event.entity_ref,
            "project": projects.get(event.project_id) if event.project_id else None,
            "status": event.action,
            "action": event.action,
            "entity_type": event.entity_type,
            "created_at": event.at.isoformat(),
            "created_by": event.actor,
            "changed": changed_fields(event.before, event.after) if event.before else [],
            "before": event.before,
            "after": event.after,
        }


# Each register: how to read its records, and the template of one record in Markdown.
REGISTERS: dict[str, tuple[Callable[[Session], Iterator[dict[str, Any]]], str]] = {
    "decisions": (decision_records, "decision/adr.md.j2"),
    "risks": (risk_records, "risk/register.md.j2"),
    "hypotheses": (_hypotheses, "hypothesis/log.md.j2"),
    "gates": (_gates, "gate/export.md.j2"),
    "incidents": (_incidents, "incident/postmortem.md.j2"),
    "promotions": (_promotions, "promotion/export.md.j2"),
    "rituals": (ritual_records, "ritual/export.md.j2"),
    "audit": (_audit, "common/audit.md.j2"),
}


def export(session: Session, register: str, fmt: str, out: TextIO) -> int:
    """Write every record of `register` to `out` in `fmt`; returns how many were written.

    Streamed: records are read in chunks (`yield_per`) and each is written as it arrives, so
    memory stays flat however large the register is.
    """
    read, markdown_template = REGISTERS[register]
    records = _Counted(with_names(read(session), Names.load(session), fmt))
    if fmt == "json":
        # One record a line: still one JSON list, and unindented records go through the json
        # module's C encoder (indentation takes its pure-Python path, several times slower).
        out.write("[")
        for index, record in enumerate(records):
            out.write(("," if index else "") + "\n" + _json(record))
        out.write("\n]\n" if records.count else "]\n")
    elif fmt == "csv":
        # Every reader yields one shape of record, so the first record names the columns.
        first = next(records, None)
        if first is not None:
            writer = csv.DictWriter(out, fieldnames=list(first), lineterminator="\n")
            writer.writeheader()
            for record in itertools.chain([first], records):
                writer.writerow({key: _cell(value) for key, value in record.items()})
    else:
        out.writelines(renderer.stream(markdown_template, records=records))
    return records.count


def with_names(records: Iterator[dict[str, Any]], names: Names,
               fmt: str) -> Iterator[dict[str, Any]]:
    """People and channels by name (`bot.services.directory`): Markdown shows `@name` in place
    of an id, JSON and CSV keep the id and add `<field>_name` beside it."""
    for record in records:
        yield names.readable(record) if fmt == "md" else names.annotate(record)


class _Counted(Iterator[dict[str, Any]]):
    """Records passing through, counted (a stream has no length to ask afterwards)."""

    def __init__(self, records: Iterator[dict[str, Any]]) -> None:
        self._records = records
        self.count = 0

    def __next__(self) -> dict[str, Any]:
        record = next(self._records)
        self.count += 1
        return record


_json = json.JSONEncoder(ensure_ascii=False, default=str).encode


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return spreadsheet_cell(value)
