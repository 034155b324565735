"""Sign in with Slack's pieces: configuration, the return path, the ID token's claims, and the
fake Slack's OpenID endpoints answering as Slack documents."""

from __future__ import annotations

import time
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.config import ConfigError, load_settings
from bot.portal import auth
from support.fake_slack import FakeSlack

from .conftest import ALICE, CLIENT_ID, CLIENT_SECRET


def test_public_url_must_be_an_http_url() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(QUORUM_PUBLIC_URL="quorum.example.com")
    assert str(error.value).startswith("QUORUM_PUBLIC_URL: must be an http(s) URL")
    settings = load_settings(QUORUM_PUBLIC_URL="https://q.example.com/", SLACK_CLIENT_ID="1.2",
                             SLACK_CLIENT_SECRET="s3cret")
    assert settings.public_url == "https://q.example.com" and settings.portal_enabled
    assert "s3cret" not in repr(settings)
    assert not load_settings(QUORUM_PUBLIC_URL="https://q.example.com").portal_enabled
    assert auth.authorize_url(settings) == "https://slack.com/openid/connect/authorize"


@pytest.mark.parametrize("path", ["https://evil.example/portal/", "//evil.example/",
                                  "/portal//evil.example", "/portal/\\evil", "/other",
                                  "/portal/x\nSet-Cookie: a=b", None, ""])
def test_only_local_portal_paths_are_returned_to(path: str | None) -> None:
    assert auth.safe_next(path) == "/portal/"


def _claims(**changes: Any) -> dict[str, Any]:
    claims = {"iss": "https://slack.com", "aud": CLIENT_ID, "exp": time.time() + 60,
              "nonce": "n1", auth.USER_CLAIM: ALICE}
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


@pytest.mark.parametrize(("changes", "reason"), [
    ({"iss": "https://evil.example"}, "not issued by Slack"),
    ({"aud": "someone-else"}, "another app"),
    ({"exp": time.time() - 1}, "expired"),
    ({"nonce": "replayed"}, "nonce"),
    ({"nonce": None}, "nonce"),
])
def test_id_token_claims_are_checked(changes: dict[str, Any], reason: str) -> None:
    settings = load_settings(SLACK_CLIENT_ID=CLIENT_ID, SLACK_CLIENT_SECRET=CLIENT_SECRET)
    auth._check_claims(_claims(), settings, "n1")  # the genuine one passes
    with pytest.raises(auth.SignInError) as error:
        auth._check_claims(_claims(**changes), settings, "n1")
    assert reason in str(error.value)


def test_fake_slack_token_endpoint_checks_like_slack(fake_slack: FakeSlack) -> None:
    import httpx

    fake_slack.oauth_clients[CLIENT_ID] = CLIENT_SECRET
    fake_slack.signed_in_user = ALICE
    redirect = "https://q.example.com/portal/auth/callback"

    def code() -> str:
        answer = httpx.get(f"{fake_slack.base}/openid/connect/authorize", params={
            "response_type": "code", "scope": "openid profile email", "client_id": CLIENT_ID,
            "state": "s", "nonce": "n", "redirect_uri": redirect})
        assert answer.status_code == 302
        return httpx.URL(answer.headers["location"]).params["code"]

    client = WebClient(base_url=fake_slack.url)
    for kwargs, error in [({"client_secret": "wrong"}, "bad_client_secret"),
                          ({"client_id": "9.9"}, "invalid_client_id"),
                          ({"redirect_uri": "https://evil.example/cb"}, "bad_redirect_uri"),
                          ({"code": "made-up"}, "invalid_code")]:
        arguments = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "code": code(),
                     "redirect_uri": redirect, **kwargs}
        with pytest.raises(SlackApiError) as raised:
            client.openid_connect_token(**arguments)
        assert raised.value.response["error"] == error
    good = code()
    answer = client.openid_connect_token(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                         code=good, redirect_uri=redirect)
    claims = auth._claims_of(answer["id_token"])
    assert claims[auth.USER_CLAIM] == ALICE and claims["nonce"] == "n"
    assert claims["aud"] == CLIENT_ID and claims[auth.TEAM_CLAIM] == fake_slack.team_id
    with pytest.raises(SlackApiError) as raised:  # a code works once
        client.openid_connect_token(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                    code=good, redirect_uri=redirect)
    assert raised.value.response["error"] == "invalid_code"
    info = WebClient(base_url=fake_slack.url, token=answer["access_token"])
    assert info.openid_connect_userInfo()[auth.USER_CLAIM] == ALICE
    with pytest.raises(SlackApiError):
        WebClient(base_url=fake_slack.url, token="xoxp-forged").openid_connect_userInfo()


def test_conversations_members_pages_through_the_fake(fake_slack: FakeSlack) -> None:
    fake_slack.channel_members["G1"] = [f"U{n:04d}" for n in range(450)]
    from bot.portal.access import Directory

    directory = Directory(lambda: WebClient(token=fake_slack.token, base_url=fake_slack.url))
    assert len(directory.members("G1")) == 450
    assert len(fake_slack.calls_to("conversations.members")) == 3  # 200 a page
    directory.members("G1")
    assert len(fake_slack.calls_to("conversations.members")) == 3  # cached
    fake_slack.inject("conversations.members", error="channel_not_found")
    assert directory.members("G-unknown") == frozenset()  # nobody let in when Slack fails
