"""References taken last: the workspace's counter row is held only from the statement that takes
the number to the commit, and nothing written in between shows anything but the real reference."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import select, text

from bot.database import Database
from bot.models import AuditEvent, Decision, OutboxMessage, RefCounter, pending_ref
from bot.services import decisions, risks
from bot.services.projects import project_for_channel
from bot.services.refs import next_number, settle

TEAM = "T1"


def stored_text(db: Database) -> str:
    """Everything a reference could have been written into, as one text."""
    with db.session() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        return json.dumps([[e.entity_ref, e.before, e.after] for e in events] +
                          [row.payload for row in rows])


def test_a_quick_log_names_its_reference_everywhere(db: Database) -> None:
    with db.session() as session:
        project = project_for_channel(session, TEAM, "C1", "p")
        first = decisions.log_decision(session, project, "U1", decisions.DecisionDraft("One"))
        assert first.ref == "D-1"  # known to the reply before the commit
    with db.session() as session:
        second = decisions.supersede(session, decisions.get_decision(session, TEAM, "D-1"), "U1",
                                     "Two")
        assert second.ref == "D-2"
    with db.session() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        assert [(e.action, e.entity_ref) for e in events] == [
            ("decision.created", "D-1"), ("decision.created", "D-2"),
            ("decision.superseded", "D-1")]
        assert events[1].after["supersedes"] == "D-1" and events[1].after["ref"] == "D-2"
        assert events[2].after["superseded_by"] == "D-2"
        assert events[0].id < events[1].id < events[2].id  # in the order they happened
        cards = [row.payload for row in session.scalars(select(OutboxMessage)
                                                        .order_by(OutboxMessage.id))]
        assert "D-1" in json.dumps(cards[0]) and "D-2" in json.dumps(cards[1])
        assert [d.number for d in session.scalars(select(Decision).order_by(Decision.id))] \
            == [1, 2]
    assert pending_ref("D", -1)[:4] not in stored_text(db)  # no placeholder left anywhere


def test_a_failed_write_leaves_no_gap_and_no_trace(db: Database) -> None:
    with db.session() as session:
        project_for_channel(session, TEAM, "C1", "p")
    with pytest.raises(RuntimeError), db.session() as session:
        project = project_for_channel(session, TEAM, "C1", "p")
        decisions.log_decision(session, project, "U1", decisions.DecisionDraft("Lost"))
        raise RuntimeError("the request failed after the write")
    with db.session() as session:
        project = project_for_channel(session, TEAM, "C1", "p")
        kept = decisions.log_decision(session, project, "U1", decisions.DecisionDraft("Kept"))
    assert kept.ref == "D-1"
    with db.session() as session:
        assert [e.entity_ref for e in session.scalars(select(AuditEvent))] == ["D-1"]


def test_records_of_two_registers_in_one_transaction_get_their_own_numbers(
        db: Database) -> None:
    with db.session() as session:
        project = project_for_channel(session, TEAM, "C1", "p")
        decision = decisions._new_decision(session, project, "U1",
                                           decisions.DecisionDraft("Both"), None)
        risk = risks.log_risk(session, project, "U1", risks.RiskDraft(title="Both"))
    assert (decision.ref, risk.ref) == ("D-1", "R-1")
    with db.session() as session:
        refs = sorted(e.entity_ref for e in session.scalars(select(AuditEvent)))
        assert refs == ["D-1", "R-1"]
        assert session.get(RefCounter, (TEAM, "D")).last_value == 1


def test_the_counter_row_is_free_while_a_record_is_being_built(db: Database) -> None:
    """On PostgreSQL a quick-log takes the counter's row lock only at its end: another writer
    takes a number meanwhile without waiting, and both references stay unique and gapless."""
    if db.is_sqlite:
        pytest.skip("SQLite runs one writer at a time: the number is taken at once")
    built, taken = threading.Event(), threading.Event()
    with db.session() as session:
        project_for_channel(session, TEAM, "C1", "p")
        next_number(session, TEAM, "D")  # the counter row exists: D-1 belongs to someone
    result: dict[str, str] = {}

    def slow_quick_log() -> None:
        with db.session() as session:
            project = project_for_channel(session, TEAM, "C1", "p")
            decision = decisions._new_decision(session, project, "U1",
                                               decisions.DecisionDraft("Slow"), None)
            built.set()
            assert taken.wait(10)
            settle(session)
            result["slow"] = decision.ref

    thread = threading.Thread(target=slow_quick_log)
    thread.start()
    assert built.wait(10)
    with db.session() as session:
        session.execute(text("SET LOCAL lock_timeout = '1s'"))  # fails if the row were held
        assert next_number(session, TEAM, "D") == 2
    taken.set()
    thread.join(10)
    assert result == {"slow": "D-3"}
