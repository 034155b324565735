"""A small client of MLflow's model registry REST API: set an alias on a model version.

`POST {MLFLOW_TRACKING_URI}/api/2.0/mlflow/registered-models/alias` with `{"name", "alias",
"version"}` answers `200 {}`; setting it again to the same version is harmless. Runtime edge
code (it talks to a peer); the domain calls it through `bot.services.gate_promotion`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

TIMEOUT_SECONDS = 10
ALIAS_PATH = "/api/2.0/mlflow/registered-models/alias"


class RegistryError(Exception):
    """MLflow did not set the alias; `message` is one line for people, never a secret."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class Registry:
    tracking_uri: str
    token: str | None = None

    def set_alias(self, model: str, alias: str, version: str) -> None:
        body = json.dumps({"name": model, "alias": alias, "version": version}).encode()
        request = urllib.request.Request(
            self.tracking_uri.rstrip("/") + ALIAS_PATH, data=body, method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json",
                     **({"Authorization": f"Bearer {self.token}"} if self.token else {})})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = _error_text(exc)
            retryable = exc.code == 429 or exc.code >= 500
            raise RegistryError(f"MLflow answered {exc.code}{detail}", retryable) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryError(f"MLflow is unreachable ({type(reason).__name__})",
                                retryable=True) from None


def _error_text(exc: urllib.error.HTTPError) -> str:
    """MLflow's `error_code: message`, short (its JSON error body)."""
    try:
        data = json.loads(exc.read(4096) or b"{}")
    except (ValueError, OSError):
        return ""
    if not isinstance(data, dict):
        return ""
    code, message = data.get("error_code"), str(data.get("message") or "")[:200]
    return f" {code}: {message}" if code else ""
