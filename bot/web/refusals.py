"""The JSON answers that refuse a request, and the checks webhooks and the API make before
anything is stored: the bearer token, and a body that is a JSON object of storable text.
"""

from __future__ import annotations

import hmac
import json

from starlette.requests import Request
from starlette.responses import JSONResponse

from bot.render import UNSTORABLE
from bot.runtime import Runtime


def json_refusal(status: int, error: str, reason: str, **extra: object) -> JSONResponse:
    """A refusal as JSON (`ok` false, `error`, `reason` and any `extra` fields) with `status`;
    a 401 also asks for a bearer token (`WWW-Authenticate`)."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"ok": False, "error": error, "reason": reason, **extra},
                        status_code=status, headers=headers)


def bearer_refusal(runtime: Runtime, request: Request) -> JSONResponse | None:
    """The answer to a webhook call without the right `Authorization: Bearer` token, or None.

    With QUORUM_WEBHOOK_TOKEN unset every call is refused: a hook must never be open to all.
    """
    expected = runtime.settings.webhook_token
    if not expected:
        return json_refusal(503, "webhooks_disabled",
                            "QUORUM_WEBHOOK_TOKEN is not set, so Quorum refuses every webhook.")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return json_refusal(401, "unauthorized", "Missing bearer token: send "
                            "`Authorization: Bearer <QUORUM_WEBHOOK_TOKEN>`.")
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        return json_refusal(401, "unauthorized", "Wrong bearer token.")
    return None


async def read_json_object(request: Request) -> dict[str, object] | JSONResponse:
    """The request body as a JSON object, or the 400 answer that says why it is not one."""
    body = await request.body()
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
        return json_refusal(400, "invalid_json", "The body is not valid JSON.")
    if not isinstance(data, dict):
        return json_refusal(400, "invalid_json", "The body must be a JSON object.")
    reason = _unstorable_text(data)
    if reason is not None:
        return json_refusal(400, "invalid_json", reason)
    return data


# No webhook sender nests its JSON anywhere near this deep; deeper is refused before any
# code that walks the value (or stores it) can run out of stack.
JSON_DEPTH_LIMIT = 32


def _unstorable_text(value: object) -> str | None:
    """Why a parsed JSON value holds text no database or reply can take, or nests too deep;
    None when it is fine."""
    pending = [(value, 1)]  # a stack, not recursion: the value may nest as deep as json allows
    while pending:
        item, depth = pending.pop()
        if depth > JSON_DEPTH_LIMIT:
            return f"The body nests deeper than {JSON_DEPTH_LIMIT} levels."
        if isinstance(item, dict):
            pending.extend((key, depth) for key in item)
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, str) and (found := UNSTORABLE.search(item)):
            if found.group() == "\x00":  # PostgreSQL refuses it in text
                return "The body holds a NUL character (\\u0000), which Quorum cannot store."
            # A lone surrogate such as "\ud800" parses, but cannot be encoded again.
            return ("The body holds a lone UTF-16 surrogate (like \\ud800): text must be "
                    "valid Unicode.")
    return None
