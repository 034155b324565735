"""`quorum portal --dev-user NAME`: the portal on loopback, signed in as a `quorum shell` person,
with no Slack to ask (every project of the workspace is shown, private ones too)."""

from __future__ import annotations

from sqlalchemy import select
from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route

from bot.models import Project
from bot.portal.auth import Person
from bot.portal.routes import create_portal_app
from bot.runtime import Runtime
from bot.shell.slack import TEAM_ID, Directory


def dev_person(runtime: Runtime, name: str) -> Person:
    """The shell's person `name` (`alice` → `UALICE`), in the database's one workspace (the
    shell's when there are several or none)."""
    with runtime.db.session() as session:
        teams = list(session.scalars(select(Project.team_id).distinct().limit(2)))
    team = teams[0] if len(teams) == 1 else TEAM_ID
    return Person(Directory().user_id(name), team, name)


def dev_app(runtime: Runtime, name: str) -> tuple[Starlette, Person]:
    person = dev_person(runtime, name)
    app = Starlette(routes=[
        Route("/", lambda _: RedirectResponse("/portal/", 307)),
        Mount("/portal", app=create_portal_app(runtime, dev_user=person)),
    ])
    return app, person
