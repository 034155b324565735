"""The one shape of every handler, and the access rules it cannot forget (docs/access.md).

- `Place` says where a payload comes from: a channel, the App Home, or a modal Quorum opened.
- `Guard` is the only way a handler reaches a record by reference (`D-3`) or by id (a button's
  value): it returns the record only when it may be read from the place, and only when it may be
  changed from there for `change…`; a public record read from another channel is answered with a
  note of where it lives (`annotate`).
- `slash_command` is the command skeleton: parse, help, the bare form, one transaction with the
  project and a guard, the answer (an ephemeral reply or a modal to open), ack.
- `register` adds the middleware that learns whether a channel is private (`conversations.info`,
  with `conversations.members` for private ones) when its project is new or its answer stale.

A new command is `@slash_command(app, runtime, COMMAND)` over a function of an `Invocation`; a
new button opens a session and calls `guard(session, body).change_id(Model, id, noun)` (or
`read_id`) instead of looking the record up itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from slack_bolt import Ack, App, BoltRequest, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from bot.commands import Command, Parsed
from bot.database import UNAVAILABLE
from bot.errors import NotFound
from bot.models import Base, Project, utcnow
from bot.render import renderer
from bot.runtime import Runtime
from bot.services import access, records
from bot.services.projects import ChannelPrivacy, expect_privacy, project_for_channel
from handlers.common import guarded, help_message, read_metadata, team_id_of, user_id_of

log = logging.getLogger("quorum.access")

Record = TypeVar("Record", bound=Base)
# Slack's answer about a channel must not hold up the 3-second acknowledgement for long.
LOOKUP_TIMEOUT = 2
MEMBER_PAGES = 10  # conversations.members pages of 1,000: channels beyond 10,000 stay unknown

# Where people act: a channel (commands, buttons on cards), their own surfaces (the App Home and
# the app's DM with them, where reminders come), and modals Quorum opened.
CHANNEL, PERSONAL, MODAL = "channel", "personal", "modal"
# Privacy looked up when someone opens their Home, at most this many projects at a time (the
# event waits for it), unknown ones first.
HOME_LOOKUPS = 8


# ------------------------------------------------------------------ where a person acts

@dataclass(frozen=True)
class Place:
    """Where a payload comes from: the workspace, the person, the conversation (for commands and
    buttons on messages) and the kind of surface: a channel, the person's own (the App Home, the
    app's DM with them) or a modal Quorum opened."""

    team: str
    user: str
    channel: str | None
    surface: str  # CHANNEL, PERSONAL or MODAL

    @classmethod
    def of(cls, body: dict[str, Any]) -> Place:
        team, user = team_id_of(body), user_id_of(body)
        if body.get("command") or body.get("channel_id"):  # a slash command
            return cls(team, user, str(body.get("channel_id") or ""), CHANNEL)
        view = body.get("view") or {}
        if view.get("type") == "home":
            return cls(team, user, None, PERSONAL)
        channel = (body.get("channel") or {}).get("id")
        if channel and body.get("type") == "block_actions" and (
                str(channel).startswith("D") or channel == user):
            return cls(team, user, str(channel), PERSONAL)  # a button in a reminder DM
        if channel:  # a button on a message, a message shortcut
            return cls(team, user, str(channel), CHANNEL)
        if view:  # a modal: Quorum opened it after the guard let its opener through
            return cls(team, user, read_metadata(view).get("channel"), MODAL)
        channel = (body.get("event") or {}).get("channel")
        return cls(team, user, str(channel) if channel else None, CHANNEL)


# ------------------------------------------------------------------ the guard

def project_of(session: Session, record: Any) -> Project | None:
    """The project a record belongs to (None: an unrouted incident belongs to no channel)."""
    if isinstance(record, Project):
        return record
    project = getattr(record, "project", None)
    if isinstance(project, Project):
        return project
    project_id = getattr(record, "project_id", None)
    return session.get(Project, project_id) if project_id is not None else None


@dataclass
class Guard:
    """Records by reference or id, only as far as the place may read or change them.

    `refresh(project)`, given by the edge, asks Slack again about a project whose privacy is
    unknown or stale before a read from another channel; without it (or when Slack fails) such a
    project counts as private.
    """

    session: Session
    place: Place
    refresh: Callable[[Project], None] | None = None
    now: datetime = field(default_factory=utcnow)
    elsewhere: str | None = None  # the channel of a public record read from another one

    def read(self, model: type[Record], ref: str, noun: str, *, lock: bool = False) -> Record:
        """The record `ref` (`D-3`) of the workspace, if it may be shown here."""
        record = records.find_by_ref(self.session, model, self.place.team, ref, noun, lock=lock)
        return self.check(record, change=False)

    def change(self, model: type[Record], ref: str, noun: str, *, lock: bool = False) -> Record:
        """The record `ref`, if it may be changed from here (its own project)."""
        record = records.find_by_ref(self.session, model, self.place.team, ref, noun, lock=lock)
        return self.check(record, change=True)

    def read_id(self, model: type[Record], record_id: int | str, noun: str, *,
                lock: bool = False) -> Record:
        """The record behind a button or form, if it may be shown here."""
        return self.check(self._by_id(model, record_id, noun, lock), change=False)

    def change_id(self, model: type[Record], record_id: int | str, noun: str, *,
                  lock: bool = False) -> Record:
        """The record behind a button or form, if it may be changed from here."""
        return self.check(self._by_id(model, record_id, noun, lock), change=True)

    def _by_id(self, model: type[Record], record_id: int | str, noun: str,
               lock: bool) -> Record:
        try:
            key = int(record_id)
        except (TypeError, ValueError):
            raise NotFound(f"That {noun} no longer exists.") from None
        if hasattr(model, "team_id"):
            return records.find_by_id(self.session, model, key, noun, team_id=self.place.team,
                                      lock=lock)
        # Records without a workspace column (retro items) are of the workspace of their project.
        query = select(model).where(inspect(model).primary_key[0] == key)
        record = self.session.scalars(query).unique().one_or_none()
        project = project_of(self.session, record) if record is not None else None
        if record is None or project is None or project.team_id != self.place.team:
            raise NotFound(f"That {noun} no longer exists.")
        return records.lock(self.session, record) if lock else record

    def check(self, record: Record, *, change: bool) -> Record:
        """Let a record found some other way through the same rules, or refuse."""
        project = project_of(self.session, record)
        if project is None:
            return record  # an unrouted incident: no channel to keep it in
        if project.team_id != self.place.team:
            raise NotFound("That record no longer exists.")
        ref = str(getattr(record, "ref", "That record"))
        place = self.place
        channel = place.channel or ""
        # Its own channels: the project's, and an incident's dedicated channel.
        if place.surface == MODAL or \
                channel in (project.channel_id, getattr(record, "channel_id", None)):
            return record
        if place.surface == PERSONAL:  # their Home or DM shows only what may reach them
            if not access.visible_to_user(project, place.user):
                raise NotFound(f"{ref} belongs to a private channel you are not in.")
            return record
        if self.refresh is not None and access.privacy_is_stale(project, self.now) \
                and not access.channel_id_is_private(project.channel_id):
            self.refresh(project)
        if change:
            access.require_changeable(project, channel, ref, self.now)
        else:
            access.require_readable(project, channel, ref, self.now)
            self.elsewhere = project.channel_id
        return record

    def annotate(self, reply: dict[str, Any]) -> dict[str, Any]:
        """The reply, with where the record lives on top when it was read from elsewhere."""
        if not self.elsewhere or not isinstance(reply.get("blocks"), list):
            return reply
        note = renderer.message("common/lives_in", channel=self.elsewhere)
        return {**reply, "blocks": [*note["blocks"], *reply["blocks"]]}


def guard(session: Session, body: dict[str, Any], client: WebClient | None = None,
          runtime: Runtime | None = None) -> Guard:
    """The guard for this payload; with a client and runtime it may ask Slack about a record's
    channel whose privacy is not known to be current (commands that read from elsewhere)."""
    refresh = None
    if client is not None and runtime is not None:
        def refresh(project: Project) -> None:
            answer = lookup_privacy(client, project.channel_id)
            if answer is not None:
                access.set_privacy(session, project, answer[0], utcnow(), answer[1])
    return Guard(session, Place.of(body), refresh)


# ------------------------------------------------------------------ the command skeleton

@dataclass(frozen=True)
class Modal:
    """An answer that opens this view (a form) instead of replying."""

    view: dict[str, Any]


@dataclass
class Invocation:
    """One slash command being answered, inside its transaction."""

    runtime: Runtime
    command: Command
    parsed: Parsed
    payload: dict[str, Any]
    client: WebClient
    session: Session
    guard: Guard
    _project: Project | None = None

    @property
    def team(self) -> str:
        return self.guard.place.team

    @property
    def user(self) -> str:
        return str(self.payload.get("user_id") or self.guard.place.user)

    @property
    def channel(self) -> str:
        return str(self.payload["channel_id"])

    @property
    def channel_name(self) -> str | None:
        return self.payload.get("channel_name")

    @property
    def subcommand(self) -> str | None:
        return self.parsed.subcommand

    @property
    def args(self) -> dict[str, Any]:
        return self.parsed.args

    @property
    def project(self) -> Project:
        """The channel's project, created on first use (only when the answer needs it)."""
        if self._project is None:
            self._project = project_for_channel(self.session, self.team, self.channel,
                                                self.channel_name)
        return self._project


Answer = Callable[[Invocation], "dict[str, Any] | Modal"]


def slash_command(app: App, runtime: Runtime, command: Command, *,
                  parse: Callable[[str], Parsed] | None = None,
                  help: Callable[[], dict[str, Any]] | None = None,
                  ) -> Callable[[Answer], Answer]:
    """Register `answer(invocation)` as the listener of `command`.

    The skeleton parses the text (with `parse` when the command has its own rules for a bare
    form), answers `help`, opens a transaction with a guard for the payload, calls `answer` (the
    bare form has `subcommand` None), and acknowledges with its reply (noting where a record read
    from another channel lives), or opens the modal it returned. Errors go through `guarded`.
    """
    parser = parse or command.parse
    definition = command  # the listener's own `command` is Slack's payload

    def decorate(answer: Answer) -> Answer:
        def on_command(ack: Ack, command: dict[str, Any], body: dict[str, Any],
                       client: WebClient) -> None:
            parsed = parser(command.get("text", ""))
            if parsed.wants_help:
                ack(**(help() if help is not None else help_message(definition)))
                return
            with runtime.db.session() as session:
                invocation = Invocation(runtime, definition, parsed, command, client, session,
                                        guard(session, body, client, runtime))
                outcome = answer(invocation)
                if not isinstance(outcome, Modal):
                    outcome = invocation.guard.annotate(outcome)
            if isinstance(outcome, Modal):
                ack()
                client.views_open(trigger_id=command["trigger_id"], view=outcome.view)
                return
            ack(**outcome)

        on_command.__name__ = on_command.__qualname__ = answer.__name__  # for the logs
        app.command(definition.name)(guarded(on_command))
        return answer

    return decorate


# ------------------------------------------------------------------ learning a channel's privacy

def lookup_privacy(client: WebClient, channel: str) -> tuple[bool, list[str] | None] | None:
    """Ask Slack whether the channel is private, and if so who is in it; None when Slack cannot
    say (the caller then keeps what it knew, and unknown counts as private)."""
    quick = WebClient(token=client.token, base_url=client.base_url, timeout=LOOKUP_TIMEOUT)
    quick.retry_handlers.clear()
    if access.channel_id_is_private(channel):
        private = True
    else:
        try:
            private = access.privacy_from_channel_info(
                quick.conversations_info(channel=channel).get("channel") or {})
        except SLACK_FAILURES as exc:
            log.warning("could not learn whether %s is private: %s", channel, _reason(exc))
            return None
    if not private or channel.startswith("D"):
        return private, None
    try:
        return private, _members(quick, channel)
    except SLACK_FAILURES as exc:  # private for sure; nobody's Home or DMs get its records
        log.warning("could not list the members of %s: %s", channel, _reason(exc))
        return private, None


SLACK_FAILURES = (SlackApiError, SlackClientError, OSError, ValueError)


def _reason(exc: BaseException) -> str:
    return str(exc.response.get("error")) if isinstance(exc, SlackApiError) else \
        type(exc).__name__


def _members(client: WebClient, channel: str) -> list[str] | None:
    members: list[str] = []
    cursor = None
    for _ in range(MEMBER_PAGES):
        page = client.conversations_members(channel=channel, limit=1000, cursor=cursor)
        members.extend(str(member) for member in page.get("members") or [])
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return members
    return None  # too many to hold: their Home and DMs stay closed to the records


def learn_privacy(runtime: Runtime, client: WebClient, projects: list[Project]) -> None:
    """Ask Slack about the projects whose privacy is unknown or stale (a few at a time, unknown
    first) and store the answers; used where records leave their channel (the Home)."""
    now = utcnow()
    stale = sorted((p for p in projects if access.privacy_is_stale(p, now)),
                   key=lambda p: (p.privacy_checked_at is not None, p.id))[:HOME_LOOKUPS]
    answers = {p.id: lookup_privacy(client, p.channel_id) for p in stale}
    with runtime.db.session() as session:
        for project_id, answer in answers.items():
            project = session.get(Project, project_id)
            if project is not None and answer is not None:
                access.set_privacy(session, project, answer[0], now, answer[1])


def _channel_of(body: dict[str, Any]) -> str | None:
    """The channel a command or an interaction on a message comes from (not Home, not modals,
    not events: a thread reply does not need it)."""
    if body.get("command"):
        return str(body.get("channel_id") or "") or None
    if body.get("type") in ("block_actions", "message_action"):
        return (body.get("channel") or {}).get("id")
    return None


def register(app: App, runtime: Runtime) -> None:
    """Before a command or a click in a channel: when the channel's project is new or Slack's
    word on its privacy is over a day old, ask again and store the answer (a project the listener
    is about to create starts with it). A failure here never fails the request."""
    db = runtime.db

    def channel_privacy(req: BoltRequest, resp: BoltResponse, next: Callable[[], None]) -> None:
        expect_privacy(None)  # forget what an earlier request on this thread learned
        try:
            _learn(req)
        except UNAVAILABLE:
            pass  # the database is down: the listener meets it too, and says so
        except Exception:  # the request goes on, with what was known before
            log.warning("channel privacy lookup failed", exc_info=log.isEnabledFor(logging.DEBUG))
        next()

    def _learn(req: BoltRequest) -> None:
        body = req.body
        channel, team = _channel_of(body), team_id_of(body)
        client = req.context.client
        if not channel or not team or client is None:
            return
        now = utcnow()
        with db.session() as session:
            project = session.scalars(select(Project).where(
                Project.team_id == team, Project.channel_id == channel)).one_or_none()
            if project is not None and not access.privacy_is_stale(project, now):
                return
        answer = lookup_privacy(client, channel)
        if answer is None:
            return
        private, members = answer
        if project is None:
            expect_privacy(ChannelPrivacy(team, channel, private, members, now))
            return
        with db.session() as session:
            project = session.get(Project, project.id)
            if project is not None:
                access.set_privacy(session, project, private, now, members)

    app.use(channel_privacy)
