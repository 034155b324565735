"""The scheduler's jobs at the runtime edge: work that calls Slack or Alertmanager on each tick,
outside any transaction (see `bot.scheduler.EdgeJob`)."""

from __future__ import annotations

from datetime import datetime

from bot.alertmanager_api import AlertmanagerClient
from bot.directory import refresh_names
from bot.runtime import Runtime
from bot.scheduler import EdgeJob
from bot.silencing import expire_resolved


def edge_jobs(runtime: Runtime) -> list[EdgeJob]:
    """Expire the silences of resolved incidents; keep the cache of Slack names fresh."""
    from bot.slack_app import web_client

    db = runtime.db
    alertmanager = AlertmanagerClient.from_settings(runtime.settings)
    jobs: list[EdgeJob] = []

    def expire_silences(now: datetime) -> None:
        expire_resolved(db, alertmanager, now)

    if alertmanager is not None:
        jobs.append(expire_silences)
    if runtime.settings.slack_bot_token:
        client = web_client(runtime)

        def slack_names(now: datetime) -> None:
            refresh_names(db, client, now)

        jobs.append(slack_names)
    return jobs
