"""Self-test of the fake Slack Web API server, driven by slack_sdk's real WebClient."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
from pathlib import Path

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from .fake_slack import Call, FakeSlack, default_methods_path


def section(text: str) -> dict:
    """Return a mrkdwn section block."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def modal(title: str = "Vote", blocks: list[dict] | None = None) -> dict:
    """Return a minimal modal view."""
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": title},
        "blocks": blocks if blocks is not None else [section("hi")],
    }


@pytest.fixture
def fake(fake_slack: FakeSlack) -> FakeSlack:
    """The suite's fake (conftest), reset for this test."""
    return fake_slack


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    """A WebClient for the fake without retry handlers."""
    web = WebClient(token=fake.token, base_url=fake.url)
    web.retry_handlers.clear()
    return web


def test_default_methods_path_points_at_shared_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference data is found next to the repo, or via the env override."""
    repo_parent = Path(__file__).resolve().parents[3]
    assert default_methods_path() == repo_parent / "shared" / "slack-api" / "methods.json"
    assert default_methods_path().is_file()
    monkeypatch.setenv("QUORUM_SLACK_METHODS", "/elsewhere/methods.json")
    assert default_methods_path() == Path("/elsewhere/methods.json")


def test_start_stop_and_urls() -> None:
    """The server binds loopback, serves while started and refuses once stopped."""
    fake = FakeSlack().start()
    try:
        assert fake.url == f"{fake.base}/api/"
        assert fake.base.startswith("http://127.0.0.1:")
        assert httpx.post(fake.url + "api.test").json()["ok"] is True
    finally:
        fake.stop()
    fake.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = fake.url


def test_post_update_permalink_round_trip(fake: FakeSlack, client: WebClient) -> None:
    """Messages are stored, updated, linked and deleted like Slack does."""
    posted = client.chat_postMessage(channel="C1", text="hello", blocks=[section("*hello*")])
    ts = posted["ts"]
    assert posted["ok"] and posted["channel"] == "C1"
    assert posted["message"]["user"] == fake.bot_user_id
    assert posted["message"]["blocks"] == [section("*hello*")]
    reply = client.chat_postMessage(channel="C1", text="reply", thread_ts=ts)
    assert float(reply["ts"]) > float(ts)
    assert reply["message"]["thread_ts"] == ts

    updated = client.chat_update(channel="C1", ts=ts, text="edited", blocks=[section("edited")])
    assert (updated["channel"], updated["ts"], updated["text"]) == ("C1", ts, "edited")
    assert fake.messages["C1"][ts]["text"] == "edited"
    assert fake.messages["C1"][ts]["blocks"] == [section("edited")]
    assert fake.messages["C1"][ts]["reply_count"] == 1
    assert fake.messages["C1"][reply["ts"]]["thread_ts"] == ts

    link = client.chat_getPermalink(channel="C1", message_ts=ts)
    assert link["permalink"] == f"https://fake.slack.com/archives/C1/p{ts.replace('.', '')}"

    history = client.conversations_history(channel="C1")
    assert [m["ts"] for m in history["messages"]] == [ts]
    replies = client.conversations_replies(channel="C1", ts=ts)
    assert [m["ts"] for m in replies["messages"]] == [ts, reply["ts"]]

    client.chat_delete(channel="C1", ts=reply["ts"])
    assert reply["ts"] not in fake.messages["C1"]
    with pytest.raises(SlackApiError) as missing:
        client.chat_update(channel="C1", ts="1.000001", text="x")
    assert missing.value.response["error"] == "message_not_found"

    assert [c.method for c in fake.calls][:3] == [
        "chat.postMessage",
        "chat.postMessage",
        "chat.update",
    ]
    first = fake.calls_to("chat.postMessage")[0]
    assert first.token == fake.token and first.status == 200
    assert first.args["blocks"] == [section("*hello*")]
    assert len(fake.calls_to("chat.update", ok_only=False)) == 2
    assert len(fake.calls_to("chat.update")) == 1


def test_form_encoded_json_fields_are_decoded(fake: FakeSlack, client: WebClient) -> None:
    """Form-encoded blocks arrive as JSON strings and are recorded as objects."""
    blocks = [section("form")]
    response = client.api_call(
        "chat.postEphemeral",
        params={"channel": "C1", "user": "U1", "text": "t", "blocks": json.dumps(blocks)},
    )
    assert response["message_ts"]
    assert fake.calls[-1].args["blocks"] == blocks
    assert "C1" not in fake.messages


def test_unknown_method(fake: FakeSlack, client: WebClient) -> None:
    """Unknown methods answer HTTP 404 unknown_method."""
    with pytest.raises(SlackApiError) as err:
        client.api_call("chat.postMassage", json={"channel": "C1", "text": "x"})
    assert err.value.response.status_code == 404
    assert err.value.response["error"] == "unknown_method"
    assert fake.calls[-1].method == "chat.postMassage"
    assert fake.calls[-1].status == 404


def test_missing_required_arg_and_arg_groups(client: WebClient) -> None:
    """Required args and arg groups from methods.json are enforced."""
    with pytest.raises(SlackApiError) as missing:
        client.api_call("chat.postMessage", json={"text": "no channel"})
    assert missing.value.response.data == {
        "ok": False,
        "error": "invalid_arguments",
        "response_metadata": {"messages": ["[ERROR] missing required field: channel"]},
    }
    with pytest.raises(SlackApiError) as no_text:
        client.api_call("chat.postMessage", json={"channel": "C1"})
    assert no_text.value.response["error"] == "no_text"
    with pytest.raises(SlackApiError) as both:
        client.api_call(
            "chat.postMessage", json={"channel": "C1", "text": "a", "markdown_text": "b"}
        )
    assert both.value.response["error"] == "invalid_arguments"
    with pytest.raises(SlackApiError) as no_trigger:
        client.api_call("views.open", json={"view": modal()})
    assert no_trigger.value.response["error"] == "invalid_arguments"
    with pytest.raises(SlackApiError) as too_long:
        client.chat_postMessage(channel="C1", text="x" * 40_001)
    assert too_long.value.response["error"] == "msg_too_long"


def test_auth_errors(fake: FakeSlack) -> None:
    """A wrong token is invalid_auth, no token is not_authed, both with HTTP 200."""
    wrong = WebClient(token="xoxb-wrong", base_url=fake.url)
    with pytest.raises(SlackApiError) as err:
        wrong.auth_test()
    assert err.value.response.status_code == 200
    assert err.value.response["error"] == "invalid_auth"
    anonymous = httpx.post(fake.url + "auth.test").json()
    assert anonymous == {"ok": False, "error": "not_authed"}
    by_arg = httpx.post(fake.url + "auth.test", data={"token": fake.token}).json()
    assert by_arg["user_id"] == fake.bot_user_id and by_arg["team_id"] == fake.team_id
    assert fake.calls[-1].token == fake.token


def test_invalid_blocks_rejected(client: WebClient) -> None:
    """Blocks and views are validated with slack_sdk.models."""
    with pytest.raises(SlackApiError) as long_text:
        client.chat_postMessage(channel="C1", text="t", blocks=[section("x" * 3001)])
    assert long_text.value.response["error"] == "invalid_blocks"
    assert "3000" in long_text.value.response["errors"][0]
    with pytest.raises(SlackApiError) as too_many:
        client.chat_postMessage(channel="C1", text="t", blocks=[section("x")] * 51)
    assert too_many.value.response["error"] == "invalid_blocks"
    with pytest.raises(SlackApiError) as unknown:
        client.chat_postMessage(channel="C1", text="t", blocks=[{"type": "nonsense"}])
    assert unknown.value.response["error"] == "invalid_blocks"
    client.chat_postMessage(channel="C1", text="t", blocks=[section("x")] * 50)
    with pytest.raises(SlackApiError) as bad_view:
        client.views_open(trigger_id="T1", view=modal(title="x" * 25))
    assert bad_view.value.response["error"] == "invalid_blocks"
    with pytest.raises(SlackApiError) as big_view:
        client.views_open(trigger_id="T1", view=modal(blocks=[section("x")] * 101))
    assert big_view.value.response["error"] == "invalid_blocks"


def test_views_and_other_methods(fake: FakeSlack, client: WebClient) -> None:
    """Views get ids, channels get created, users described, others echo examples."""
    opened = client.views_open(trigger_id="T1", view={**modal(), "external_id": "ext-1"})
    view_id = opened["view"]["id"]
    assert view_id.startswith("V") and opened["view"]["hash"]
    assert opened["view"]["title"]["text"] == "Vote"
    by_id = client.views_update(view_id=view_id, view=modal(title="Voted"))
    assert by_id["view"]["id"] == view_id
    assert fake.views[view_id]["title"]["text"] == "Voted"
    by_external = client.views_update(external_id="ext-1", view=modal(title="Again"))
    assert by_external["view"]["title"]["text"] == "Again"
    home = client.views_publish(user_id="U1", view={"type": "home", "blocks": [section("h")]})
    assert home["view"]["type"] == "home"

    created = client.conversations_create(name="quorum-votes")
    assert created["channel"]["name"] == "quorum-votes"
    assert created["channel"]["id"].startswith("C")
    with pytest.raises(SlackApiError) as taken:
        client.conversations_create(name="quorum-votes")
    assert taken.value.response["error"] == "name_taken"
    assert client.conversations_invite(channel=created["channel"]["id"], users="U1")["ok"]

    user = client.users_info(user="U42")["user"]
    assert (user["id"], user["name"], user["real_name"], user["tz"]) == (
        "U42",
        "u42",
        "User U42",
        "UTC",
    )
    fake.users["U43"] = {"tz": "Europe/Paris"}
    assert client.users_info(user="U43")["user"]["tz"] == "Europe/Paris"
    assert client.reactions_add(channel="C1", name="tada", timestamp="1.2")["ok"]


def test_rate_limit_fault(fake: FakeSlack, client: WebClient) -> None:
    """A 429 fault carries Retry-After and is recorded; the next call succeeds."""
    fake.inject("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "7"
    assert err.value.response["error"] == "ratelimited"
    assert client.chat_postMessage(channel="C1", text="x")["ok"]
    statuses = [c.status for c in fake.calls_to("chat.postMessage", ok_only=False)]
    assert statuses == [429, 200]


def test_server_error_and_error_faults(fake: FakeSlack, client: WebClient) -> None:
    """Status and error faults apply to the next `times` matching calls only."""
    fake.inject(status=500, times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            client.auth_test()
        assert err.value.response.status_code == 500
        assert err.value.response["error"] == "internal_error"
    fake.inject("chat.postMessage", error="channel_not_found")
    assert client.auth_test()["ok"]
    with pytest.raises(SlackApiError) as not_found:
        client.chat_postMessage(channel="C1", text="x")
    assert not_found.value.response.status_code == 200
    assert not_found.value.response["error"] == "channel_not_found"
    fake.missing_channels.add("C404")
    with pytest.raises(SlackApiError) as missing:
        client.chat_postMessage(channel="C404", text="x")
    assert missing.value.response["error"] == "channel_not_found"


def test_delay_causes_client_timeout(fake: FakeSlack) -> None:
    """A delayed answer makes a short-timeout client give up."""
    impatient = WebClient(token=fake.token, base_url=fake.url, timeout=0.5)
    impatient.retry_handlers.clear()
    fake.inject("auth.test", delay=1.5)
    started = time.monotonic()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        impatient.auth_test()
    assert time.monotonic() - started < 1.4


def test_disconnect_raises_connection_error(fake: FakeSlack, client: WebClient) -> None:
    """A disconnect fault closes the connection without a response."""
    fake.inject("auth.test", disconnect=True)
    with pytest.raises((ConnectionError, http.client.HTTPException, urllib.error.URLError)):
        client.auth_test()
    assert fake.calls[-1].status == 0
    assert client.auth_test()["ok"]


def test_not_in_channel_until_joined(fake: FakeSlack, client: WebClient) -> None:
    """Posting to a channel the bot has not joined fails until conversations.join."""
    fake.not_joined_channels.add("C2")
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C2", text="x")
    assert err.value.response["error"] == "not_in_channel"
    joined = client.conversations_join(channel="C2")
    assert joined["channel"]["id"] == "C2" and joined["channel"]["is_channel"]
    assert "C2" not in fake.not_joined_channels
    assert client.chat_postMessage(channel="C2", text="x")["ok"]


def test_response_url_recording(fake: FakeSlack) -> None:
    """POSTs to a response_url are recorded with their JSON body."""
    url = fake.response_url("vote-1")
    assert url.startswith(fake.base)
    body = {"replace_original": True, "text": "done", "blocks": [section("done")]}
    answer = httpx.post(url, json=body)
    assert answer.status_code == 200 and answer.json() == {"ok": True}
    [call] = fake.wait_for("response_url")
    assert call.args == body and call.token is None
    bad = httpx.post(fake.response_url(), json={"blocks": [section("x" * 3001)]})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_blocks"


def test_wait_for_sees_calls_from_other_threads(fake: FakeSlack, client: WebClient) -> None:
    """wait_for blocks until enough matching successful calls arrive."""

    def post_later() -> None:
        time.sleep(0.05)
        client.chat_postMessage(channel="C1", text="one")
        client.chat_postMessage(channel="C1", text="two")

    worker = threading.Thread(target=post_later)
    worker.start()
    calls = fake.wait_for("chat.postMessage", count=2, timeout=2)
    worker.join()
    assert [c.args["text"] for c in calls] == ["one", "two"]
    [two] = fake.wait_for("chat.postMessage", predicate=lambda c: c.args["text"] == "two")
    assert isinstance(two, Call) and two.at >= calls[0].at


def test_wait_for_times_out_with_summary(fake: FakeSlack, client: WebClient) -> None:
    """wait_for raises AssertionError listing recorded calls on timeout."""
    fake.inject("chat.postMessage", error="channel_not_found")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C1", text="x")
    started = time.monotonic()
    with pytest.raises(AssertionError) as err:
        fake.wait_for("chat.postMessage", timeout=0.2)
    assert 0.15 < time.monotonic() - started < 1
    assert "chat.postMessage -> 200 channel_not_found" in str(err.value)


def test_reset_forgets_state(fake: FakeSlack, client: WebClient) -> None:
    """reset clears calls, faults and messages."""
    client.chat_postMessage(channel="C1", text="x")
    fake.inject("auth.test", error="invalid_auth")
    fake.reset()
    assert fake.calls == [] and fake.messages == {}
    assert client.auth_test()["ok"]


def test_apps_connections_open_takes_the_app_token(fake: FakeSlack) -> None:
    """Socket Mode: the app-level token gets the configured URL; the bot token does not."""
    fake.socket_mode_url = "ws://127.0.0.1:1/link"
    app_client = WebClient(token=fake.app_token, base_url=fake.url)
    assert app_client.apps_connections_open(app_token=fake.app_token)["url"] == \
        "ws://127.0.0.1:1/link"
    with pytest.raises(SlackApiError) as err:
        WebClient(token=fake.token, base_url=fake.url).apps_connections_open(
            app_token=fake.token)
    assert err.value.response["error"] == "invalid_auth"
