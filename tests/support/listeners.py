"""Every button, modal, event and shortcut the Bolt app listens to, for tests that must cover
each one (double clicks in test_idempotency, cross-project rows in test_authorization)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slack_bolt import App

from bot.runtime import Runtime
from bot.slack_app import build_app


@dataclass
class Listeners:
    actions: set[str] = field(default_factory=set)
    views: set[str] = field(default_factory=set)
    events: set[str] = field(default_factory=set)
    shortcuts: set[str] = field(default_factory=set)


def listener_name(constraint: Any) -> str:
    """An action id or callback id; a pattern (`gate_approve_as_\\d+`) as `gate_approve_as_*`."""
    if isinstance(constraint, re.Pattern):
        return re.sub(r"\\d\+\$$", "*", constraint.pattern).lstrip("^")
    if isinstance(constraint, dict):
        return listener_name(constraint.get("action_id") or constraint.get("callback_id")
                             or constraint.get("type"))
    return str(constraint)


class RecordingApp(App):
    """The Bolt app, noting every button, modal, event and shortcut listened to."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.seen = Listeners()
        super().__init__(*args, **kwargs)

    def action(self, constraints: Any, *args: Any, **kwargs: Any) -> Any:
        self.seen.actions.add(listener_name(constraints))
        return super().action(constraints, *args, **kwargs)

    def view(self, constraints: Any, *args: Any, **kwargs: Any) -> Any:
        self.seen.views.add(listener_name(constraints))
        return super().view(constraints, *args, **kwargs)

    def event(self, event: Any, *args: Any, **kwargs: Any) -> Any:
        self.seen.events.add(listener_name(event))
        return super().event(event, *args, **kwargs)

    def shortcut(self, constraints: Any, *args: Any, **kwargs: Any) -> Any:
        self.seen.shortcuts.add(listener_name(constraints))
        return super().shortcut(constraints, *args, **kwargs)

    def message(self, *args: Any, **kwargs: Any) -> Any:
        self.seen.events.add("message")
        return super().message(*args, **kwargs)


def registered_listeners(make_settings: Callable[..., Any]) -> Listeners:
    """What the app built from these settings listens to."""
    runtime = Runtime.from_settings(make_settings())
    try:
        app = build_app(runtime, app_class=RecordingApp)
    finally:
        runtime.db.dispose()
    return app.seen  # type: ignore[attr-defined]
