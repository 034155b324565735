"""`quorum manifest`: the Slack app manifest, derived from what the features register.

Slash commands, shortcuts and bot events come from the listeners each handler module registers
(the Bolt app is built with a recording `App` subclass), and commands take their description and
usage hint from the module's `Command` definitions, so a new feature appears here by itself.
The bot scopes are declared below, one reason each: they are what an admin grants, so adding one
is a deliberate change; `tests/bot/test_manifest.py` derives the scopes the code needs from the
Web API methods it calls and fails when this list misses one or grants one nothing uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from slack_bolt import App

import handlers
from bot.commands import Command
from bot.runtime import Runtime

NAME = "Quorum"
DESCRIPTION = ("Hypotheses, decisions, milestone gates, risks and rituals for teams that "
               "build and ship ML models.")
EVENTS_PATH = "/slack/events"

# Every bot scope Quorum asks for, and why. Keep it to what the code uses.
BOT_SCOPES = {
    "commands": "slash commands and the \"Log as decision\" message shortcut",
    "chat:write": "post and update cards, replies and ephemeral errors (chat.postMessage, "
                  "chat.update, chat.postEphemeral)",
    "channels:join": "join a public channel when Slack answers not_in_channel "
                     "(conversations.join in the outbox worker)",
    "channels:history": "after a post that got no answer, find it in a public channel instead "
                        "of posting it twice (conversations.history/replies, outbox worker)",
    "groups:history": "the same in private channels",
    "channels:read": "whether a channel is public (conversations.info: a private channel's "
                     "records never leave it), channel names for exports, and its members: "
                     "standup participants when nobody holds a role (conversations.members)",
    "groups:read": "the same for private channels, whose members alone see their records on the "
                   "Home tab and in reminders (conversations.info, conversations.members)",
    "users:read": "people's names for exports instead of their ids, and each person's time "
                  "zone for standups held at their own time (users.info, user_change event)",
    "channels:manage": "open a dedicated incident channel and invite its people "
                       "(conversations.create, conversations.invite)",
    "im:history": "read standup answers sent to Quorum in its DM (the message.im event)",
}

# Bolt's `app.message(...)` listens to messages in the channels Quorum works in.
MESSAGE_EVENTS = ("message.channels", "message.groups", "message.im")


@dataclass
class Registrations:
    """What the features registered on the Bolt app."""

    commands: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    shortcuts: list[dict[str, str]] = field(default_factory=list)


class RecordingApp(App):
    """A Bolt App that also notes the commands, events and shortcuts listened to."""

    registrations: Registrations

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.registrations = Registrations()
        super().__init__(*args, **kwargs)

    def command(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        self.registrations.commands.append(str(command))
        return super().command(command, *args, **kwargs)

    def event(self, event: Any, *args: Any, **kwargs: Any) -> Any:
        kind = event.get("type") if isinstance(event, dict) else str(event)
        if kind == "message":
            self.registrations.events.extend(MESSAGE_EVENTS)
        else:
            self.registrations.events.append(str(kind))
        return super().event(event, *args, **kwargs)

    def message(self, *args: Any, **kwargs: Any) -> Any:
        self.registrations.events.extend(MESSAGE_EVENTS)
        return super().message(*args, **kwargs)

    def shortcut(self, constraints: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(constraints, dict):
            kind = str(constraints.get("type", "global")).replace("_action", "")
            callback = str(constraints.get("callback_id"))
        else:
            kind, callback = "message", str(constraints)  # Quorum's shortcuts act on messages
        self.registrations.shortcuts.append({"type": kind, "callback_id": callback})
        return super().shortcut(constraints, *args, **kwargs)

    def message_shortcut(self, callback_id: Any, *args: Any, **kwargs: Any) -> Any:
        self.registrations.shortcuts.append({"type": "message", "callback_id": str(callback_id)})
        return super().message_shortcut(callback_id, *args, **kwargs)

    def global_shortcut(self, callback_id: Any, *args: Any, **kwargs: Any) -> Any:
        self.registrations.shortcuts.append({"type": "global", "callback_id": str(callback_id)})
        return super().global_shortcut(callback_id, *args, **kwargs)


# Names and descriptions Slack shows for each shortcut, by callback_id.
SHORTCUTS = {
    "log_decision": ("Log as decision", "Turn this message into a decision record draft"),
}


def registrations(runtime: Runtime) -> Registrations:
    """Build the app as `quorum serve` does and return what its features listen to."""
    from bot.slack_app import build_app

    # The manifest is printed before the app exists, so there may be no bot token yet.
    settings = runtime.settings.model_copy(update={"slack_bot_token": "xoxb-manifest"})
    app = build_app(Runtime(settings=settings, db=runtime.db), app_class=RecordingApp)
    assert isinstance(app, RecordingApp)
    return app.registrations


def command_definitions() -> dict[str, Command]:
    """Every `Command` the handler modules define, by name."""
    found: dict[str, Command] = {}
    for feature in handlers.FEATURES:
        for value in vars(feature).values():
            if isinstance(value, Command):
                found[value.name] = value
    return found


def usage_hint(command: Command) -> str:
    """`[title] | list | show D-n | …`: what goes after the command, within Slack's 1,000."""
    forms = [sub.usage("").strip() for sub in command.subcommands]
    hint = " | ".join(form for form in forms if form) + " | help"
    return hint if len(hint) <= 1000 else hint[:999] + "…"


@dataclass(frozen=True)
class SlashCommand:
    name: str
    description: str
    usage_hint: str


def slash_commands(runtime: Runtime) -> list[SlashCommand]:
    """The registered slash commands with their descriptions, in registration order."""
    definitions = command_definitions()
    commands = []
    for name in dict.fromkeys(registrations(runtime).commands):
        definition = definitions.get(name)
        if definition is None:
            commands.append(SlashCommand(name, f"Quorum {name}", "help"))
            continue
        summary = definition.summary[:1].upper() + definition.summary[1:]
        commands.append(SlashCommand(name, summary[:2000], usage_hint(definition)))
    return commands


def build_manifest(runtime: Runtime, url: str | None, socket_mode: bool = False
                   ) -> dict[str, Any]:
    """The manifest as a dictionary; `url` is the public base URL (unused in Socket Mode)."""
    found = registrations(runtime)
    events = sorted(dict.fromkeys(found.events))
    request_url = None if socket_mode or not url else url.rstrip("/") + EVENTS_PATH
    commands = []
    for command in slash_commands(runtime):
        entry: dict[str, Any] = {"command": command.name}
        if request_url:
            entry["url"] = request_url
        entry.update(description=command.description, usage_hint=command.usage_hint,
                     should_escape=True)  # mentions arrive as <@U…> for the parser
        commands.append(entry)
    shortcuts = []
    for shortcut in {s["callback_id"]: s for s in found.shortcuts}.values():
        name, description = SHORTCUTS.get(shortcut["callback_id"],
                                          (shortcut["callback_id"], shortcut["callback_id"]))
        shortcuts.append({"name": name, "type": shortcut["type"],
                          "callback_id": shortcut["callback_id"], "description": description})

    features: dict[str, Any] = {
        "app_home": {"home_tab_enabled": "app_home_opened" in events,
                     # Standups held at each person's time are answered in the DM.
                     "messages_tab_enabled": "message.im" in events,
                     "messages_tab_read_only_enabled": False},
        "bot_user": {"display_name": NAME, "always_online": True},
    }
    if shortcuts:
        features["shortcuts"] = shortcuts
    if commands:
        features["slash_commands"] = commands
    settings: dict[str, Any] = {}
    if events:
        settings["event_subscriptions"] = {"bot_events": events}
        if request_url:
            settings["event_subscriptions"] = {"request_url": request_url, "bot_events": events}
    settings["interactivity"] = {"is_enabled": True}
    if request_url:
        settings["interactivity"]["request_url"] = request_url
    settings.update(org_deploy_enabled=False, socket_mode_enabled=socket_mode,
                    token_rotation_enabled=False)
    return {
        "display_information": {"name": NAME, "description": DESCRIPTION,
                                "background_color": "#2f3e46"},
        "features": features,
        "oauth_config": {"scopes": {"bot": sorted(BOT_SCOPES)}},
        "settings": settings,
    }


def to_yaml(value: Any, indent: int = 0) -> str:
    """YAML for the manifest's plain data. Strings are written as JSON strings, which are valid
    YAML double-quoted scalars, so no value can be misread (`on`, `no`, `#…`)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(item, indent + 1))
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                nested = to_yaml(item, indent + 1).split("\n")
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(value)}")
    return "\n".join(lines)


def _scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return json.dumps(value, ensure_ascii=False)


def render(manifest: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    return "# Slack app manifest for Quorum: paste it at https://api.slack.com/apps " \
           "(Create New App → From a manifest)\n" + to_yaml(manifest) + "\n"
