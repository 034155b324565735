"""`/risk` end to end: signed requests in, fake Slack and the database checked."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from sqlalchemy import func, insert, select, update

from bot.models import AuditEvent, JobClaim, OutboxMessage, Project, Risk, RiskAssessment
from bot.render import slack_unescape
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import SlackSender

CHANNEL = "C0CHURN01"
ALICE, BOB, CAROL = "U0ALICE01", "U0BOB0001", "U0CAROL01"
X = "\N{MULTIPLICATION SIGN}"  # as the templates write likelihood x impact


def risks(quorum: QuorumServer) -> list[Risk]:
    with quorum.runtime.db.session() as session:
        found = list(session.scalars(select(Risk).order_by(Risk.number)))
        for risk in found:
            _ = risk.assessments  # load the history before the session closes
        return found


def risk(quorum: QuorumServer, number: int = 1) -> Risk:
    return next(r for r in risks(quorum) if r.number == number)


def counts(quorum: QuorumServer) -> tuple[int, int, int, int]:
    """Risks, assessments, audit events and queued Slack calls: what bad input must not change."""
    with quorum.runtime.db.session() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Risk, RiskAssessment, AuditEvent, OutboxMessage)
        )


def actions(quorum: QuorumServer) -> list[str]:
    with quorum.runtime.db.session() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def set_fields(quorum: QuorumServer, number: int, **values: Any) -> None:
    with quorum.runtime.db.session() as session:
        session.execute(update(Risk).where(Risk.number == number).values(**values))


def card_of(fake: FakeSlack, ref: str, channel: str = CHANNEL) -> dict[str, Any]:
    """The current state in Slack of the card whose header starts with `ref`."""
    for message in fake.messages.get(channel, {}).values():
        header = message.get("blocks", [{}])[0]
        if header.get("type") == "header" and header["text"]["text"].startswith(f"{ref} "):
            return message
    raise AssertionError(f"no card for {ref} in {channel}")


def text_of(message: dict[str, Any]) -> str:
    """A message's text and blocks, with Slack's escaping undone."""
    return slack_unescape(message.get("text", "") + json.dumps(message.get("blocks", []),
                                                               ensure_ascii=False))


def reply_text(response: Any) -> str:
    return text_of(response.json())


def valid_blocks(message: dict[str, Any], limit: int = 50) -> None:
    assert 0 < len(message["blocks"]) <= limit
    for block in message["blocks"]:
        parsed = Block.parse(block)
        assert parsed is not None
        parsed.validate_json()
        for text in re.findall(r'"text": "((?:[^"\\]|\\.)*)"', json.dumps(block)):
            assert len(text) <= 3000


def critical_posts(fake: FakeSlack) -> list[Any]:
    return [c for c in fake.calls_to("chat.postMessage") if "is now critical" in c.args["text"]]


def today() -> date:
    return datetime.now(UTC).date()


def open_modal(slack: SlackSender, fake: FakeSlack) -> dict[str, Any]:
    slack.command("/risk", "")
    return fake.wait_for("views.open")[-1].args["view"]


# --- logging -------------------------------------------------------------------------------


def test_quick_log_posts_card_with_defaults_and_audits(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    response = slack.command("/risk", "Label leakage from post-outcome features")

    body = response.json()
    assert response.status_code == 200 and body["response_type"] == "ephemeral"
    assert "R-1" in body["text"] and "default score 9" in body["text"]
    post = fake_slack.wait_for("chat.postMessage")[0]
    assert post.args["channel"] == CHANNEL
    assert post.args["blocks"][0]["text"]["text"] == \
        "R-1 · Label leakage from post-outcome features"
    card = text_of(post.args)
    assert f"*9* :large_yellow_circle: medium (3 {X} 3)" in card
    assert f"<@{ALICE}>" in card and (today() + timedelta(days=14)).isoformat() in card
    buttons = [e["action_id"] for e in post.args["blocks"][-1]["elements"]]
    assert buttons == ["risk_reassess", "risk_add_details", "risk_close"]
    [logged] = risks(quorum)
    assert (logged.ref, logged.score, logged.band, logged.status) == ("R-1", 9, "medium", "open")
    assert logged.owner == ALICE and logged.next_review == today() + timedelta(days=14)
    assert [(a.likelihood, a.impact, a.score) for a in logged.assessments] == [(3, 3, 9)]
    assert actions(quorum) == ["risk.created"]
    assert critical_posts(fake_slack) == []


def test_modal_logs_a_risk_and_a_critical_one_is_announced(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    view = open_modal(slack, fake_slack)
    assert view["callback_id"] == "risk_modal"
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    assert blocks["owner"]["element"]["initial_user"] == ALICE
    assert blocks["next_review"]["element"]["initial_date"] == \
        (today() + timedelta(days=14)).isoformat()
    review = (today() + timedelta(days=30)).isoformat()

    answer = slack.submit(view, {
        "title": "PII in training logs", "description": "Raw emails reach the feature store",
        "category": "compliance", "likelihood": "4", "impact": "5", "owner": BOB,
        "treatment": "avoid", "mitigation": "Hash emails at ingestion", "next_review": review,
    })

    assert answer.status_code == 200 and not answer.content.strip(b"{}")
    fake_slack.wait_for("chat.postMessage", count=2)
    [logged] = risks(quorum)
    assert (logged.category, logged.likelihood, logged.impact, logged.score, logged.band) == \
        ("compliance", 4, 5, 20, "critical")
    assert (logged.owner, logged.treatment, logged.next_review.isoformat()) == \
        (BOB, "avoid", review)
    card = text_of(card_of(fake_slack, "R-1"))
    assert "Hash emails at ingestion" in card and "Raw emails reach" in card
    assert f"*20* :red_circle: critical (4 {X} 5)" in card
    [announcement] = critical_posts(fake_slack)
    assert announcement.args["channel"] == CHANNEL and "thread_ts" not in announcement.args
    assert "*R-1* PII in training logs is *critical*: score *20*" in text_of(announcement.args)


@pytest.mark.parametrize(("values", "field", "message"), [
    ({"title": "  "}, "title", "title is empty"),
    ({"likelihood": None}, "likelihood", "Choose the likelihood"),
    ({"impact": None}, "impact", "Choose the impact"),
    ({"next_review": "2020-01-31"}, "next_review", "2020-01-31 is in the past"),
    ({"mitigation": "m" * 3001}, "mitigation", "3001 characters"),
])
def test_bad_modal_input_answers_on_the_field_and_writes_nothing(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack,
        values: dict[str, Any], field: str, message: str) -> None:
    view = open_modal(slack, fake_slack)
    before = counts(quorum)
    filled = {"title": "Latency regression", "likelihood": "2", "impact": "2", **values}
    answer = slack.submit(view, filled).json()
    assert answer["response_action"] == "errors"
    assert list(answer["errors"]) == [field] and message in answer["errors"][field]
    assert counts(quorum) == before and risks(quorum) == []


def test_tampered_rating_in_modal_is_refused(slack: SlackSender, quorum: QuorumServer,
                                             fake_slack: FakeSlack) -> None:
    view = open_modal(slack, fake_slack)
    for block in view["blocks"]:  # a client that sends an option the form never offered
        if block.get("block_id") == "likelihood":
            block["element"]["options"].append(
                {"text": {"type": "plain_text", "text": "9"}, "value": "9"})
    answer = slack.submit(view, {"title": "Odd", "likelihood": "9", "impact": "2"}).json()
    assert answer["errors"] == {"likelihood": "The likelihood must be a number from 1 to 5, "
                                              "not `9`."}
    assert risks(quorum) == []


# --- scoring -------------------------------------------------------------------------------


def test_bands_at_their_edges_through_update(slack: SlackSender, quorum: QuorumServer,
                                             fake_slack: FakeSlack) -> None:
    slack.command("/risk", "Training-serving skew")
    post = fake_slack.wait_for("chat.postMessage")[0]
    steps = [(2, 2, 4, "low"), (1, 5, 5, "medium"), (3, 3, 9, "medium"), (2, 5, 10, "high"),
             (3, 5, 15, "high"), (4, 4, 16, "critical"), (5, 5, 25, "critical"),
             (1, 1, 1, "low"), (5, 4, 20, "critical")]
    for likelihood, impact, score, band in steps:
        response = slack.command("/risk", f"update R-1 likelihood {likelihood} impact {impact}")
        assert f"→ {score} ({band})" in response.json()["text"]
        current = risk(quorum)
        assert (current.likelihood, current.impact, current.score, current.band) == \
            (likelihood, impact, score, band)

    assert [a.score for a in risk(quorum).assessments] == [9] + [s[2] for s in steps]
    # Announced when it entered the critical band (16 and 20), not while it stayed there (25).
    settle(quorum, fake_slack)
    assert len(critical_posts(fake_slack)) == 2
    # The card was edited in place (some intermediate edits may be skipped as stale).
    assert all(c.args["ts"] == post.response["ts"] for c in fake_slack.calls_to("chat.update"))
    assert f"*20* :red_circle: critical (5 {X} 4)" in text_of(card_of(fake_slack, "R-1"))
    assert actions(quorum) == ["risk.created"] + ["risk.reassessed"] * len(steps)


def test_update_records_a_note_moves_the_review_and_replies_in_thread(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/risk", "Feature drift")
    post = fake_slack.wait_for("chat.postMessage")[0]
    set_fields(quorum, 1, next_review=today() - timedelta(days=3))  # overdue

    slack.command("/risk", "update r-1 likelihood 4 impact 2 note drift monitor fired twice")

    current = risk(quorum)
    assert current.assessments[-1].note == "drift monitor fired twice"
    assert current.assessments[-1].assessed_by == ALICE
    assert current.next_review == today() + timedelta(days=14)  # reviewed: next in two weeks
    reply = fake_slack.wait_for("chat.postMessage", count=2)[1]
    assert reply.args["thread_ts"] == post.response["ts"]
    assert f"9 medium (3 {X} 3) → *8* :large_yellow_circle: medium (4 {X} 2)" in text_of(reply.args)
    assert "drift monitor fired twice" in text_of(reply.args)

    history = reply_text(slack.command("/risk", "show R-1"))
    assert "Score history* (2 assessments)" in history
    assert history.index("drift monitor fired twice") < history.index("default score")


def test_reassess_button_opens_modal_and_records_assessment(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/risk", "Stale labels")
    post = fake_slack.wait_for("chat.postMessage")[0]
    button = post.args["blocks"][-1]["elements"][0]

    slack.click("risk_reassess", button["value"], message=post.response["message"])
    view = fake_slack.wait_for("views.open")[0].args["view"]
    assert view["callback_id"] == "risk_reassess_modal"
    likelihood = next(b for b in view["blocks"] if b.get("block_id") == "likelihood")
    assert likelihood["element"]["initial_option"]["value"] == "3"
    review = (today() + timedelta(days=7)).isoformat()
    answer = slack.submit(view, {"likelihood": "5", "impact": "4", "note": "Labeler quit",
                                 "next_review": review}, user=BOB)

    assert not answer.content.strip(b"{}")
    current = risk(quorum)
    assert (current.score, current.band, current.next_review.isoformat()) == \
        (20, "critical", review)
    last = current.assessments[-1]
    assert (last.likelihood, last.impact, last.note, last.assessed_by) == (5, 4, "Labeler quit",
                                                                           BOB)
    fake_slack.wait_for("chat.update")
    assert "*20* :red_circle: critical" in text_of(card_of(fake_slack, "R-1"))
    assert len(fake_slack.wait_for("chat.postMessage", count=3)) == 3  # card, thread, alarm
    assert len(critical_posts(fake_slack)) == 1

    # A past review date or a missing rating is answered on its field, nothing written.
    before = counts(quorum)
    slack.click("risk_reassess", button["value"], message=post.response["message"])
    view = fake_slack.wait_for("views.open", count=2)[1].args["view"]
    answer = slack.submit(view, {"next_review": "2001-01-01"}).json()
    assert answer["response_action"] == "errors" and "next_review" in answer["errors"]
    answer = slack.submit(view, {"impact": None}).json()
    assert answer["errors"] == {"impact": "Choose the impact (1 to 5)."}
    assert counts(quorum) == before


def test_add_details_prefills_edits_and_updates_card_in_place(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/risk", "GPU quota exhausted")
    post = fake_slack.wait_for("chat.postMessage")[0]
    set_fields(quorum, 1, next_review=today() - timedelta(days=2))  # overdue, then edited
    slack.click("risk_add_details", "1", message=post.response["message"])
    view = fake_slack.wait_for("views.open")[0].args["view"]
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    assert blocks["title"]["element"]["initial_value"] == "GPU quota exhausted"
    assert "likelihood" not in blocks and "status" in blocks  # the score is re-assessed

    # The overdue date can stay as it is while other fields change.
    slack.submit(view, {"owner": CAROL, "mitigation": "Reserve capacity",
                        "category": "infrastructure", "status": "mitigating"})
    update_call = fake_slack.wait_for("chat.update")[0]
    assert update_call.args["ts"] == post.response["ts"]
    current = risk(quorum)
    assert (current.owner, current.mitigation, current.category, current.status) == \
        (CAROL, "Reserve capacity", "infrastructure", "mitigating")
    assert current.next_review == today() - timedelta(days=2) and current.score == 9
    card = text_of(card_of(fake_slack, "R-1"))
    assert "Reserve capacity" in card and f"<@{CAROL}>" in card and "mitigating" in card
    assert actions(quorum) == ["risk.created", "risk.edited"]
    with quorum.runtime.db.session() as session:
        event = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "risk.edited")).one()
        assert (event.before["owner"], event.after["owner"]) == (ALICE, CAROL)

    # A new date in the past is refused.
    slack.click("risk_add_details", "1", message=post.response["message"])
    view = fake_slack.wait_for("views.open", count=2)[1].args["view"]
    answer = slack.submit(view, {"next_review": (today() - timedelta(days=1)).isoformat()})
    assert "next_review" in answer.json()["errors"]
    assert actions(quorum) == ["risk.created", "risk.edited"]


# --- closing -------------------------------------------------------------------------------


def test_close_with_reason_then_closing_again_is_refused(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/risk", "Vendor API deprecation")
    post = fake_slack.wait_for("chat.postMessage")[0]

    response = slack.command("/risk", "close R-1 Migrated to the v2 endpoint")
    assert "Closed *R-1*" in response.json()["text"]
    current = risk(quorum)
    assert (current.status, current.closed_reason, current.closed_by) == \
        ("closed", "Migrated to the v2 endpoint", ALICE)
    fake_slack.wait_for("chat.update")
    card = card_of(fake_slack, "R-1")
    assert "Migrated to the v2 endpoint" in text_of(card)
    assert all(b["type"] != "actions" for b in card["blocks"])  # no buttons on a closed risk
    reply = fake_slack.wait_for("chat.postMessage", count=2)[1]
    assert reply.args["thread_ts"] == post.response["ts"]

    before = counts(quorum)
    for text in ("close R-1 again", "update R-1 likelihood 2 impact 2"):
        body = slack.command("/risk", text).json()
        assert body["response_type"] == "ephemeral" and "R-1 is" in body["text"]
        assert "closed" in body["text"]
    slack.click("risk_reassess", "1", message=post.response["message"])
    [refusal] = fake_slack.wait_for("chat.postEphemeral")
    assert refusal.args["user"] == ALICE and "R-1 is closed" in refusal.args["text"]
    assert fake_slack.calls_to("views.open") == []
    assert counts(quorum) == before
    assert actions(quorum) == ["risk.created", "risk.closed"]


def test_close_button_asks_for_a_reason(slack: SlackSender, quorum: QuorumServer,
                                        fake_slack: FakeSlack) -> None:
    slack.command("/risk", "Cold start latency")
    post = fake_slack.wait_for("chat.postMessage")[0]
    slack.click("risk_close", "1", message=post.response["message"])
    view = fake_slack.wait_for("views.open")[0].args["view"]
    assert view["callback_id"] == "risk_close_modal"

    answer = slack.submit(view, {"reason": "   "}).json()
    assert answer["errors"] == {"reason": "Say why the risk is closed."}
    assert risk(quorum).status == "open"

    slack.submit(view, {"reason": "Warm pool in place"}, user=BOB)
    current = risk(quorum)
    assert (current.status, current.closed_by, current.closed_reason) == \
        ("closed", BOB, "Warm pool in place")
    answer = slack.submit(view, {"reason": "twice"}).json()  # the same modal submitted again
    assert answer["response_action"] == "errors"
    assert "already closed" in json.dumps(answer["errors"])
    assert actions(quorum) == ["risk.created", "risk.closed"]


# --- bad input -----------------------------------------------------------------------------


def test_help_and_bad_commands_answer_ephemerally_and_change_nothing(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    help_text = reply_text(slack.command("/risk", "help"))
    assert "/risk update R-n likelihood <1-5> impact <1-5>" in help_text
    assert "/risk close R-n <reason>" in help_text and "/risk heatmap" in help_text
    slack.command("/risk", "Known risk")
    fake_slack.wait_for("chat.postMessage")
    before = counts(quorum)
    cases = {
        "update R-1 likelihood 6 impact 2": "The likelihood must be a number from 1 to 5, not `6`",
        "update R-1 likelihood 2 impact 0": "The impact must be a number from 1 to 5, not `0`",
        "update R-1 likelihood high impact 2": "likelihood must be a number from 1 to 5",
        "update R-1 likelihood 2.5 impact 2": "not `2.5`",
        "update R-1 likelihood 2": "impact",
        "update R-99 likelihood 2 impact 2": "There is no risk R-99",
        "update D-1 likelihood 2 impact 2": "not a reference like R-12",
        "close R-99 gone": "There is no risk R-99",
        "close R-1": "<reason> is missing",
        "show R-99": "There is no risk R-99",
        "show": "A reference like R-12 is missing",
        "heatmap now": "Unexpected `now`",
        "x" * 151: "151 characters long",
    }
    for text, expected in cases.items():
        response = slack.command("/risk", text)
        body = response.json()
        assert response.status_code == 200 and body["response_type"] == "ephemeral"
        assert expected in slack_unescape(json.dumps(body)), (text, body["text"])
    assert counts(quorum) == before
    assert risk(quorum).score == 9


# --- list and heat map ---------------------------------------------------------------------


def test_list_is_sorted_by_score_with_band_badges(slack: SlackSender, quorum: QuorumServer,
                                                  fake_slack: FakeSlack) -> None:
    for title, (likelihood, impact) in {"Low one": (1, 2), "Critical one": (5, 5),
                                        "High one": (3, 4), "Closed one": (5, 4)}.items():
        slack.command("/risk", title)
        number = risks(quorum)[-1].number
        slack.command("/risk", f"update R-{number} likelihood {likelihood} impact {impact}")
    slack.command("/risk", "close R-4 not relevant any more")
    response = slack.command("/risk", "list")
    text = reply_text(response)
    valid_blocks(response.json())
    assert text.index("Critical one") < text.index("High one") < text.index("Low one")
    assert "Closed one" not in text and "1 closed, not shown" in text
    assert ":red_circle: critical *25* · *R-2* Critical one" in text
    assert ":large_orange_circle: high *12* · *R-3* High one" in text
    assert ":large_green_circle: low *2* · *R-1* Low one" in text


def test_list_pages_through_many_risks(slack: SlackSender, quorum: QuorumServer,
                                       fake_slack: FakeSlack) -> None:
    add_risks(quorum, [(1 + n % 5, 1 + (n // 5) % 5) for n in range(40)])
    response = slack.command("/risk", "list")
    valid_blocks(response.json())
    text = reply_text(response)
    assert "Page 1 of 3 · 40 open risks" in text and "*25*" in text
    lower = next(e for b in response.json()["blocks"] if b["type"] == "actions"
                 for e in b["elements"] if e["action_id"] == "risk_list_page")
    slack.click("risk_list_page", lower["value"], ephemeral=True)
    page_two = fake_slack.wait_for("response_url")[0].args
    assert page_two["replace_original"] is True and "Page 2 of 3" in text_of(page_two)


def add_risks(quorum: QuorumServer, scores: list[tuple[int, int]],
              channel: str = CHANNEL) -> None:
    """Many risks at once, straight into the database (their cards are not under test)."""
    from bot.models import utcnow
    from bot.services import access
    from bot.services.projects import project_for_channel
    from bot.services.refs import current_value
    from bot.services.risks import band_for

    with quorum.runtime.db.session() as session:
        project = project_for_channel(session, "T0TEAM001", channel, "churn-model")
        # Public, as Slack would have told: a project of unknown privacy DMs nobody its risks.
        access.set_privacy(session, project, False, utcnow())
        first = current_value(session, project.team_id, "R") + 1
        session.execute(insert(Risk), [
            {"team_id": project.team_id, "number": first + n, "project_id": project.id,
             "title": f"Risk {n} " + "<!channel> " * 12, "likelihood": likelihood,
             "impact": impact, "score": likelihood * impact,
             "band": band_for(likelihood * impact), "owner": ALICE,
             "next_review": today() + timedelta(days=14), "created_by": ALICE}
            for n, (likelihood, impact) in enumerate(scores)
        ])


def grid(response: Any) -> dict[tuple[int, int], int]:
    """The heat map's counts by (likelihood, impact), read back from its Block Kit."""
    section = next(b for b in response.json()["blocks"] if b["type"] == "section"
                   and b["text"]["text"].startswith("`L5`"))
    cells: dict[tuple[int, int], int] = {}
    for line in section["text"]["text"].splitlines()[:5]:
        likelihood = int(line[2])
        values = re.findall(r":large_(\w+)_square:`\s*([·\d]+)`", line)
        assert len(values) == 5, line
        for impact, (_, count) in enumerate(values, start=1):
            cells[(likelihood, impact)] = 0 if count == "·" else int(count)
    return cells


def test_heatmap_counts_open_risks_per_cell_and_lists_the_hottest(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    plan = [(5, 5), (5, 5), (4, 5), (3, 3), (3, 3), (3, 3), (1, 1), (2, 4)]
    for n, (likelihood, impact) in enumerate(plan, start=1):
        slack.command("/risk", f"Risk number {n}")
        slack.command("/risk", f"update R-{n} likelihood {likelihood} impact {impact}")
    slack.command("/risk", "Closed risk")
    slack.command("/risk", "update R-9 likelihood 5 impact 5")
    slack.command("/risk", "close R-9 done")
    slack.command("/risk", "Elsewhere", channel="C0FRAUD01", channel_name="fraud")

    response = slack.command("/risk", "heatmap")
    valid_blocks(response.json())
    cells = grid(response)
    assert cells[(5, 5)] == 2 and cells[(4, 5)] == 1 and cells[(3, 3)] == 3
    assert cells[(1, 1)] == 1 and cells[(2, 4)] == 1 and sum(cells.values()) == 8
    text = reply_text(response)
    assert "8 open risks" in text
    section = next(b for b in response.json()["blocks"] if b["type"] == "section"
                   and b["text"]["text"].startswith("`L5`"))["text"]["text"]
    first, last = section.splitlines()[0], section.splitlines()[4]
    assert first.startswith("`L5` :large_yellow_square:") and first.count("large_red_square") == 2
    assert last.startswith("`L1` :large_green_square:")
    # The three hottest cells are listed with their risks: 25, 20, then 9.
    hot = [b["text"]["text"] for b in response.json()["blocks"][5:] if b["type"] == "section"]
    assert len(hot) == 3
    assert hot[0].startswith(f":large_red_square: *Likelihood 5 {X} impact 5 = 25*")
    assert "*R-1* Risk number 1" in hot[0] and "*R-2* Risk number 2" in hot[0]
    assert "R-9" not in text and "Elsewhere" not in text
    assert "= 20*" in hot[1] and "= 9*" in hot[2] and "3 risks" in hot[2]


def test_heatmap_and_list_stay_within_slack_limits_with_many_risks(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    add_risks(quorum, [(5, 5)] * 1200 + [(4, 5)] * 30 + [(1, 1)] * 7)
    response = slack.command("/risk", "heatmap")
    valid_blocks(response.json())
    cells = grid(response)
    assert (cells[(5, 5)], cells[(4, 5)], cells[(1, 1)]) == (1200, 30, 7)
    text = reply_text(response)
    assert "…and 1190 more" in text and "…and 20 more" in text
    assert "<!channel>" not in json.dumps(response.json())  # titles are escaped
    valid_blocks(slack.command("/risk", "list").json())


def test_heatmap_of_an_empty_register(slack: SlackSender) -> None:
    response = slack.command("/risk", "heatmap")
    valid_blocks(response.json())
    assert sum(grid(response).values()) == 0 and "No open risks yet" in reply_text(response)


# --- scheduled reviews ---------------------------------------------------------------------


def digests(fake: FakeSlack, channel: str) -> list[Any]:
    return [c for c in fake.calls_to("chat.postMessage")
            if c.args["channel"] == channel and "due for review" in json.dumps(c.args)]


def settle(quorum: QuorumServer, fake: FakeSlack) -> None:
    """Wait until the outbox has delivered everything queued so far."""
    from bot import outbox
    from support.waiting import eventually

    def delivered() -> bool:
        with quorum.runtime.db.session() as session:
            return outbox.pending_count(session) == 0

    eventually(delivered)


def test_morning_digest_reminds_channel_and_owners_once_a_day(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/risk", "Overdue, Alice's", user=ALICE)
    slack.command("/risk", "Due today, Bob's", user=BOB)
    slack.command("/risk", "Overdue, Bob's", user=BOB)
    slack.command("/risk", "Not due yet", user=CAROL)
    slack.command("/risk", "Closed and overdue", user=CAROL)
    slack.command("/risk", "close R-5 gone")
    day = date(2031, 3, 10)
    set_fields(quorum, 1, next_review=day - timedelta(days=3))
    set_fields(quorum, 2, next_review=day)
    set_fields(quorum, 3, next_review=day - timedelta(days=1))
    set_fields(quorum, 4, next_review=day + timedelta(days=1))
    set_fields(quorum, 5, next_review=day - timedelta(days=9))
    settle(quorum, fake_slack)

    quorum.scheduler.run_due(datetime(2031, 3, 10, 8, 59, tzinfo=UTC))
    settle(quorum, fake_slack)
    assert digests(fake_slack, CHANNEL) == []

    quorum.scheduler.run_due(datetime(2031, 3, 10, 9, 0, tzinfo=UTC))
    settle(quorum, fake_slack)
    [digest] = digests(fake_slack, CHANNEL)
    text = text_of(digest.args)
    assert "3 risks are due for review" in text
    assert "*R-1*" in text and "*R-2*" in text and "*R-3*" in text
    assert "R-4" not in text and "R-5" not in text
    assert "overdue by 3 days" in text and "overdue by 1 day " in text and "due today" in text
    valid_blocks(digest.args)
    [to_alice] = digests(fake_slack, ALICE)
    assert "R-1" in text_of(to_alice.args) and "R-2" not in text_of(to_alice.args)
    [to_bob] = digests(fake_slack, BOB)
    assert "2 of your risks in <#C0CHURN01>" in text_of(to_bob.args)
    assert "R-2" in text_of(to_bob.args) and "R-3" in text_of(to_bob.args)
    assert digests(fake_slack, CAROL) == []

    # Later the same morning, and on another replica: nothing more.
    quorum.scheduler.run_due(datetime(2031, 3, 10, 9, 0, 30, tzinfo=UTC))
    quorum.scheduler.run_due(datetime(2031, 3, 10, 17, 0, tzinfo=UTC))
    settle(quorum, fake_slack)
    assert len(digests(fake_slack, CHANNEL)) == 1

    # R-1 was reviewed (its date moved on): it drops out of the next morning's digest.
    set_fields(quorum, 1, next_review=date(2031, 3, 25))
    quorum.scheduler.run_due(datetime(2031, 3, 11, 9, 5, tzinfo=UTC))
    settle(quorum, fake_slack)
    second = digests(fake_slack, CHANNEL)[1]
    assert "R-1" not in text_of(second.args) and "overdue by 1 day " in text_of(second.args)
    assert len(digests(fake_slack, ALICE)) == 1 and len(digests(fake_slack, BOB)) == 2
    with quorum.runtime.db.session() as session:
        keys = set(session.scalars(select(JobClaim.key)))
    assert {k for k in keys if k.startswith("risk_reviews:")} == {
        "risk_reviews:1:2031-03-10", "risk_reviews:1:2031-03-11"}


def test_digest_follows_the_project_time_zone(slack: SlackSender, quorum: QuorumServer,
                                              fake_slack: FakeSlack) -> None:
    slack.command("/risk", "New York risk", channel="C0NYC0001", channel_name="nyc")
    slack.command("/risk", "UTC risk")
    with quorum.runtime.db.session() as session:
        session.execute(update(Project).where(Project.channel_id == "C0NYC0001")
                        .values(timezone="America/New_York"))
    set_fields(quorum, 1, next_review=date(2031, 1, 5))
    set_fields(quorum, 2, next_review=date(2031, 1, 5))
    settle(quorum, fake_slack)

    quorum.scheduler.run_due(datetime(2031, 1, 6, 13, 59, tzinfo=UTC))  # 08:59 in New York
    settle(quorum, fake_slack)
    assert digests(fake_slack, "C0NYC0001") == [] and len(digests(fake_slack, CHANNEL)) == 1
    quorum.scheduler.run_due(datetime(2031, 1, 6, 14, 0, tzinfo=UTC))  # 09:00 in New York
    settle(quorum, fake_slack)
    assert len(digests(fake_slack, "C0NYC0001")) == 1
    # Shortly after midnight UTC it is still the 6th in New York: no second digest there,
    # but the UTC project's 7th has not reached 09:00 yet either.
    quorum.scheduler.run_due(datetime(2031, 1, 7, 3, 0, tzinfo=UTC))
    settle(quorum, fake_slack)
    assert len(digests(fake_slack, "C0NYC0001")) == 1 and len(digests(fake_slack, CHANNEL)) == 1


def test_digest_falls_back_to_quorum_timezone(slack: SlackSender, quorum: QuorumServer,
                                              fake_slack: FakeSlack,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUORUM_TIMEZONE", "Asia/Tokyo")
    slack.command("/risk", "Tokyo risk")
    set_fields(quorum, 1, next_review=date(2031, 1, 5))
    settle(quorum, fake_slack)
    quorum.scheduler.run_due(datetime(2031, 1, 5, 23, 59, tzinfo=UTC))  # 08:59 on the 6th
    settle(quorum, fake_slack)
    assert digests(fake_slack, CHANNEL) == []
    quorum.scheduler.run_due(datetime(2031, 1, 6, 0, 0, tzinfo=UTC))  # 09:00 on the 6th
    settle(quorum, fake_slack)
    [digest] = digests(fake_slack, CHANNEL)
    assert "overdue by 1 day " in text_of(digest.args) and "2031-01-06" in text_of(digest.args)


def test_digest_of_many_overdue_risks_stays_within_limits(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    add_risks(quorum, [(3, 3)] * 70)
    with quorum.runtime.db.session() as session:
        session.execute(update(Risk).values(next_review=date(2031, 1, 1)))
    quorum.scheduler.run_due(datetime(2031, 1, 2, 9, 0, tzinfo=UTC))
    settle(quorum, fake_slack)
    [digest] = digests(fake_slack, CHANNEL)
    valid_blocks(digest.args)
    assert "70 risks are due" in text_of(digest.args) and "…and 50 more" in text_of(digest.args)
    assert len(digests(fake_slack, ALICE)) == 1
