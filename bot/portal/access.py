"""Who may see what in the portal: the access model of Slack and of `bot.services.access`.

A person signed in to Quorum's workspace sees its public projects; a private channel's project
(`access.is_private`: Slack said so, its id says so, or it is not known yet — fail closed) only
while they are a member of that channel (`conversations.members`, cached for a few minutes so
that a page does not wait on Slack each time). A project whose privacy is unknown or stale is
asked about as the handlers do (`handlers.skeleton.lookup_privacy`) and the answer stored with
`access.set_privacy`. Anything else answers 404, as a record that does not exist would, so the
portal never tells a non-member that a private project is there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy.orm import object_session

from bot.models import Project, utcnow
from bot.portal.auth import Person
from bot.services import access
from handlers.skeleton import lookup_privacy

log = logging.getLogger("quorum.portal")

MEMBERS_TTL_SECONDS = 5 * 60
MEMBERS_PAGE = 200


class Directory:
    """The Slack facts the portal needs, cached: the bot's workspace, channels' privacy and
    members."""

    def __init__(self, client_factory: Callable[[], WebClient],
                 ttl: float = MEMBERS_TTL_SECONDS) -> None:
        self._client = client_factory
        self._ttl = ttl
        self._lock = threading.Lock()
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._privacy: dict[str, tuple[float, bool]] = {}
        self._workspace: str | None = None

    def workspace(self) -> str:
        """The team the bot token belongs to (`auth.test`), asked once."""
        if self._workspace is None:
            self._workspace = str(self._client().auth_test()["team_id"])
        return self._workspace

    def _remember_members(self, channel: str, members: frozenset[str]) -> None:
        with self._lock:
            self._members[channel] = (time.monotonic() + self._ttl, members)

    def is_private(self, project: Project) -> bool:
        """The project's privacy; asked of Slack (and stored) when unknown or over a day old,
        at most once per channel in a few minutes."""
        if not access.privacy_is_stale(project, utcnow()):
            return access.is_private(project)
        with self._lock:
            cached = self._privacy.get(project.channel_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        answer = lookup_privacy(self._client(), project.channel_id)
        if answer is None:  # Slack could not say: what was known, unknown counting as private
            return access.is_private(project)
        private, members = answer
        with self._lock:
            self._privacy[project.channel_id] = (time.monotonic() + self._ttl, private)
        if members is not None:
            self._remember_members(project.channel_id, frozenset(members))
        session = object_session(project)
        if session is not None:  # stored with the page's transaction, for the Home and handlers
            access.set_privacy(session, project, private, utcnow(), members)
        return private

    def members(self, channel: str) -> frozenset[str]:
        """The channel's members; an empty set when Slack cannot say (nobody is let in)."""
        with self._lock:
            cached = self._members.get(channel)
        if cached is not None and cached[0] > time.monotonic():
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
            return frozenset()
        members = frozenset(found)
        self._remember_members(channel, members)
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
        if project is None or project.team_id != self.person.team_id:
            return False
        if self.dev:
            return True
        if project.id not in self._seen:
            self._seen[project.id] = self.directory is not None and (
                not self.directory.is_private(project)  # asked again when over a day old
                or self.person.user_id in self.directory.members(project.channel_id))
        return self._seen[project.id]
