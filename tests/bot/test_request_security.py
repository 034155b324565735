"""Hostile requests at the HTTP edge of a running `quorum serve`: forged Slack signatures, wrong
webhook tokens and MLflow signatures, oversized bodies and slow-loris clients (issue #11, item 5).

Every refused request must leave the database exactly as it was and reach no one in Slack.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import select as io_select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from bot.models import Decision
from bot.web.limits import BODY_LIMIT
from support.db_snapshot import changed_tables, snapshot
from support.fake_github import new_private_key
from support.fake_slack import FakeSlack
from support.mlflow_signing import mlflow_signed
from support.quorum_server import QuorumServer
from support.slack_requests import SlackSender, sign
from support.waiting import eventually

WEBHOOK_TOKEN = "hook-token-5f1e9c"
MLFLOW_SECRET = "mlflow-secret-8a2d4b"
GITHUB_SECRET = "github-secret-3c7e1f"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def guarded(make_settings: Callable[..., Any], fake_slack: FakeSlack) -> Iterator[QuorumServer]:
    """Quorum with every webhook secret set, and short read deadlines for the slow clients."""
    server = QuorumServer(make_settings(QUORUM_WEBHOOK_TOKEN=WEBHOOK_TOKEN,
                                        MLFLOW_WEBHOOK_SECRET=MLFLOW_SECRET,
                                        GITHUB_WEBHOOK_SECRET=GITHUB_SECRET,
                                        GITHUB_APP_ID="31337",
                                        GITHUB_APP_PRIVATE_KEY=new_private_key()[0]),
                          header_seconds=1.0, body_read_seconds=1.0).start()
    yield server
    server.stop()


def _command_body(text: str = "Sneaky decision") -> str:
    return urlencode({"team_id": "T0TEAM001", "channel_id": "C0CHURN01", "user_id": "U0EVE0001",
                      "command": "/decision", "text": text, "trigger_id": "t.1",
                      "response_url": "http://127.0.0.1:9/nowhere"})


def _decisions(server: QuorumServer) -> int:
    with server.runtime.db.session() as session:
        return session.scalar(select(func.count()).select_from(Decision)) or 0


# ---------------------------------------------------------------------------- Slack signatures


def _forgeries(body: str) -> dict[str, tuple[str | bytes, dict[str, str]]]:
    """name → (the body sent, the signature headers sent with it)."""
    now = int(time.time())
    good = sign(body)
    return {
        "no signature headers": (body, {}),
        "no timestamp header": (body, {"X-Slack-Signature": good["X-Slack-Signature"]}),
        "no signature header": (body, {"X-Slack-Request-Timestamp": str(now)}),
        "empty signature": (body, {**good, "X-Slack-Signature": ""}),
        "wrong secret": (body, sign(body, secret="not-the-secret")),
        "tampered body": (body + "&text=changed", good),
        "stale, 6 minutes old": (body, sign(body, timestamp=now - 6 * 60)),
        "future-dated, 6 minutes ahead": (body, sign(body, timestamp=now + 6 * 60)),
        "non-numeric timestamp": (body, {**good, "X-Slack-Request-Timestamp": "yesterday"}),
        "another signature version": (body, {**good, "X-Slack-Signature":
                                              good["X-Slack-Signature"].replace("v0=", "v1=")}),
        "signature of the timestamp only": (body, {**good, "X-Slack-Signature":
                                                   sign("")["X-Slack-Signature"]}),
        # Bolt decodes the body before it checks the signature: this was a 500.
        "a body that is not UTF-8": (body.encode() + b"&text=\xff\xfe", good),
    }


def test_forged_slack_requests_get_401_and_change_nothing(slack: SlackSender,
                                                           quorum: QuorumServer,
                                                           fake_slack: FakeSlack) -> None:
    body = _command_body()
    before = snapshot(quorum.runtime.db)
    for name, (sent, headers) in _forgeries(body).items():
        raw = sent if isinstance(sent, bytes) else sent.encode()
        response = slack.http.post(slack.url, content=raw,
                                   headers={"Content-Type": FORM, **headers})
        assert response.status_code == 401, (name, response.status_code, response.text)
        assert response.json()["ok"] is False, name
    assert changed_tables(before, quorum.runtime.db) == []
    assert fake_slack.calls == []
    # The same body, correctly signed (4 minutes old is still fresh), is served.
    fresh = slack.post(body, FORM, signature=sign(body, timestamp=int(time.time()) - 4 * 60))
    assert fresh.status_code == 200 and _decisions(quorum) == 1


# ---------------------------------------------------------------------------- webhooks


def _mlflow_headers(body: bytes, *, secret: str = MLFLOW_SECRET,
                    timestamp: int | None = None) -> dict[str, str]:
    return mlflow_signed(body, secret, timestamp=timestamp)


PROMOTION = json.dumps({"model": "churn-model", "version": "3", "to": "champion"}).encode()
ALERT = json.dumps({
    "receiver": "quorum", "status": "firing", "version": "4", "groupKey": "{}:{alertname=\"X\"}",
    "groupLabels": {"alertname": "X"}, "commonLabels": {"alertname": "X", "severity": "critical"},
    "commonAnnotations": {"summary": "p99 latency above 2s"}, "externalURL": "http://am:9093",
    "truncatedAlerts": 0,
    "alerts": [{"status": "firing", "labels": {"alertname": "X", "severity": "critical"},
                "annotations": {"summary": "p99 latency above 2s"},
                "startsAt": "2026-11-23T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph", "fingerprint": "5ac1e2f3"}],
}).encode()
MLFLOW_EVENT = json.dumps({"entity": "model_version_alias", "action": "created",
                           "timestamp": "2026-11-25T09:30:00.123456+00:00",
                           "data": {"name": "churn-model", "alias": "champion",
                                    "version": "3"}}).encode()
GITHUB_EVENT = json.dumps({
    "action": "requested", "environment": "production", "event": "push",
    "deployment_callback_url": "https://api.github.com/repos/acme/churn/actions/runs/1/"
                               "deployment_protection_rule",
    "deployment": {"sha": "a1b2c3d", "ref": "v3", "payload": {}},
    "repository": {"full_name": "acme/churn"}, "installation": {"id": 5}}).encode()


def _github_headers(body: bytes, *, secret: str = GITHUB_SECRET,
                    scheme: str = "sha256") -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-GitHub-Event": "deployment_protection_rule",
            "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "X-Hub-Signature-256": f"{scheme}={digest}"}


BEARER_ROUTES = {  # route → (method, body)
    "/hooks/promotion": ("POST", PROMOTION),
    "/hooks/alertmanager": ("POST", ALERT),
    "/api/gates?model=churn-model&version=3": ("GET", b""),
}
BAD_BEARERS = {
    "no Authorization header": None,
    "empty bearer": "Bearer",
    "wrong token": "Bearer not-the-token",
    "token with a suffix": f"Bearer {WEBHOOK_TOKEN}x",
    # A check written as `expected.startswith(token)` lets these through.
    "shortened token": f"Bearer {WEBHOOK_TOKEN[:-1]}",
    "half the token": f"Bearer {WEBHOOK_TOKEN[:len(WEBHOOK_TOKEN) // 2]}",
    "one-character token": f"Bearer {WEBHOOK_TOKEN[0]}",
    "token as Basic credentials": f"Basic {WEBHOOK_TOKEN}",
    "bare token, no scheme": WEBHOOK_TOKEN,
}


def test_webhooks_refuse_wrong_tokens_and_signatures_and_change_nothing(
        guarded: QuorumServer, fake_slack: FakeSlack) -> None:
    before = snapshot(guarded.runtime.db)
    with httpx.Client(base_url=guarded.url, timeout=10) as http:
        for route, (method, body) in BEARER_ROUTES.items():
            for name, authorization in BAD_BEARERS.items():
                headers = {"Content-Type": "application/json"}
                if authorization is not None:
                    headers["Authorization"] = authorization
                response = http.request(method, route, content=body, headers=headers)
                assert response.status_code == 401, (route, name, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                refusal = response.json()
                assert refusal["ok"] is False and refusal["error"] == "unauthorized"
                assert refusal["reason"] and WEBHOOK_TOKEN not in response.text
        stale = int(time.time()) - 6 * 60
        for name, headers in {
            "no signature": {"Content-Type": "application/json"},
            "wrong secret": _mlflow_headers(MLFLOW_EVENT, secret="not-the-secret"),
            "stale": _mlflow_headers(MLFLOW_EVENT, timestamp=stale),
            "signature of another body": _mlflow_headers(b"{}"),
        }.items():
            response = http.post("/hooks/mlflow", content=MLFLOW_EVENT, headers=headers)
            assert response.status_code == 401, (name, response.text)
            assert response.json()["error"] == "invalid_signature", name
        unsigned = _github_headers(GITHUB_EVENT)
        del unsigned["X-Hub-Signature-256"]
        for name, headers in {
            "no signature": unsigned,
            "wrong secret": _github_headers(GITHUB_EVENT, secret="not-the-secret"),
            "signature of another body": _github_headers(b"{}"),
            "sha1 scheme": _github_headers(GITHUB_EVENT, scheme="sha1"),
            "shortened signature": {**_github_headers(GITHUB_EVENT), "X-Hub-Signature-256":
                                    _github_headers(GITHUB_EVENT)["X-Hub-Signature-256"][:-1]},
        }.items():
            response = http.post("/hooks/github", content=GITHUB_EVENT, headers=headers)
            assert response.status_code == 401, (name, response.text)
            assert response.json()["error"] == "invalid_signature", name
            assert GITHUB_SECRET not in response.text
        assert changed_tables(before, guarded.runtime.db) == []
        assert fake_slack.calls == []

        # The same requests with the right credentials are served: the refusals were the auth.
        auth = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
        for route, (method, body) in BEARER_ROUTES.items():
            response = http.request(method, route, content=body, headers=auth)
            assert response.status_code < 300, (route, response.text)
        response = http.post("/hooks/mlflow", content=MLFLOW_EVENT,
                             headers=_mlflow_headers(MLFLOW_EVENT))
        assert response.status_code < 300, response.text
        # Correctly signed, but no project maps the repository: 202, nothing held.
        response = http.post("/hooks/github", content=GITHUB_EVENT,
                             headers=_github_headers(GITHUB_EVENT))
        assert response.status_code == 202 and response.json()["mapped"] is False
    assert changed_tables(before, guarded.runtime.db) != []


HOSTILE_JSON = {  # each could end in a 500 (the reply or the database choked on it)
    "nested too deep to parse": b"[" * 100_000,
    "a lone UTF-16 surrogate": b'{"model": "churn\\ud800", "version": "3", "to": "prod"}',
    "a NUL character": b'{"model": "churn", "version": "3", "to": "prod", "note": "a\\u0000b"}',
}


def test_hostile_json_from_authenticated_callers_gets_400_and_changes_nothing(
        guarded: QuorumServer, fake_slack: FakeSlack) -> None:
    before = snapshot(guarded.runtime.db)
    auth = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
    with httpx.Client(base_url=guarded.url, timeout=10) as http:
        for name, body in HOSTILE_JSON.items():
            for route, headers in (("/hooks/promotion", auth), ("/hooks/alertmanager", auth),
                                   ("/hooks/mlflow", _mlflow_headers(body)),
                                   ("/hooks/github", _github_headers(body))):
                response = http.post(route, content=body, headers=headers)
                assert response.status_code == 400, (name, route, response.text)
                assert response.json()["error"] == "invalid_json", (name, route)
        nul = http.get("/api/gates?model=churn%00&version=3", headers=auth)
        assert nul.status_code == 400 and "NUL" in nul.json()["reason"], nul.text
    # Signed by Slack's secret, yet no payload Bolt can read.
    deep = "[" * 100_000
    sender = SlackSender(guarded.url, fake_slack.response_url())
    try:
        response = sender.post(deep, "application/json")
    finally:
        sender.close()
    assert response.status_code == 400 and response.json()["error"] == "invalid_payload"
    assert changed_tables(before, guarded.runtime.db) == []
    assert fake_slack.calls == []


# ---------------------------------------------------------------------------- body size


def _address(server: QuorumServer) -> tuple[str, int]:
    parts = urlsplit(server.url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of the one response on `sock` (the server closes after it)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data:
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            if length is not None and len(body) >= length:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    assert head, "no response before the connection ended"
    status = int(head.split(b" ")[1])
    return status, json.loads(body) if body else {}


def _head(method: str, path: str, *lines: str) -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: quorum", *lines, "", ""]).encode()


ROUTES = [("POST", "/slack/events"), ("POST", "/hooks/promotion"),
          ("POST", "/hooks/alertmanager"), ("POST", "/hooks/mlflow"), ("POST", "/hooks/github"),
          ("GET", "/api/gates?model=churn-model&version=3"), ("GET", "/healthz")]


def test_an_announced_huge_body_gets_413_before_it_is_sent(guarded: QuorumServer,
                                                           fake_slack: FakeSlack) -> None:
    """100 MB announced, 1 KB sent: the 413 comes back at once, on every route."""
    before, refused = snapshot(guarded.runtime.db), _refused(guarded, "body_too_large")
    for method, path in ROUTES:
        with socket.create_connection(_address(guarded), timeout=10) as sock:
            sock.sendall(_head(method, path, "Content-Type: application/json",
                               f"Authorization: Bearer {WEBHOOK_TOKEN}",
                               "Content-Length: 100000000") + b"{" + b" " * 1023)
            status, reply = _read_response(sock)
        assert status == 413, (path, status, reply)
        assert reply["error"] == "body_too_large" and str(BODY_LIMIT) in reply["reason"]
    assert changed_tables(before, guarded.runtime.db) == []
    assert fake_slack.calls == []
    assert _refused(guarded, "body_too_large") == refused + len(ROUTES)  # and /metrics says so


def _refused(server: QuorumServer, error: str) -> float:
    """`quorum_http_refused_total{error=…}` as GET /metrics shows it."""
    for family in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text):
        for sample in family.samples:
            if sample.name == "quorum_http_refused_total" and sample.labels["error"] == error:
                return sample.value
    return 0.0


def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(guarded: QuorumServer) -> None:
    before = snapshot(guarded.runtime.db)
    cap = 64 * BODY_LIMIT
    with socket.create_connection(_address(guarded), timeout=10) as sock:
        sock.sendall(_head("POST", "/hooks/promotion", "Content-Type: application/json",
                           f"Authorization: Bearer {WEBHOOK_TOKEN}",
                           "Transfer-Encoding: chunked"))
        piece, sent = b" " * 65536, 0
        while sent < cap:
            readable, _, _ = io_select.select([sock], [], [], 0)
            if readable:  # the answer came: stop sending
                break
            try:
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        status, reply = _read_response(sock)
    assert status == 413, (status, reply)
    assert reply["error"] == "body_too_large"
    assert sent < cap  # the server stopped it; it did not wait for the body's end
    assert changed_tables(before, guarded.runtime.db) == []


def test_a_body_at_the_limit_is_served(slack: SlackSender) -> None:
    """The limit is on size only: a signed Slack body of exactly BODY_LIMIT bytes goes through."""
    empty = {"type": "url_verification", "challenge": "abc123", "token": "x", "padding": ""}
    padding = "p" * (BODY_LIMIT - len(json.dumps(empty)))
    body = json.dumps({**empty, "padding": padding})
    assert len(body.encode()) == BODY_LIMIT
    response = slack.post(body, "application/json")
    assert response.status_code == 200 and response.json()["challenge"] == "abc123"
    over = slack.post(body + " ", "application/json")
    assert over.status_code == 413


# ---------------------------------------------------------------------------- slow clients


class Dribblers:
    """Connections that send their request one byte at a time, from one background thread."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.sockets: list[tuple[socket.socket, bytes]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._dribble, daemon=True)

    def open(self, count: int, dribbled: bytes, at_once: bytes = b"") -> list[socket.socket]:
        """`count` connections that send `at_once` now and then `dribbled` byte by byte."""
        opened = []
        for _ in range(count):
            sock = socket.create_connection(self.address, timeout=10)
            sock.sendall(at_once)
            self.sockets.append((sock, dribbled))
            opened.append(sock)
        return opened

    def _dribble(self) -> None:
        position = 0
        while not self.stop.wait(0.05):
            for sock, request in self.sockets:
                if position < len(request):
                    # OSError: the server closed it, which is what its deadline is for.
                    with contextlib.suppress(OSError):
                        sock.send(request[position:position + 1])
            position += 1

    def __enter__(self) -> Dribblers:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock, _ in self.sockets:
            sock.close()


@pytest.mark.slow
def test_slow_loris_clients_do_not_hold_up_a_signed_request(guarded: QuorumServer,
                                                            fake_slack: FakeSlack) -> None:
    """200 connections dribbling headers or bodies; a real Slack request is still answered."""
    body = _command_body("Logged during a slow-loris attack")
    slow_body = _head("POST", "/slack/events", f"Content-Type: {FORM}",
                      f"Content-Length: {len(body)}")
    with Dribblers(_address(guarded)) as dribblers:
        heads = dribblers.open(100, _head("POST", "/slack/events", f"Content-Type: {FORM}",
                                  f"Content-Length: {len(body)}", "X-Padding: " + "x" * 200))
        bodies = dribblers.open(100, body.encode(), at_once=slow_body)
        sender = SlackSender(guarded.url, fake_slack.response_url())
        try:
            started = time.monotonic()
            response = sender.command("/decision", "Logged during a slow-loris attack")
            elapsed = time.monotonic() - started
        finally:
            sender.close()
        assert response.status_code == 200, response.text
        assert elapsed < 3, f"answered after {elapsed:.1f} s (Slack gives up after 3 s)"
        assert _decisions(guarded) == 1
        # Slow headers and slow bodies are cut off with a 408 once their deadline (1 s) passes.
        for sock in heads:
            assert _read_response(sock)[0] == 408
        for sock in bodies:
            status, reply = _read_response(sock)
            assert status == 408 and reply["error"] == "request_timeout"
    assert _refused(guarded, "header_timeout") >= len(heads)
    assert _refused(guarded, "request_timeout") >= len(bodies)
    eventually(lambda: fake_slack.calls_to("chat.postMessage"))


# ---------------------------------------------------------------------------- malformed payloads

FORM_PAYLOAD = "payload={}"
MALFORMED_SLACK_BODIES = {  # name → (signed body, content type): each was a 500 with a traceback
    "null as JSON": ("null", "application/json"),
    "a JSON string": ('"hello"', "application/json"),
    "an events body that is a JSON list": ('[{"type": "event_callback"}]', "application/json"),
    "payload=[1,2]": (FORM_PAYLOAD.format("%5B1%2C2%5D"), FORM),
    "payload=null": (FORM_PAYLOAD.format("null"), FORM),
    "payload= not JSON": (FORM_PAYLOAD.format("not-json"), FORM),
    "an empty payload=": (FORM_PAYLOAD.format(""), FORM),
    "an event that is a string": (
        json.dumps({"type": "event_callback", "team_id": "T0TEAM001", "event": "x"}),
        "application/json"),
    "block_actions without actions": (
        FORM_PAYLOAD.format(json.dumps({"type": "block_actions", "actions": None,
                                        "user": {"id": "U0EVE0001"}})), FORM),
    "block_actions whose action is a string": (
        FORM_PAYLOAD.format(json.dumps({"type": "block_actions", "actions": ["x"],
                                        "user": {"id": "U0EVE0001"}})), FORM),
    "view_submission whose view is a number": (
        FORM_PAYLOAD.format(json.dumps({"type": "view_submission", "view": 5,
                                        "user": {"id": "U0EVE0001"}})), FORM),
    "a payload whose type is a number": (FORM_PAYLOAD.format(json.dumps({"type": 5})), FORM),
    "a slash command without its text": (
        urlencode({"command": "/decision", "team_id": "T0TEAM001", "user_id": "U0EVE0001",
                   "channel_id": "C0CHURN01", "trigger_id": "t.2"}), FORM),
}


def test_signed_malformed_slack_bodies_get_400_invalid_payload_without_a_traceback(
        slack: SlackSender, quorum: QuorumServer, fake_slack: FakeSlack,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    before = snapshot(quorum.runtime.db)
    for name, (body, content_type) in MALFORMED_SLACK_BODIES.items():
        caplog.clear()
        response = slack.post(body, content_type)
        assert response.status_code == 400, (name, response.status_code, response.text)
        answer = response.json()
        assert answer["ok"] is False and answer["error"] == "invalid_payload", name
        assert answer["reason"].startswith("The body is not a Slack payload"), name
        assert not [record for record in caplog.records
                    if record.exc_info or record.levelno >= logging.ERROR], (name, caplog.text)
    assert changed_tables(before, quorum.runtime.db) == []
    assert fake_slack.calls == []
