"""The access rules of bot.services.access: privacy of a project's channel, reading and changing
from elsewhere, owners and project admins (docs/access.md)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.database import Database
from bot.errors import Conflict, Forbidden, NotFound
from bot.models import AuditEvent, Project
from bot.services import access, roles
from bot.services.projects import project_for_channel

TEAM = "T0ACCESS1"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
ADMIN, ALICE, BOB, EVE = "U0ADMIN01", "U0ALICE01", "U0BOB0001", "U0EVE0001"


def _project(session, channel: str, private: bool | None) -> Project:
    project = project_for_channel(session, TEAM, channel, channel.lower())
    if private is not None:
        access.set_privacy(session, project, private, NOW)
    return project


@pytest.mark.parametrize(("info", "private"), [
    ({"id": "C1", "is_private": False, "is_channel": True}, False),
    ({"id": "C1", "is_private": True}, True),
    ({"id": "C1", "is_group": True}, True),
    ({"id": "C1", "is_mpim": True}, True),
    ({"id": "D1", "is_im": True}, True),
    ({"id": "G1"}, True),  # a legacy private channel, whatever the flags
])
def test_privacy_comes_from_the_channel_object(info: dict, private: bool) -> None:
    assert access.privacy_from_channel_info(info) is private


def test_reading_from_elsewhere_needs_a_public_project_slack_confirmed(db: Database) -> None:
    with db.session() as session:
        public = _project(session, "C0PUBLIC1", False)
        private = _project(session, "C0PRIVATE", True)
        unknown = _project(session, "C0UNKNOWN", None)
        legacy = _project(session, "G0LEGACY1", False)
        for project in (public, private, unknown, legacy):
            assert access.can_read_from(project, project.channel_id, NOW)
            assert not access.can_change_from(project, "C0ELSEWHR")
        assert access.can_read_from(public, "C0ELSEWHR", NOW)
        assert not access.can_read_from(private, "C0ELSEWHR", NOW)
        assert not access.can_read_from(unknown, "C0ELSEWHR", NOW)  # fail closed
        assert not access.can_read_from(legacy, "C0ELSEWHR", NOW)
        # A day later, unconfirmed (Slack could not be asked): closed too.
        assert not access.can_read_from(public, "C0ELSEWHR", NOW + access.PRIVACY_TTL)
        assert access.can_read_from(public, "C0ELSEWHR")  # no clock: the stored answer
        with pytest.raises(NotFound, match="private channel"):
            access.require_readable(private, "C0ELSEWHR", "D-1", NOW)
        with pytest.raises(Forbidden, match="<#C0PUBLIC1>"):
            access.require_changeable(public, "C0ELSEWHR", "D-1", NOW)
        with pytest.raises(NotFound, match="private channel"):
            access.require_changeable(private, "C0ELSEWHR", "D-1", NOW)
        access.require_changeable(private, "C0PRIVATE", "D-1", NOW)


def test_privacy_is_stored_with_its_time_and_a_change_is_audited(db: Database) -> None:
    with db.session() as session:
        project = _project(session, "C0TURNS01", None)
        assert access.privacy_is_stale(project, NOW)
        assert access.set_privacy(session, project, False, NOW) is False  # first answer
        assert not access.privacy_is_stale(project, NOW + timedelta(hours=23))
        assert access.privacy_is_stale(project, NOW + timedelta(hours=24))
        assert access.set_privacy(session, project, True, NOW + timedelta(days=2)) is True
        assert project.is_private is True
        event = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "project.privacy_changed")).one()
        assert (event.before, event.after) == ({"is_private": False}, {"is_private": True})


def test_visible_projects_are_the_public_ones_and_the_private_ones_of_members(
        db: Database) -> None:
    with db.session() as session:
        _project(session, "C0PUBLIC1", False)
        _project(session, "C0PRIVATE", True)
        _project(session, "C0UNKNOWN", None)
        names = lambda member_of: [p.channel_id for p in  # noqa: E731
                                   access.visible_projects(session, TEAM, ALICE, member_of)]
        assert names(None) == ["C0PUBLIC1"]
        assert names({"C0PRIVATE"}) == ["C0PRIVATE", "C0PUBLIC1"]
        assert names(lambda channel: channel == "C0UNKNOWN") == ["C0PUBLIC1", "C0UNKNOWN"]


def test_the_first_to_configure_a_project_owns_it_and_owners_add_owners(db: Database) -> None:
    with db.session() as session:
        project = _project(session, "C0OWNED01", False)
        # No workspace admins and no owner yet: anyone may be the first.
        assert access.is_project_admin(session, project, EVE, frozenset())
        access.admit_configuration(session, project, ALICE, frozenset())
        assert access.owners(session, project) == [ALICE]
        assert not access.is_project_admin(session, project, EVE, frozenset())
        with pytest.raises(Forbidden, match="Only Quorum admins and this project's owners"):
            access.add_owner(session, project, EVE, EVE, frozenset())
        access.add_owner(session, project, ALICE, BOB, frozenset())
        with pytest.raises(Conflict):
            access.add_owner(session, project, BOB, ALICE, frozenset())
        assert access.owners(session, project) == [ALICE, BOB]
        access.remove_owner(session, project, BOB, ALICE, frozenset())
        with pytest.raises(Conflict, match="only owner"):
            access.remove_owner(session, project, BOB, BOB, frozenset())
        assert [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))
                ] == ["project.owner_added", "project.owner_added", "project.owner_removed"]


def test_first_configurations_at_the_same_moment_make_one_owner_and_lose_no_role(
        db: Database) -> None:
    """Three `role add` by one person in the same second (and one by another person) on a new
    project: the first makes its owner, the owner's other adds go through, the other person is
    refused (the replica test found the owner's adds refused as "already owns")."""
    with db.session() as session:
        project_id = _project(session, "C0RACE001", False).id
    barrier = threading.Barrier(4)
    outcomes: dict[str, str] = {}

    def configure(actor: str, user: str) -> None:
        barrier.wait()
        try:
            with db.session() as session:
                project = session.get_one(Project, project_id)
                roles.add_role(session, project, actor, user, "ds", frozenset())
            outcomes[user] = actor
        except Forbidden:
            outcomes[user] = "refused"

    jobs = [(ALICE, "U0ONE0001"), (ALICE, "U0TWO0001"), (ALICE, "U0THREE01"), (EVE, "U0FOUR001")]
    threads = [threading.Thread(target=configure, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with db.session() as session:
        project = session.get_one(Project, project_id)
        owners = access.owners(session, project)
        held = sorted(user for user, actor in outcomes.items() if actor != "refused")
    assert len(outcomes) == 4
    if owners == [ALICE]:
        assert held == ["U0ONE0001", "U0THREE01", "U0TWO0001"] and outcomes["U0FOUR001"] == \
            "refused"
    else:  # Eve came first: Alice's three are refused
        assert owners == [EVE] and held == ["U0FOUR001"]


def test_workspace_admins_administer_every_project_and_only_they_start_one(db: Database) -> None:
    admins = frozenset({ADMIN})
    with db.session() as session:
        project = _project(session, "C0ADMINED", False)
        assert not access.is_project_admin(session, project, ALICE, admins)
        with pytest.raises(Forbidden):
            access.require_project_admin(session, project, ALICE, admins)
        access.add_owner(session, project, ADMIN, ALICE, admins)
        assert access.is_project_admin(session, project, ALICE, admins)
        assert access.is_project_admin(session, project, ADMIN, admins)
        assert not access.is_project_admin(session, project, EVE, admins)


def test_turning_self_approval_on_or_off_is_announced_in_the_channel(db: Database) -> None:
    from bot.models import OutboxMessage
    from bot.services import roles

    with db.session() as session:
        project = _project(session, "C0SELFAPP", False)
        access.add_owner(session, project, ADMIN, ALICE, frozenset({ADMIN}))
        with pytest.raises(Forbidden):
            roles.set_self_approval(session, project, EVE, True, frozenset({ADMIN}))
        roles.set_self_approval(session, project, ALICE, True, frozenset({ADMIN}))
        roles.set_self_approval(session, project, ALICE, True, frozenset({ADMIN}))  # no change
        roles.set_self_approval(session, project, ALICE, False, frozenset({ADMIN}))
        posts = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    assert [(p.method, p.payload["channel"]) for p in posts] == [
        ("chat.postMessage", "C0SELFAPP")] * 2
    assert "self-approval of gates on" in posts[0].payload["text"]
    assert f"<@{ALICE}>" in posts[0].payload["text"]
    assert "self-approval of gates off" in posts[1].payload["text"]
