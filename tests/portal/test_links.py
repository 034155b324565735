""""Open in Quorum": with QUORUM_PUBLIC_URL set, cards and `show` replies link to their portal
page, and the link opens it for a signed-in member; without it, no link."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from bot.render import slack_unescape
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import TEAM, SlackSender

from .conftest import ALICE, sign_in

LINK = re.compile(r"<(http://[^|>]+)\|Open in Quorum>")


@pytest.fixture
def workspace(fake_slack: FakeSlack) -> Iterator[FakeSlack]:
    """The fake Slack's bot lives in the workspace the signed requests come from."""
    fake_slack.team_id = TEAM
    fake_slack.signed_in_team = TEAM
    yield fake_slack
    del fake_slack.team_id  # back to the class's default


def test_cards_and_show_replies_link_to_the_portal(workspace: FakeSlack,
                                                   portal_server: QuorumServer) -> None:
    sender = SlackSender(portal_server.url, workspace.response_url(), team=TEAM)
    try:
        assert sender.command("/decision", "Ship the <b>churn</b> model").status_code == 200
        card = workspace.wait_for("chat.postMessage")[0]
        [link] = LINK.findall(json.dumps(card.args["blocks"]))
        assert link == f"{portal_server.url}/portal/decisions/D-1"
        shown = sender.command("/decision", "show D-1").json()
        assert LINK.findall(json.dumps(shown["blocks"])) == [link]
        assert sender.command("/risk", "Label leakage").status_code == 200
        risk_card = workspace.wait_for("chat.postMessage", count=2)[1]
        assert f"{portal_server.url}/portal/risks/R-1" in json.dumps(risk_card.args["blocks"])
    finally:
        sender.close()
    client = sign_in(portal_server, workspace, ALICE)
    try:
        page = client.get(link)
        assert page.status_code == 200
        assert "Ship the &lt;b&gt;churn&lt;/b&gt; model" in page.text
    finally:
        client.close()


def test_no_link_without_a_public_url(slack: SlackSender, fake_slack: FakeSlack) -> None:
    assert slack.command("/decision", "Ship it").status_code == 200
    card = fake_slack.wait_for("chat.postMessage")[0]
    shown = slack.command("/decision", "show D-1").json()
    assert "Open in Quorum" not in slack_unescape(json.dumps(card.args["blocks"]))
    assert "Open in Quorum" not in json.dumps(shown)


LINKED_TEMPLATES = ["decision/card", "decision/show", "hypothesis/card", "hypothesis/show",
                    "risk/card", "risk/show", "gate/card", "gate/status", "incident/card",
                    "promotion/announcement", "promotion/trace"]


@pytest.mark.parametrize("name", LINKED_TEMPLATES)
def test_linked_cards_stay_valid_block_kit_with_hostile_samples(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from slack_sdk.models.blocks import Block

    from bot.render import renderer
    from support.template_samples import SAMPLES

    monkeypatch.setattr(renderer, "public_url", "https://quorum.example.com")
    linked = 0
    for context in SAMPLES[name]():
        message = renderer.message(name, **context)
        for block in message["blocks"]:
            parsed = Block.parse(block)
            assert parsed is not None
            parsed.validate_json()
        found = LINK.findall(json.dumps(message["blocks"]).replace("https://", "http://"))
        linked += bool(found)
        for url in found:  # the path is quoted: no `|`, `>` or space can end the link early
            assert re.fullmatch(r"http://quorum\.example\.com/portal/[\w\-/%.:~]+", url), url
    assert linked, f"{name} rendered no Open in Quorum link"
