"""Who may see what in the portal: the same access model as in Slack.

A person signed in to Quorum's workspace sees its projects; a project of a private channel only
while they are a member of that channel (Slack's `conversations.members`, cached for a few
minutes so that a page does not wait on Slack each time). Anything else answers 404, exactly as
a record that does not exist, so the portal never tells a non-member that a private project is
there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.models import Project
from bot.portal.auth import Person

log = logging.getLogger("quorum.portal")

MEMBERS_TTL_SECONDS = 5 * 60
MEMBERS_PAGE = 200


def is_private(project: Project) -> bool:
    """Whether the project lives in a private channel (`Project.is_private`)."""
    return bool(getattr(project, "is_private", False))


class Directory:
    """The Slack facts the portal needs, cached: the bot's workspace and channel members."""

    def __init__(self, client_factory: Callable[[], WebClient],
                 ttl: float = MEMBERS_TTL_SECONDS) -> None:
        self._client = client_factory
        self._ttl = ttl
        self._lock = threading.Lock()
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._workspace: str | None = None

    def workspace(self) -> str:
        """The team the bot token belongs to (`auth.test`), asked once."""
        if self._workspace is None:
            self._workspace = str(self._client().auth_test()["team_id"])
        return self._workspace

    def members(self, channel: str) -> frozenset[str]:
        """The channel's members; an empty set when Slack cannot say (nobody is let in)."""
        now = time.monotonic()
        with self._lock:
            cached = self._members.get(channel)
        if cached is not None and cached[0] > now:
            return cached[1]
        found: set[str] = set()
        cursor: str | None = None
        try:
            client = self._client()
            while True:
                page = client.conversations_members(channel=channel, limit=MEMBERS_PAGE,
                                                    cursor=cursor)
                found.update(page.get("members") or [])
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
        except (SlackApiError, SlackClientError, OSError) as exc:
            # Not cached: the next page view asks again.
            reason = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc)
            log.warning("conversations.members failed for %s: %s", channel, reason)
            return cached[1] if cached is not None else frozenset()
        members = frozenset(found)
        with self._lock:
            self._members[channel] = (now + self._ttl, members)
        return members


@dataclass
class Viewer:
    """The signed-in person, and what they may see (`dev`: `quorum portal --dev-user`, on
    loopback with no Slack to ask, sees every project of the workspace)."""

    person: Person
    directory: Directory | None
    dev: bool = False
    _seen: dict[int, bool] = field(default_factory=dict)

    def can_see(self, project: Project | None) -> bool:
        if project is None:
            return False
        if project.team_id != self.person.team_id:
            return False
        if not is_private(project) or self.dev:
            return True
        if project.id not in self._seen:
            members = self.directory.members(project.channel_id) if self.directory else set()
            self._seen[project.id] = self.person.user_id in members
        return self._seen[project.id]
