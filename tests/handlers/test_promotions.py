"""Promotions end to end: `/hooks/mlflow` (signed like MLflow signs), `/hooks/promotion`,
`quorum announce promotion` and `/quorum model|models|trace|settings new-versions`; fake Slack and
the database checked."""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot.cli import main
from bot.export import export
from bot.models import (
    AuditEvent,
    Decision,
    Hypothesis,
    Incident,
    ModelBinding,
    OutboxMessage,
    Project,
    Promotion,
    utcnow,
)
from bot.render import slack_unescape
from bot.services import gates as gate_service
from bot.services import roles as role_service
from bot.services.gate_drafts import GateDraft
from bot.services.incidents import IncidentDraft, declare
from bot.services.projects import project_for_channel
from bot.services.promotions import promotions_between
from bot.services.trace import trace
from support.fake_slack import FakeSlack
from support.mlflow_signing import mlflow_signed
from support.quorum_server import QuorumServer
from support.slack_requests import TEAM, SlackSender
from support.waiting import eventually

TOKEN = "promotion-token-0123"
SECRET = "mlflow-secret-4567"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHANNEL = "C0CHURN01"
OTHER = "C0FRAUD01"
MODEL = "churn-model"
ALICE, BOB, CAROL = "U0ALICE01", "U0BOB0001", "U0CAROL01"


# ---------------------------------------------------------------------------- helpers


@pytest.fixture
def serve(make_settings: Callable[..., Any]) -> Iterator[Callable[..., QuorumServer]]:
    """Start Quorum with the webhook token, the MLflow secret and any other settings given."""
    servers: list[QuorumServer] = []

    def start(**overrides: Any) -> QuorumServer:
        values = {"QUORUM_WEBHOOK_TOKEN": TOKEN, "MLFLOW_WEBHOOK_SECRET": SECRET, **overrides}
        server = QuorumServer(make_settings(**values)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(serve: Callable[..., QuorumServer]) -> QuorumServer:
    return serve()


def alias_event(name: str = MODEL, version: str = "3", alias: str = "champion") -> dict[str, Any]:
    return {"entity": "model_version_alias", "action": "created",
            "timestamp": "2026-11-25T09:30:00.123456+00:00",
            "data": {"name": name, "alias": alias, "version": version}}


def signed(body: bytes, *, secret: str = SECRET, delivery: str | None = None,
           timestamp: int | None = None) -> dict[str, str]:
    """The headers MLflow sends with a delivery of a webhook that has a secret."""
    return mlflow_signed(body, secret, delivery=delivery, timestamp=timestamp)


def to_mlflow(server: QuorumServer, payload: Any, headers: dict[str, str] | None = None,
              body: bytes | None = None) -> httpx.Response:
    raw = body if body is not None else json.dumps(payload).encode()
    return httpx.post(f"{server.url}/hooks/mlflow", content=raw, timeout=10,
                      headers=signed(raw) if headers is None else headers)


def to_hook(server: QuorumServer, payload: Any, headers: dict[str, str] | None = None,
            body: bytes | None = None) -> httpx.Response:
    raw = body if body is not None else json.dumps(payload).encode()
    return httpx.post(f"{server.url}/hooks/promotion", content=raw, timeout=10,
                      headers={"Content-Type": "application/json",
                               **(AUTH if headers is None else headers)})


def count(server: QuorumServer, model: type) -> int:
    with server.runtime.db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def promotions(server: QuorumServer) -> list[Promotion]:
    with server.runtime.db.session() as session:
        return list(session.scalars(select(Promotion).order_by(Promotion.id)).unique())


def bind(server: QuorumServer, model: str = MODEL, channel: str = CHANNEL) -> None:
    with server.runtime.db.session() as session:
        project = project_for_channel(session, TEAM, channel, "churn" if channel == CHANNEL
                                      else "fraud")
        session.add(ModelBinding(team_id=TEAM, project=project, model=model, created_by=ALICE))


def passed_gate(server: QuorumServer, version: str = "3", milestone: str = "launch") -> str:
    """A launch gate of churn-model `version`, approved by BOB (ds) and CAROL (eng)."""
    with server.runtime.db.session() as session:
        project = project_for_channel(session, TEAM, CHANNEL, "churn")
        for user, role in ((BOB, "ds"), (CAROL, "eng")):
            if role not in role_service.roles_of(session, project, user):
                role_service.add_role(session, project, ALICE, user, role, ())
        gate = gate_service.request_gate(session, project, ALICE, GateDraft(
            milestone=milestone, model=MODEL, version=version, roles=["ds", "eng"])).gate
        for user, role in ((BOB, "ds"), (CAROL, "eng")):
            gate_service.sign(session, gate.id, TEAM, user, "approve", role)
        return gate.ref


def open_gate(server: QuorumServer, version: str = "3") -> str:
    with server.runtime.db.session() as session:
        project = project_for_channel(session, TEAM, CHANNEL, "churn")
        for user, role in ((BOB, "ds"), (CAROL, "pm")):
            role_service.add_role(session, project, ALICE, user, role, ())
        gate = gate_service.request_gate(session, project, ALICE, GateDraft(
            milestone="evaluation", model=MODEL, version=version, roles=["ds", "pm"])).gate
        gate_service.sign(session, gate.id, TEAM, BOB, "approve", "ds")
        return gate.ref


def text_of(payload: dict[str, Any]) -> str:
    return slack_unescape(payload.get("text", "") + json.dumps(payload.get("blocks", []),
                                                               ensure_ascii=False))


def announcements(fake: FakeSlack, minimum: int = 1, channel: str = CHANNEL) -> list[str]:
    def wanted(call: Any) -> bool:
        blocks = json.dumps(call.args.get("blocks", []))
        return call.args.get("channel") == channel and (":rocket:" in blocks
                                                        or ":package:" in blocks)

    calls = fake.wait_for("chat.postMessage", count=minimum, predicate=wanted)
    return [text_of(call.args) for call in calls]


def queued(server: QuorumServer, needle: str = "promotion:") -> int:
    """Announcements written to the outbox (delivered or not)."""
    with server.runtime.db.session() as session:
        return session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.message_key.like(f"{needle}%"))) or 0


# ---------------------------------------------------------------------------- MLflow


def test_an_alias_set_in_mlflow_announces_the_promotion_with_its_gate_record(
        server: QuorumServer, fake_slack: FakeSlack) -> None:
    bind(server)
    gate = passed_gate(server)
    response = to_mlflow(server, alias_event())
    assert response.status_code == 200, response.text
    assert response.json()["promotion"] == "P-1" and response.json()["routed"] is True
    [text] = announcements(fake_slack)
    assert "churn-model" in text and "version *3*" in text and "`champion`" in text
    assert f"*{gate}* launch passed" in text
    assert f"<@{BOB}> (ds)" in text and f"<@{CAROL}> (eng)" in text
    assert "MLflow" in text and "without a passed gate" not in text
    [promotion] = promotions(server)
    assert (promotion.model, promotion.version, promotion.to_stage, promotion.source,
            promotion.status) == (MODEL, "3", "champion", "mlflow", "announced")
    assert promotion.gate_record["passed"] is True
    assert promotion.gate_record["passed_gates"][0]["signers"] == [
        {"role": "ds", "user": BOB}, {"role": "eng", "user": CAROL}]


def test_a_version_without_a_passed_gate_is_announced_with_a_warning(
        server: QuorumServer, fake_slack: FakeSlack) -> None:
    bind(server)
    waiting = open_gate(server)
    assert to_mlflow(server, alias_event()).status_code == 200
    assert to_mlflow(server, alias_event(version="4")).status_code == 200
    first, second = announcements(fake_slack, 2)
    assert "Promoted without a passed gate" in first
    assert f"*{waiting}* (evaluation) is still waiting for `pm`" in first
    assert "Promoted without a passed gate" in second
    assert "No gate was requested for churn-model v4" in second
    assert "(replacing v3)" in second


def test_a_redelivery_announces_nothing_new(server: QuorumServer,
                                            fake_slack: FakeSlack) -> None:
    bind(server)
    body = json.dumps(alias_event()).encode()
    headers = signed(body)
    first = to_mlflow(server, None, headers, body)
    again = to_mlflow(server, None, headers, body)
    assert first.status_code == again.status_code == 200
    assert first.json()["created"] is True and again.json()["created"] is False
    assert again.json()["promotion"] == "P-1"
    announcements(fake_slack)
    assert count(server, Promotion) == 1 and queued(server) == 1
    # The same alias set again (a new delivery id) is the same promotion: see the repeat tests.
    again = to_mlflow(server, alias_event()).json()
    assert (again["promotion"], again["repeated"], again["created"]) == ("P-1", True, False)


@pytest.mark.parametrize("mangle", ["no_headers", "wrong_secret", "tampered_body", "stale",
                                    "future", "bad_scheme", "not_a_time"])
def test_unsigned_forged_and_stale_deliveries_are_refused(server: QuorumServer, mangle: str
                                                          ) -> None:
    bind(server)
    body = json.dumps(alias_event()).encode()
    headers = {
        "no_headers": {"Content-Type": "application/json"},
        "wrong_secret": signed(body, secret="not-the-secret"),
        "tampered_body": signed(body.replace(b'"3"', b'"4"')),
        "stale": signed(body, timestamp=int(time.time()) - 600),
        "future": signed(body, timestamp=int(time.time()) + 600),
        "bad_scheme": {**signed(body), "X-MLflow-Signature":
                       signed(body)["X-MLflow-Signature"].replace("v1,", "v0,")},
        "not_a_time": {**signed(body), "X-MLflow-Timestamp": "yesterday"},
    }[mangle]
    response = to_mlflow(server, None, headers, body)
    assert response.status_code == 401, response.text
    assert response.json()["ok"] is False and response.json()["reason"]
    assert count(server, Promotion) == 0 and queued(server) == 0


def test_without_a_secret_every_mlflow_delivery_is_refused(serve: Callable[..., QuorumServer]
                                                           ) -> None:
    closed = serve(MLFLOW_WEBHOOK_SECRET=None)
    response = to_mlflow(closed, alias_event())
    assert response.status_code == 503
    assert "MLFLOW_WEBHOOK_SECRET" in response.json()["reason"]
    assert count(closed, Promotion) == 0


@pytest.mark.parametrize(("payload", "field"), [
    ({"action": "created", "data": {}}, "entity"),
    ({"entity": "model_version_alias", "action": "created", "data": {"name": MODEL,
                                                                     "version": "3"}},
     "data.alias"),
    ({"entity": "model_version_alias", "action": "created", "data": {"alias": "x",
                                                                     "version": "3"}},
     "data.name"),
    ({"entity": "model_version_alias", "action": "created", "data": "nope"}, "data"),
    ({"entity": "model_version_alias", "action": "created",
      "data": {"name": MODEL, "version": "3", "alias": "two words"}}, "data.alias"),
    ({"entity": "model_version", "action": "created", "data": {"name": "<!channel>",
                                                               "version": "3"}}, "data.name"),
])
def test_malformed_mlflow_payloads_are_refused_naming_the_field(
        server: QuorumServer, payload: dict[str, Any], field: str) -> None:
    response = to_mlflow(server, payload)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert count(server, Promotion) == 0 and queued(server) == 0


def test_signed_bodies_that_are_not_json_are_refused(server: QuorumServer) -> None:
    for body in (b"{not json", b"[1, 2]"):
        response = to_mlflow(server, None, signed(body), body)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_json"
    assert count(server, Promotion) == 0


def test_new_versions_are_recorded_and_announced_only_when_the_project_opts_in(
        server: QuorumServer, slack: SlackSender, fake_slack: FakeSlack) -> None:
    bind(server)
    created = {"entity": "model_version", "action": "created",
               "timestamp": "2026-11-25T09:30:00+00:00",
               "data": {"name": MODEL, "version": "5", "source": "runs:/abc/model",
                        "run_id": "abc", "tags": {}, "description": None}}
    quiet = to_mlflow(server, created)
    assert quiet.status_code == 200 and quiet.json()["status"] == "recorded"
    assert queued(server) == 0
    reply = slack.command("/quorum", "settings new-versions on")
    assert "will be announced" in text_of(reply.json())
    loud = to_mlflow(server, {**created, "data": {**created["data"], "version": "6"}})
    assert loud.json()["status"] == "announced"
    [text] = announcements(fake_slack)
    assert "new version *churn-model v6*" in text and "no gate yet" in text
    assert [p.kind for p in promotions(server)] == ["new_version", "new_version"]


def test_other_mlflow_events_are_accepted_and_ignored(server: QuorumServer) -> None:
    bind(server)
    tagged = {"entity": "model_version_tag", "action": "set",
              "timestamp": "2026-11-25T09:30:00+00:00",
              "data": {"name": MODEL, "version": "3", "key": "stage", "value": "qa"}}
    response = to_mlflow(server, tagged)
    assert response.status_code == 200 and response.json()["ignored"] is True
    assert count(server, Promotion) == 0 and queued(server) == 0


def test_an_alias_moved_back_or_deleted_is_announced_as_a_rollback(
        server: QuorumServer, fake_slack: FakeSlack) -> None:
    bind(server)
    passed_gate(server, version="4")
    for version in ("3", "4", "3"):
        assert to_mlflow(server, alias_event(version=version)).status_code == 200
    deleted = {"entity": "model_version_alias", "action": "deleted",
               "timestamp": "2026-11-25T09:30:00+00:00",
               "data": {"name": MODEL, "alias": "champion"}}
    assert to_mlflow(server, deleted).status_code == 200

    def rewinds() -> list[str]:
        return [text_of(call.args) for call in fake_slack.calls_to("chat.postMessage")
                if ":rewind:" in json.dumps(call.args.get("blocks", []))]

    back, gone = eventually(lambda: rewinds() if len(rewinds()) == 2 else None)
    assert "`champion` moved back from version *4* to version *3*" in back
    assert "Gate record of v4" in back and "*G-1* launch passed" in back
    assert "Promoted without a passed gate" in back  # v3 never passed one
    assert "alias `champion` of model *churn-model* was deleted" in gone
    assert "pointed at version *3* (P-3)" in gone
    assert [(p.kind, p.version) for p in promotions(server)] == [
        ("promotion", "3"), ("promotion", "4"), ("promotion", "3"), ("alias_deleted", "3")]
    with server.runtime.db.session() as session:
        actions = list(session.scalars(select(AuditEvent.action).where(
            AuditEvent.action.like("promotion.%")).order_by(AuditEvent.id)))
    assert actions == ["promotion.recorded", "promotion.recorded", "promotion.rolled_back",
                       "promotion.alias_deleted"]


def test_an_unbound_model_from_mlflow_is_stored_unrouted(server: QuorumServer) -> None:
    response = to_mlflow(server, alias_event(name="nobody-owns-me"))
    assert response.status_code == 202
    assert response.json()["routed"] is False
    [promotion] = promotions(server)
    assert promotion.status == "unrouted" and promotion.project_id is None
    assert queued(server) == 0


# ---------------------------------------------------------------------------- /hooks/promotion


def test_the_generic_hook_announces_a_promotion_in_the_bound_channel(
        server: QuorumServer, fake_slack: FakeSlack) -> None:
    bind(server)
    gate = passed_gate(server, version="7")
    response = to_hook(server, {"model": MODEL, "version": "v7", "to": "production",
                                "from": "staging", "actor": ALICE,
                                "url": "https://ci.example/run/42", "note": "canary OK"})
    assert response.status_code == 201, response.text
    assert response.json() | {"ok": True, "promotion": "P-1", "routed": True,
                              "channel": CHANNEL} == response.json()
    [text] = announcements(fake_slack)
    assert "version *7*" in text and "`staging` → `production`" in text
    assert f"<@{ALICE}>" in text and "https://ci.example/run/42" in text
    assert "canary OK" in text and f"*{gate}* launch passed" in text
    with server.runtime.db.session() as session:
        actions = list(session.scalars(select(AuditEvent.action)
                                       .where(AuditEvent.entity_ref == "P-1")))
    assert actions == ["promotion.recorded"]


def test_the_generic_hook_stores_unrouted_promotions_and_uses_the_default_channel(
        serve: Callable[..., QuorumServer], fake_slack: FakeSlack) -> None:
    server = serve()
    bind(server, "other-model", OTHER)  # a known workspace, but not this model
    response = to_hook(server, {"model": MODEL, "version": "3", "to": "production"})
    assert response.status_code == 202 and response.json()["routed"] is False
    assert promotions(server)[0].status == "unrouted"
    server.stop()
    with_default = serve(QUORUM_DEFAULT_CHANNEL=OTHER)
    response = to_hook(with_default, {"model": MODEL, "version": "4", "to": "production"})
    assert response.status_code == 201 and response.json()["channel"] == OTHER
    announcements(fake_slack, channel=OTHER)


@pytest.mark.parametrize(("payload", "field"), [
    ({"version": "3", "to": "production"}, "model"),
    ({"model": MODEL, "to": "production"}, "version"),
    ({"model": MODEL, "version": "3"}, "to"),
    ({"model": MODEL, "version": "3", "to": "prod uction"}, "to"),
    ({"model": MODEL, "version": "3", "to": "production", "from": "<!here>"}, "from"),
    ({"model": MODEL, "version": "3", "to": "production", "url": "javascript:alert(1)"}, "url"),
    ({"model": MODEL, "version": "3", "to": "production", "note": "x" * 2001}, "note"),
    ({"model": ["a"], "version": "3", "to": "production"}, "model"),
    ({"model": MODEL, "version": "3", "to": "production", "channel": "#nowhere"}, "channel"),
])
def test_the_generic_hook_refuses_bad_input_naming_the_field(
        server: QuorumServer, payload: dict[str, Any], field: str) -> None:
    bind(server)
    response = to_hook(server, payload)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert count(server, Promotion) == 0 and queued(server) == 0


def test_the_generic_hook_needs_the_token(serve: Callable[..., QuorumServer]) -> None:
    server = serve()
    payload = {"model": MODEL, "version": "3", "to": "production"}
    assert to_hook(server, payload, headers={}).status_code == 401
    assert to_hook(server, payload, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert to_hook(server, None, body=b"{oops").status_code == 400
    closed = serve(QUORUM_WEBHOOK_TOKEN=None)
    assert to_hook(closed, payload).status_code == 503
    assert count(server, Promotion) == 0


# ---------------------------------------------------------------------------- the CLI


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        server: QuorumServer, *args: str) -> tuple[int, str, str]:
    for key in list(os.environ):
        if key.startswith(("SLACK_", "QUORUM_", "DATABASE_URL")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DATABASE_URL", server.settings.database_url)
    capsys.readouterr()
    try:
        code = main(["announce", "promotion", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_announces_a_promotion(server: QuorumServer, fake_slack: FakeSlack,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    bind(server)
    code, out, err = cli(monkeypatch, capsys, server, "--model", MODEL, "--version", "v3",
                         "--to", "production", "--from", "staging", "--url",
                         "https://github.com/acme/churn/actions/runs/1", "--note", "ship it")
    assert (code, out, err) == (0, "P-1\n", "")
    [text] = announcements(fake_slack)
    assert "`staging` → `production`" in text and "the CLI" in text
    assert "Promoted without a passed gate" in text


@pytest.mark.parametrize(("args", "option"), [
    (("--version", "3", "--to", "production"), "--model"),
    (("--model", MODEL, "--to", "production"), "--version"),
    (("--model", MODEL, "--version", "3"), "--to"),
    (("--model", MODEL, "--version", "3", "--to", "production", "--url", "nope"), "--url"),
    (("--model", MODEL, "--version", "3", "--to", "production", "--channel", "nowhere"),
     "--channel"),
])
def test_the_cli_refuses_bad_input_in_one_line(server: QuorumServer,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               args: tuple[str, ...], option: str) -> None:
    bind(server)
    code, out, err = cli(monkeypatch, capsys, server, *args)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"quorum: {option}: "), err
    assert count(server, Promotion) == 0


def test_the_cli_reports_an_unrouted_promotion(server: QuorumServer,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(monkeypatch, capsys, server, "--model", MODEL, "--version", "3",
                         "--to", "production")
    assert code == 0 and out == "P-1\n" and "unrouted" in err
    assert promotions(server)[0].status == "unrouted"


# ---------------------------------------------------------------------------- /quorum


def test_models_are_bound_listed_and_removed(server: QuorumServer, slack: SlackSender) -> None:
    reply = slack.command("/quorum", f"model add {MODEL}")
    assert "is now bound to this channel" in text_of(reply.json())
    again = slack.command("/quorum", f"model add {MODEL}")
    assert "already bound to this channel" in text_of(again.json())
    elsewhere = slack.command("/quorum", f"model add {MODEL}", channel=OTHER,
                              channel_name="fraud")
    assert "already bound to #churn-model" in text_of(elsewhere.json())
    listed = slack.command("/quorum", "models")
    assert f"`{MODEL}`" in text_of(listed.json())
    assert count(server, ModelBinding) == 1
    removed = slack.command("/quorum", f"model remove {MODEL}")
    assert "no longer bound" in text_of(removed.json())
    assert count(server, ModelBinding) == 0
    missing = slack.command("/quorum", f"model remove {MODEL}")
    assert "is not bound" in text_of(missing.json())
    bad = slack.command("/quorum", "model add <!channel>")
    assert "not a model name" in text_of(bad.json())
    assert count(server, ModelBinding) == 0


def test_only_admins_bind_models(make_settings: Callable[..., Any],
                                 fake_slack: FakeSlack) -> None:
    server = QuorumServer(make_settings(QUORUM_ADMINS=BOB)).start()
    sender = SlackSender(server.url, fake_slack.response_url(), team=TEAM)
    try:
        reply = sender.command("/quorum", f"model add {MODEL}", user=ALICE)
        assert "Only Quorum admins" in text_of(reply.json())
        assert count(server, ModelBinding) == 0
    finally:
        sender.close()
        server.stop()


def test_incidents_from_alerts_follow_the_model_binding(server: QuorumServer) -> None:
    from bot.services.routing import route

    bind(server)
    with server.runtime.db.session() as session:
        where = route(session, model=MODEL)
        assert where.via == "model" and where.project is not None
        assert where.project.channel_id == CHANNEL
        assert route(session, model="unknown").via == "unrouted"


def test_trace_shows_the_chain_of_one_model_version(server: QuorumServer,
                                                    slack: SlackSender) -> None:
    bind(server)
    gate = passed_gate(server)
    slack.command("/hypothesis", "Recency features lift churn recall")
    slack.command("/decision", f"Ship with recency features for {MODEL} v3")
    with server.runtime.db.session() as session:
        decision = session.scalars(select(Decision)).one()
        decision.hypotheses = list(session.scalars(select(Hypothesis)))
        project = session.scalars(select(Project).where(Project.channel_id == CHANNEL)).one()
        declare(session, project, ALICE, IncidentDraft(title="Churn scores all zero",
                                                        model=MODEL, model_version="v3"))
    to_hook(server, {"model": MODEL, "version": "3", "to": "production"})
    reply = slack.command("/quorum", f"trace {MODEL} v3")
    text = text_of(reply.json())
    assert reply.json()["response_type"] == "ephemeral"
    assert "Trace · churn-model v3" in text
    assert "*H-1* Recency features lift churn recall" in text
    assert "*D-1* Ship with recency features" in text and "based on H-1" in text
    assert f"*{gate}* launch · passed" in text and f"<@{BOB}> (ds) approved" in text
    assert "*P-1* → `production`" in text and "gate passed" in text
    assert "*INC-1* sev3 · Churn scores all zero" in text
    empty = text_of(slack.command("/quorum", "trace other-model v1").json())
    assert "not promoted yet" in empty and "no gate for this version" in empty


# ---------------------------------------------------------------------------- export


def test_promotions_export_as_json_csv_and_markdown(server: QuorumServer) -> None:
    bind(server)
    passed_gate(server)
    to_hook(server, {"model": MODEL, "version": "3", "to": "production", "from": "staging"})
    to_hook(server, {"model": "loose", "version": "1", "to": "production"})
    outputs = {}
    for fmt in ("json", "csv", "md"):
        buffer = io.StringIO()
        with server.runtime.db.session() as session, redirect_stdout(buffer):
            export(session, "promotions", fmt, buffer)
        outputs[fmt] = buffer.getvalue()
    records = json.loads(outputs["json"])
    assert [r["ref"] for r in records] == ["P-1", "P-2"]
    first = records[0]
    assert {"ref", "project", "status", "created_at", "created_by"} <= first.keys()
    assert (first["model"], first["version"], first["from"], first["to"], first["status"],
            first["gate_passed"], first["gates_passed"]) == (
        MODEL, "3", "staging", "production", "announced", True, ["G-1"])
    assert records[1]["status"] == "unrouted" and records[1]["project"] is None
    rows = list(csv.DictReader(io.StringIO(outputs["csv"])))
    assert rows[0]["gates_passed"] == '["G-1"]' and rows[1]["gate_passed"] == "False"
    assert "## P-1 · churn-model v3 → production" in outputs["md"]
    assert "promoted without a passed gate" in outputs["md"]
    assert count(server, Incident) == 0


def test_the_same_delivery_at_the_same_moment_is_one_promotion(
        server: QuorumServer, fake_slack: FakeSlack) -> None:
    """MLflow redelivering while the first delivery is still being stored (its time-out is
    short): every copy is answered 200, one of them created P-1, one announcement."""
    bind(server)
    body = json.dumps(alias_event()).encode()
    headers = signed(body)
    barrier = threading.Barrier(4)
    answers: list[dict[str, Any]] = []

    def deliver() -> None:
        barrier.wait()
        reply = to_mlflow(server, None, headers, body)
        assert reply.status_code == 200, reply.text
        answers.append(reply.json())

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == 4 and {a["promotion"] for a in answers} == {"P-1"}
    assert sorted(a["created"] for a in answers) == [False, False, False, True]
    announcements(fake_slack)
    assert count(server, Promotion) == 1 and queued(server) == 1
    with server.runtime.db.session() as session:
        assert session.scalars(select(AuditEvent.action)).all() == ["promotion.recorded"]
    # Later redeliveries (MLflow retries for a while) still change nothing.
    assert to_mlflow(server, None, headers, body).json()["created"] is False
    assert count(server, Promotion) == 1 and queued(server) == 1


# ---------------------------------------------------------------------------- repeats


def thread_replies(fake: FakeSlack, parent_ts: str, channel: str = CHANNEL) -> list[str]:
    return [text_of(m) for m in fake.messages.get(channel, {}).values()
            if m.get("thread_ts") == parent_ts]


def top_level_announcements(fake: FakeSlack, channel: str = CHANNEL) -> list[dict[str, Any]]:
    return [m for m in fake.messages.get(channel, {}).values()
            if "thread_ts" not in m and ":rocket:" in json.dumps(m.get("blocks", []))]


def test_mlflow_setting_the_same_alias_again_edits_the_one_card(
        server: QuorumServer, fake_slack: FakeSlack) -> None:
    bind(server)
    assert to_mlflow(server, alias_event()).json()["promotion"] == "P-1"
    announcements(fake_slack)
    [card] = top_level_announcements(fake_slack)

    body = json.dumps(alias_event()).encode()
    headers = signed(body)  # MLflow fired the event again: a new delivery id
    answer = to_mlflow(server, None, headers, body)
    assert answer.status_code == 200
    assert (answer.json()["promotion"], answer.json()["repeated"]) == ("P-1", True)
    # MLflow retrying that delivery (same id) counts nothing more.
    assert to_mlflow(server, None, headers, body).json()["promotion"] == "P-1"

    update = fake_slack.wait_for("chat.update")[0]
    assert update.args["ts"] == card["ts"] and "Announced again 1 time" in text_of(update.args)
    fake_slack.wait_for("chat.postMessage", count=2)
    [line] = thread_replies(fake_slack, card["ts"])
    assert "MLflow set the alias again" in line and "instead of posting it twice" in line
    assert len(top_level_announcements(fake_slack)) == 1
    [promotion] = promotions(server)
    assert (promotion.repeats, promotion.delivery_id is not None) == (1, True)
    with server.runtime.db.session() as session:
        actions = list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
        assert actions.count("promotion.repeated") == 1
        project = project_for_channel(session, TEAM, CHANNEL, "churn")
        now = utcnow()
        # The retrospective digest and the trace count it once.
        assert len(promotions_between(session, project, now - timedelta(days=1), now)) == 1
        assert [p.ref for p in trace(session, project, MODEL, "3").promotions] == ["P-1"]

    # Another version, or the same one to another alias, is a promotion of its own.
    assert to_mlflow(server, alias_event(version="4")).json()["promotion"] == "P-2"
    assert to_mlflow(server, alias_event(alias="production")).json()["promotion"] == "P-3"


def test_a_retried_cli_announcement_edits_the_card_instead_of_posting_again(
        server: QuorumServer, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    bind(server)
    args = ("--model", MODEL, "--version", "3", "--to", "production")
    assert cli(monkeypatch, capsys, server, *args)[:2] == (0, "P-1\n")
    announcements(fake_slack)
    code, out, err = cli(monkeypatch, capsys, server, *args, "--actor", BOB)
    assert (code, out) == (0, "P-1\n") and "already announced" in err
    fake_slack.wait_for("chat.update")
    [card] = top_level_announcements(fake_slack)
    fake_slack.wait_for("chat.postMessage", count=2)
    [line] = thread_replies(fake_slack, card["ts"])
    assert "the command line" in line and f"<@{BOB}>" in line
    assert count(server, Promotion) == 1 and promotions(server)[0].repeats == 1


def test_a_repeat_after_the_window_is_a_new_announcement(
        serve: Callable[..., QuorumServer], fake_slack: FakeSlack) -> None:
    server = serve(QUORUM_PROMOTION_REPEAT_MINUTES="0")
    bind(server)
    payload = {"model": MODEL, "version": "3", "to": "production"}
    assert to_hook(server, payload).json()["promotion"] == "P-1"
    assert to_hook(server, payload).json()["promotion"] == "P-2"
    announcements(fake_slack, 2)
    assert count(server, Promotion) == 2
