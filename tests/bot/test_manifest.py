"""`quorum manifest`: every command and shortcut, the request URLs, and exactly the scopes used.

The scopes the code needs are derived here, independently of `bot.manifest`: every Web API
method the code calls (`client.chat_postMessage(…)`, `api_call("…")`, outbox methods, Bolt's
`say`) is looked up in the Slack reference (`shared/slack-api/methods.json`), every bot event in
its events table, and slash commands and shortcuts need `commands`.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot import cli
from bot.config import load_settings
from bot.manifest import BOT_SCOPES, build_manifest, command_definitions, registrations, render
from bot.runtime import Runtime
from support.fake_slack import default_methods_path

ROOT = Path(__file__).resolve().parents[2]
# The shell's in-process Slack answers Web API calls; it makes none.
NOT_CALLERS = (ROOT / "bot" / "shell",)


@dataclass(frozen=True)
class Need:
    """Something the code does and the scopes that allow it (any one of them)."""

    what: str
    scopes: frozenset[str]


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return json.loads(default_methods_path().read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    runtime = Runtime.from_settings(load_settings(DATABASE_URL="sqlite://"))
    yield runtime
    runtime.db.dispose()


def source_files() -> list[Path]:
    files = [*(ROOT / "bot").rglob("*.py"), *(ROOT / "handlers").rglob("*.py")]
    return sorted(f for f in files if not any(f.is_relative_to(skip) for skip in NOT_CALLERS))


def called_methods(methods: dict[str, Any]) -> dict[str, set[str]]:
    """Web API method → the files that call it."""
    found: dict[str, set[str]] = {}
    for path in source_files():
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                # client.chat_postMessage(…) → chat.postMessage
                name = node.func.attr.replace("_", ".")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id == "say":
                name = "chat.postMessage"  # Bolt's say()
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                name = node.value  # outbox.enqueue(…, "reactions.add", …), api_call("…")
            if name in methods:
                found.setdefault(name, set()).add(where)
    return found


def needs(reference: dict[str, Any], runtime: Runtime) -> list[Need]:
    methods, events = reference["methods"], reference["events"]
    result = [Need(f"{method} (in {', '.join(sorted(files))})",
                   frozenset(methods[method].get("bot_scopes") or []))
              for method, files in called_methods(methods).items()]
    found = registrations(runtime)
    for event in dict.fromkeys(found.events):
        assert event in events, f"{event} is not a Slack event"
        result.append(Need(f"the {event} event", frozenset(events[event].get("scopes") or [])))
    if found.commands or found.shortcuts:
        result.append(Need("slash commands and shortcuts", frozenset({"commands"})))
    return result


def test_the_scan_sees_what_the_code_calls(reference: dict[str, Any]) -> None:
    calls = called_methods(reference["methods"])
    assert {"chat.postMessage", "chat.update", "chat.postEphemeral", "views.open",
            "chat.getPermalink", "conversations.join"} <= set(calls)
    assert "bot/delivery.py" in calls["conversations.join"]
    assert "handlers/common.py" in calls["chat.postEphemeral"]


def test_manifest_grants_exactly_the_scopes_the_code_uses(reference: dict[str, Any],
                                                          runtime: Runtime) -> None:
    granted = set(build_manifest(runtime, "https://q.example.com")["oauth_config"]["scopes"]["bot"])
    assert granted == set(BOT_SCOPES)
    required = [need for need in needs(reference, runtime) if need.scopes]
    missing = [f"{need.what} needs one of {sorted(need.scopes)}" for need in required
               if not need.scopes & granted]
    assert not missing, "add to BOT_SCOPES in bot/manifest.py: " + "; ".join(missing)
    # A granted scope is used when something needs it (a method may take one scope per kind of
    # conversation: `channels:history` for public channels, `groups:history` for private ones).
    unused = [scope for scope in sorted(granted)
              if not any(scope in need.scopes for need in required)]
    assert not unused, f"nothing needs {unused}: remove them from BOT_SCOPES in bot/manifest.py"


def test_every_registered_command_is_in_the_manifest_with_its_usage(runtime: Runtime) -> None:
    manifest = build_manifest(runtime, "https://q.example.com/")
    found = registrations(runtime)
    definitions = command_definitions()
    commands = manifest["features"]["slash_commands"]
    assert [c["command"] for c in commands] == list(dict.fromkeys(found.commands))
    for entry in commands:
        definition = definitions.get(entry["command"])
        assert definition is not None, f"{entry['command']} has no Command(...) definition"
        assert entry["url"] == "https://q.example.com/slack/events"
        assert entry["description"].lower() == definition.summary.lower()
        assert entry["should_escape"] is True  # @mentions reach the parser as <@U…>
        for sub in definition.subcommands:
            assert sub.usage("").strip() in entry["usage_hint"]
        # Slack's limits (manifest schema v1)
        assert 2 <= len(entry["command"]) <= 32 and entry["command"].startswith("/")
        assert 1 <= len(entry["description"]) <= 2000 and 1 <= len(entry["usage_hint"]) <= 1000
    decision = next(c for c in commands if c["command"] == "/decision")
    assert decision["description"] == "Decision records"
    assert "supersede D-n <title>" in decision["usage_hint"]


def test_shortcut_urls_events_and_home(runtime: Runtime) -> None:
    manifest = build_manifest(runtime, "https://q.example.com")
    [shortcut] = [s for s in manifest["features"]["shortcuts"]
                  if s["callback_id"] == "log_decision"]
    assert shortcut == {"name": "Log as decision", "type": "message",
                        "callback_id": "log_decision",
                        "description": "Turn this message into a decision record draft"}
    for entry in manifest["features"]["shortcuts"]:
        assert len(entry["name"]) <= 24 and len(entry["description"]) <= 150
    settings = manifest["settings"]
    assert settings["interactivity"] == {"is_enabled": True,
                                         "request_url": "https://q.example.com/slack/events"}
    events = sorted(dict.fromkeys(registrations(runtime).events))
    if events:
        assert settings["event_subscriptions"] == {
            "request_url": "https://q.example.com/slack/events", "bot_events": events}
    home = manifest["features"]["app_home"]
    assert home["home_tab_enabled"] == ("app_home_opened" in events)
    assert home["messages_tab_enabled"] is ("message.im" in events)  # `each` standup answers
    assert home["messages_tab_read_only_enabled"] is False
    assert settings["socket_mode_enabled"] is False
    info = manifest["display_information"]
    assert len(info["name"]) <= 35 and len(info["description"]) <= 140
    assert manifest["features"]["bot_user"]["display_name"] == "Quorum"


def test_socket_mode_manifest_has_no_request_urls(runtime: Runtime) -> None:
    manifest = build_manifest(runtime, None, socket_mode=True)
    assert manifest["settings"]["socket_mode_enabled"] is True

    def keys(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for key, item in value.items():
                yield key
                yield from keys(item)
        elif isinstance(value, list):
            for item in value:
                yield from keys(item)

    assert not {"url", "request_url"} & set(keys(manifest))
    assert manifest["settings"]["interactivity"] == {"is_enabled": True}


def test_yaml_and_json_say_the_same(runtime: Runtime) -> None:
    yaml = pytest.importorskip("yaml")
    manifest = build_manifest(runtime, "https://q.example.com")
    assert yaml.safe_load(render(manifest, "yaml")) == manifest
    assert json.loads(render(manifest, "json")) == manifest


def test_cli_prints_the_manifest_and_refuses_bad_urls(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)  # no app yet, so no token yet
    assert cli.main(["manifest", "--url", "https://q.example.com/slack/events",
                     "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["settings"]["interactivity"]["request_url"] == \
        "https://q.example.com/slack/events"
    assert cli.main(["manifest", "--socket-mode"]) == 0
    assert "socket_mode_enabled: true" in capsys.readouterr().out
    for args, message in ((["manifest"], "--url: required"),
                          (["manifest", "--url", "http://q.example.com"],
                           "--url: must be an https:// address")):
        assert cli.main(args) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith(f"quorum: configuration error: {message}")
