"""The gate service: drafts, signing under concurrency, the clock and the CI check."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.database import Database
from bot.errors import Conflict, Forbidden, InvalidInput, NotFound
from bot.models import AuditEvent, Gate, GateSignoff, ModelBinding, OutboxMessage, Project
from bot.scheduler import Scheduler
from bot.services import access
from bot.services import gates as service
from bot.services import roles as role_service
from bot.services.gate_check import check
from bot.services.gate_drafts import GateDraft
from bot.services.model_versions import normalize_version
from bot.services.projects import project_for_channel
from bot.services.promotions import gate_record
from support.waiting import eventually

TEAM, CHANNEL = "T0TEAM001", "C0CHURN01"
ALICE, BOB, CAROL, DAVE = "U0ALICE01", "U0BOB0001", "U0CAROL01", "U0DAVE001"
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
NO_ADMINS: frozenset[str] = frozenset()


def setup_project(session: Session, timezone: str | None = None) -> Project:
    project = project_for_channel(session, TEAM, CHANNEL, "churn-model")
    project.timezone = timezone
    for user, role in ((BOB, "ds"), (CAROL, "eng"), (DAVE, "pm")):
        role_service.add_role(session, project, ALICE, user, role, NO_ADMINS)
    return project


def new_gate(db: Database, roles: str = "ds,eng,pm", **draft: Any) -> int:
    with db.session() as session:
        project = setup_project(session)
        access.set_privacy(session, project, False, NOW)  # public: reminders may go out
        values = {"milestone": "launch", "model": "churn", "version": "3", **draft}
        gate = service.request_gate(session, project, ALICE,
                                    GateDraft(roles=roles, **values), now=NOW).gate
        return gate.id


# ---------------------------------------------------------------------------- drafts


@pytest.mark.parametrize(("raw", "expected"), [
    ("v3", "3"), ("3", "3"), ("V12", "12"), ("1.2.0", "1.2.0"), ("v1.2.0", "1.2.0"),
    ("rc1", "rc1"), ("vintage", "vintage"), ("", None), (None, None),
])
def test_versions_are_normalized(raw: str | None, expected: str | None) -> None:
    assert normalize_version(raw) == expected


def test_draft_normalizes_its_fields() -> None:
    draft = GateDraft(milestone=" Launch ", model="churn", version="v3",
                              roles="DS, eng eng,pm", criteria="- one\n\n* two\n[ ] three\n1. four",
                              due_date="2026-12-01").validated()
    assert (draft.milestone, draft.version, draft.roles) == ("launch", "3", ["ds", "eng", "pm"])
    assert draft.criteria == ["one", "two", "three", "four"]
    assert draft.due_date == date(2026, 12, 1)
    assert GateDraft(milestone="data").validated().roles == ["ds", "eng", "pm"]
    many = GateDraft(milestone="  Offline   Eval sign-off ", roles="ds:2, eng,DS",
                             wait_seconds=7200).validated()
    assert (many.milestone, many.roles, many.role_counts, many.wait_seconds) == (
        "offline eval sign-off", ["ds:2", "eng"], {"ds": 2, "eng": 1}, 7200)


@pytest.mark.parametrize(("draft", "field"), [
    ({"milestone": "a\\b"}, "milestone"),
    ({"milestone": "x" * 81}, "milestone"),
    ({"milestone": "launch", "promote_alias": "champion"}, "promote"),
    ({"milestone": "launch", "model": "churn", "version": "3", "promote_alias": "v2"},
     "promote"),
    ({"milestone": "launch", "wait_seconds": 10}, "wait"),
    ({"milestone": "launch", "roles": "ds:11"}, "roles"),
    ({"milestone": "launch", "model": "churn model", "version": "3"}, "model"),
    ({"milestone": "launch", "model": "churn", "version": "3/4"}, "version"),
    ({"milestone": "launch", "roles": ["ds", "<!here>"]}, "roles"),
    ({"milestone": "launch", "criteria": "\n".join(["c"] * 21)}, "criteria"),
    ({"milestone": "launch", "due_date": "next friday"}, "due_date"),
])
def test_draft_refuses_bad_values_on_their_field(draft: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        GateDraft(**draft).validated()
    assert caught.value.field == field


def test_due_date_expires_at_the_end_of_the_day_in_the_projects_time_zone(db: Database) -> None:
    with db.session() as session:
        project = setup_project(session, timezone="Europe/Paris")
        draft = GateDraft(milestone="launch", due_date=date(2026, 11, 24))
        gate = service.request_gate(session, project, ALICE, draft, now=NOW).gate
        assert gate.expires_at == datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
        with pytest.raises(InvalidInput, match="in the past"):
            service.request_gate(session, project, ALICE, GateDraft(
                milestone="data", due_date=date(2026, 11, 23)), now=NOW)


# ---------------------------------------------------------------------------- signing


def test_signing_rules(db: Database) -> None:
    gate_id = new_gate(db)
    with db.session() as session:
        with pytest.raises(Forbidden, match="hold none of these roles"):
            service.sign(session, gate_id, TEAM, ALICE, "approve", "ds")
        with pytest.raises(Forbidden, match="cannot sign G-1 as `eng`"):
            service.sign(session, gate_id, TEAM, BOB, "approve", "eng")
        with pytest.raises(InvalidInput, match="reason is required"):
            service.sign(session, gate_id, TEAM, BOB, "changes", "ds", "  ")
        with pytest.raises(NotFound, match="no longer exists"):
            service.sign(session, gate_id, "T0OTHER01", BOB, "approve", "ds")
    with db.session() as session:
        assert not service.sign(session, gate_id, TEAM, BOB, "approve", "ds").passed
    with db.session() as session, pytest.raises(Conflict, match="You already approved"):
        service.sign(session, gate_id, TEAM, BOB, "approve", "ds")
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(GateSignoff)) == 1


def test_the_unique_signoff_is_the_last_line_of_defence(db: Database) -> None:
    gate_id = new_gate(db)
    with db.session() as session:
        session.add(GateSignoff(gate_id=gate_id, role="ds", user_id=BOB, decision="approve",
                                at=NOW, slot=1))
    # Bypass the checks that would have refused them, as a racing writer would: a second
    # approval in the same slot of a role, and a second role signed by the same person.
    for role, user in (("ds", CAROL), ("eng", BOB)):
        with db.session() as session:
            session.add(GateSignoff(gate_id=gate_id, role=role, user_id=user,
                                    decision="approve", at=NOW, slot=1))
            with pytest.raises(IntegrityError):
                session.flush()
            session.rollback()


def _pg_row_lock_waiters(db: Database) -> int:
    with db.engine.connect() as connection:
        return connection.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'tuple' "
            "AND relation = 'gates'::regclass")).scalar_one()


def test_a_second_signer_waits_for_the_first_and_sees_its_approval(db: Database) -> None:
    """No lost update: the last two approvals, at the same moment, still pass the gate."""
    gate_id = new_gate(db, roles="ds,eng")
    first = db.session()
    session = first.__enter__()
    service.sign(session, gate_id, TEAM, BOB, "approve", "ds")  # holds the gate's lock
    outcome: dict[str, Any] = {}

    def second() -> None:
        try:
            with db.session() as other:
                outcome["signed"] = service.sign(other, gate_id, TEAM, CAROL, "approve", "eng")
        except Exception as exc:  # reported below
            outcome["error"] = exc

    thread = threading.Thread(target=second)
    thread.start()
    try:
        if not db.is_sqlite:
            eventually(lambda: _pg_row_lock_waiters(db) >= 1)
            assert "signed" not in outcome  # it is blocked on the row lock, not racing past it
    except BaseException as exc:
        first.__exit__(type(exc), exc, exc.__traceback__)
        thread.join(15)
        raise
    first.__exit__(None, None, None)
    thread.join(15)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["signed"].passed
    with db.session() as session:
        gate = session.get_one(Gate, gate_id)
        assert gate.status == "passed" and len(gate.signoffs) == 2


def test_concurrent_approvals_of_the_last_roles_pass_once(db: Database) -> None:
    gate_id = new_gate(db)
    with db.session() as session:
        service.sign(session, gate_id, TEAM, BOB, "approve", "ds")
    barrier = threading.Barrier(4)
    errors: list[Exception] = []

    def approve(user: str, role: str) -> None:
        barrier.wait()
        try:
            with db.session() as session:
                service.sign(session, gate_id, TEAM, user, "approve", role)
        except Conflict as exc:
            errors.append(exc)

    threads = [threading.Thread(target=approve, args=args) for args in
               ((CAROL, "eng"), (DAVE, "pm"), (CAROL, "eng"), (DAVE, "pm"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert len(errors) == 2  # each double click was refused once
    with db.session() as session:
        gate = session.get_one(Gate, gate_id)
        assert gate.status == "passed"
        assert sorted(s.role for s in gate.signoffs) == ["ds", "eng", "pm"]
        passed_events = session.scalar(select(func.count()).select_from(AuditEvent)
                                       .where(AuditEvent.action == "gate.passed"))
        assert passed_events == 1


# ---------------------------------------------------------------------------- the clock


def test_reminders_and_expiry_are_claimed_once_across_replicas(db: Database) -> None:
    gate_id = new_gate(db, due_date=date(2026, 11, 30))
    replicas = [Scheduler(db), Scheduler(db)]

    def posts() -> list[dict[str, Any]]:
        with db.session() as session:
            return [row.payload for row in session.scalars(
                select(OutboxMessage).where(OutboxMessage.method == "chat.postMessage")
                .order_by(OutboxMessage.id))]

    cards = len(posts())
    for replica in replicas:
        replica.run_due(NOW + timedelta(hours=25))
    reminders = posts()[cards:]
    assert sorted(p["channel"] for p in reminders) == [BOB, CAROL, DAVE]

    for replica in replicas:
        replica.run_due(datetime(2026, 12, 1, 0, 0, tzinfo=UTC))
    with db.session() as session:
        assert session.get_one(Gate, gate_id).status == "expired"
        assert session.scalar(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.action == "gate.expired")) == 1


# ---------------------------------------------------------------------------- the CI check


def test_check_needs_every_gate_of_the_version_and_matches_the_milestone(db: Database) -> None:
    gate_id = new_gate(db, roles="ds")
    with db.session() as session:
        service.sign(session, gate_id, TEAM, BOB, "approve", "ds")
    with db.session() as session:
        assert check(session, "churn", "v3").passed
        project = session.scalars(select(Project)).one()
        service.request_gate(session, project, ALICE, GateDraft(
            milestone="monitoring", model="churn", version="3", roles="ds"), now=NOW)
    with db.session() as session:
        # Without a milestone every gate of the version counts: monitoring is still open.
        everything = check(session, "churn", "v3")
        assert not everything.passed and [g.ref for g in everything.failing] == ["G-2"]
        assert check(session, "churn", "3", "LAUNCH").gate.ref == "G-1"
        assert check(session, "churn", "3", "LAUNCH").passed
        waiting = check(session, "churn", "3", "monitoring")
        assert not waiting.passed and waiting.gate.ref == "G-2"
        assert check(session, "churn", "4").gate is None and not check(session, "churn", "4").passed
        record = check(session, "churn", "3", "launch").as_record()
        assert record["signers"][0]["user"] == BOB and record["gate"]["status"] == "passed"
        assert record["gates"][0]["approvers"][0]["user"] == BOB
        record = check(session, "churn", "3").as_record()
        assert [(g["ref"], g["why_not"]) for g in record["gates"]] == [
            ("G-1", None), ("G-2", "waiting for ds")]
        with pytest.raises(InvalidInput):
            check(session, "churn", " ")


def test_expired_and_changes_requested_gates_fail_the_check_until_replaced(
        db: Database) -> None:
    first = new_gate(db, roles="ds", due_date=NOW.date())
    with db.session() as session:
        Scheduler(db).run_due(NOW + timedelta(days=2))
    with db.session() as session:
        assert session.get(Gate, first).status == "expired"
        result = check(session, "churn", "3")
        assert not result.passed and result.as_record()["gates"][0]["why_not"] == "expired"
        project = session.scalars(select(Project)).one()
        fresh = service.request_gate(session, project, ALICE, GateDraft(
            milestone="launch", model="churn", version="3", roles="ds"), now=NOW).gate
        service.sign(session, fresh.id, TEAM, BOB, "approve", "ds")
    with db.session() as session:
        assert check(session, "churn", "3").passed  # the re-requested gate speaks for launch
        service.request_gate(session, project := session.scalars(select(Project)).one(), ALICE,
                             GateDraft(milestone="data", model="churn", version="3",
                                               roles="ds"), now=NOW)
        data = session.scalars(select(Gate).where(Gate.milestone == "data")).one()
        service.sign(session, data.id, TEAM, BOB, "changes", "ds", "label leak")
    with db.session() as session:
        result = check(session, "churn", "3")
        assert not result.passed
        assert [(g["milestone"], g["why_not"]) for g in result.as_record()["gates"]] == [
            ("launch", None), ("data", "changes requested")]
        assert project is not None


def test_a_bound_model_is_judged_by_its_own_projects_gates_only(db: Database) -> None:
    """A gate passed in another project (say, one a single person set up to pass alone) never
    counts for a bound model; for an unbound model the answer names each gate's project."""
    with db.session() as session:
        home = setup_project(session)
        elsewhere = project_for_channel(session, TEAM, "C0ROGUE01", "rogue")
        for user, role in ((BOB, "ds"), (CAROL, "ds")):
            role_service.add_role(session, elsewhere, ALICE, user, role, NO_ADMINS)
        rogue = service.request_gate(session, elsewhere, ALICE, GateDraft(
            milestone="launch", model="churn", version="3", roles="ds"), now=NOW).gate
        service.sign(session, rogue.id, TEAM, BOB, "approve", "ds")
    with db.session() as session:
        unbound = check(session, "churn", "3").as_record()
        assert unbound["passed"] and unbound["owner"] is None
        assert unbound["gates"][0]["channel"] == "C0ROGUE01"
        session.add(ModelBinding(team_id=TEAM, project_id=home.id, model="churn",
                                 created_by=ALICE))
    with db.session() as session:
        bound = check(session, "churn", "3")
        assert not bound.passed and bound.gates == [] and bound.owner.channel_id == CHANNEL
        record = gate_record(session, TEAM, "churn", "3")
        assert record.passed == [] and record.waiting == []
        with pytest.raises(Forbidden, match="bound to <#C0CHURN01>"):
            service.request_gate(session, session.get(Project, elsewhere.id), ALICE,
                                 GateDraft(milestone="data", model="churn",
                                                   version="3", roles="ds"), now=NOW)
        own = service.request_gate(session, session.get(Project, home.id), ALICE,
                                   GateDraft(milestone="launch", model="churn",
                                                     version="3", roles="ds"), now=NOW).gate
        service.sign(session, own.id, TEAM, BOB, "approve", "ds")
    with db.session() as session:
        result = check(session, "churn", "3")
        assert result.passed and [g.project.channel_id for g in result.gates] == [CHANNEL]
