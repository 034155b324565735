"""Slack listeners, one module per feature: parse the payload, call `bot`, render the reply."""

from __future__ import annotations

from slack_bolt import App

from bot.runtime import Runtime
from handlers import (
    admin,
    decisions,
    gates,
    home,
    hypotheses,
    incidents,
    risks,
    rituals,
    skeleton,
)

FEATURES = (decisions, hypotheses, gates, risks, incidents, rituals, admin, home)


def register_all(app: App, runtime: Runtime) -> None:
    skeleton.register(app, runtime)  # learns channel privacy before any listener runs
    for feature in FEATURES:
        feature.register(app, runtime)
