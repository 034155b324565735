"""`/hypothesis` end to end: signed requests in, fake Slack and the database checked."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select

from bot.models import AuditEvent, Decision, Hypothesis, OutboxMessage
from bot.render import slack_unescape
from bot.services import hypotheses as service
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import SlackSender
from support.waiting import eventually

CHANNEL = "C0CHURN01"
MLFLOW_RUN = "https://mlflow.example.com/#/experiments/4/runs/0a1b2c?tab=metrics&x=1"


def hypotheses(quorum: QuorumServer) -> list[Hypothesis]:
    with quorum.runtime.db.session() as session:
        found = list(session.scalars(select(Hypothesis).order_by(Hypothesis.number)))
        for h in found:  # load what the assertions look at before the session closes
            _ = (h.cites, h.reopened_by, h.decisions, h.project)
        return found


def state(quorum: QuorumServer) -> tuple[Any, ...]:
    """Everything a refused request must leave as it was."""
    with quorum.runtime.db.session() as session:
        rows = [service.as_record(h) for h in session.scalars(
            select(Hypothesis).order_by(Hypothesis.number))]
        audit = session.scalar(select(func.count()).select_from(AuditEvent))
        queued = session.scalar(select(func.count()).select_from(OutboxMessage))
        return rows, audit, queued


def audit_actions(quorum: QuorumServer, ref: str) -> list[str]:
    with quorum.runtime.db.session() as session:
        return list(session.scalars(select(AuditEvent.action).where(
            AuditEvent.entity_type == "hypotheses", AuditEvent.entity_ref == ref)
            .order_by(AuditEvent.id)))


def card_of(fake: FakeSlack, ref: str) -> dict[str, Any]:
    """The current state in Slack of the card whose header starts with `ref`."""
    for message in fake.messages.get(CHANNEL, {}).values():
        header = message.get("blocks", [{}])[0]
        if header.get("type") == "header" and header["text"]["text"].startswith(f"{ref} "):
            return message
    raise AssertionError(f"no card for {ref} in {CHANNEL}")


def card_showing(fake: FakeSlack, ref: str, text: str) -> dict[str, Any]:
    """The card of `ref` once it shows `text` (updates are delivered in the background)."""
    return eventually(lambda: text in json.dumps(card_of(fake, ref)["blocks"])
                      and card_of(fake, ref))


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """`{action_id: value}` of the buttons on a message."""
    return {e["action_id"]: e["value"] for b in message["blocks"] if b["type"] == "actions"
            for e in b["elements"]}


def reply_text(response: Any) -> str:
    """The reply's text and blocks, with Slack's escaping undone."""
    body = response.json()
    return slack_unescape(body.get("text", "") + json.dumps(body.get("blocks", []),
                                                            ensure_ascii=False))


def block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


def log_running(slack: SlackSender, fake: FakeSlack,
                statement: str = "Tenure lifts recall") -> dict[str, Any]:
    """Log a hypothesis and start it; its delivered card."""
    slack.command("/hypothesis", statement)
    post = fake.wait_for("chat.postMessage", predicate=lambda call: call.args["blocks"][0].get(
        "text", {}).get("text", "").endswith(f" · {statement}"))[0]
    ref = post.args["blocks"][0]["text"]["text"].split(" ")[0]
    slack.command("/hypothesis", f"start {ref}")
    return post.response


def test_quick_log_posts_card_with_add_details_and_audits(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    response = slack.command("/hypothesis", "Tenure features lift churn recall by 3 points")

    assert response.status_code == 200 and response.json()["response_type"] == "ephemeral"
    assert "H-1" in response.json()["text"]
    post = fake_slack.wait_for("chat.postMessage")[0]
    assert post.args["channel"] == CHANNEL
    assert post.args["blocks"][0]["text"]["text"] == \
        "H-1 · Tenure features lift churn recall by 3 points"
    assert set(buttons(post.args)) == {"hypothesis_add_details", "hypothesis_start"}
    assert "proposed" in json.dumps(post.args["blocks"])
    [h] = hypotheses(quorum)
    assert (h.ref, h.status, h.owner, h.created_by) == ("H-1", "proposed", "U0ALICE01",
                                                          "U0ALICE01")
    assert audit_actions(quorum, "H-1") == ["hypothesis.created"]


def test_references_are_their_own_sequence(slack: SlackSender, quorum: QuorumServer) -> None:
    slack.command("/decision", "A decision first")
    slack.command("/hypothesis", "First", channel="C0CHURN01")
    slack.command("/hypothesis", "Second", channel="C0FRAUD01", channel_name="fraud")
    assert [h.ref for h in hypotheses(quorum)] == ["H-1", "H-2"]
    assert [h.project.channel_id for h in hypotheses(quorum)] == ["C0CHURN01", "C0FRAUD01"]


def test_slack_escaped_and_hostile_statement_is_shown_as_typed(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    # The sender escapes &, < and > as Slack does, keeping the mentions Slack turns into entities.
    slack.command("/hypothesis", "Ping <!channel> & <@U0BOB0001> lifts AUC")
    post = fake_slack.wait_for("chat.postMessage")[0]
    [h] = hypotheses(quorum)
    assert h.statement == "Ping <!channel> & <@U0BOB0001> lifts AUC"
    assert post.args["text"].startswith("H-1 Ping &lt;!channel&gt; &amp; &lt;@U0BOB0001&gt;")
    # Only plain_text (the header) shows it as typed; Slack never parses plain_text for mentions.
    mrkdwn = [b for b in post.args["blocks"] if b["type"] != "header"]
    assert "<!channel>" not in json.dumps(mrkdwn) and "<!channel>" not in post.args["text"]
    assert post.args["blocks"][0]["text"]["type"] == "plain_text"


def test_modal_logs_every_field_and_the_card_shows_them(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/hypothesis", "")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    assert view["callback_id"] == "hypothesis_modal"
    assert block(view, "owner")["element"]["initial_user"] == "U0ALICE01"
    assert not any(b.get("block_id") == "cites" for b in view["blocks"])  # nothing to reopen

    answer = slack.submit(view, {
        "statement": "Tenure features lift churn recall by 3 points at equal precision",
        "metric": "Recall at 80% precision", "expected_effect": "+3 points",
        "owner": "U0BOB0001", "experiment_url": MLFLOW_RUN, "notes": "Needs the March data",
    })

    assert answer.status_code == 200 and not answer.content.strip(b"{}")
    card = fake_slack.wait_for("chat.postMessage")[0].args
    text = json.dumps(card["blocks"])
    assert "Recall at 80% precision" in text and "+3 points" in text and "<@U0BOB0001>" in text
    assert f"<{MLFLOW_RUN.replace('&', '&amp;')}|experiment run>" in text
    [h] = hypotheses(quorum)
    assert (h.metric, h.expected_effect, h.owner, h.experiment_url, h.notes) == (
        "Recall at 80% precision", "+3 points", "U0BOB0001", MLFLOW_RUN, "Needs the March data")
    assert h.project.channel_id == CHANNEL


MODAL_BAD_INPUT = [
    ({"statement": "   "}, "statement", "statement is empty"),
    ({"statement": "x" * 301}, "statement", "301 characters"),
    ({"experiment_url": "ftp://mlflow.example.com/run/1"}, "experiment_url", "http(s) URL"),
    ({"experiment_url": "mlflow run 42"}, "experiment_url", "http(s) URL"),
    ({"experiment_url": "https://"}, "experiment_url", "http(s) URL"),
    ({"experiment_url": "javascript:alert(1)"}, "experiment_url", "http(s) URL"),
    ({"experiment_url": "https://evil.example/|<!channel>"}, "experiment_url", "http(s) URL"),
    ({"notes": "n" * 3001}, "notes", "3001 characters"),
    ({"metric": "m" * 3001}, "metric", "3001 characters"),
]


def test_modal_bad_input_answers_on_the_field_and_writes_nothing(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/hypothesis", "")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    before = state(quorum)
    for values, field, words in MODAL_BAD_INPUT:
        answer = slack.submit(view, {"statement": "Fine statement", **values}).json()
        assert answer["response_action"] == "errors", values
        assert list(answer["errors"]) == [field] and words in answer["errors"][field], answer
    assert state(quorum) == before == ([], 0, 0)


def test_add_details_prefills_and_updates_the_card_in_place(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/hypothesis", "Tenure lifts recall")
    post = fake_slack.wait_for("chat.postMessage")[0]

    slack.click("hypothesis_add_details", buttons(post.args)["hypothesis_add_details"],
                message=post.response["message"])
    view = fake_slack.wait_for("views.open")[0].args["view"]
    assert view["title"]["text"] == "Edit H-1"
    assert block(view, "statement")["element"]["initial_value"] == "Tenure lifts recall"
    assert not any(b.get("block_id") == "cites" for b in view["blocks"])

    slack.submit(view, {"metric": "Recall@P80", "experiment_url": MLFLOW_RUN})
    update = fake_slack.wait_for("chat.update")[0]
    assert update.args["ts"] == post.response["ts"]
    assert "Recall@P80" in json.dumps(card_of(fake_slack, "H-1")["blocks"])
    [h] = hypotheses(quorum)
    assert (h.metric, h.experiment_url, h.status) == ("Recall@P80", MLFLOW_RUN, "proposed")
    assert audit_actions(quorum, "H-1") == ["hypothesis.created", "hypothesis.edited"]
    assert len(fake_slack.calls_to("chat.postMessage")) == 1

    # Saving the form unchanged is not a change: no audit event, no update.
    slack.click("hypothesis_add_details", "1", message=post.response["message"])
    view = fake_slack.wait_for("views.open", count=2)[-1].args["view"]
    slack.submit(view, {})
    assert audit_actions(quorum, "H-1") == ["hypothesis.created", "hypothesis.edited"]


def test_start_and_conclude_by_command_update_card_and_announce_in_thread(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/hypothesis", "Tenure lifts recall")
    card = fake_slack.wait_for("chat.postMessage")[0].response

    started = slack.command("/hypothesis", "start h-1")
    assert "H-1* is running" in started.json()["text"]
    card_showing(fake_slack, "H-1", "running")
    assert set(buttons(card_of(fake_slack, "H-1"))) == {"hypothesis_conclude",
                                                        "hypothesis_add_details"}
    assert hypotheses(quorum)[0].started_at is not None

    done = slack.command("/hypothesis", "conclude H-1 Supported Recall +2.9 points on the "
                                        "March holdout & precision flat")
    assert "concluded: *supported*" in done.json()["text"]
    thread = fake_slack.wait_for("chat.postMessage", count=2)[1].args
    assert thread["thread_ts"] == card["ts"]
    assert "supported" in thread["text"] and "Recall +2.9 points" in json.dumps(thread["blocks"])
    final = card_showing(fake_slack, "H-1", "Recall +2.9")
    assert "Recall +2.9 points on the March holdout &amp; precision flat" in json.dumps(
        final["blocks"])
    assert set(buttons(final)) == {"hypothesis_reopen"}
    [h] = hypotheses(quorum)
    assert (h.status, h.concluded_by) == ("supported", "U0ALICE01") and h.concluded_at
    assert h.evidence == "Recall +2.9 points on the March holdout & precision flat"
    assert audit_actions(quorum, "H-1") == ["hypothesis.created", "hypothesis.started",
                                            "hypothesis.concluded"]


def test_illegal_transitions_are_refused_with_the_reason(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/hypothesis", "Tenure lifts recall")
    post = fake_slack.wait_for("chat.postMessage")[0]
    cases = [
        ("conclude H-1 supported it worked", "has not started"),
        ("conclude H-1", "has not started"),
        ("start H-1", None),
        ("start H-1", "already running"),
        ("conclude H-1 refuted no lift", None),
        ("conclude H-1 supported changed my mind", "cannot be concluded twice"),
        ("conclude H-1", "cannot be concluded twice"),
        ("start H-1", "cannot be started again"),
    ]
    for text, refusal in cases:
        before = state(quorum)
        body = slack.command("/hypothesis", text).json()
        if refusal is None:
            continue
        assert body["response_type"] == "ephemeral" and refusal in body["text"], (text, body)
        assert state(quorum) == before, text
    assert "Reopen" in slack.command("/hypothesis", "start H-1").json()["text"]
    assert not fake_slack.calls_to("views.open")

    # The card's buttons of an earlier state, pressed late, are refused the same way.
    before = state(quorum)
    message = post.response["message"]
    for action in ("hypothesis_add_details", "hypothesis_conclude", "hypothesis_start"):
        slack.click(action, buttons(post.args).get(action, "1"), message=message)
    replies = fake_slack.wait_for("response_url", count=3)
    assert all(r.args["response_type"] == "ephemeral" for r in replies)
    texts = [r.args["text"] for r in replies]
    assert any("can no longer change" in t for t in texts)
    assert any("cannot be concluded twice" in t for t in texts)
    assert any("cannot be started again" in t for t in texts)
    assert state(quorum) == before and not fake_slack.calls_to("views.open")
    assert hypotheses(quorum)[0].status == "refuted"


COMMAND_BAD_INPUT = [
    ("conclude H-1 maybe it worked", "`maybe` must be one of supported, refuted, inconclusive"),
    ("conclude H-1 supported", "<evidence> is missing"),
    ("conclude H-1 supported " + "e" * 3001, "3001 characters"),
    ("start H-999", "no hypothesis H-999"),
    ("show H-999", "no hypothesis H-999"),
    ("conclude H-999", "no hypothesis H-999"),
    ("start D-1", "not a reference like H-12"),
    ("show", "A reference like H-12 is missing"),
    ("start", "A reference like H-12 is missing"),
    ("list someday", "`someday` must be one of proposed, running"),
    ("list running extra", "Unexpected `extra`"),
    ("x" * 301, "301 characters"),
]


def test_bad_command_input_replies_ephemeral_and_writes_nothing(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    log_running(slack, fake_slack)
    before = state(quorum)
    for text, words in COMMAND_BAD_INPUT:
        response = slack.command("/hypothesis", text)
        body = response.json()
        assert response.status_code == 200 and body["response_type"] == "ephemeral"
        assert words in slack_unescape(body["text"] + json.dumps(body["blocks"])), (text, body)
    assert state(quorum) == before
    assert not fake_slack.calls_to("views.open")


def test_foreign_reference_is_not_found(slack: SlackSender, quorum: QuorumServer,
                                        fake_slack: FakeSlack) -> None:
    log_running(slack, fake_slack)
    before = state(quorum)
    other = SlackSender(quorum.url, fake_slack.response_url(), team="T0OTHER01")
    try:
        for text in ("show H-1", "start H-1", "conclude H-1 supported yes", "conclude H-1"):
            body = other.command("/hypothesis", text).json()
            assert "no hypothesis H-1 in this workspace" in body["text"], (text, body)
        # A button or form carrying another workspace's hypothesis id is refused too.
        other.click("hypothesis_conclude", str(hypotheses(quorum)[0].id))
        assert "no longer exists" in fake_slack.wait_for("response_url")[0].args["text"]
    finally:
        other.close()
    assert state(quorum) == before and not fake_slack.calls_to("views.open")


def test_help_lists_every_subcommand(slack: SlackSender) -> None:
    text = reply_text(slack.command("/hypothesis", "help"))
    for usage in ("/hypothesis <statement>", "/hypothesis list [<proposed|running",
                  "/hypothesis show H-n", "/hypothesis start H-n",
                  "/hypothesis conclude H-n [<supported|refuted|inconclusive> <evidence>]"):
        assert usage in text


def test_bare_conclude_opens_the_form_and_its_errors_are_on_the_fields(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    card = log_running(slack, fake_slack)
    response = slack.command("/hypothesis", "conclude H-1")
    assert response.status_code == 200 and not response.content.strip(b"{}")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    assert view["callback_id"] == "hypothesis_conclude_modal"
    assert view["title"]["text"] == "Conclude H-1"
    assert [o["value"] for o in block(view, "outcome")["element"]["options"]] == [
        "supported", "refuted", "inconclusive"]

    before = state(quorum)
    answer = slack.submit(view, {"evidence": "Recall +1"}).json()
    assert answer["response_action"] == "errors" and "outcome" in answer["errors"]
    answer = slack.submit(view, {"outcome": "refuted", "evidence": "  "}).json()
    assert answer["response_action"] == "errors" and "evidence" in answer["errors"]
    answer = slack.submit(view, {"outcome": "refuted", "evidence": "e" * 3001}).json()
    assert "3001 characters" in answer["errors"]["evidence"]
    assert state(quorum) == before

    answer = slack.submit(view, {"outcome": "inconclusive", "evidence": "Too few churners"})
    assert not answer.content.strip(b"{}")
    thread = fake_slack.wait_for("chat.postMessage", count=2)[1].args
    assert thread["thread_ts"] == card["ts"] and "inconclusive" in thread["text"]
    [h] = hypotheses(quorum)
    assert (h.status, h.evidence) == ("inconclusive", "Too few churners")

    # The same form submitted again (or a second form left open) cannot conclude it twice.
    before = state(quorum)
    answer = slack.submit(view, {"outcome": "supported", "evidence": "Another run"}).json()
    assert answer["response_action"] == "errors"
    assert "cannot be concluded twice" in answer["errors"]["outcome"]
    assert state(quorum) == before


def test_card_buttons_start_idempotently_and_open_the_conclusion_form(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/hypothesis", "Tenure lifts recall")
    post = fake_slack.wait_for("chat.postMessage")[0]
    start = buttons(post.args)["hypothesis_start"]

    slack.click("hypothesis_start", start, message=post.response["message"])
    slack.click("hypothesis_start", start, message=post.response["message"])  # double click
    fake_slack.wait_for("chat.update")
    assert audit_actions(quorum, "H-1") == ["hypothesis.created", "hypothesis.started"]
    assert hypotheses(quorum)[0].status == "running"
    [again] = fake_slack.wait_for("response_url")  # the second click changes nothing, and says so
    assert "H-1 is already running" in again.args["text"]
    assert again.args["response_type"] == "ephemeral" and not again.args["replace_original"]
    with quorum.runtime.db.session() as session:
        updates = session.scalar(select(func.count()).select_from(OutboxMessage)
                                 .where(OutboxMessage.method == "chat.update"))
    assert updates == 1

    card = card_of(fake_slack, "H-1")
    slack.click("hypothesis_conclude", buttons(card)["hypothesis_conclude"], message=card)
    view = fake_slack.wait_for("views.open")[0].args["view"]
    assert view["callback_id"] == "hypothesis_conclude_modal"
    slack.submit(view, {"outcome": "supported", "evidence": "Recall +3.1 (run 0a1b2c)"})
    card_showing(fake_slack, "H-1", "Recall +3.1 (run 0a1b2c)")
    assert hypotheses(quorum)[0].status == "supported"


def test_reopen_button_logs_a_new_hypothesis_citing_the_concluded_one(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    first = log_running(slack, fake_slack, "Tenure lifts recall")
    slack.command("/hypothesis", "conclude H-1 refuted No lift on the holdout")
    card = card_showing(fake_slack, "H-1", "No lift on the holdout")

    slack.click("hypothesis_reopen", buttons(card)["hypothesis_reopen"], message=card,
                user="U0BOB0001")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    assert view["title"]["text"] == "Reopen H-1"
    assert block(view, "statement")["element"]["initial_value"] == "Tenure lifts recall"
    assert block(view, "cites")["element"]["initial_option"]["value"] == "H-1"

    slack.submit(view, {"statement": "Tenure lifts recall once the March data is fixed"},
                 user="U0BOB0001")
    posts = fake_slack.wait_for("chat.postMessage", count=4)
    new_card = next(p for p in posts if p.args["blocks"][0]["text"]["text"].startswith("H-2 "))
    assert "reopens *H-1*" in json.dumps(new_card.args["blocks"])
    thread = next(p for p in posts if p.args.get("thread_ts") == first["ts"]
                  and "reopened" in p.args["text"])
    assert "*H-2*" in json.dumps(thread.args["blocks"])
    card_showing(fake_slack, "H-1", "reopened by *H-2*")

    old, new = hypotheses(quorum)
    assert old.status == "refuted" and new.status == "proposed" and new.cites_id == old.id
    assert new.created_by == "U0BOB0001"
    assert audit_actions(quorum, "H-1")[-1] == "hypothesis.reopened"
    assert "Reopened by *H-2*" in reply_text(slack.command("/hypothesis", "show H-1"))
    assert "Reopens *H-1*" in reply_text(slack.command("/hypothesis", "show H-2"))


def test_the_form_offers_concluded_hypotheses_to_reopen(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    log_running(slack, fake_slack, "Running one")
    slack.command("/hypothesis", "Proposed one")
    log_running(slack, fake_slack, "Concluded one")
    slack.command("/hypothesis", "conclude H-3 supported yes")
    slack.command("/hypothesis", "Elsewhere", channel="C0FRAUD01")

    slack.command("/hypothesis", "")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    cites = block(view, "cites")["element"]
    assert [o["value"] for o in cites["options"]] == ["H-3"] and "initial_option" not in cites
    slack.submit(view, {"statement": "Concluded one, again", "cites": "H-3"})
    fake_slack.wait_for("chat.postMessage", count=5)
    assert hypotheses(quorum)[-1].cites.ref == "H-3"


def test_list_groups_by_status_newest_first_and_filters(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    assert "No hypotheses yet" in reply_text(slack.command("/hypothesis", "list"))
    for number in range(1, 5):
        slack.command("/hypothesis", f"Idea number {number}")
    slack.command("/hypothesis", "start H-2")
    slack.command("/hypothesis", "start H-3")
    slack.command("/hypothesis", "conclude H-3 refuted nope")
    slack.command("/hypothesis", "Other channel idea", channel="C0FRAUD01")

    text = reply_text(slack.command("/hypothesis", "list"))
    assert text.index("proposed* (2)") < text.index("Idea number 4") \
        < text.index("Idea number 1") < text.index("running* (1)") < text.index("Idea number 2") \
        < text.index("refuted* (1)") < text.index("Idea number 3")
    assert "supported" not in text and "Other channel" not in text

    running = reply_text(slack.command("/hypothesis", "list running"))
    assert "Idea number 2" in running and "Idea number 1" not in running
    concluded = reply_text(slack.command("/hypothesis", "list concluded"))
    assert "Idea number 3" in concluded and "Idea number 2" not in concluded
    assert "No supported hypotheses" in reply_text(slack.command("/hypothesis",
                                                                 "list supported"))


def test_show_has_every_field_history_and_citing_decisions(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/hypothesis", "")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    slack.submit(view, {"statement": "Tenure lifts recall", "metric": "Recall@P80",
                        "expected_effect": "+3 points", "experiment_url": MLFLOW_RUN,
                        "notes": "March data"})
    slack.command("/hypothesis", "start H-1")
    slack.command("/hypothesis", "conclude H-1 supported +2.9 points")
    text = reply_text(slack.command("/hypothesis", "show H-1"))
    for expected in ("Recall@P80", "+3 points", "March data", "+2.9 points", "supported",
                     "<#C0CHURN01>", "created by", "started by", "concluded by",
                     "Decisions based on it", "none yet"):
        assert expected in text, expected

    slack.command("/decision", "")
    decision_view = fake_slack.wait_for("views.open", count=2)[-1].args["view"]
    slack.submit(decision_view, {"title": "Ship tenure features", "hypotheses": ["H-1"]})
    text = reply_text(slack.command("/hypothesis", "show H-1"))
    assert "*D-1* Ship tenure features (proposed)" in text and "none yet" not in text


def test_decision_form_offers_the_channels_hypotheses_and_links_both_ways(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/decision", "")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    assert not any(b.get("block_id") == "hypotheses" for b in view["blocks"])

    slack.command("/hypothesis", "First idea")
    slack.command("/hypothesis", "Second idea")
    slack.command("/hypothesis", "Fraud idea", channel="C0FRAUD01", channel_name="fraud")
    slack.command("/decision", "")
    view = fake_slack.wait_for("views.open", count=2)[-1].args["view"]
    select_menu = block(view, "hypotheses")
    assert select_menu["optional"] is True
    assert select_menu["label"]["text"] == "Based on hypotheses"
    element = select_menu["element"]
    assert element["type"] == "multi_static_select"
    assert [o["value"] for o in element["options"]] == ["H-2", "H-1"]
    assert element["options"][0]["text"]["text"] == "H-2 · Second idea"

    slack.submit(view, {"title": "Ship both", "hypotheses": ["H-1", "H-2"]})
    card = fake_slack.wait_for("chat.postMessage", count=4)
    decision_card = next(c for c in card if c.args["blocks"][0]["text"]["text"].startswith("D-1"))
    assert "based on *H-1*, *H-2*" in json.dumps(decision_card.args["blocks"])
    shown = reply_text(slack.command("/decision", "show D-1"))
    assert "Based on *H-1* First idea (proposed)" in shown and "Based on *H-2*" in shown
    assert "*D-1* Ship both" in reply_text(slack.command("/hypothesis", "show H-2"))
    with quorum.runtime.db.session() as session:
        decision = session.scalars(select(Decision)).one()
        assert [h.ref for h in decision.hypotheses] == ["H-1", "H-2"]
        event = session.scalars(select(AuditEvent).where(
            AuditEvent.entity_type == "decisions")).one()
        assert event.after["hypotheses"] == ["H-1", "H-2"]

    # Add details on the decision keeps its hypotheses selected; dropping one is audited.
    slack.click("decision_add_details", str(decision.id))
    edit = fake_slack.wait_for("views.open", count=3)[-1].args["view"]
    assert [o["value"] for o in block(edit, "hypotheses")["element"]["initial_options"]] == [
        "H-2", "H-1"]
    slack.submit(edit, {"hypotheses": ["H-2"]})
    fake_slack.wait_for("chat.update")
    with quorum.runtime.db.session() as session:
        decision = session.scalars(select(Decision)).one()
        assert [h.ref for h in decision.hypotheses] == ["H-2"]
        edited = session.scalars(select(AuditEvent).where(
            AuditEvent.entity_type == "decisions").order_by(AuditEvent.id)).all()[-1]
        assert (edited.before["hypotheses"], edited.after["hypotheses"]) == (["H-1", "H-2"],
                                                                              ["H-2"])


def test_decision_form_refuses_foreign_hypotheses_on_the_field(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    slack.command("/hypothesis", "Churn idea")
    slack.command("/hypothesis", "Fraud idea", channel="C0FRAUD01", channel_name="fraud")
    slack.command("/decision", "")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    # A forged submission: options of another channel or that do not exist.
    element = block(view, "hypotheses")["element"]
    for ref, words in (("H-2", "another channel"), ("H-9", "no hypothesis H-9")):
        element["options"] = [*element["options"][:1],
                              {"text": {"type": "plain_text", "text": ref}, "value": ref}]
        before = state(quorum)
        answer = slack.submit(view, {"title": "Forged", "hypotheses": [ref]}).json()
        assert answer["response_action"] == "errors"
        assert words in answer["errors"]["hypotheses"]
        assert state(quorum) == before
    with quorum.runtime.db.session() as session:
        assert session.scalars(select(Decision)).all() == []
