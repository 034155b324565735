"""Project isolation through the signed endpoint (docs/access.md): how a project learns whether
its channel is private, what happens when Slack cannot say, project owners and the announced
self-approval. The matrix of every command and button across projects is in
`test_authorization.py`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.models import AuditEvent, OutboxMessage, Project, ProjectOwner, utcnow
from bot.render import slack_unescape
from bot.services.decisions import DecisionDraft, log_decision
from bot.services.projects import project_for_channel
from support.db_snapshot import changed_tables, snapshot
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import TEAM, SlackSender
from support.waiting import eventually

ADMIN, ALICE, BOB, EVE = "U0ADMIN01", "U0ALICE01", "U0BOB0001", "U0EVE0001"
SECRET, OPEN, ELSEWHERE = "C0SECRET1", "C0OPEN001", "C0ELSEWH1"


def reply_text(response: Any) -> str:
    payload = response.json() if hasattr(response, "json") else response
    return slack_unescape(payload.get("text", "") + json.dumps(payload.get("blocks", []),
                                                               ensure_ascii=False))


def project(quorum: QuorumServer, channel: str) -> Project | None:
    with quorum.runtime.db.session() as session:
        return session.scalars(select(Project).where(Project.channel_id == channel)
                               ).one_or_none()


def settled(quorum: QuorumServer) -> dict[str, list[tuple[Any, ...]]]:
    """The database once the outbox has delivered everything queued (a snapshot to compare)."""
    def drained() -> bool:
        with quorum.runtime.db.session() as session:
            return not session.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.status.in_(("pending", "sending"))))

    eventually(drained, timeout=10)
    return snapshot(quorum.runtime.db)


def infos(fake: FakeSlack, channel: str) -> int:
    return len([c for c in fake.calls_to("conversations.info", False)
                if c.args.get("channel") == channel])


# ---------------------------------------------------------------------------- learning privacy


def test_a_new_project_is_born_knowing_its_channel_is_private(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    fake_slack.private_channels.add(SECRET)
    fake_slack.channel_members[SECRET] = [ALICE, BOB]
    answer = slack.command("/decision", "Use fresh labels", channel=SECRET, channel_name="secret")
    assert "Logged *D-1*" in reply_text(answer)
    learned = project(quorum, SECRET)
    assert learned is not None and learned.is_private is True
    assert learned.member_ids == [ALICE, BOB] and learned.privacy_checked_at is not None
    # Within the day, Slack is not asked again.
    slack.command("/decision", "list", channel=SECRET, channel_name="secret")
    assert infos(fake_slack, SECRET) == 1

    # From another channel the decision is not shown, and nothing is written.
    slack.command("/decision", "list", channel=ELSEWHERE, channel_name="elsewhere")
    before = settled(quorum)
    refused = reply_text(slack.command("/decision", "show D-1", channel=ELSEWHERE))
    assert "D-1 belongs to a private channel, so it is shown only there" in refused
    assert "fresh labels" not in refused.lower()
    assert changed_tables(before, quorum.runtime.db) == []


def test_a_public_channel_is_read_from_elsewhere_with_where_it_lives(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/decision", "Use fresh labels", channel=OPEN, channel_name="open")
    assert project(quorum, OPEN).is_private is False
    slack.command("/decision", "list", channel=ELSEWHERE, channel_name="elsewhere")
    before = settled(quorum)
    shown = reply_text(slack.command("/decision", "show D-1", channel=ELSEWHERE))
    assert f":round_pushpin: From <#{OPEN}>" in shown and "Use fresh labels" in shown
    answer = slack.command("/decision", "supersede D-1 Use old labels", channel=ELSEWHERE)
    assert f"D-1 belongs to <#{OPEN}>: it can be changed only from there" in reply_text(answer)
    # On the wire the channel is a link Slack draws as #open, not the escaped text `<#C…>`.
    [section] = [b for b in answer.json()["blocks"] if b["type"] == "section"]
    assert section["text"]["text"].startswith(f":warning: D-1 belongs to <#{OPEN}>: it can ")
    assert changed_tables(before, quorum.runtime.db) == []


def test_an_error_links_only_the_ids_it_declares_and_keeps_typed_text_inert() -> None:
    from bot.errors import Conflict
    from handlers.common import error_message

    typed = "<!channel> <@U0BOSS001> <#C0OTHER01> & <https://evil.example|click>"
    error = Conflict(f"`{typed}`: <@{ALICE}> already leads it, see <#{OPEN}>.",
                     mentions=[ALICE, OPEN, None])
    reply = error_message(error.message, mentions=error.mentions)
    shown = reply["blocks"][0]["text"]["text"]
    assert shown == (f":warning: `&lt;!channel&gt; &lt;@U0BOSS001&gt; &lt;#C0OTHER01&gt; &amp; "
                     f"&lt;https://evil.example|click&gt;`: <@{ALICE}> already leads it, see "
                     f"<#{OPEN}>.")
    assert reply["text"] == shown.removeprefix(":warning: ")


def test_a_private_id_needs_no_question_to_slack(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/decision", "Use fresh labels", channel="G0LEGACY1", channel_name="legacy")
    assert project(quorum, "G0LEGACY1").is_private is True
    assert infos(fake_slack, "G0LEGACY1") == 0


def test_a_day_old_answer_is_asked_again_and_a_change_audited(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/decision", "Use fresh labels", channel=OPEN, channel_name="open")
    with quorum.runtime.db.session() as session:
        stale = session.scalars(select(Project).where(Project.channel_id == OPEN)).one()
        stale.privacy_checked_at = utcnow() - timedelta(days=1, minutes=1)
    fake_slack.private_channels.add(OPEN)  # the channel was made private since
    fake_slack.channel_members[OPEN] = [ALICE]
    slack.command("/decision", "list", channel=OPEN, channel_name="open")
    renewed = project(quorum, OPEN)
    assert renewed.is_private is True and renewed.member_ids == [ALICE]
    assert infos(fake_slack, OPEN) == 2
    with quorum.runtime.db.session() as session:
        event = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "project.privacy_changed")).one()
        assert (event.actor, event.before, event.after) == (
            "slack", {"is_private": False}, {"is_private": True})


def test_slack_failing_the_lookup_fails_nothing_and_the_project_stays_closed(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    # Four failures: the two channels' first lookups, then both again for the read below.
    fake_slack.inject("conversations.info", error="internal_error", times=4)
    answer = slack.command("/decision", "Use fresh labels", channel=OPEN, channel_name="open")
    assert "Logged *D-1*" in reply_text(answer)  # the request went on
    unknown = project(quorum, OPEN)
    assert unknown.is_private is None and unknown.privacy_checked_at is None
    slack.command("/decision", "list", channel=ELSEWHERE, channel_name="elsewhere")
    # Read from elsewhere while Slack still cannot say: it counts as private.
    refused = reply_text(slack.command("/decision", "show D-1", channel=ELSEWHERE))
    assert "D-1 belongs to a private channel" in refused and "fresh" not in refused.lower()
    assert project(quorum, OPEN).is_private is None
    # Once Slack answers again, the next read from elsewhere asks it and is served.
    shown = reply_text(slack.command("/decision", "show D-1", channel=ELSEWHERE))
    assert f":round_pushpin: From <#{OPEN}>" in shown
    assert project(quorum, OPEN).is_private is False


def test_a_read_from_elsewhere_asks_slack_when_the_answer_is_old(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    with quorum.runtime.db.session() as session:  # a project from before migration 0013
        old = project_for_channel(session, TEAM, OPEN, "open")
        log_decision(session, old, ALICE, DecisionDraft(title="Use fresh labels"))
    slack.command("/decision", "list", channel=ELSEWHERE, channel_name="elsewhere")
    shown = reply_text(slack.command("/decision", "show D-1", channel=ELSEWHERE))
    assert f":round_pushpin: From <#{OPEN}>" in shown
    assert project(quorum, OPEN).is_private is False and infos(fake_slack, OPEN) == 1


# ---------------------------------------------------------------------------- owners and admins


@pytest.fixture
def admin_quorum(make_settings: Callable[..., Any]) -> Iterator[QuorumServer]:
    server = QuorumServer(make_settings(QUORUM_ADMINS=ADMIN)).start()
    yield server
    server.stop()


@pytest.fixture
def admin_slack(admin_quorum: QuorumServer, fake_slack: FakeSlack) -> Iterator[SlackSender]:
    sender = SlackSender(admin_quorum.url, fake_slack.response_url(), team=TEAM)
    yield sender
    sender.close()


def owners(quorum: QuorumServer) -> list[str]:
    with quorum.runtime.db.session() as session:
        return list(session.scalars(select(ProjectOwner.user_id).order_by(ProjectOwner.id)))


def test_the_first_to_configure_a_project_owns_it_when_no_admins_are_set(
        slack: SlackSender, quorum: QuorumServer) -> None:
    assert "now holds" in reply_text(slack.command("/quorum", f"role add <@{BOB}> ds",
                                                   user=ALICE))
    assert owners(quorum) == [ALICE]
    before = settled(quorum)
    for text in (f"role add <@{EVE}> ds", "settings self-approval on", f"owner add <@{EVE}>",
                 "model add churn"):
        refused = reply_text(slack.command("/quorum", text, user=EVE))
        assert "Only Quorum admins and this project's owners can" in refused, (text, refused)
    assert changed_tables(before, quorum.runtime.db) == []
    listing = reply_text(slack.command("/quorum", "roles", user=EVE))
    assert f"Owners: <@{ALICE}>" in listing


def test_owners_add_and_remove_owners_but_keep_one(
        admin_slack: SlackSender, admin_quorum: QuorumServer) -> None:
    refused = reply_text(admin_slack.command("/quorum", f"owner add <@{ALICE}>", user=ALICE))
    assert "Only Quorum admins and this project's owners" in refused and owners(admin_quorum) == []
    added = reply_text(admin_slack.command("/quorum", f"owner add <@{ALICE}>", user=ADMIN))
    assert f"<@{ALICE}> now owns this project" in added
    assert owners(admin_quorum) == [ADMIN, ALICE]  # the admin configured it first
    reply_text(admin_slack.command("/quorum", f"owner add <@{BOB}>", user=ALICE))
    assert "now holds" in reply_text(admin_slack.command("/quorum", f"role add <@{EVE}> pm",
                                                         user=BOB))
    removed = reply_text(admin_slack.command("/quorum", f"owner remove <@{ADMIN}>", user=BOB))
    assert f"<@{ADMIN}> no longer owns this project" in removed
    admin_slack.command("/quorum", f"owner remove <@{BOB}>", user=ALICE)
    last = reply_text(admin_slack.command("/quorum", f"owner remove <@{ALICE}>", user=ALICE))
    assert "only owner" in last and owners(admin_quorum) == [ALICE]
    with admin_quorum.runtime.db.session() as session:
        actions = list(session.scalars(select(AuditEvent.action).where(
            AuditEvent.action.like("project.owner%")).order_by(AuditEvent.id)))
    assert actions == ["project.owner_added"] * 3 + ["project.owner_removed"] * 2


def test_turning_self_approval_on_is_announced_in_the_channel(
        admin_slack: SlackSender, admin_quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    admin_slack.command("/quorum", "settings self-approval on", user=ADMIN)

    def announced() -> str | None:
        for message in fake_slack.messages.get("C0CHURN01", {}).values():
            if "self-approval of gates on" in message.get("text", ""):
                return reply_text(message)
        return None

    text = eventually(announced, timeout=5)
    assert f"<@{ADMIN}> turned *self-approval of gates on*" in text
    # Turning it on again changes nothing and announces nothing more.
    admin_slack.command("/quorum", "settings self-approval on", user=ADMIN)
    with admin_quorum.runtime.db.session() as session:
        assert len(session.scalars(select(AuditEvent.id).where(
            AuditEvent.action == "project.settings_changed")).all()) == 1
    assert len([m for m in fake_slack.messages.get("C0CHURN01", {}).values()
                if "self-approval" in m.get("text", "")]) == 1
