"""The portal's pages (Starlette), mounted at `/portal` by `bot.web`, or served alone by
`quorum portal --dev-user NAME`.

Every page needs a session (Sign in with Slack, `bot.portal.auth`); without one it redirects to
the sign-in page. Database work and rendering run on a worker thread, one session per request.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from slack_sdk import WebClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from bot.errors import InvalidInput, NotFound
from bot.models import Decision, DecisionStatus, Gate, Hypothesis, Incident, Project, Risk
from bot.portal import auth, charts, queries
from bot.portal.access import Directory, Viewer
from bot.portal.auth import Person, SignInError
from bot.render import TEMPLATE_DIR
from bot.runtime import Runtime
from bot.services import decisions as decision_service
from bot.services import hypotheses as hypothesis_service
from bot.services import incident_stats
from bot.services import incidents as incident_service
from bot.services import risks as risk_service
from bot.services import rituals as ritual_service
from bot.services import trace as trace_service
from bot.services.audit import changed_fields, history
from bot.services.gate_state import role_states
from bot.services.model_bindings import check_model_name
from bot.services.model_versions import normalize_version
from bot.services.records import find_by_ref

CSS_PATH = Path(TEMPLATE_DIR) / "portal" / "portal.css"
SECURITY_HEADERS = {
    # No script at all, no framing, nothing fetched from elsewhere.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self' https://slack.com; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def safe_href(url: Any) -> str | None:
    """A link target from user text: only http(s) URLs; anything else (`javascript:`) is
    shown as text, never linked."""
    text = str(url or "").strip()
    if text.lower().startswith(("https://", "http://")) and not any(c in text for c in "\n\r\t "):
        return text
    return None


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _day(value: Any) -> str:
    return value.strftime("%Y-%m-%d") if value else ""


def _minutes(delta: Any) -> str:
    if delta is None:
        return "—"
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters.update(when=_when, day=_day, minutes=_minutes, safe_href=safe_href,
                       urlpart=lambda value: quote(str(value), safe=""))
    env.globals.update(changed_fields=changed_fields)
    return env


ENV = environment()


class Answer(Exception):
    """Raised to answer at once with a response (a 404, a redirect)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def render(template: str, http_status: int = 200, **context: Any) -> HTMLResponse:
    html = ENV.get_template(f"portal/{template}.html.j2").render(**context)
    return HTMLResponse(html, status_code=http_status, headers=SECURITY_HEADERS)


def not_found(viewer: Viewer | None = None) -> Answer:
    return Answer(render("not_found", http_status=404, viewer=viewer, csrf=""))


class Portal:
    """The pages, bound to a runtime; `dev_user` signs everyone in as that person."""

    def __init__(self, runtime: Runtime, dev_user: Person | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.dev_user = dev_user
        self.directory = None if dev_user else Directory(self._client)

    def _client(self) -> WebClient:
        return WebClient(token=self.settings.slack_bot_token, base_url=self.settings.slack_api_url,
                         timeout=5)

    # ------------------------------------------------------------------------- plumbing

    def viewer(self, request: Request) -> Viewer | None:
        if self.dev_user is not None:
            return Viewer(self.dev_user, None, dev=True)
        person = Person.from_session(request.session)
        return Viewer(person, self.directory) if person else None

    def page(self, build: Callable[..., Response]) -> Callable[[Request], Any]:
        """An endpoint: signed-in viewer, a database session, on a worker thread."""
        async def endpoint(request: Request) -> Response:
            viewer = self.viewer(request)
            if viewer is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse("/portal/login?" + urlencode({"next": target}), 303)
            csrf = request.session.setdefault("csrf", secrets.token_urlsafe(16)) \
                if self.dev_user is None else ""

            def run() -> Response:
                try:
                    with self.runtime.db.session() as session:
                        return build(request, session, viewer, csrf)
                except Answer as answer:
                    return answer.response
                except (NotFound, InvalidInput):
                    return not_found(viewer).response

            return await run_in_threadpool(run)

        return endpoint

    def project(self, session: Session, viewer: Viewer, request: Request) -> Project:
        try:
            project_id = int(request.path_params["project_id"])
        except (KeyError, ValueError):
            raise not_found(viewer) from None
        project = session.get(Project, project_id)
        if project is None or not viewer.can_see(project):
            raise not_found(viewer)
        return project

    def record(self, session: Session, viewer: Viewer, model: Any, ref: str, noun: str) -> Any:
        record = find_by_ref(session, model, viewer.person.team_id, ref, noun)
        if not viewer.can_see(record.project):
            raise not_found(viewer)
        return record

    @staticmethod
    def cursors(request: Request) -> tuple[int | None, int | None]:
        return (queries.read_cursor(request.query_params.get("before")),
                queries.read_cursor(request.query_params.get("after")))

    # ------------------------------------------------------------------------- sign-in

    async def login(self, request: Request) -> Response:
        if self.dev_user is not None or self.viewer(request) is not None:
            return RedirectResponse(auth.safe_next(request.query_params.get("next")), 303)
        return render("login", viewer=None, csrf="", error=None,
                      next=auth.safe_next(request.query_params.get("next")))

    async def login_start(self, request: Request) -> Response:
        if self.dev_user is not None:
            return RedirectResponse("/portal/", 303)
        url = auth.begin(self.settings, request.session, request.query_params.get("next", ""))
        return RedirectResponse(url, 303)

    async def callback(self, request: Request) -> Response:
        if self.dev_user is not None:
            return RedirectResponse("/portal/", 303)
        params = request.query_params

        def finish() -> tuple[Person, str]:
            workspace = self.directory.workspace() if self.directory else ""
            return auth.finish(self.settings, request.session, params.get("code"),
                               params.get("state"), workspace, params.get("error"))

        try:
            person, target = await run_in_threadpool(finish)
        except SignInError as exc:
            return render("login", http_status=400, viewer=None, csrf="", error=str(exc),
                          next="/portal/")
        request.session.clear()  # a fresh session for the person: no fixation
        request.session.update(person.as_session())
        request.session["csrf"] = secrets.token_urlsafe(16)
        return RedirectResponse(target, 303)

    async def logout(self, request: Request) -> Response:
        # One urlencoded field: read here rather than adding python-multipart for it.
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        given = (form.get("csrf") or [""])[0]
        expected = request.session.get("csrf", "")
        if not expected or not hmac.compare_digest(given.encode(), str(expected).encode()):
            return PlainTextResponse("Sign-out refused: the form is stale; reload the page.",
                                     status_code=400)
        request.session.clear()
        return RedirectResponse("/portal/login", 303)

    async def stylesheet(self, _: Request) -> Response:
        return Response(CSS_PATH.read_bytes(), media_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600"})

    # ------------------------------------------------------------------------- pages

    def projects(self, request: Request, session: Session, viewer: Viewer, csrf: str) -> Response:
        after = request.query_params.get("after") or None
        summaries, more = queries.projects_page(session, viewer.person.team_id, viewer.can_see,
                                                after)
        return render("projects", viewer=viewer, csrf=csrf, summaries=summaries, more=more)

    def project_home(self, request: Request, session: Session, viewer: Viewer,
                     csrf: str) -> Response:
        project = self.project(session, viewer, request)
        counts = queries.project_counts(session, project)
        recent = queries.decisions_page(session, project, None, None, None).items[:5]
        models = queries.models_of(session, project.team_id, [project.id], limit=50)
        return render("project", viewer=viewer, csrf=csrf, project=project, counts=counts,
                      recent=recent, models=models, tab="overview")

    def decisions(self, request: Request, session: Session, viewer: Viewer,
                  csrf: str) -> Response:
        project = self.project(session, viewer, request)
        words = (request.query_params.get("q") or "").strip()[:200]
        status = queries.search_filter_ok(request.query_params.get("status"),
                                          tuple(s.value for s in DecisionStatus))
        error, results, page = None, None, None
        if words:
            try:
                results = decision_service.search_decisions(session, project, words)
            except InvalidInput as exc:
                error = exc.message
            if results is not None and status:
                results = [d for d in results if d.status == status]
        else:
            page = queries.decisions_page(session, project, status, *self.cursors(request))
        return render("decisions", viewer=viewer, csrf=csrf, project=project, tab="decisions",
                      words=words, status=status, statuses=list(DecisionStatus), error=error,
                      results=results, page=page, limit=decision_service.SEARCH_LIMIT)

    def decision(self, request: Request, session: Session, viewer: Viewer,
                 csrf: str) -> Response:
        d = self.record(session, viewer, Decision, request.path_params["ref"], "decision")
        return render("decision", viewer=viewer, csrf=csrf, project=d.project, d=d,
                      history=history(session, d), tab="decisions")

    def hypotheses(self, request: Request, session: Session, viewer: Viewer,
                   csrf: str) -> Response:
        project = self.project(session, viewer, request)
        groups = hypothesis_service.list_hypotheses(session, project)
        return render("hypotheses", viewer=viewer, csrf=csrf, project=project, groups=groups,
                      tab="hypotheses")

    def hypothesis(self, request: Request, session: Session, viewer: Viewer,
                   csrf: str) -> Response:
        h = self.record(session, viewer, Hypothesis, request.path_params["ref"], "hypothesis")
        return render("hypothesis", viewer=viewer, csrf=csrf, project=h.project, h=h,
                      history=history(session, h), tab="hypotheses")

    def gates(self, request: Request, session: Session, viewer: Viewer, csrf: str) -> Response:
        project = self.project(session, viewer, request)
        page = queries.gates_page(session, project, *self.cursors(request))
        states = {gate.id: role_states(gate) for gate in page.items}
        return render("gates", viewer=viewer, csrf=csrf, project=project, page=page,
                      states=states, tab="gates")

    def gate(self, request: Request, session: Session, viewer: Viewer, csrf: str) -> Response:
        g = self.record(session, viewer, Gate, request.path_params["ref"], "gate")
        return render("gate", viewer=viewer, csrf=csrf, project=g.project, g=g,
                      states=role_states(g), history=history(session, g),
                      tab="gates")

    def risks(self, request: Request, session: Session, viewer: Viewer, csrf: str) -> Response:
        project = self.project(session, viewer, request)
        status = queries.search_filter_ok(request.query_params.get("status"),
                                          ("open", "mitigating", "monitoring", "closed"))
        page = queries.risks_page(session, project, status, *self.cursors(request))
        heat = risk_service.heat_map(session, project)
        return render("risks", viewer=viewer, csrf=csrf, project=project, page=page, heat=heat,
                      status=status, tab="risks")

    def risk(self, request: Request, session: Session, viewer: Viewer, csrf: str) -> Response:
        r = self.record(session, viewer, Risk, request.path_params["ref"], "risk")
        scored = queries.assessments(session, r)
        chart = charts.score_line([(_day(a.at), a.score) for a in scored])
        return render("risk", viewer=viewer, csrf=csrf, project=r.project, r=r, scored=scored,
                      chart=chart, history=history(session, r), tab="risks")

    def rituals(self, request: Request, session: Session, viewer: Viewer,
                csrf: str) -> Response:
        project = self.project(session, viewer, request)
        kinds = [(kind, ritual_service.status(session, project, kind,
                                              default_tz=self.settings.timezone),
                  queries.recent_occurrences(session, project, kind))
                 for kind in ("standup", "retro")]
        items = queries.open_action_items(session, project)
        return render("rituals", viewer=viewer, csrf=csrf, project=project, kinds=kinds,
                      items=items, tab="rituals")

    def incidents(self, request: Request, session: Session, viewer: Viewer,
                  csrf: str) -> Response:
        project = self.project(session, viewer, request)
        page = queries.incidents_page(session, project, *self.cursors(request))
        months = queries.incident_months(session, project)
        return render("incidents", viewer=viewer, csrf=csrf, project=project, page=page,
                      months=months, chart=charts.month_bars(months),
                      overview=incident_stats.overview(session, project), tab="incidents",
                      mtta=incident_service.time_to_acknowledge,
                      ttr=incident_service.duration)

    def incident(self, request: Request, session: Session, viewer: Viewer,
                 csrf: str) -> Response:
        i = self.record(session, viewer, Incident, request.path_params["ref"], "incident")
        return render("incident", viewer=viewer, csrf=csrf, project=i.project, i=i,
                      tta=incident_service.time_to_acknowledge(i),
                      ttr=incident_service.duration(i), tab="incidents")

    def audit(self, request: Request, session: Session, viewer: Viewer, csrf: str) -> Response:
        project = self.project(session, viewer, request)
        page = queries.audit_page(session, project, *self.cursors(request))
        return render("audit", viewer=viewer, csrf=csrf, project=project, page=page,
                      tab="audit")

    def _visible_ids(self, session: Session, viewer: Viewer) -> list[int]:
        projects = session.scalars(select(Project).where(
            Project.team_id == viewer.person.team_id).limit(2000))
        return [p.id for p in projects if viewer.can_see(p)]

    def models(self, request: Request, session: Session, viewer: Viewer, csrf: str) -> Response:
        models = queries.models_of(session, viewer.person.team_id,
                                   self._visible_ids(session, viewer))
        return render("models", viewer=viewer, csrf=csrf, models=models, project=None)

    def _model_binding_visible(self, session: Session, viewer: Viewer, name: str) -> Any:
        binding = queries.binding_of(session, viewer.person.team_id, name)
        if binding is not None and not viewer.can_see(binding.project):
            raise not_found(viewer)
        return binding

    def model(self, request: Request, session: Session, viewer: Viewer, csrf: str) -> Response:
        name = request.path_params["name"]
        binding = self._model_binding_visible(session, viewer, name)
        model_history = queries.model_history(session, viewer.person.team_id, name,
                                              viewer.can_see)
        if binding is None and not model_history.versions:
            raise not_found(viewer)
        return render("model", viewer=viewer, csrf=csrf, name=name, binding=binding,
                      limit=queries.MODEL_HISTORY_LIMIT,
                      history=model_history, project=binding.project if binding else None)

    def version(self, request: Request, session: Session, viewer: Viewer,
                csrf: str) -> Response:
        name, version = request.path_params["name"], request.path_params["version"]
        binding = self._model_binding_visible(session, viewer, name)
        # The decisions naming the model are looked for in its project only (its binding's;
        # unbound, the projects of the version's gates, promotions and incidents): a page
        # cannot read a million-decision workspace.
        normalized = normalize_version(version) or version
        within = {binding.project_id} if binding is not None else queries.projects_of_version(
            session, viewer.person.team_id, name, normalized)
        projects = [p for p in session.scalars(select(Project).where(Project.id.in_(within)))
                    if viewer.can_see(p)]
        trace = trace_service.trace_in(session, projects, check_model_name(name), normalized)

        def shown(records: list[Any]) -> list[Any]:
            return [r for r in records if r.project is None or viewer.can_see(r.project)]

        decisions = shown(trace.decisions)
        gates, promotions, incidents = shown(trace.gates), shown(trace.promotions), \
            shown(trace.incidents)
        hypotheses = shown(trace.hypotheses)
        if binding is None and not (decisions or gates or promotions or incidents):
            raise not_found(viewer)
        links = {f"D{d.id}": {f"H{h.id}" for h in d.hypotheses} for d in decisions
                 if d.hypotheses}
        diagram = charts.lineage([
            ("Hypotheses", [(f"H{h.id}", h.ref, h.status, f"/portal/hypotheses/{h.ref}")
                            for h in hypotheses]),
            ("Decisions", [(f"D{d.id}", d.ref, d.status, f"/portal/decisions/{d.ref}")
                           for d in decisions]),
            ("Gates", [(f"G{g.id}", g.ref, f"{g.milestone} · {g.status}",
                        f"/portal/gates/{g.ref}") for g in gates]),
            ("Promotions", [(f"P{p.id}", p.ref, f"→ {p.to_stage or p.kind}", None)
                            for p in promotions]),
            ("Incidents", [(f"I{i.id}", i.ref, f"{i.severity} · {i.status}",
                            f"/portal/incidents/{i.ref}") for i in incidents]),
        ], links)
        return render("version", viewer=viewer, csrf=csrf, name=name, version=trace.version,
                      hypotheses=hypotheses, decisions=decisions, gates=gates,
                      promotions=promotions, incidents=incidents, diagram=diagram,
                      states={g.id: role_states(g) for g in gates},
                      project=binding.project if binding else None)


def create_portal_app(runtime: Runtime, dev_user: Person | None = None) -> Starlette:
    """The portal as an ASGI app to mount at `/portal` (`Mount("/portal", app)`)."""
    portal = Portal(runtime, dev_user)
    pages = [
        ("/portal/", portal.projects),
        ("/portal/projects/{project_id:int}", portal.project_home),
        ("/portal/projects/{project_id:int}/decisions", portal.decisions),
        ("/portal/projects/{project_id:int}/hypotheses", portal.hypotheses),
        ("/portal/projects/{project_id:int}/gates", portal.gates),
        ("/portal/projects/{project_id:int}/risks", portal.risks),
        ("/portal/projects/{project_id:int}/rituals", portal.rituals),
        ("/portal/projects/{project_id:int}/incidents", portal.incidents),
        ("/portal/projects/{project_id:int}/audit", portal.audit),
        ("/portal/decisions/{ref}", portal.decision),
        ("/portal/hypotheses/{ref}", portal.hypothesis),
        ("/portal/gates/{ref}", portal.gate),
        ("/portal/risks/{ref}", portal.risk),
        ("/portal/incidents/{ref}", portal.incident),
        ("/portal/models", portal.models),
        # Model names may hold `/` (MLflow's `team/churn`): the version page is matched first.
        ("/portal/models/{name:path}/versions/{version}", portal.version),
        ("/portal/models/{name:path}", portal.model),
    ]
    routes = [Route(path.removeprefix("/portal"), portal.page(build), methods=["GET"])
              for path, build in pages]
    routes += [
        Route("/login", portal.login, methods=["GET"]),
        Route("/login/slack", portal.login_start, methods=["GET"]),
        Route(auth.CALLBACK_PATH.removeprefix("/portal"), portal.callback, methods=["GET"]),
        Route("/logout", portal.logout, methods=["POST"]),
        Route("/static/portal.css", portal.stylesheet, methods=["GET"]),
    ]
    public = runtime.settings.public_url or ""
    secret = auth.session_key(runtime.settings) if dev_user is None else secrets.token_hex(32)
    return Starlette(routes=routes, middleware=[Middleware(
        SessionMiddleware, secret_key=secret, session_cookie=auth.COOKIE_NAME,
        max_age=auth.SESSION_SECONDS, path="/portal", same_site="lax",
        https_only=public.startswith("https://"))])
