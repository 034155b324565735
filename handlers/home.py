"""The App Home tab: published when opened, filtered by project, and the home of refusals.

Buttons on the Home reuse the cards' action ids (`gate_approve_as_N`, `gate_request_changes`,
`risk_reassess`), so their handlers do the work; a click on the Home has no channel and no
response_url, so those handlers run inside `refusals_on_home`, which answers a refusal (the gate
already passed, the risk closed) by re-publishing the Home with the reason at the top.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.database import Database
from bot.errors import QuorumError
from bot.runtime import Runtime
from bot.services import home as service
from handlers import admin
from handlers.common import first_delivery, guarded, team_id_of, user_id_of
from handlers.skeleton import learn_privacy

# The Home has no slash command of its own: it belongs with `/quorum` (the same object, so the
# manifest and `/quorum help` list it once).
COMMAND = admin.COMMAND


def from_home(body: dict[str, Any]) -> bool:
    """Whether an interaction happened on the App Home (not in a message or a modal)."""
    return (body.get("view") or {}).get("type") == "home"


@contextmanager
def refusals_on_home(db: Database, body: dict[str, Any]) -> Iterator[None]:
    """Around an action that may be clicked on the Home: a refusal re-publishes the Home, as it
    is now, with the reason at the top. Elsewhere, errors go on to `@guarded` as usual."""
    if not from_home(body):
        yield
        return
    try:
        yield
    except QuorumError as exc:
        notify_home(db, body, exc.message, ok=False, mentions=exc.mentions)


def notify_home(db: Database, body: dict[str, Any], text: str, ok: bool = True,
                mentions: tuple[str, ...] = ()) -> None:
    """Re-publish the clicker's Home with a one-line note at the top."""
    with db.session() as session:
        service.publish_home(session, team_id_of(body), user_id_of(body),
                             service.Notice(text, ok=ok, mentions=mentions))


def register(app: App, runtime: Runtime) -> None:
    db = runtime.db

    @app.event("app_home_opened")
    @guarded
    def on_home_opened(body: dict[str, Any], event: dict[str, Any], client: WebClient) -> None:
        # The Messages tab opens with the same event; only the Home tab is ours.
        if event.get("tab", "home") != "home" or not event.get("user"):
            return
        with db.session() as session:  # what Slack says of their projects' channels, first
            projects = service.projects_taking_part(session, team_id_of(body),
                                                    str(event["user"]))
        learn_privacy(runtime, client, projects)
        with db.session() as session:
            if first_delivery(session, body):  # Slack's retry of it publishes nothing again
                service.home_opened(session, team_id_of(body), str(event["user"]))

    @app.action("home_project")
    @guarded
    def on_project(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        value = str((action.get("selected_option") or {}).get("value") or service.ALL_PROJECTS)
        with refusals_on_home(db, body), db.session() as session:
            service.choose_project(session, team_id_of(body), user_id_of(body), value)
