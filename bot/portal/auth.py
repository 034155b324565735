"""Sign in with Slack (OpenID Connect) and the portal's session.

The flow (Slack's "Sign in with Slack"): `/portal/login` sends the browser to Slack's
`openid/connect/authorize` with a fresh `state` and `nonce` kept in the signed session cookie;
Slack sends it back to `/portal/auth/callback?code=…&state=…`; the code is exchanged with
`openid.connect.token` (through SLACK_API_URL, with the app's client id and secret) for an ID
token, whose `https://slack.com/user_id` is the person. The ID token comes straight from Slack's
token endpoint over TLS, so (OpenID Connect Core §3.1.3.7) its issuer, audience, expiry and
nonce are checked but not its signature; with no ID token, `openid.connect.userInfo` says who
it is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.config import Settings

ISSUER = "https://slack.com"
USER_CLAIM = "https://slack.com/user_id"
TEAM_CLAIM = "https://slack.com/team_id"
SCOPES = "openid profile email"
SESSION_SECONDS = 12 * 60 * 60
# How long a sign-in may take between leaving for Slack and coming back.
SIGN_IN_SECONDS = 10 * 60
CALLBACK_PATH = "/portal/auth/callback"
COOKIE_NAME = "quorum_portal"


class SignInError(Exception):
    """Why a sign-in failed, in words for the person (never a token or a secret)."""


@dataclass(frozen=True)
class Person:
    """Who is signed in."""

    user_id: str
    team_id: str
    name: str

    def as_session(self) -> dict[str, Any]:
        return {"user": self.user_id, "team": self.team_id, "name": self.name,
                "since": int(time.time())}

    @classmethod
    def from_session(cls, session: dict[str, Any]) -> Person | None:
        """The person of a session cookie, or None (no sign-in, or older than 12 hours)."""
        user, team, since = session.get("user"), session.get("team"), session.get("since")
        if not (isinstance(user, str) and isinstance(team, str) and isinstance(since, int)):
            return None
        if time.time() - since > SESSION_SECONDS:
            return None
        return cls(user, team, str(session.get("name") or user))


def session_key(settings: Settings) -> str:
    """The key that signs session cookies, derived from the app's client secret (so that
    rotating the secret signs everyone out) and never the secret itself."""
    secret = (settings.slack_client_secret or "").encode()
    return hmac.new(secret, b"quorum-portal-session", hashlib.sha256).hexdigest()


def authorize_url(settings: Settings) -> str:
    """Slack's authorize endpoint: `https://slack.com/openid/connect/authorize` for the default
    SLACK_API_URL, the same path beside the API of a proxy or of the tests' fake Slack."""
    return urljoin(settings.slack_api_url, "../openid/connect/authorize")


def redirect_uri(settings: Settings) -> str:
    return f"{settings.public_url}{CALLBACK_PATH}"


def begin(settings: Settings, session: dict[str, Any], next_path: str) -> str:
    """Start a sign-in: remember state, nonce and where to go back; the URL to send the
    browser to."""
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    session["sign_in"] = {"state": state, "nonce": nonce, "next": safe_next(next_path),
                          "at": int(time.time())}
    query = urlencode({"response_type": "code", "scope": SCOPES,
                       "client_id": settings.slack_client_id, "state": state, "nonce": nonce,
                       "redirect_uri": redirect_uri(settings)})
    return f"{authorize_url(settings)}?{query}"


def safe_next(path: str | None) -> str:
    """A local portal path to return to after sign-in; anything else is the portal's front."""
    if path and path.startswith("/portal/") and not path.startswith("/portal//") \
            and "\\" not in path and all(ord(c) > 31 for c in path):
        return path
    return "/portal/"


def _claims_of(id_token: str) -> dict[str, Any]:
    try:
        _, payload, _ = id_token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        raise SignInError("Slack's ID token could not be read.") from None
    if not isinstance(claims, dict):
        raise SignInError("Slack's ID token could not be read.")
    return claims


def _check_claims(claims: dict[str, Any], settings: Settings, nonce: str) -> None:
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if claims.get("iss") != ISSUER:
        raise SignInError("The ID token was not issued by Slack.")
    if settings.slack_client_id not in audiences:
        raise SignInError("The ID token was issued to another app.")
    expires = claims.get("exp")
    if not isinstance(expires, int | float) or expires < time.time():
        raise SignInError("The ID token has expired; sign in again.")
    if not isinstance(claims.get("nonce"), str) or \
            not hmac.compare_digest(claims["nonce"], nonce):
        raise SignInError("The ID token does not answer this sign-in (nonce); sign in again.")


def finish(settings: Settings, session: dict[str, Any], code: str | None, state: str | None,
           workspace: str, error: str | None = None) -> tuple[Person, str]:
    """Complete a sign-in from Slack's redirect: the person, and the path to go back to.

    `workspace` is the team the bot is installed in: nobody from another workspace gets in.
    """
    pending = session.pop("sign_in", None)
    if error:
        raise SignInError("Slack did not sign you in (you may have cancelled); try again.")
    if not isinstance(pending, dict) or not state or not code:
        raise SignInError("This sign-in was not started here, or was already used; "
                          "start again.")
    if not hmac.compare_digest(str(pending.get("state", "")), state):
        raise SignInError("The sign-in answer does not match the request (state); start again.")
    if time.time() - int(pending.get("at", 0)) > SIGN_IN_SECONDS:
        raise SignInError("The sign-in took too long; start again.")
    client = WebClient(base_url=settings.slack_api_url, timeout=10)
    try:
        answer = client.openid_connect_token(
            client_id=settings.slack_client_id or "", client_secret=settings.slack_client_secret
            or "", code=code, redirect_uri=redirect_uri(settings), grant_type="authorization_code")
    except SlackApiError as exc:
        raise SignInError(f"Slack refused the sign-in ({exc.response.get('error')}).") from None
    except (SlackClientError, OSError):
        raise SignInError("Slack could not be reached to finish the sign-in; try again.") \
            from None
    id_token = answer.get("id_token")
    if isinstance(id_token, str) and id_token:
        claims = _claims_of(id_token)
        _check_claims(claims, settings, str(pending.get("nonce", "")))
    else:
        try:
            claims = dict(WebClient(base_url=settings.slack_api_url, timeout=10,
                                    token=answer.get("access_token"))
                          .openid_connect_userInfo().data)
        except (SlackApiError, SlackClientError, OSError):
            raise SignInError("Slack did not say who you are; try again.") from None
    user, team = claims.get(USER_CLAIM), claims.get(TEAM_CLAIM)
    if not isinstance(user, str) or not user:
        raise SignInError("Slack did not say who you are; try again.")
    if team != workspace:
        raise SignInError("You are signed in to another Slack workspace than Quorum's; "
                          "sign in to the right one.")
    name = claims.get("name") if isinstance(claims.get("name"), str) else user
    return Person(user, team, name[:80]), safe_next(str(pending.get("next", "")))
