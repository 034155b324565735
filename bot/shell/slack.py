"""The Slack that `quorum shell` talks to: a Web API answered in-process, on a loopback port.

Bolt makes a fresh `WebClient` for every request and the outbox worker has its own, so the
shell points `SLACK_API_URL` at this small HTTP server instead of replacing a client. It answers
like Slack does (`ok`, `ts`, `channel`, view ids), keeps messages by channel and `ts` and the
views it opened, and hands every visible change (a post, an edit, an ephemeral reply, an App
Home) to `on_event` for the terminal to print. Nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from bot.slack_payloads import unique_id

if TYPE_CHECKING:
    from slack_bolt import BoltResponse

TEAM_ID = "T0SHELL"
BOT_USER_ID = "UQUORUM"
BOT_ID = "B0QUORUM"
APP_ID = "A0001"
JSON_FIELDS = ("blocks", "attachments", "view", "metadata")
NAME = re.compile(r"^@?#?([A-Za-z0-9][A-Za-z0-9._-]{0,40})$")


class Directory:
    """Names for the people and channels of the shell, and the Slack ids that stand for them.

    Ids are derived from names (`alice` → `UALICE`), so that records stay attributed to the same
    person from one session to the next on the same database.
    """

    def __init__(self) -> None:
        self._names: dict[str, str] = {BOT_USER_ID: "quorum"}
        self._lock = threading.Lock()

    @staticmethod
    def valid(name: str) -> str | None:
        """The bare name (`@alice` → `alice`), or None when it cannot be a Slack name."""
        match = NAME.match(name.strip())
        return match.group(1).lower() if match else None

    def _id(self, prefix: str, name: str, remember: bool = True) -> str:
        core = re.sub(r"[^A-Z0-9]", "", name.upper())[:19].ljust(2, "0")
        ident = prefix + core
        if remember:
            with self._lock:
                self._names.setdefault(ident, name)
        return ident

    def user_id(self, name: str) -> str:
        return self._id("U", name)

    def channel_id(self, name: str, *, remember: bool = True) -> str:
        return self._id("C", name, remember)

    def knows(self, ident: str) -> bool:
        """Has this session met the person or channel with this id?"""
        with self._lock:
            return ident in self._names

    def name(self, ident: str) -> str:
        """The name behind an id; an id from another session reads as its lowercase letters."""
        with self._lock:
            known = self._names.get(ident)
        return known or (ident[1:].lower() if len(ident) > 1 else ident)


@dataclass
class Event:
    """Something the person would see in Slack."""

    kind: str  # post, update, delete, ephemeral, home, respond, note
    channel: str = ""
    message: dict[str, Any] = field(default_factory=dict)
    user: str = ""  # who sees an ephemeral message or owns a Home tab
    key: str = ""  # the response_url key of a `respond`
    parent: dict[str, Any] | None = None  # the thread's parent message, for replies


class LocalSlack:
    """The in-process Web API; see the module docstring."""

    def __init__(self, directory: Directory, on_event: Callable[[Event], None]) -> None:
        self.directory = directory
        self.on_event = on_event
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.opened: list[str] = []  # views opened by listeners, not yet shown to the person
        self._lock = threading.RLock()
        self._last_ts = 0.0
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LocalSlack:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="quorum-shell-api",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base(self) -> str:
        assert self._server is not None, "LocalSlack is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    def response_url(self, key: str) -> str:
        return f"{self.base}/response/{key}"

    # ------------------------------------------------------------------ state the shell reads

    def new_ts(self) -> str:
        """A message timestamp like Slack's, increasing and unique across sessions."""
        with self._lock:
            self._last_ts = max(time.time(), self._last_ts + 0.000001)
            return f"{self._last_ts:.6f}"

    def take_opened(self) -> list[str]:
        with self._lock:
            opened, self.opened = self.opened, []
        return opened

    def store_view(self, view: dict[str, Any], view_id: str | None = None) -> dict[str, Any]:
        with self._lock:
            view_id = view_id or unique_id("V")  # never one of an earlier session
            stored = {"callback_id": "", "private_metadata": "", "external_id": "",
                      "state": {"values": {}}, **copy.deepcopy(view), "id": view_id,
                      "team_id": TEAM_ID, "app_id": APP_ID, "bot_id": BOT_ID,
                      "hash": f"{int(time.time())}.{next(self._ids)}", "root_view_id": view_id}
            self.views[view_id] = stored
            return copy.deepcopy(stored)

    def post(self, channel: str, message: dict[str, Any], *, user: str = BOT_USER_ID,
             announce: bool = True) -> dict[str, Any]:
        """Store a new message in `channel` (a bot post, or an in_channel reply)."""
        with self._lock:
            ts = self.new_ts()
            stored: dict[str, Any] = {"type": "message", "user": user, "ts": ts,
                                      "text": message.get("text", "")}
            if user == BOT_USER_ID:
                stored["bot_id"] = BOT_ID
            for key in ("blocks", "attachments", "thread_ts", "metadata"):
                if message.get(key):
                    stored[key] = copy.deepcopy(message[key])
            _name_blocks(stored)
            self.messages[(channel, ts)] = stored
            parent = self.messages.get((channel, str(stored.get("thread_ts", ""))))
        if announce:
            self.on_event(Event("post", channel, copy.deepcopy(stored), parent=parent))
        return stored

    def update(self, channel: str, ts: str, message: dict[str, Any]) -> dict[str, Any]:
        """Edit a message; one posted in an earlier session is taken as it is now sent."""
        with self._lock:
            stored = self.messages.setdefault(
                (channel, ts), {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID,
                                "ts": ts})
            for key in ("text", "blocks", "attachments", "metadata"):
                if key in message:
                    stored[key] = copy.deepcopy(message[key])
            _name_blocks(stored)
            stored["edited"] = {"user": BOT_USER_ID, "ts": self.new_ts()}
            snapshot = copy.deepcopy(stored)
        self.on_event(Event("update", channel, snapshot))
        return snapshot

    # ------------------------------------------------------------------ Web API methods

    def call(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        handler = self._METHODS.get(method)
        if handler is None:
            return {"ok": True}
        return handler(self, args)

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel", ""))
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        stored = self.post(channel, args)
        return {"ok": True, "channel": channel, "ts": stored["ts"], "message": stored}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel", "")), str(args.get("ts", ""))
        stored = self.update(channel, ts, args)
        return {"ok": True, "channel": channel, "ts": ts, "text": stored.get("text", ""),
                "message": stored}

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel", "")), str(args.get("ts", ""))
        with self._lock:
            self.messages.pop((channel, ts), None)
        self.on_event(Event("delete", channel, {"ts": ts}))
        return {"ok": True, "channel": channel, "ts": ts}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        message = {key: args[key] for key in ("text", "blocks", "attachments") if key in args}
        self.on_event(Event("ephemeral", str(args.get("channel", "")), message,
                            user=str(args.get("user", ""))))
        return {"ok": True, "message_ts": self.new_ts()}

    def _chat_get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel", "")), str(args.get("message_ts", ""))
        return {"ok": True, "channel": channel,
                "permalink": f"https://quorum-shell.slack.com/archives/{channel}/"
                             f"p{ts.replace('.', '')}"}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        view = self.store_view(args.get("view") or {})
        with self._lock:
            self.opened.append(view["id"])
        return {"ok": True, "view": view}

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id = args.get("view_id")
        if not view_id and args.get("external_id"):
            with self._lock:
                view_id = next((v["id"] for v in self.views.values()
                                if v.get("external_id") == args["external_id"]), None)
        return {"ok": True, "view": self.store_view(args.get("view") or {}, view_id or None)}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args.get("user_id", ""))
        view = self.store_view(args.get("view") or {}, view_id=f"VHOME{user}")
        self.on_event(Event("home", message=view, user=user))
        return {"ok": True, "view": view}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        uid = str(args.get("user", ""))
        name = self.directory.name(uid)
        return {"ok": True, "user": {
            "id": uid, "team_id": TEAM_ID, "name": name, "real_name": name, "deleted": False,
            "is_bot": uid == BOT_USER_ID, "tz": "UTC", "tz_label": "Coordinated Universal Time",
            "tz_offset": 0, "profile": {"display_name": name, "real_name": name}}}

    def _channel(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel", ""))
        name = self.directory.name(channel)
        return {"ok": True, "channel": {"id": channel, "name": name, "is_channel": True,
                                        "is_member": True, "is_private": False}}

    def _conversations_create(self, args: dict[str, Any]) -> dict[str, Any]:
        name = str(args.get("name", "")).lower()
        channel = self.directory.channel_id(name)
        self.on_event(Event("note", channel, {"text": f"Quorum created the channel #{name}."}))
        return {"ok": True, "channel": {"id": channel, "name": name, "is_channel": True,
                                        "is_member": True,
                                        "is_private": bool(args.get("is_private"))}}

    def _replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel", "")), str(args.get("ts", ""))
        with self._lock:
            thread = [copy.deepcopy(m) for (c, _), m in sorted(self.messages.items())
                      if c == channel and (m["ts"] == ts or m.get("thread_ts") == ts)]
        return {"ok": True, "messages": thread, "has_more": False}

    def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel", ""))
        with self._lock:
            top = [copy.deepcopy(m) for (c, _), m in sorted(self.messages.items(), reverse=True)
                   if c == channel and m.get("thread_ts", m["ts"]) == m["ts"]]
        return {"ok": True, "messages": top, "has_more": False}

    def _auth_test(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": "https://quorum-shell.slack.com/", "team": "Quorum shell",
                "user": "quorum", "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID}

    _METHODS: dict[str, Callable[[LocalSlack, dict[str, Any]], dict[str, Any]]] = {
        "chat.postMessage": _chat_post_message,
        "chat.update": _chat_update,
        "chat.delete": _chat_delete,
        "chat.postEphemeral": _chat_post_ephemeral,
        "chat.getPermalink": _chat_get_permalink,
        "views.open": _views_open,
        "views.push": _views_open,
        "views.update": _views_update,
        "views.publish": _views_publish,
        "users.info": _users_info,
        "conversations.info": _channel,
        "conversations.join": _channel,
        "conversations.invite": _channel,
        "conversations.create": _conversations_create,
        "conversations.replies": _replies,
        "conversations.history": _history,
        "auth.test": _auth_test,
    }


def app_answer(response: BoltResponse) -> dict[str, Any]:
    """What the app answered a request with, as Slack reads it: its JSON object, or `{}`."""
    with contextlib.suppress(ValueError):
        body = json.loads(response.body or "{}")
        if isinstance(body, dict):
            return body
    return {}


def _name_blocks(message: dict[str, Any]) -> None:
    """Give blocks without a block_id one, as Slack does, so that clicks carry it."""
    for index, block in enumerate(message.get("blocks") or []):
        if isinstance(block, dict) and not block.get("block_id"):
            block["block_id"] = f"b{index}"


def _parse(query: str, content_type: str, body: bytes) -> dict[str, Any]:
    args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    text = body.decode("utf-8", errors="replace")
    if "application/json" in content_type:
        with contextlib.suppress(ValueError):
            decoded = json.loads(text) if text.strip() else {}
            if isinstance(decoded, dict):
                args.update(decoded)
    else:
        args.update(parse_qsl(text, keep_blank_values=True))
    for key in JSON_FIELDS:
        if isinstance(args.get(key), str) and args[key].strip()[:1] in "[{":
            with contextlib.suppress(ValueError):
                args[key] = json.loads(args[key])
    return args


def _handler(slack: LocalSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the terminal is for the conversation."""

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            args = _parse(parts.query, self.headers.get("Content-Type", ""), body)
            if parts.path.startswith("/response/"):
                key = parts.path.removeprefix("/response/")
                slack.on_event(Event("respond", message=args, key=key))
                answer: dict[str, Any] = {"ok": True}
            else:
                answer = slack.call(parts.path.removeprefix("/api/"), args)
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
