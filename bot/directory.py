"""Asking Slack for the names of users and channels the registers mention (`users.info`,
`conversations.info`) into the cache that exports read (`bot.services.directory`). A runtime
edge: each Slack call is made outside any transaction."""

from __future__ import annotations

import logging
from datetime import datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.database import Database
from bot.models import utcnow
from bot.scheduler import claim_once
from bot.services import directory

log = logging.getLogger("quorum.directory")
# Names asked for per call (a tick): Slack allows users.info about 100 a minute (tier 4).
BATCH = 50
# Errors after which Slack will not name this id (asked again only at the daily refresh).
UNKNOWN = ("user_not_found", "user_not_visible", "channel_not_found", "missing_scope",
           "channel_is_limited_access")


def name_from(kind: str, answer: dict[str, object]) -> str | None:
    """A person's display name (else real name, else handle); a channel's name."""
    if kind == "user":
        user = answer.get("user") or {}
        assert isinstance(user, dict)
        profile = user.get("profile") or {}
        for candidate in (profile.get("display_name"), profile.get("real_name"),
                          user.get("real_name"), user.get("name")):
            if isinstance(candidate, str) and candidate.strip():
                return candidate.strip()
        return None
    channel = answer.get("channel") or {}
    assert isinstance(channel, dict)
    name = channel.get("name")
    return name if isinstance(name, str) and name else None


def refresh_names(db: Database, client: WebClient, now: datetime | None = None, *,
                  limit: int = BATCH, collect_now: bool = False) -> int:
    """Note newly referenced ids (once an hour across replicas, or now with `collect_now`) and
    fetch the names due; how many were fetched. Stops at the first failure that is not about
    one id (Slack down, rate limit)."""
    now = now or utcnow()
    with db.session() as session:
        if collect_now or claim_once(session, f"directory:collect:{now:%Y%m%d%H}"):
            directory.collect_referenced(session, now)
        due = directory.due_for_refresh(session, now, limit)
    fetched = 0
    for team, slack_id, kind in due:
        try:
            if kind == "user":
                answer = client.users_info(user=slack_id).data
            else:
                answer = client.conversations_info(channel=slack_id).data
            name = name_from(kind, answer) if isinstance(answer, dict) else None
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            if error not in UNKNOWN:
                log.warning("names not refreshed now: Slack said %s", error)
                break
            name = None
        except (SlackClientError, OSError) as exc:
            log.warning("names not refreshed now: %s", type(exc).__name__)
            break
        with db.session() as session:
            directory.store(session, team, slack_id, name, now)
        fetched += 1
    return fetched
