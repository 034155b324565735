"""Alertmanager's API v2 for silences: create one, expire one. A runtime edge: called outside
any database transaction, with a short time-out, and every failure is one `AlertmanagerError`
whose words can be shown to the person who asked."""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from bot.config import Settings

log = logging.getLogger("quorum.alertmanager")
TIMEOUT_SECONDS = 5.0


class AlertmanagerError(Exception):
    """Alertmanager could not be reached or refused the call; `message` says which."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AlertmanagerClient:
    """The few API v2 calls Quorum makes, with basic auth or a bearer token if configured."""

    def __init__(self, url: str, *, username: str | None = None, password: str | None = None,
                 token: str | None = None, timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        elif username:
            pair = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {pair}"

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertmanagerClient | None:
        if not settings.alertmanager_url:
            return None
        return cls(settings.alertmanager_url, username=settings.alertmanager_username,
                   password=settings.alertmanager_password, token=settings.alertmanager_token)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace").strip()
            raise AlertmanagerError(f"Alertmanager answered {exc.code}"
                                    f"{': ' + detail if detail else ''}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AlertmanagerError(f"Alertmanager cannot be reached ({reason})") from None
        try:
            return json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError:
            raise AlertmanagerError("Alertmanager answered something that is not JSON") from None

    def create_silence(self, matchers: list[dict[str, Any]], starts_at: datetime,
                       ends_at: datetime, created_by: str, comment: str) -> str:
        """POST /api/v2/silences; the new silence's id."""
        answer = self._call("POST", "/api/v2/silences", {
            "matchers": matchers, "startsAt": _rfc3339(starts_at), "endsAt": _rfc3339(ends_at),
            "createdBy": created_by, "comment": comment})
        silence_id = answer.get("silenceID") if isinstance(answer, dict) else None
        if not isinstance(silence_id, str) or not silence_id:
            raise AlertmanagerError("Alertmanager did not say which silence it made")
        return silence_id

    def get_silence(self, silence_id: str) -> dict[str, Any]:
        answer = self._call("GET", f"/api/v2/silence/{urllib.parse.quote(silence_id)}")
        return answer if isinstance(answer, dict) else {}

    def expire_silence(self, silence_id: str) -> None:
        """DELETE /api/v2/silence/{id}; a silence Alertmanager no longer has is done too."""
        try:
            self._call("DELETE", f"/api/v2/silence/{urllib.parse.quote(silence_id)}")
        except AlertmanagerError as exc:
            if exc.message.startswith("Alertmanager answered 404"):
                return
            raise
