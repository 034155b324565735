"""`/quorum trace <model> v<version>` shows the caller's project and the model's bound project
only, and finds hypotheses and decisions by their `model` and `version` fields, never by a
substring of their text (issue #18, item 3)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from sqlalchemy import select

from bot.export import export
from bot.models import Decision, Hypothesis
from bot.render import slack_unescape
from support.db_snapshot import changed_tables, snapshot
from support.fake_slack import FakeSlack
from support.quorum_server import QuorumServer
from support.slack_requests import SlackSender

MODEL = "churn-model"
CHURN, FRAUD, PLATFORM = ("C0CHURN01", "churn-model"), ("C0FRAUD01", "fraud"), \
    ("C0PLATF01", "ml-platform")
SECRET = ("G0SECRET1", "launch-room")


def say(slack: SlackSender, where: tuple[str, str], command: str, text: str) -> dict[str, Any]:
    response = slack.command(command, text, channel=where[0], channel_name=where[1])
    assert response.status_code == 200, response.text
    return response.json() if response.content else {}


def text_of(reply: dict[str, Any]) -> str:
    return slack_unescape(reply.get("text", "") + json.dumps(reply.get("blocks", []),
                                                             ensure_ascii=False))


def trace(slack: SlackSender, where: tuple[str, str], words: str) -> str:
    reply = say(slack, where, "/quorum", f"trace {words}")
    assert reply["response_type"] == "ephemeral"
    return text_of(reply)


def test_decisions_and_hypotheses_are_linked_by_their_fields_not_by_words(
        slack: SlackSender, quorum: QuorumServer) -> None:
    say(slack, CHURN, "/decision", f"Ship with recency features for {MODEL} v3")
    say(slack, CHURN, "/hypothesis", f"Recency features lift recall for {MODEL} V3")
    # Naming the model in the text links nothing; another version is another version.
    say(slack, CHURN, "/decision", f"Retrain {MODEL} v3 weekly, a decision about it")
    say(slack, CHURN, "/decision", f"Ship the v4 candidate for {MODEL} v4")
    say(slack, CHURN, "/decision", "a")
    for words in (f"{MODEL} v3", f"{MODEL} 3"):  # `v3` and `3` alike
        text = trace(slack, CHURN, words)
        assert "*D-1* Ship with recency features" in text
        assert "*H-1* Recency features lift recall" in text
        assert "D-2" not in text and "D-3" not in text and "D-4" not in text
    # `trace a v3` listed every decision holding the letter "a".
    assert "*D-" not in trace(slack, CHURN, "a v3")
    with quorum.runtime.db.session() as session:
        decision = session.scalars(select(Decision).where(Decision.number == 1)).one()
        hypothesis = session.scalars(select(Hypothesis)).one()
        assert (decision.title, decision.model, decision.version) == (
            "Ship with recency features", MODEL, "3")
        assert (hypothesis.model, hypothesis.version) == (MODEL, "3")
        assert session.scalars(select(Decision).where(Decision.number == 2)).one().model is None


def test_trace_shows_the_callers_project_and_the_bound_project_only(
        slack: SlackSender, quorum: QuorumServer) -> None:
    say(slack, PLATFORM, "/quorum", f"model add {MODEL}")  # bound to #ml-platform
    say(slack, PLATFORM, "/decision", f"Platform serves it for {MODEL} v3")   # D-1
    say(slack, CHURN, "/decision", f"Churn team ships it for {MODEL} v3")     # D-2
    say(slack, FRAUD, "/decision", f"Fraud team borrows it for {MODEL} v3")   # D-3
    say(slack, FRAUD, "/hypothesis", f"Fraud's own guess for {MODEL} v3")     # H-1

    from_churn = trace(slack, CHURN, f"{MODEL} v3")
    assert "*D-1* Platform serves it" in from_churn and "*D-2* Churn team" in from_churn
    assert "D-3" not in from_churn and "H-1" not in from_churn and "Fraud" not in from_churn
    assert f"<#{CHURN[0]}> and <#{PLATFORM[0]}> (where {MODEL} is bound) only" in from_churn

    from_fraud = trace(slack, FRAUD, f"{MODEL} v3")
    assert "*D-1*" in from_fraud and "*D-3*" in from_fraud and "*H-1*" in from_fraud
    assert "D-2" not in from_fraud

    from_platform = trace(slack, PLATFORM, f"{MODEL} v3")
    assert "*D-1*" in from_platform and "D-2" not in from_platform and "D-3" not in from_platform

    say(slack, PLATFORM, "/quorum", f"model remove {MODEL}")  # unbound: each project alone
    alone = trace(slack, CHURN, f"{MODEL} v3")
    assert "*D-2*" in alone and "D-1" not in alone and "D-3" not in alone


def test_a_private_bound_project_stays_out_of_other_channels_traces(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    fake_slack.private_channels.add(SECRET[0])
    say(slack, SECRET, "/quorum", f"model add {MODEL}")  # bound to a private channel
    say(slack, SECRET, "/decision", f"Secret launch plan for {MODEL} v3")    # D-1
    say(slack, CHURN, "/decision", f"Churn team ships it for {MODEL} v3")    # D-2

    from_churn = trace(slack, CHURN, f"{MODEL} v3")
    assert "*D-2* Churn team" in from_churn
    assert "D-1" not in from_churn and "Secret" not in from_churn
    assert SECRET[0] not in from_churn
    assert "*D-1* Secret launch plan" in trace(slack, SECRET, f"{MODEL} v3")


def test_the_forms_set_model_and_version_and_cards_show_them(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    say(slack, CHURN, "/decision", "")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    assert {"model", "version"} <= {b.get("block_id") for b in view["blocks"]}
    answer = slack.submit(view, {"title": "Batch scoring", "model": MODEL, "version": "v7"})
    assert answer.status_code == 200 and not answer.content.strip(b"{}"), answer.text
    card = fake_slack.wait_for("chat.postMessage")[0].args
    assert f"*Model*\\n{MODEL} v7" in json.dumps(card["blocks"])
    assert "*D-1* Batch scoring" in trace(slack, CHURN, f"{MODEL} v7")
    assert f"{MODEL} v7" in text_of(say(slack, CHURN, "/decision", "show D-1"))

    say(slack, CHURN, "/hypothesis", "")
    view = fake_slack.wait_for("views.open", count=2)[1].args["view"]
    slack.submit(view, {"statement": "Batch is fresh enough", "model": MODEL, "version": "7"})
    assert "*H-1* Batch is fresh enough" in trace(slack, CHURN, f"{MODEL} v7")
    assert f"{MODEL} v7" in text_of(say(slack, CHURN, "/hypothesis", "show H-1"))

    # The edit form holds the fields; clearing them unlinks the decision.
    post = fake_slack.wait_for("chat.postMessage", count=2)[0]
    button = post.args["blocks"][-1]["elements"][0]
    slack.click("decision_add_details", button["value"], message=post.response["message"])
    edit = fake_slack.wait_for("views.open", count=3)[2].args["view"]
    fields = {b["block_id"]: b["element"].get("initial_value") for b in edit["blocks"]
              if b.get("block_id") in ("model", "version")}
    assert fields == {"model": MODEL, "version": "7"}
    slack.submit(edit, {"model": "", "version": ""})
    assert "*D-1*" not in trace(slack, CHURN, f"{MODEL} v7")


def test_bad_model_or_version_is_refused_and_changes_nothing(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack) -> None:
    say(slack, CHURN, "/decision", "")
    view = fake_slack.wait_for("views.open")[0].args["view"]
    before = snapshot(quorum.runtime.db)
    for values, field in (({"title": "T", "version": "v3"}, "model"),
                          ({"title": "T", "model": MODEL}, "version"),
                          ({"title": "T", "model": "bad model!", "version": "3"}, "model"),
                          ({"title": "T", "model": MODEL, "version": "3 <x>"}, "version")):
        answer = slack.submit(view, values).json()
        assert answer["response_action"] == "errors" and field in answer["errors"], answer
    reply = say(slack, CHURN, "/decision", "Ship it for bad!model v3")
    assert "bad!model" in reply["text"] and "not a model name" in reply["text"]
    assert changed_tables(before, quorum.runtime.db) == []


def test_model_and_version_are_exported(slack: SlackSender, quorum: QuorumServer) -> None:
    say(slack, CHURN, "/decision", f"Ship it for {MODEL} v3")
    say(slack, CHURN, "/hypothesis", f"It helps for {MODEL} v3")
    for register in ("decisions", "hypotheses"):
        with quorum.runtime.db.session() as session:
            as_json, as_csv, as_md = io.StringIO(), io.StringIO(), io.StringIO()
            export(session, register, "json", as_json)
            export(session, register, "csv", as_csv)
            export(session, register, "md", as_md)
        [record] = json.loads(as_json.getvalue())
        assert (record["model"], record["version"]) == (MODEL, "3")
        [row] = list(csv.DictReader(io.StringIO(as_csv.getvalue())))
        assert (row["model"], row["version"]) == (MODEL, "3")
        assert f"* Model: {MODEL} v3" in as_md.getvalue()
