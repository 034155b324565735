"""A fake GitHub REST API on loopback for the deployment protection rule: it is NOT GitHub.

It checks what GitHub documents and Quorum must get right:
- `POST /app/installations/{id}/access_tokens` takes only a JWT signed RS256 with the App's
  private key (verified with the public key), `iss` = the App id, `iat` in the past, `exp` at
  most 10 minutes after `iat` and in the future; it answers `201 {"token", "expires_at"}` (one
  hour);
- `POST /repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule` takes only an
  unexpired installation token of the installation the repository belongs to, with
  `Accept: application/vnd.github+json` and a JSON body `{"environment_name", "state":
  "approved"|"rejected", "comment"}` naming a waiting environment of that run; `204` once, then
  `422` (nothing is waiting any more).

Faults: `fail(kind, status, times)` answers `status` to the next calls of one kind ("token" or
"review"); `refuse` is done with `support.tcp_proxy` in front of it.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

TOKENS_PATH = re.compile(r"^/app/installations/(\d+)/access_tokens$")
REVIEW_PATH = re.compile(
    r"^/repos/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)/actions/runs/(\d+)/deployment_protection_rule$")


def new_private_key() -> tuple[str, str]:
    """A fresh RSA key pair as PEM text: (private, public)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


@dataclass
class Review:
    repo: str
    run_id: int
    body: dict[str, Any]
    token: str


@dataclass
class FakeGithub:
    app_id: str
    public_key: str
    # repo (owner/name) → installation id
    installations: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, tuple[int, float]] = field(default_factory=dict)  # token → (inst, exp)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)
    refusals: list[tuple[str, int, str]] = field(default_factory=list)  # (path, status, why)
    # (repo, run_id) → environments still waiting
    waiting: dict[tuple[str, int], set[str]] = field(default_factory=dict)
    _faults: dict[str, list[int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def __enter__(self) -> FakeGithub:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, answer = fake.handle(self.path, dict(self.headers.items()), raw)
                data = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ test controls

    def run(self, repo: str, run_id: int, environment: str) -> str:
        """A workflow run waiting on `environment`; its deployment_callback_url."""
        with self._lock:
            self.waiting.setdefault((repo.lower(), run_id), set()).add(environment)
        return f"{self.url}/repos/{repo}/actions/runs/{run_id}/deployment_protection_rule"

    def fail(self, kind: str, status: int, times: int = 1) -> None:
        with self._lock:
            self._faults.setdefault(kind, []).extend([status] * times)

    def expire_tokens(self) -> None:
        """GitHub revoked every token (say, the installation was suspended and restored)."""
        with self._lock:
            self.tokens.clear()

    # ------------------------------------------------------------------ the API

    def _refuse(self, path: str, status: int, why: str) -> tuple[int, dict[str, Any]]:
        self.refusals.append((path, status, why))
        return status, {"message": why}

    def handle(self, path: str, headers: dict[str, str], raw: bytes
               ) -> tuple[int, dict[str, Any] | None]:
        headers = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            if headers.get("accept") != "application/vnd.github+json":
                return self._refuse(path, 415, "Accept must be application/vnd.github+json")
            scheme, _, credential = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not credential:
                return self._refuse(path, 401, "Requires authentication")
            if match := TOKENS_PATH.match(path):
                if self._faults.get("token"):
                    return self._refuse(path, self._faults["token"].pop(0), "injected fault")
                return self._issue_token(path, int(match.group(1)), credential)
            if match := REVIEW_PATH.match(path):
                if self._faults.get("review"):
                    return self._refuse(path, self._faults["review"].pop(0), "injected fault")
                repo = f"{match.group(1)}/{match.group(2)}".lower()
                return self._review(path, repo, int(match.group(3)), credential, raw)
            return self._refuse(path, 404, "Not Found")

    def _issue_token(self, path: str, installation: int, credential: str
                     ) -> tuple[int, dict[str, Any]]:
        try:
            claims = jwt.decode(credential, self.public_key, algorithms=["RS256"],
                                options={"require": ["iat", "exp", "iss"]})
        except jwt.PyJWTError as exc:
            return self._refuse(path, 401, f"A JSON web token could not be decoded ({exc})")
        now = time.time()
        if str(claims["iss"]) != self.app_id:
            return self._refuse(path, 401, "iss is not this App's id")
        if claims["iat"] > now + 1 or claims["exp"] - claims["iat"] > 600:
            return self._refuse(path, 401, "iat in the future or exp more than 10 min later")
        if installation not in self.installations.values():
            return self._refuse(path, 404, "Not Found (installation)")
        token = "ghs_" + secrets.token_hex(18)
        expires = now + 3600
        self.tokens[token] = (installation, expires)
        self.token_requests.append({"installation": installation, "claims": claims})
        return 201, {"token": token, "expires_at": datetime.fromtimestamp(
            expires, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "permissions": {"deployments": "write", "actions": "read"}}

    def _review(self, path: str, repo: str, run_id: int, credential: str, raw: bytes
                ) -> tuple[int, dict[str, Any] | None]:
        installation, expires = self.tokens.get(credential, (None, 0.0))
        if installation is None or expires < time.time():
            return self._refuse(path, 401, "Bad credentials")
        if self.installations.get(repo) != installation:
            return self._refuse(path, 404, "Not Found (token of another installation)")
        try:
            body = json.loads(raw)
        except ValueError:
            return self._refuse(path, 400, "Problems parsing JSON")
        if not isinstance(body, dict) or set(body) - {"environment_name", "state", "comment"} \
                or body.get("state") not in ("approved", "rejected") \
                or not isinstance(body.get("environment_name"), str) \
                or not isinstance(body.get("comment", ""), str):
            return self._refuse(path, 422, "Invalid request body")
        waiting = self.waiting.get((repo, run_id), set())
        if body["environment_name"] not in waiting:
            return self._refuse(path, 422, "No pending deployment for that environment")
        waiting.discard(body["environment_name"])
        self.reviews.append(Review(repo, run_id, body, credential))
        return 204, None


def protection_rule_event(repo: str, environment: str, callback_url: str, installation: int,
                          sha: str = "a1b2c3d4e5f6", ref: str = "main",
                          payload: Any = None) -> dict[str, Any]:
    """A `deployment_protection_rule` body shaped like GitHub's (the fields it documents)."""
    return {
        "action": "requested", "environment": environment, "event": "push",
        "deployment_callback_url": callback_url,
        "deployment": {"id": 1, "sha": sha, "ref": ref, "task": "deploy",
                       "environment": environment, "payload": payload or {},
                       "created_at": (datetime.now(UTC) - timedelta(seconds=5)).isoformat()},
        "repository": {"id": 42, "name": repo.split("/")[1], "full_name": repo},
        "installation": {"id": installation},
        "sender": {"login": "octocat", "id": 1},
    }
