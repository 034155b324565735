"""A fake Slack Web API server on a loopback port, for end-to-end tests.

It records every call, answers like Slack does, validates calls against the
reference data in ``shared/slack-api/methods.json`` and can inject faults::

    with FakeSlack() as fake:
        client = WebClient(token=fake.token, base_url=fake.url)
        client.chat_postMessage(channel="C1", text="hi")
        fake.wait_for("chat.postMessage")
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import copy
import functools
import hashlib
import hmac
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from .slack_limits import PostLimits

__all__ = ["Call", "FakeSlack", "check_reply", "default_methods_path", "mrkdwn_texts"]

METHODS_ENV = "QUORUM_SLACK_METHODS"
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_TEXT_LENGTH = 40_000
TS_EPOCH = 1_700_000_000
BOT_ID = "B0001"
APP_ID = "A0001"
RESPONSE_URL_PREFIX = "/response_url/"
# Slack's "Sign in with Slack" page, beside the API (`https://slack.com/openid/connect/authorize`).
AUTHORIZE_PATH = "/openid/connect/authorize"
API_PREFIX = "/api/"
# Fields that form-encoded clients send as JSON strings.
JSON_FIELDS = frozenset(
    {"attachments", "blocks", "metadata", "unfurls", "user_auth_blocks", "view"}
)
VIEW_METHODS = frozenset({"views.open", "views.push", "views.update", "views.publish"})
TEXT_METHODS = frozenset(
    {"chat.postMessage", "chat.postEphemeral", "chat.update", "chat.scheduleMessage"}
)
JOIN_REQUIRED_METHODS = frozenset({"chat.postMessage", "chat.update"})
CHANNEL_NAME_RE = re.compile(r"[a-z0-9_\-]+")
SERVER_ERRORS = {500, 502, 503, 504}


def default_methods_path() -> Path:
    """Return the methods.json path: $QUORUM_SLACK_METHODS or shared/slack-api/methods.json."""
    env = os.environ.get(METHODS_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "slack-api" / "methods.json"


@functools.lru_cache(maxsize=4)
def _load_methods(path: str) -> dict[str, dict[str, Any]]:
    """Load and cache the "methods" table of a methods.json file."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)["methods"]


@dataclass
class Call:
    """One request received by the fake, with the answer it got."""

    method: str
    args: dict[str, Any]
    token: str | None
    status: int
    response: dict[str, Any]
    at: float

    @property
    def ok(self) -> bool:
        """Whether the call got HTTP 200 and ``"ok": true``."""
        return self.status == 200 and bool(self.response.get("ok"))


@dataclass
class _Fault:
    """A queued fault for the next ``remaining`` calls of ``method``."""

    method: str
    status: int = 200
    error: str | None = None
    retry_after: int | None = None
    delay: float = 0.0
    disconnect: bool = False
    remaining: int = 1
    # Slack acts on the call at once and only its answer is late (a reply lost on the way back).
    act_first: bool = False
    # A fault for a stretch of time: every matching call until this monotonic time (no count).
    until: float | None = None


@dataclass
class _Reply:
    """What the handler should send back."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    disconnect: bool = False


class SlackError(Exception):
    """Raised inside method handlers to answer ``{"ok": false, "error": ...}``."""

    def __init__(self, error: str, status: int = 200, **extra: Any) -> None:
        """Keep the error code, HTTP status and extra response fields."""
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = extra

    def reply(self) -> _Reply:
        """Return the Slack-style error reply."""
        return _Reply(self.status, {"ok": False, "error": self.error, **self.extra})


def _invalid_arguments(message: str) -> SlackError:
    """Build Slack's invalid_arguments error with one ``[ERROR]`` message."""
    return SlackError("invalid_arguments", response_metadata={"messages": [f"[ERROR] {message}"]})


def _present(value: Any) -> bool:
    """Whether an argument counts as given (not None, "", [] or {})."""
    return value is not None and value != "" and value != [] and value != {}


def _truthy(value: Any) -> bool:
    """Interpret Slack boolean args ("1", "true", True)."""
    if isinstance(value, str):
        return value.lower() in {"1", "true", "yes"}
    return bool(value)


def _ts_key(message: dict[str, Any]) -> tuple[int, ...]:
    """Sort key for messages by their "ts"."""
    return tuple(int(part) for part in str(message["ts"]).split("."))


def _decode_json_fields(args: dict[str, Any]) -> None:
    """Decode JSON-string fields such as blocks/view in place, leaving bad JSON as is."""
    for key in JSON_FIELDS & args.keys():
        value = args[key]
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                args[key] = json.loads(value)


def _page(messages: list[dict[str, Any]], args: dict[str, Any]) -> dict[str, Any]:
    """One page of a listing, as Slack pages it: `limit` (default 100, at most 999) messages
    from `cursor`, and a `next_cursor` while more remain. (The fake's ts are not wall-clock
    times, so `oldest` and `latest` are not applied.)"""
    try:
        limit = min(999, max(1, int(args.get("limit") or 100)))
        start = int(str(args.get("cursor") or "page_0").removeprefix("page_"))
    except ValueError:
        raise SlackError("invalid_cursor") from None
    page = messages[start:start + limit]
    more = start + limit < len(messages)
    body: dict[str, Any] = {"ok": True, "messages": copy.deepcopy(page), "has_more": more}
    if more:
        body["response_metadata"] = {"next_cursor": f"page_{start + limit}"}
    return body


def _validate_blocks(blocks: Any, limit: int) -> None:
    """Raise invalid_blocks unless ``blocks`` is a list of valid Block Kit blocks."""
    if isinstance(blocks, str):
        raise SlackError("invalid_blocks", errors=["blocks is not valid JSON"])
    if not isinstance(blocks, list):
        raise SlackError("invalid_blocks", errors=["blocks must be a list"])
    if len(blocks) > limit:
        raise SlackError("invalid_blocks", errors=[f"no more than {limit} items allowed"])
    errors: list[str] = []
    for index, raw in enumerate(blocks):
        if not isinstance(raw, dict):
            errors.append(f"block {index} must be an object")
            continue
        try:
            block = Block.parse(raw)
            if block is None:
                errors.append(f"block {index}: unsupported type {raw.get('type')!r}")
                continue
            block.validate_json()
            block.to_dict()  # validates nested elements and text objects too
        except Exception as exc:  # any parse failure means invalid blocks
            errors.append(f"block {index}: {exc}")
    if errors:
        raise SlackError("invalid_blocks", errors=errors)


def check_reply(message: dict[str, Any]) -> None:
    """Raise SlackError unless `message` is a reply Slack would show: the HTTP answer to a slash
    command or interaction, or a response_url POST (its blocks valid Block Kit)."""
    if _present(message.get("blocks")):
        _validate_blocks(message["blocks"], MAX_MESSAGE_BLOCKS)
    text = message.get("text")
    if isinstance(text, str) and len(text) > MAX_TEXT_LENGTH:
        raise SlackError("msg_too_long")


def mrkdwn_texts(node: Any) -> list[str]:
    """Every string Slack parses as mrkdwn in `node` (text objects of type mrkdwn), where a
    `<!channel>`, `<@U…>` or `<url|label>` would ping or link."""
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
            found.append(node["text"])
        for value in node.values():
            found += mrkdwn_texts(value)
    elif isinstance(node, list):
        for value in node:
            found += mrkdwn_texts(value)
    return found


def _validate_view(view: Any) -> None:
    """Raise invalid_blocks unless ``view`` is a valid modal/home view."""
    if not isinstance(view, dict):
        raise SlackError("invalid_blocks", errors=["view must be a JSON object"])
    _validate_blocks(view.get("blocks", []), MAX_VIEW_BLOCKS)
    try:
        parsed = View(**view)
        parsed.validate_json()
        parsed.to_dict()
    except Exception as exc:  # any failure means an invalid view
        raise SlackError("invalid_blocks", errors=[str(exc)]) from exc


class FakeSlack:
    """A recording, validating, fault-injecting fake of the Slack Web API."""

    token: str = "xoxb-test-token"
    app_token: str = "xapp-test-token"  # apps.connections.* take the app-level token
    team_id: str = "T0001"
    bot_user_id: str = "UBOT"

    def __init__(self, methods_path: Path | str | None = None) -> None:
        """Load the method reference; ``None`` means :func:`default_methods_path`."""
        self.methods_path = Path(methods_path) if methods_path else default_methods_path()
        self.methods = _load_methods(str(self.methods_path.resolve()))
        self.calls: list[Call] = []
        self.messages: dict[str, dict[str, dict[str, Any]]] = {}
        self.missing_channels: set[str] = set()
        self.not_joined_channels: set[str] = set()
        self.views: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        # Channels a test declares private (conversations.info says `is_private`), and the
        # members conversations.members lists for a channel (else the reference's example).
        self.private_channels: set[str] = set()
        self.channel_members: dict[str, list[str]] = {}
        # What apps.connections.open hands out: set it to a local Socket Mode server's URL.
        self.socket_mode_url = "wss://wss.fake.slack.com/link/?ticket=1"
        # Keep connections open between requests (HTTP/1.1), as Slack does; off by default, so
        # every answer closes its connection (HTTP/1.0).
        self.keep_alive = False
        self.connections = 0  # TCP connections accepted
        # Sign in with Slack: the apps' OAuth credentials (client id → secret), who is signed
        # in to Slack in "the browser" (None: the person cancels), codes and user tokens handed
        # out.
        self.oauth_clients: dict[str, str] = {}
        self.signed_in_user: str | None = None
        self.signed_in_team: str = self.team_id
        self._codes: dict[str, dict[str, Any]] = {}
        self._user_tokens: dict[str, dict[str, Any]] = {}
        # False: openid.connect.token answers without an `id_token` (userInfo must say who).
        self.issue_id_tokens = True
        self._faults: list[_Fault] = []
        self._post_limits: PostLimits | None = None
        self._in_flight: dict[str, int] = {}
        self._seqs: list[int] = []
        self._seq = 0
        self._epoch = 0
        self._ts_counter = 0
        self._id_counter = 0
        self._cond = threading.Condition(threading.RLock())
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeSlack:
        """Bind 127.0.0.1 on a free port and serve from a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-slack-{self._server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake delayed handlers and close the socket."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSlack:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()

    @property
    def base(self) -> str:
        """Return "http://127.0.0.1:<port>"."""
        if self._server is None:
            raise RuntimeError("FakeSlack is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        """Return the Web API base URL for ``WebClient(base_url=...)``."""
        return f"{self.base}{API_PREFIX}"

    def response_url(self, key: str = "") -> str:
        """Return a response_url on this server; POSTs to it are recorded as "response_url"."""
        if not key:
            with self._cond:
                self._id_counter += 1
                key = f"r{self._id_counter}"
        return f"{self.base}{RESPONSE_URL_PREFIX}{key}"

    # ------------------------------------------------------------------ inspection

    def calls_to(self, method: str, ok_only: bool = True) -> list[Call]:
        """Return recorded calls of ``method`` (only successful ones by default)."""
        with self._cond:
            return [c for c in self.calls if c.method == method and (c.ok or not ok_only)]

    def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 15.0,
        predicate: Callable[[Call], bool] | None = None,
    ) -> list[Call]:
        """Wait for at least ``count`` successful matching calls and return them all."""
        deadline = time.monotonic() + timeout

        def matching() -> list[Call]:
            found = self.calls_to(method)
            return [c for c in found if predicate(c)] if predicate else found

        with self._cond:
            while True:
                found = matching()
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    break
                self._cond.wait(remaining)
            if len(found) >= count:
                return found
            summary = self._summary()
        raise AssertionError(
            f"expected >= {count} successful {method} call(s)"
            f"{' matching predicate' if predicate else ''} within {timeout}s, "
            f"got {len(found)}; recorded calls:\n{summary}"
        )

    def wait_in_flight(self, method: str, timeout: float = 15.0) -> None:
        """Wait until a call of ``method`` has arrived and is not answered yet (a delay fault
        holds it): the moment to kill a client mid-call."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._in_flight.get(method):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {method} call in flight within {timeout}s; "
                                         f"recorded calls:\n{self._summary()}")
                self._cond.wait(min(remaining, 0.01))

    def _summary(self, limit: int = 50) -> str:
        """Describe recorded calls, one a line, for assertion messages."""
        if not self.calls:
            return "  (none)"
        lines = []
        for index, call in enumerate(self.calls[-limit:]):
            outcome = "ok" if call.ok else call.response.get("error", "no response")
            args = {k: v for k, v in call.args.items() if k != "token"}
            lines.append(f"  {index}. {call.method} -> {call.status} {outcome} {args!r:.200}")
        return "\n".join(lines)

    def reset(self) -> None:
        """Forget calls, faults, messages, channel sets, views and created channels."""
        with self._cond:
            self._epoch += 1
            self.calls.clear()
            self._seqs.clear()
            self._faults.clear()
            self._post_limits = None
            self.keep_alive = False
            self.connections = 0
            self.messages.clear()
            self.missing_channels.clear()
            self.not_joined_channels.clear()
            self.views.clear()
            self.users.clear()
            self.channels.clear()
            self.private_channels.clear()
            self.channel_members.clear()
            self.socket_mode_url = "wss://wss.fake.slack.com/link/?ticket=1"
            self.oauth_clients.clear()
            self.signed_in_user = None
            self.signed_in_team = self.team_id
            self._codes.clear()
            self._user_tokens.clear()
            self.issue_id_tokens = True

    # ------------------------------------------------------------------ faults

    def inject(
        self,
        method: str = "*",
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: int | None = None,
        delay: float = 0.0,
        disconnect: bool = False,
        times: int = 1,
        seconds: float | None = None,
        act_first: bool = False,
    ) -> None:
        """Queue a fault for the next ``times`` calls of ``method`` ("*": any Web API method),
        or, with ``seconds``, for every such call during that many seconds.

        A ``delay`` holds the call before Slack acts on it; with ``act_first`` Slack acts at once
        and only the answer comes ``delay`` seconds later.
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        if act_first and delay <= 0:
            raise ValueError("act_first needs a delay")
        until = None if seconds is None else time.monotonic() + seconds
        fault = _Fault(method, status, error, retry_after, delay, disconnect, times, act_first,
                       until)
        with self._cond:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Drop every queued fault: Slack answers normally again."""
        with self._cond:
            self._faults.clear()

    def limit_posts(self, limits: PostLimits | None) -> None:
        """Enforce Slack's rate limits on `chat.postMessage` (per channel, per workspace): a post
        past them is answered 429 with `Retry-After` and not stored. None lifts them."""
        with self._cond:
            self._post_limits = limits

    def _rate_limited(self, method: str, args: dict[str, Any]) -> _Reply | None:
        """The 429 a post past the rate limits gets, or None if it may go."""
        limits = self._post_limits
        if limits is None or method != "chat.postMessage":
            return None
        wait = limits.admit(str(args.get("channel", "")))
        if wait <= 0:
            return None
        return _Reply(429, {"ok": False, "error": "ratelimited"},
                      {"Retry-After": str(PostLimits.retry_after(wait))})

    def _take_fault(self, method: str) -> _Fault | None:
        """Pop one use of the first queued fault matching ``method``."""
        with self._cond:
            now = time.monotonic()
            self._faults = [f for f in self._faults if f.until is None or f.until > now]
            for fault in self._faults:
                wildcard = fault.method == "*" and method != "response_url"
                if wildcard or fault.method == method:
                    if fault.until is None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    @staticmethod
    def _fault_reply(fault: _Fault) -> _Reply | None:
        """Return the reply a fault forces, or None to answer normally."""
        if fault.disconnect:
            return _Reply(0, disconnect=True)
        if fault.status == 429:
            retry_after = 1 if fault.retry_after is None else fault.retry_after
            headers = {"Retry-After": str(retry_after)}
            return _Reply(429, {"ok": False, "error": "ratelimited"}, headers)
        if fault.status != 200:
            error = "internal_error" if fault.status in SERVER_ERRORS else fault.error or "error"
            return _Reply(fault.status, {"ok": False, "error": error})
        if fault.error:
            return _Reply(200, {"ok": False, "error": fault.error})
        return None

    # ------------------------------------------------------------------ dispatch

    def _next_seq(self) -> tuple[int, int]:
        """Number an arriving request (and note the reset epoch) to keep arrival order."""
        with self._cond:
            self._seq += 1
            return self._seq, self._epoch

    def _record(self, seq: int, epoch: int, call: Call) -> None:
        """Insert ``call`` in arrival order and wake waiters; drop calls from before a reset."""
        with self._cond:
            if epoch != self._epoch:
                return
            index = bisect.bisect(self._seqs, seq)
            self._seqs.insert(index, seq)
            self.calls.insert(index, call)
            self._cond.notify_all()

    def _handle(self, method: str, args: dict[str, Any], token: str | None) -> _Reply:
        """Answer one Web API call (after faults)."""
        spec = self.methods.get(method)
        if spec is None:
            return _Reply(404, {"ok": False, "error": "unknown_method"})
        try:
            if method.startswith("apps.connections."):
                self._check_auth(token, self.app_token)
            elif method == "openid.connect.userInfo":
                args["_user_token"] = token  # a user's token from openid.connect.token
            elif "token" in spec.get("args", ["token"]):
                self._check_auth(token)
            self._check_args(method, spec, args)
            with self._cond:
                body = self._dispatch(method, spec, args)
        except SlackError as exc:
            return exc.reply()
        return _Reply(200, body)

    def _check_auth(self, token: str | None, expected: str | None = None) -> None:
        """Raise not_authed / invalid_auth unless ``token`` is the bot (or ``expected``) token."""
        if not token:
            raise SlackError("not_authed")
        if token != (expected or self.token):
            raise SlackError("invalid_auth")

    def _check_args(self, method: str, spec: dict[str, Any], args: dict[str, Any]) -> None:
        """Enforce required args, arg groups, blocks/view validity and text length."""
        for name in spec.get("required_args", []):
            if name != "token" and not _present(args.get(name)):
                raise _invalid_arguments(f"missing required field: {name}")
        for group in spec.get("arg_groups", []):
            names = group["args"]
            given = [n for n in names if _present(args.get(n))]
            if group.get("mutually_exclusive"):
                if len(given) > 1:
                    raise _invalid_arguments(f"only one of [{', '.join(names)}] may be given")
                if not given and group.get("required") is not False:
                    raise _invalid_arguments(f"exactly one of [{', '.join(names)}] is required")
            elif not given and re.search(r"\brequired\b", group.get("desc", ""), re.I):
                if "text" in names:
                    raise SlackError("no_text")
                raise _invalid_arguments(f"one of [{', '.join(names)}] is required")
        if _present(args.get("blocks")):
            _validate_blocks(args["blocks"], MAX_MESSAGE_BLOCKS)
        if method in VIEW_METHODS and "view" in args:
            _validate_view(args["view"])
        text = args.get("text")
        if method in TEXT_METHODS and isinstance(text, str) and len(text) > MAX_TEXT_LENGTH:
            raise SlackError("msg_too_long")
        channel = args.get("channel")
        if isinstance(channel, str) and channel in self.missing_channels:
            raise SlackError("channel_not_found")

    def _dispatch(self, method: str, spec: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
        """Run the method-specific handler, or answer the reference success example."""
        handler = self._HANDLERS.get(method)
        if handler is not None:
            return handler(self, args)
        example = spec.get("success_example")
        body = copy.deepcopy(example) if isinstance(example, dict) else {}
        if isinstance(body.get("channel"), str) and isinstance(args.get("channel"), str):
            body["channel"] = args["channel"]
        body["ok"] = True
        return body

    # ------------------------------------------------------------------ method handlers

    def _new_ts(self) -> str:
        """Return a unique, increasing message ts like "1700000000.000001"."""
        self._ts_counter += 1
        n = self._ts_counter
        return f"{TS_EPOCH + n // 1_000_000}.{n % 1_000_000:06d}"

    def _new_id(self, prefix: str) -> str:
        """Return a new object id like "C000001"."""
        self._id_counter += 1
        return f"{prefix}{self._id_counter:06d}"

    def _require_joined(self, method: str, channel: str) -> None:
        """Raise not_in_channel for channels the bot has not joined yet."""
        if method in JOIN_REQUIRED_METHODS and channel in self.not_joined_channels:
            raise SlackError("not_in_channel")

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        """Store and echo a new message."""
        channel = str(args["channel"])
        self._require_joined("chat.postMessage", channel)
        ts = self._new_ts()
        message: dict[str, Any] = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": BOT_ID,
            "team": self.team_id,
            "ts": ts,
            "text": args.get("text", ""),
        }
        for key in ("blocks", "attachments", "metadata", "markdown_text", "thread_ts"):
            if _present(args.get(key)):
                message[key] = copy.deepcopy(args[key])
        stored = self.messages.setdefault(channel, {})
        parent = stored.get(str(message.get("thread_ts", "")))
        if parent is not None:
            parent["reply_count"] = parent.get("reply_count", 0) + 1
            parent["latest_reply"] = ts
        stored[ts] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": copy.deepcopy(message)}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        """Update a stored message."""
        channel, ts = str(args["channel"]), str(args["ts"])
        self._require_joined("chat.update", channel)
        message = self.messages.get(channel, {}).get(ts)
        if message is None:
            raise SlackError("message_not_found")
        for key in ("text", "blocks", "attachments", "metadata", "markdown_text"):
            if key in args:
                message[key] = copy.deepcopy(args[key])
        message["edited"] = {"user": self.bot_user_id, "ts": self._new_ts()}
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "text": message.get("text", ""),
            "message": copy.deepcopy(message),
        }

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        """Delete a stored message."""
        channel, ts = str(args["channel"]), str(args["ts"])
        if self.messages.get(channel, {}).pop(ts, None) is None:
            raise SlackError("message_not_found")
        return {"ok": True, "channel": channel, "ts": ts}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        """Acknowledge an ephemeral message (not stored in ``messages``)."""
        return {"ok": True, "message_ts": self._new_ts()}

    def _chat_get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        """Return a fake permalink for any message."""
        channel, ts = str(args["channel"]), str(args["message_ts"])
        permalink = f"https://fake.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        return {"ok": True, "channel": channel, "permalink": permalink}

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        """List a channel's stored top-level messages, newest first, a page at a time."""
        stored = self.messages.get(str(args["channel"]), {})
        top = [m for m in stored.values() if m.get("thread_ts", m["ts"]) == m["ts"]]
        top.sort(key=_ts_key, reverse=True)
        return _page(top, args)

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        """List a stored thread: the parent, then replies oldest first, a page at a time."""
        channel, ts = str(args["channel"]), str(args["ts"])
        stored = self.messages.get(channel, {})
        if ts not in stored:
            raise SlackError("thread_not_found")
        thread = [m for m in stored.values() if m["ts"] == ts or m.get("thread_ts") == ts]
        thread.sort(key=_ts_key)
        return _page(thread, args)

    def _channel_info(self, channel: str) -> dict[str, Any]:
        """Return the channel object for ``channel`` (created or made up)."""
        known = self.channels.get(channel)
        if known is not None:
            info = copy.deepcopy(known)
            info["is_private"] = info.get("is_private") or channel in self.private_channels
            return info
        return {"id": channel, "name": channel.lower(), "is_channel": True, "is_member": True,
                "is_private": channel in self.private_channels, "is_group": False,
                "is_im": False, "is_mpim": False, "is_archived": False}

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        """Describe a channel: private when the test declared it so (`private_channels`)."""
        return {"ok": True, "channel": self._channel_info(str(args["channel"]))}

    def _conversations_members(self, args: dict[str, Any]) -> dict[str, Any]:
        """A channel's members: those the test declared (`channel_members`), else the reference's
        example; `limit` (default 100) at a time from `cursor`, as Slack pages them."""
        channel = str(args["channel"])
        example = self.methods["conversations.members"].get("success_example") or {}
        members = self.channel_members.get(channel, example.get("members") or [])
        try:
            limit = min(1000, max(1, int(args.get("limit") or 100)))
            start = int(str(args.get("cursor") or "page_0").removeprefix("page_"))
        except ValueError:
            raise SlackError("invalid_cursor") from None
        more = start + limit < len(members)
        return {"ok": True, "members": list(members[start:start + limit]),
                "response_metadata": {"next_cursor": f"page_{start + limit}" if more else ""}}

    def _conversations_join(self, args: dict[str, Any]) -> dict[str, Any]:
        """Join a channel, so chat.postMessage / chat.update work there."""
        channel = str(args["channel"])
        self.not_joined_channels.discard(channel)
        return {"ok": True, "channel": self._channel_info(channel)}

    def _conversations_create(self, args: dict[str, Any]) -> dict[str, Any]:
        """Create a channel with a new id; names must be unique."""
        name = str(args["name"])
        if len(name) > 80:
            raise SlackError("invalid_name_maxlength")
        if not CHANNEL_NAME_RE.fullmatch(name):
            raise SlackError("invalid_name_specials")
        if any(c["name"] == name for c in self.channels.values()):
            raise SlackError("name_taken")
        channel_id = self._new_id("C")
        info = {
            "id": channel_id,
            "name": name,
            "name_normalized": name,
            "is_channel": True,
            "is_private": _truthy(args.get("is_private", False)),
            "is_member": True,
            "is_archived": False,
            "created": int(time.time()),
            "creator": self.bot_user_id,
            "context_team_id": self.team_id,
        }
        self.channels[channel_id] = info
        return {"ok": True, "channel": copy.deepcopy(info)}

    def _conversations_invite(self, args: dict[str, Any]) -> dict[str, Any]:
        """Accept an invitation of users to a channel."""
        return {"ok": True, "channel": self._channel_info(str(args["channel"]))}

    def _store_view(self, view: dict[str, Any], view_id: str | None = None) -> dict[str, Any]:
        """Store a view under a (new) id with a fresh hash and return it."""
        view_id = view_id or self._new_id("V")
        stored = {
            "team_id": self.team_id,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "callback_id": "",
            "external_id": "",
            "private_metadata": "",
            "state": {"values": {}},
            "root_view_id": view_id,
            "previous_view_id": None,
            **copy.deepcopy(view),
            "id": view_id,
            "hash": f"{int(time.time())}.{self._new_id('')}",
        }
        self.views[view_id] = stored
        return {"ok": True, "view": copy.deepcopy(stored)}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        """Open (or push, or publish) a view."""
        return self._store_view(args["view"])

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        """Update a view by view_id or external_id (unknown ids are accepted)."""
        view_id = args.get("view_id")
        if not _present(view_id):
            external_id = args["external_id"]
            found = [v["id"] for v in self.views.values() if v.get("external_id") == external_id]
            view_id = found[-1] if found else None
        current = self.views.get(str(view_id)) if view_id else None
        expected_hash = args.get("hash")
        if current is not None and _present(expected_hash) and current["hash"] != expected_hash:
            raise SlackError("hash_conflict")
        return self._store_view(args["view"], str(view_id) if view_id else None)

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        """Describe a user; ``self.users[uid]`` overrides the defaults."""
        uid = str(args["user"])
        user: dict[str, Any] = {
            "id": uid,
            "team_id": self.team_id,
            "name": uid.lower(),
            "real_name": f"User {uid}",
            "tz": "UTC",
            "tz_label": "Coordinated Universal Time",
            "tz_offset": 0,
            "deleted": False,
            "is_bot": uid == self.bot_user_id,
            "profile": {"display_name": uid.lower(), "real_name": f"User {uid}"},
        }
        user.update(copy.deepcopy(self.users.get(uid, {})))
        return {"ok": True, "user": user}

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        """Hand out the Socket Mode URL (``socket_mode_url``)."""
        return {"ok": True, "url": self.socket_mode_url}

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        """Describe the bot's identity."""
        return {
            "ok": True,
            "url": "https://fake.slack.com/",
            "team": "Fake",
            "user": "quorum",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": BOT_ID,
        }

    # ------------------------------------------------------------ Sign in with Slack (OIDC)

    def _authorize(self, args: dict[str, Any]) -> _Reply:
        """`GET /openid/connect/authorize`: what Slack's consent page does once the person (the
        `signed_in_user`) agrees: back to `redirect_uri` with a one-time `code` and the `state`;
        `error=access_denied` when nobody is signed in (they cancelled)."""
        client_id = str(args.get("client_id", ""))
        redirect_uri = str(args.get("redirect_uri", ""))
        if client_id not in self.oauth_clients:
            return _Reply(400, {"ok": False, "error": "invalid_client_id"})
        if not redirect_uri.startswith(("http://", "https://")):
            return _Reply(400, {"ok": False, "error": "bad_redirect_uri"})
        separator = "&" if "?" in redirect_uri else "?"
        state = {"state": str(args.get("state", ""))}
        scopes = str(args.get("scope", "")).split()
        if args.get("response_type") != "code" or "openid" not in scopes:
            query = urlencode({"error": "invalid_scope", **state})
            return _Reply(302, headers={"Location": f"{redirect_uri}{separator}{query}"})
        if self.signed_in_user is None:
            query = urlencode({"error": "access_denied", **state})
            return _Reply(302, headers={"Location": f"{redirect_uri}{separator}{query}"})
        code = f"code-{self._new_id('')}-{os.urandom(6).hex()}"
        self._codes[code] = {"client_id": client_id, "redirect_uri": redirect_uri,
                             "user": self.signed_in_user, "team": self.signed_in_team,
                             "nonce": args.get("nonce"), "scopes": scopes}
        query = urlencode({"code": code, **state})
        return _Reply(302, headers={"Location": f"{redirect_uri}{separator}{query}"})

    def _claims(self, grant: dict[str, Any], client_id: str) -> dict[str, Any]:
        user = grant["user"]
        profile = self.users.get(user, {})
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": "https://slack.com", "sub": user, "aud": client_id, "exp": now + 3600,
            "iat": now, "auth_time": now, "ok": True,
            "https://slack.com/user_id": user, "https://slack.com/team_id": grant["team"],
            "name": profile.get("real_name", f"User {user}"),
            "email": profile.get("email", f"{user.lower()}@example.com"),
            "email_verified": True, "locale": "en-US",
        }
        if grant.get("nonce"):
            claims["nonce"] = grant["nonce"]
        return claims

    def _openid_connect_token(self, args: dict[str, Any]) -> dict[str, Any]:
        """Exchange a code for an ID token (a JWT signed with the client secret, HS256) and a
        user token, checking client id, secret, code and redirect URI as Slack does."""
        client_id = str(args.get("client_id", ""))
        if client_id not in self.oauth_clients:
            raise SlackError("invalid_client_id")
        if str(args.get("client_secret", "")) != self.oauth_clients[client_id]:
            raise SlackError("bad_client_secret")
        grant_type = args.get("grant_type") or "authorization_code"
        if grant_type != "authorization_code":
            raise SlackError("unsupported_grant_type")
        grant = self._codes.pop(str(args.get("code", "")), None)  # one use only
        if grant is None or grant["client_id"] != client_id:
            raise SlackError("invalid_code")
        if str(args.get("redirect_uri", "")) != grant["redirect_uri"]:
            raise SlackError("bad_redirect_uri")
        claims = self._claims(grant, client_id)
        token = f"xoxp-{self._new_id('')}-{os.urandom(8).hex()}"
        self._user_tokens[token] = claims
        answer = {"ok": True, "access_token": token, "token_type": "Bearer"}
        if self.issue_id_tokens:
            answer["id_token"] = _jwt(claims, self.oauth_clients[client_id])
        return answer

    def _openid_connect_user_info(self, args: dict[str, Any]) -> dict[str, Any]:
        """The signed-in person's claims, for the user token of openid.connect.token."""
        token = args.pop("_user_token", None)
        if not token:
            raise SlackError("not_authed")
        claims = self._user_tokens.get(str(token))
        if claims is None:
            raise SlackError("invalid_auth")
        return {key: value for key, value in claims.items()
                if key not in ("iss", "aud", "exp", "iat", "auth_time", "nonce")}

    _HANDLERS: dict[str, Callable[[FakeSlack, dict[str, Any]], dict[str, Any]]] = {
        "openid.connect.token": _openid_connect_token,
        "openid.connect.userInfo": _openid_connect_user_info,
        "chat.postMessage": _chat_post_message,
        "chat.update": _chat_update,
        "chat.delete": _chat_delete,
        "chat.postEphemeral": _chat_post_ephemeral,
        "chat.getPermalink": _chat_get_permalink,
        "conversations.history": _conversations_history,
        "conversations.replies": _conversations_replies,
        "conversations.info": _conversations_info,
        "conversations.join": _conversations_join,
        "conversations.create": _conversations_create,
        "conversations.invite": _conversations_invite,
        "conversations.members": _conversations_members,
        "views.open": _views_open,
        "views.push": _views_open,
        "views.publish": _views_open,
        "views.update": _views_update,
        "users.info": _users_info,
        "auth.test": _auth_test,
        "apps.connections.open": _apps_connections_open,
    }

    def _handle_response_url(self, body: dict[str, Any]) -> _Reply:
        """Answer a response_url POST, validating any blocks it carries."""
        try:
            check_reply(body)
        except SlackError as exc:
            reply = exc.reply()
            reply.status = 400
            return reply
        return _Reply(200, {"ok": True})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(claims: dict[str, Any], secret: str) -> str:
    """A compact JWT (HS256) of `claims`."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{_b64url(signature.digest())}"


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """Read the request body (Content-Length or chunked)."""
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                break
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        return b"".join(chunks)
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length > 0 else b""


def _parse_args(query: str, content_type: str, body: bytes) -> dict[str, Any]:
    """Merge query-string, form and JSON arguments; decode JSON-string fields."""
    args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    text = body.decode("utf-8", errors="replace")
    if "application/json" in content_type:
        try:
            decoded = json.loads(text) if text.strip() else {}
        except ValueError:
            decoded = {}
        if isinstance(decoded, dict):
            args.update(decoded)
    elif "application/x-www-form-urlencoded" in content_type or (not content_type and "=" in text):
        args.update(parse_qsl(text, keep_blank_values=True))
    _decode_json_fields(args)
    return args


def _make_handler(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    """Build a request handler class bound to ``fake``."""

    class Handler(BaseHTTPRequestHandler):
        """Serve /api/<method> and /response_url/<key> for one FakeSlack."""

        server_version = "FakeSlack/1.0"
        # The headers and the body leave in two writes: on a kept-alive connection Nagle's
        # algorithm would hold the body back for the client's delayed ACK (~40 ms).
        disable_nagle_algorithm = True

        def setup(self) -> None:
            """Speak HTTP/1.1 (connections kept open) when the fake keeps connections alive."""
            super().setup()
            with fake._cond:
                fake.connections += 1
            if fake.keep_alive:
                self.protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet."""

        def do_GET(self) -> None:
            """Handle GET like POST (Slack accepts both)."""
            self._serve()

        def do_POST(self) -> None:
            """Handle a POST."""
            self._serve()

        def _serve(self) -> None:
            """Parse, fault, answer and record one request."""
            seq, epoch = fake._next_seq()
            at = time.monotonic()
            parts = urlsplit(self.path)
            body = _read_body(self)
            args = _parse_args(parts.query, self.headers.get("Content-Type", ""), body)
            if parts.path == AUTHORIZE_PATH:
                with fake._cond:
                    reply = fake._authorize(args)
                fake._record(seq, epoch, Call("openid.connect.authorize", args, None,
                                              reply.status, reply.body, at))
                self._send(reply)
                return
            basic = self.headers.get("Authorization", "")
            if basic.lower().startswith("basic "):  # client id and secret, as slack_sdk sends
                with contextlib.suppress(ValueError, UnicodeDecodeError):
                    pair = base64.b64decode(basic[6:].strip()).decode()
                    client_id, _, client_secret = pair.partition(":")
                    args.setdefault("client_id", unquote(client_id))
                    args.setdefault("client_secret", unquote(client_secret))
            if parts.path.startswith(RESPONSE_URL_PREFIX):
                method, token = "response_url", None
                payload = args.get("payload")
                if isinstance(payload, str):
                    with contextlib.suppress(ValueError):
                        decoded = json.loads(payload)
                        args = decoded if isinstance(decoded, dict) else args
            else:
                method = (
                    parts.path.removeprefix(API_PREFIX)
                    if parts.path.startswith(API_PREFIX)
                    else parts.path
                )
                token = self._token(args)
            with fake._cond:
                fake._in_flight[method] = fake._in_flight.get(method, 0) + 1
            try:
                reply = self._answer(method, args, token, epoch)
            finally:
                with fake._cond:
                    fake._in_flight[method] -= 1
            fake._record(seq, epoch, Call(method, args, token, reply.status, reply.body, at))
            self._send(reply)

        def _token(self, args: dict[str, Any]) -> str | None:
            """Take the token from Authorization: Bearer, else the token arg."""
            auth = self.headers.get("Authorization", "")
            if auth.lower().startswith("bearer "):
                return auth[7:].strip() or None
            token = args.get("token")
            return str(token) if token else None

        def _answer(self, method: str, args: dict[str, Any], token: str | None,
                    epoch: int) -> _Reply:
            """Apply any queued fault, then answer normally."""
            fault = fake._take_fault(method)
            if fault is not None and fault.act_first:
                reply = self._answer_normally(method, args, token)
                fake._stopping.wait(fault.delay)
                return reply
            if fault is not None:
                if fault.delay > 0:
                    fake._stopping.wait(fault.delay)
                    if epoch != fake._epoch:  # a reset came meanwhile: leave the new state alone
                        return _Reply(503, {"ok": False, "error": "reset_during_delay"})
                forced = fake._fault_reply(fault)
                if forced is not None:
                    return forced
            return self._answer_normally(method, args, token)

        def _answer_normally(self, method: str, args: dict[str, Any],
                             token: str | None) -> _Reply:
            """Answer as Slack would with no fault (the rate limits, if set, still apply)."""
            limited = fake._rate_limited(method, args)
            if limited is not None:
                return limited
            if method == "response_url":
                if self.command != "POST":
                    return _Reply(405, {"ok": False, "error": "method_not_allowed"})
                return fake._handle_response_url(args)
            return fake._handle(method, args, token)

        def _send(self, reply: _Reply) -> None:
            """Write the reply, or drop the connection for a disconnect fault."""
            self.close_connection = not fake.keep_alive or reply.disconnect
            if reply.disconnect:
                self.close_connection = True
                return
            data = json.dumps(reply.body).encode("utf-8")
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (e.g. timed out during a delay fault)

    return Handler
