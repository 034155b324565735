"""Block Kit and mrkdwn as terminal text (`bot.shell.render`)."""

from __future__ import annotations

from typing import Any

from bot.render import renderer
from bot.shell.render import BlockText, Style, unescape

NAMES = {"U0ALICE01": "alice", "C0CHURN01": "churn-model"}


def text_of(style: Style | None = None, numbered: list[dict[str, Any]] | None = None) -> BlockText:
    def number(element: dict[str, Any], block_id: str) -> int:
        assert numbered is not None
        numbered.append(element)
        return len(numbered)

    def name(ident: str) -> str:
        return NAMES.get(ident, ident.lower())

    return BlockText(style or Style(), name, name, number if numbered is not None else None)


def test_mentions_links_and_escapes() -> None:
    render = text_of().mrkdwn
    assert render("Ping <@U0ALICE01> in <#C0CHURN01>") == "Ping @alice in #churn-model"
    assert render("<@U0BOB|bobby> and <#C1|ops>") == "@bobby and #ops"
    assert render("<https://mlflow.example/runs/1|run 1>") == "run 1 (https://mlflow.example/runs/1)"
    assert render("<https://example.com>") == "https://example.com"
    assert render("<!here> <!channel> <!subteam^S1|@ml-team>") == "@here @channel @ml-team"
    # Escaped user text is shown as typed, never as a mention.
    assert render("&lt;!channel&gt; &amp; &amp;lt;") == "<!channel> & &lt;"
    assert unescape("a &gt; b") == "a > b"


def test_emphasis_is_ansi_on_a_terminal_and_plain_when_piped() -> None:
    assert text_of().mrkdwn("*Status* _soon_ ~old~ `code`") == "Status soon ~old~ `code`"
    colored = text_of(Style(color=True)).mrkdwn("*Status*")
    assert colored == "\x1b[1mStatus\x1b[22m"
    assert text_of().mrkdwn("2*3*4 and snake_case_name") == "2*3*4 and snake_case_name"
    assert text_of().mrkdwn(":white_check_mark: done :no_such_emoji:") == \
        "✅ done :no_such_emoji:"
    assert text_of().mrkdwn("> quoted\nnot") == "│ quoted\nnot"


def test_blocks_become_lines_with_numbered_controls() -> None:
    pressed: list[dict[str, Any]] = []
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "D-1 · Use <XGBoost>"}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": "*Status*\n:large_blue_circle: proposed"},
            {"type": "mrkdwn", "text": "*Deciders*\n<@U0ALICE01>, <@U0BOB0001>"}]},
        {"type": "section", "text": {"type": "mrkdwn", "text": "Pick one"},
         "accessory": {"type": "static_select", "action_id": "pick",
                       "placeholder": {"type": "plain_text", "text": "Choose"},
                       "options": []}},
        {"type": "divider"},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "Logged by <@U0ALICE01>"},
                                         {"type": "image", "image_url": "x", "alt_text": "pic"}]},
        {"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Approve"},
             "action_id": "a", "value": "1", "style": "primary"},
            {"type": "button", "text": {"type": "plain_text", "text": "Reject"},
             "action_id": "r", "value": "1", "style": "danger"}]},
        {"type": "video", "title": {"type": "plain_text", "text": "x"}},
    ]
    lines = text_of(numbered=pressed).blocks(blocks)
    assert lines == [
        "D-1 · Use <XGBoost>", "───────────────────",
        "Status: 🔵 proposed", "Deciders: @alice, @u0bob0001",
        "Pick one", "[1] Choose ▾",
        "─" * 20,
        "Logged by @alice  [pic]",
        "[2] Approve   [3] Reject",
        "[video block]",
    ]
    assert [e["action_id"] for e in pressed] == ["pick", "a", "r"]
    # Without a numberer (inside a form), controls are shown but not pressable.
    assert text_of().blocks(blocks[5:6]) == ["[Approve]   [Reject]"]


def test_message_without_blocks_rich_text_and_attachments() -> None:
    render = text_of()
    assert render.message({"text": "plain *old* text"}) == ["plain old text"]
    rich = {"type": "rich_text", "elements": [
        {"type": "rich_text_section", "elements": [
            {"type": "text", "text": "Hi "}, {"type": "user", "user_id": "U0ALICE01"},
            {"type": "link", "url": "https://x.example", "text": "x"}]},
        {"type": "rich_text_list", "elements": [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": "one"}]}]}]}
    assert render.blocks([rich]) == ["Hi @alicex (https://x.example)", "• one"]
    lines = render.message({"text": "t", "attachments": [
        {"title": "Alert", "text": "CPU high", "fields": [{"title": "Sev", "value": "2"}]}]})
    assert lines == ["t", "│ Alert", "│ CPU high", "│ Sev: 2"]


def test_real_decision_card_reads_well() -> None:
    from datetime import UTC, datetime

    from bot.models import Decision

    decision = Decision(id=7, team_id="T1", number=7, title="Use <b> & co", status="accepted",
                        deciders=["U0ALICE01"], context="Tabular data", options="", decision="",
                        consequences="", created_by="U0ALICE01",
                        created_at=datetime(2026, 3, 1, tzinfo=UTC))
    card = renderer.message("decision/card", d=decision)
    pressed: list[dict[str, Any]] = []
    lines = text_of(numbered=pressed).message(card)
    assert lines[0] == "D-7 · Use <b> & co"
    assert "Status: ✅ accepted" in lines and "Deciders: @alice" in lines
    assert "Tabular data" in lines
    assert lines[-2] == "Logged by @alice on 2026-03-01"
    assert lines[-1] == "[1] Add details" and pressed[0]["action_id"] == "decision_add_details"
