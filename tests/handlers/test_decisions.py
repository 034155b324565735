"""`/decision` end to end: signed requests in, fake Slack and the database checked."""

from __future__ import annotations

import io
import json
from typing import Any

from sqlalchemy import func, select

from bot.export import export
from bot.models import AuditEvent, Decision, OutboxMessage
from bot.render import slack_unescape
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import SlackSender

CHANNEL = "C0CHURN01"


def decisions(quorum: QuorumServer) -> list[Decision]:
    with quorum.runtime.db.session() as session:
        return list(session.scalars(select(Decision).order_by(Decision.number)))


def audit_count(quorum: QuorumServer) -> int:
    with quorum.runtime.db.session() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def card_of(fake: FakeSlack, ref: str) -> dict[str, Any]:
    """The current state in Slack of the card whose header starts with `ref`."""
    for message in fake.messages.get(CHANNEL, {}).values():
        header = message.get("blocks", [{}])[0]
        if header.get("type") == "header" and header["text"]["text"].startswith(f"{ref} "):
            return message
    raise AssertionError(f"no card for {ref} in {CHANNEL}")


def reply_text(response: Any) -> str:
    """The reply's text and blocks, with Slack's escaping undone."""
    body = response.json()
    return slack_unescape(body.get("text", "") + json.dumps(body.get("blocks", [])))


def test_quick_log_posts_card_and_audits(slack: SlackSender, quorum: QuorumServer,
                                         fake_slack: FakeSlack) -> None:
    response = slack.command("/decision", "Serve churn model from the batch pipeline")

    assert response.status_code == 200
    assert response.json()["response_type"] == "ephemeral"
    assert "D-1" in response.json()["text"]
    post = fake_slack.wait_for("chat.postMessage")[0]
    assert post.args["channel"] == CHANNEL
    header = post.args["blocks"][0]["text"]["text"]
    assert header == "D-1 · Serve churn model from the batch pipeline"
    [decision] = decisions(quorum)
    assert (decision.ref, decision.status, decision.created_by) == ("D-1", "proposed", "U0ALICE01")
    assert audit_count(quorum) == 1


def test_references_count_up_per_workspace(slack: SlackSender, quorum: QuorumServer,
                                           fake_slack: FakeSlack) -> None:
    slack.command("/decision", "First", channel="C0CHURN01")
    slack.command("/decision", "Second", channel="C0FRAUD01", channel_name="fraud")
    slack.command("/decision", "Third", channel="C0CHURN01")
    assert [d.ref for d in decisions(quorum)] == ["D-1", "D-2", "D-3"]
    assert {d.project.channel_id for d in decisions(quorum)} == {"C0CHURN01", "C0FRAUD01"}
    fake_slack.wait_for("chat.postMessage", count=3)


def test_hostile_title_is_escaped_on_the_card(slack: SlackSender, fake_slack: FakeSlack) -> None:
    slack.command("/decision", "Ping <!channel> & <@U0BOB0001> <https://evil.example|click>")
    post = fake_slack.wait_for("chat.postMessage")[0]
    assert post.args["text"].startswith("D-1 Ping &lt;!channel&gt; &amp; &lt;@U0BOB0001&gt; "
                                         "&lt;https://evil.example|click&gt;")
    mrkdwn = [b["text"]["text"] for b in post.args["blocks"] if b["type"] == "section"
              and "text" in b] + [e["text"] for b in post.args["blocks"] if b["type"] == "context"
                                  for e in b["elements"]]
    assert all("<!channel>" not in text and "<https://evil" not in text for text in mrkdwn)
    # The header is plain_text, which Slack never parses for mentions: shown as typed.
    assert post.args["blocks"][0]["text"]["type"] == "plain_text"


def test_bare_command_opens_modal_and_submission_logs(slack: SlackSender, quorum: QuorumServer,
                                                      fake_slack: FakeSlack) -> None:
    response = slack.command("/decision", "")
    assert (response.status_code == 200 and response.content in (b"", b"{}")) or response.text == ""
    view = fake_slack.wait_for("views.open")[0].args["view"]
    assert view["callback_id"] == "decision_modal"

    answer = slack.submit(view, {
        "title": "Adopt feature store", "context": "Features drift between teams",
        "options": "Feast; homegrown", "decision": "Feast", "consequences": "New infra",
        "deciders": ["U0ALICE01", "U0BOB0001"], "status": "accepted",
    })

    assert answer.status_code == 200 and not answer.content.strip(b"{}")
    card = fake_slack.wait_for("chat.postMessage")[0].args
    assert "Features drift between teams" in json.dumps(card["blocks"])
    [decision] = decisions(quorum)
    assert decision.status == "accepted" and decision.deciders == ["U0ALICE01", "U0BOB0001"]
    assert decision.project.channel_id == CHANNEL


def test_modal_with_missing_title_answers_field_error(slack: SlackSender, quorum: QuorumServer,
                                                      fake_slack: FakeSlack) -> None:
    slack.command("/decision", "")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    answer = slack.submit(view, {"title": "   ", "context": "x"})
    body = answer.json()
    assert body["response_action"] == "errors"
    assert "title" in body["errors"]
    assert decisions(quorum) == [] and audit_count(quorum) == 0


def test_add_details_prefills_and_updates_card_in_place(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/decision", "Use XGBoost")
    post = fake_slack.wait_for("chat.postMessage")[0]
    button = post.args["blocks"][-1]["elements"][0]
    assert button["action_id"] == "decision_add_details"

    slack.click("decision_add_details", button["value"], message=post.response["message"])
    view = fake_slack.wait_for("views.open")[0].args["view"]
    title_input = next(b for b in view["blocks"] if b.get("block_id") == "title")
    assert title_input["element"]["initial_value"] == "Use XGBoost"

    slack.submit(view, {"context": "Tabular data, 2M rows", "status": "accepted"})
    update = fake_slack.wait_for("chat.update")[0]
    assert update.args["ts"] == post.response["ts"]
    assert "Tabular data, 2M rows" in json.dumps(card_of(fake_slack, "D-1")["blocks"])
    [decision] = decisions(quorum)
    assert decision.context == "Tabular data, 2M rows" and decision.status == "accepted"
    assert audit_count(quorum) == 2
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


def test_list_is_newest_first_and_paginated(slack: SlackSender, fake_slack: FakeSlack) -> None:
    for number in range(1, 13):
        slack.command("/decision", f"Decision number {number}")
    response = slack.command("/decision", "list")
    text = reply_text(response)
    assert text.index("Decision number 12") < text.index("Decision number 3")
    assert "Decision number 2\\n" not in text and "Page 1 of 2" in text
    older = next(e for b in response.json()["blocks"] if b["type"] == "actions"
                 for e in b["elements"] if e["action_id"] == "decision_list_page")

    slack.click("decision_list_page", older["value"], ephemeral=True)
    page_two = fake_slack.wait_for("response_url")[0].args
    assert page_two["replace_original"] is True
    assert "Decision number 1" in json.dumps(page_two["blocks"])
    assert "Decision number 12" not in json.dumps(page_two["blocks"])


def test_search_matches_words_case_insensitively(slack: SlackSender) -> None:
    slack.command("/decision", "Use XGBoost for churn")
    slack.command("/decision", "Retrain weekly")
    slack.command("/decision", "Drop the legacy FEATURE pipeline")
    text = reply_text(slack.command("/decision", "search xgb"))
    assert "Use XGBoost for churn" in text and "Retrain" not in text
    text = reply_text(slack.command("/decision", "search feature PIPELINE"))
    assert "legacy FEATURE pipeline" in text and "XGBoost" not in text
    assert "0 decisions" in reply_text(slack.command("/decision", "search nothing-like-this"))


def test_show_has_fields_links_and_history(slack: SlackSender) -> None:
    slack.command("/decision", "Use XGBoost")
    slack.command("/decision", "supersede D-1 Use LightGBM")
    old = reply_text(slack.command("/decision", "show D-1"))
    assert "superseded" in old and "Superseded by *D-2*" in old and "History" in old
    new = reply_text(slack.command("/decision", "show d-2"))
    assert "Supersedes *D-1*" in new


def test_supersede_links_both_and_updates_old_card(slack: SlackSender, quorum: QuorumServer,
                                                   fake_slack: FakeSlack) -> None:
    slack.command("/decision", "Use XGBoost")
    fake_slack.wait_for("chat.postMessage")
    response = slack.command("/decision", "supersede D-1 Use LightGBM instead")
    assert "D-2" in response.json()["text"]

    fake_slack.wait_for("chat.postMessage", count=2)
    fake_slack.wait_for("chat.update")
    old_card = json.dumps(card_of(fake_slack, "D-1")["blocks"])
    assert "superseded" in old_card and "Add details" not in old_card
    old, new = decisions(quorum)
    assert old.status == "superseded" and new.supersedes_id == old.id
    assert new.status == "proposed"

    again = slack.command("/decision", "supersede D-1 Another")
    assert "already superseded by D-2" in again.json()["text"]
    assert len(decisions(quorum)) == 2


def test_log_as_decision_shortcut_prefills_with_permalink(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    message = {"ts": "1700000100.000200", "user": "U0BOB0001",
               "text": "We agreed to retrain weekly &amp; monitor drift\nmore detail"}
    slack.message_shortcut("log_decision", message)
    view = fake_slack.wait_for("views.open")[0].args["view"]
    title = next(b for b in view["blocks"] if b.get("block_id") == "title")
    assert title["element"]["initial_value"] == "We agreed to retrain weekly & monitor drift"
    assert "p1700000100000200" in json.dumps(view["blocks"])

    slack.submit(view, {})
    fake_slack.wait_for("chat.postMessage")
    [decision] = decisions(quorum)
    assert decision.source_permalink.endswith("/p1700000100000200")
    assert "more detail" in decision.context


def test_help_and_usage_errors_change_nothing(slack: SlackSender, quorum: QuorumServer) -> None:
    assert "/decision supersede D-n <title>" in reply_text(slack.command("/decision", "help"))
    cases = {
        "show D-999": "no decision D-999",
        "show X-1": "not a reference like D-12",
        "show": "A reference like D-12 is missing",
        "supersede D-1": "<title> is missing",
        "list everything": "Unexpected `everything`",
        "search": "<words> is missing",
        "x" * 151: "151 characters long",
    }
    for text, expected in cases.items():
        response = slack.command("/decision", text)
        body = response.json()
        assert response.status_code == 200 and body["response_type"] == "ephemeral"
        assert expected in slack_unescape(body["text"]), (text, body["text"])
    assert decisions(quorum) == [] and audit_count(quorum) == 0
    with quorum.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_long_context_in_modal_is_refused_on_the_field(slack: SlackSender, quorum: QuorumServer,
                                                       fake_slack: FakeSlack) -> None:
    slack.command("/decision", "")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    answer = slack.submit(view, {"title": "Fine", "consequences": "y" * 3001}).json()
    assert answer["response_action"] == "errors" and "consequences" in answer["errors"]
    assert decisions(quorum) == []


SPOOFING_TITLE = ("Revert \u202e2-D\u202c, keep D\u200b-1 \u2066and\u2069 D\u2060-3\ufeff"
                  "\u200e\u200f\u061c\u200d\u202a\u202b\u202d\u2067\u2068")
INVISIBLE_CHARACTERS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"
                           "\u061c\u200b\u200c\u200d\u2060\ufeff")


def test_bidi_and_zero_width_characters_cannot_spoof_a_reference_on_a_card(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    """U+202E makes `2-D` read as `D-2`; zero-width characters hide inside `D-1`. On the card
    they are gone (it shows `2-D`, as stored); in the database and exports they stay as typed."""
    slack.command("/decision", SPOOFING_TITLE)
    post = fake_slack.wait_for("chat.postMessage")[0]
    shown = json.dumps(post.args, ensure_ascii=False)
    assert not INVISIBLE_CHARACTERS & set(shown), [c for c in shown if c in INVISIBLE_CHARACTERS]
    header = post.args["blocks"][0]["text"]["text"]
    assert header == "D-1 · Revert 2-D, keep D-1 and D-3"
    assert post.args["text"].startswith("D-1 Revert 2-D, keep D-1 and D-3")
    shown_again = reply_text(slack.command("/decision", "show D-1"))
    assert "Revert 2-D, keep D-1 and D-3" in shown_again
    assert not INVISIBLE_CHARACTERS & set(shown_again)
    [decision] = decisions(quorum)
    assert decision.title == SPOOFING_TITLE.strip()  # kept as typed
    with quorum.runtime.db.session() as session:
        out = io.StringIO()
        export(session, "decisions", "json", out)
    assert json.loads(out.getvalue())[0]["title"] == SPOOFING_TITLE.strip()
