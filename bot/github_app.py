"""Quorum as a GitHub App: verify `X-Hub-Signature-256`, authenticate as an installation
(RS256 JWT → installation access token, cached until it nearly expires) and answer a
deployment protection rule through its `deployment_callback_url`.

Runtime edge code: it talks to GitHub's REST API (`GITHUB_API_URL`); the domain decides what to
answer (`bot.services.github`). Tokens and keys never reach a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

TIMEOUT_SECONDS = 10
API_VERSION = "2022-11-28"
ACCEPT = "application/vnd.github+json"
# A cached installation token is renewed this long before it expires.
TOKEN_MARGIN_SECONDS = 300
# GitHub allows an App JWT at most 10 minutes; issued 60 s in the past against clock drift.
JWT_BACKDATE_SECONDS = 60
JWT_LIFETIME_SECONDS = 540


def signature_refusal(secret: str, body: bytes, header: str) -> str | None:
    """Why `X-Hub-Signature-256` is refused, or None when it is GitHub's HMAC of the raw body."""
    if not header:
        return "Missing X-Hub-Signature-256: GitHub signs every delivery of an App's webhook."
    scheme, _, digest = header.strip().partition("=")
    if scheme != "sha256" or not digest:
        return "X-Hub-Signature-256 must be `sha256=<hex HMAC-SHA256 of the body>`."
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), digest.strip().lower().encode()):
        return "Wrong X-Hub-Signature-256: check GITHUB_WEBHOOK_SECRET against the App's " \
               "webhook secret."
    return None


class GithubError(Exception):
    """GitHub did not take the call; `message` is one line for people (never a token)."""

    def __init__(self, message: str, status: int | None, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable


@dataclass
class _Token:
    value: str
    expires_at: float  # unix seconds


# Installation tokens by (API URL, App id, installation id), shared by the process's threads.
_TOKENS: dict[tuple[str, str, int], _Token] = {}
_TOKENS_LOCK = threading.Lock()


class GithubApp:
    """One GitHub App (its id and private key) talking to one API (`GITHUB_API_URL`)."""

    def __init__(self, app_id: str, private_key: str, api_url: str) -> None:
        self.app_id = app_id
        self._private_key = private_key
        self.api_url = api_url.rstrip("/")

    def app_jwt(self, now: float | None = None) -> str:
        """The App's own credential: RS256, `iss` the App id, valid for 9 minutes."""
        issued = int(now if now is not None else time.time()) - JWT_BACKDATE_SECONDS
        claims = {"iat": issued, "exp": issued + JWT_BACKDATE_SECONDS + JWT_LIFETIME_SECONDS,
                  "iss": self.app_id}
        return jwt.encode(claims, self._private_key, algorithm="RS256")

    def installation_token(self, installation_id: int) -> str:
        """A token of the installation, from the cache while it has over 5 minutes left."""
        key = (self.api_url, self.app_id, installation_id)
        with _TOKENS_LOCK:
            cached = _TOKENS.get(key)
            if cached is not None and cached.expires_at - TOKEN_MARGIN_SECONDS > time.time():
                return cached.value
        status, data = self._call(
            "POST", f"{self.api_url}/app/installations/{installation_id}/access_tokens",
            self.app_jwt(), None)
        if status != 201 or not isinstance(data, dict) or not isinstance(data.get("token"), str):
            raise GithubError(f"GitHub answered {status} to the installation token request",
                              status, retryable=status >= 500)
        expires = _parse_time(data.get("expires_at")) or time.time() + 3600
        with _TOKENS_LOCK:
            _TOKENS[key] = _Token(data["token"], expires)
        return str(data["token"])

    def forget_token(self, installation_id: int) -> None:
        with _TOKENS_LOCK:
            _TOKENS.pop((self.api_url, self.app_id, installation_id), None)

    def review_deployment(self, callback_url: str, installation_id: int, environment: str,
                          approved: bool, comment: str) -> None:
        """Approve or reject the waiting run (`204` is success); a token GitHub no longer takes
        is renewed once."""
        if not callback_url.startswith(self.api_url + "/repos/"):
            # The installation token goes only to the configured GitHub API.
            raise GithubError("deployment_callback_url is not on GITHUB_API_URL", None,
                              retryable=False)
        body = {"environment_name": environment, "state": "approved" if approved else "rejected",
                "comment": comment}
        for attempt in range(2):
            status, _ = self._call("POST", callback_url, self.installation_token(installation_id),
                                   body)
            if status == 204:
                return
            if status == 401 and attempt == 0:
                self.forget_token(installation_id)
                continue
            raise GithubError(f"GitHub answered {status} to the deployment review", status,
                              retryable=status == 429 or status >= 500)

    def _call(self, method: str, url: str, bearer: str, body: dict[str, Any] | None
              ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Accept": ACCEPT, "Authorization": f"Bearer {bearer}",
            "X-GitHub-Api-Version": API_VERSION, "User-Agent": "quorum",
            **({"Content-Type": "application/json"} if data is not None else {})})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read(4096))
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GithubError(f"GitHub is unreachable ({type(reason).__name__})", None,
                              retryable=True) from None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _parse_time(raw: Any) -> float | None:
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except ValueError:
        return None
