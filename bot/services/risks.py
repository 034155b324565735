"""The risk register: log, score, re-assess, edit and close risks; list, heat map, daily reviews."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from bot import outbox
from bot.config import ConfigError, load_settings
from bot.errors import Conflict, InvalidInput
from bot.models import JobClaim, Project, Risk, RiskAssessment, RiskStatus, utcnow
from bot.render import renderer
from bot.scheduler import claim_once, sweep
from bot.services import access, home
from bot.services.audit import record_event
from bot.services.records import find_by_id, find_by_ref
from bot.services.refs import number_at_commit, pending, settle

TITLE_LIMIT = 150
TEXT_LIMIT = 3000
NOTE_LIMIT = 1000
RATINGS = range(1, 6)
CATEGORIES = ("data", "model", "infrastructure", "product", "compliance", "other")
TREATMENTS = ("mitigate", "accept", "transfer", "avoid")
# Every status but closed: the risk is still on the register, the heat map and the reviews.
# Closing takes a reason, so it is its own action (`close_risk`), not a status to pick.
OPEN_STATUSES = (RiskStatus.OPEN, RiskStatus.MITIGATING, RiskStatus.MONITORING,
                 RiskStatus.ACCEPTED)
# Highest score of each band, lowest band first.
BANDS = (("low", 4), ("medium", 9), ("high", 15), ("critical", 25))
CRITICAL = "critical"
DEFAULT_RATING = 3
DEFAULT_NOTE = "default score, not assessed yet"
REVIEW_INTERVAL = timedelta(days=14)
DIGEST_TIME = time(9, 0)  # "every morning", in the project's time zone
DIGEST_LIMIT = 20  # risks listed in one digest message; the rest are counted
PAGE_SIZE = 15
HOT_CELLS = 3  # cells of the heat map whose risks are listed under it
HOT_CELL_RISKS = 10


def band_for(score: int) -> str:
    """The band of a score 1-25: 1-4 low, 5-9 medium, 10-15 high, 16-25 critical."""
    if not 1 <= score <= 25:
        raise ValueError(f"a risk score is 1 to 25, not {score}")
    return next(name for name, highest in BANDS if score <= highest)


def rating(value: Any, name: str) -> int:
    """A likelihood or impact from a form or a command: a whole number from 1 to 5."""
    text = str(value).strip() if value is not None else ""
    if not text:
        raise InvalidInput(f"Choose the {name} (1 to 5).", field=name)
    if not re.fullmatch(r"[0-9]{1,3}", text) or int(text) not in RATINGS:
        raise InvalidInput(f"The {name} must be a number from 1 to 5, not `{text[:20]}`.",
                           field=name)
    return int(text)


def zone_of(project: Project | None, default_tz: str) -> ZoneInfo:
    """The project's time zone, else the default (QUORUM_TIMEZONE), else UTC."""
    for name in (project.timezone if project else None, default_tz):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def local_today(project: Project | None, default_tz: str, now: datetime | None = None) -> date:
    return (now or utcnow()).astimezone(zone_of(project, default_tz)).date()


def default_timezone() -> str:
    """QUORUM_TIMEZONE as `bot.config` reads it; UTC when the configuration cannot be read."""
    try:
        return load_settings().timezone
    except ConfigError:
        return "UTC"


def _review_date(value: date | str | None, today: date, current: date | None) -> date | None:
    """A review date from a form: None when not given; never in the past unless unchanged."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value.strip())
        except ValueError:
            raise InvalidInput(f"`{value[:20]}` is not a date: use YYYY-MM-DD.",
                               field="next_review") from None
    # An overdue risk keeps its date when other fields are edited; a new date must be ahead.
    if value < today and value != current:
        raise InvalidInput(f"The review date {value.isoformat()} is in the past; "
                           f"pick today or a later day.", field="next_review")
    return value


def _text(value: str | None, name: str, limit: int) -> str:
    text = (value or "").strip()
    if len(text) > limit:
        raise InvalidInput(f"The {name} is {len(text)} characters long; keep it within {limit}.",
                           field=name)
    return text


@dataclass
class RiskDraft:
    """The fields a person fills in; validated before anything is written.

    `likelihood` and `impact` are only read when a risk is logged (None: the default 3 x 3);
    later changes of the score are re-assessments. `next_review` None means the default.
    """

    title: str
    description: str = ""
    category: str = "other"
    likelihood: int | str | None = None
    impact: int | str | None = None
    owner: str | None = None
    treatment: str = "mitigate"
    mitigation: str = ""
    next_review: date | str | None = None
    status: str = RiskStatus.OPEN

    def validated(self, today: date | None = None, current_review: date | None = None,
                  *, scored: bool = True) -> RiskDraft:
        """Checked and normalized; the review date is only checked when `today` is known."""
        title = " ".join((self.title or "").split())
        if not title:
            raise InvalidInput("The title is empty: say what could go wrong.", field="title")
        if len(title) > TITLE_LIMIT:
            raise InvalidInput(
                f"The title is {len(title)} characters long; keep it within {TITLE_LIMIT}.",
                field="title",
            )
        if self.category not in CATEGORIES:
            raise InvalidInput(f"`{self.category}` is not a category: use "
                               f"{', '.join(CATEGORIES)}.", field="category")
        if self.treatment not in TREATMENTS:
            raise InvalidInput(f"`{self.treatment}` is not a treatment: use "
                               f"{', '.join(TREATMENTS)}.", field="treatment")
        if self.status not in OPEN_STATUSES:
            raise InvalidInput(f"`{self.status}` is not a status you can set: use open, "
                               f"mitigating, monitoring or accepted (close it to close it).",
                               field="status")
        likelihood = impact = None
        if scored and (self.likelihood is not None or self.impact is not None):
            likelihood = rating(self.likelihood, "likelihood")
            impact = rating(self.impact, "impact")
        next_review = self.next_review
        if today is not None:
            next_review = _review_date(next_review, today, current_review)
        elif isinstance(next_review, str) and next_review:
            next_review = _review_date(next_review, date.min, None)
        return replace(
            self, title=title, description=_text(self.description, "description", TEXT_LIMIT),
            mitigation=_text(self.mitigation, "mitigation", TEXT_LIMIT),
            likelihood=likelihood, impact=impact, owner=self.owner or None,
            next_review=next_review or None, status=RiskStatus(self.status),
        )


def as_record(risk: Risk) -> dict[str, Any]:
    """The risk as plain values with its score history: the shape of exports."""
    return {
        **_snapshot(risk),
        "project": risk.project.name if risk.project else None,
        "channel": risk.project.channel_id if risk.project else None,
        "created_by": risk.created_by,
        "created_at": risk.created_at.isoformat(),
        "updated_at": risk.updated_at.isoformat() if risk.updated_at else None,
        "history": [
            {"likelihood": a.likelihood, "impact": a.impact, "score": a.score, "band": a.band,
             "note": a.note, "by": a.assessed_by, "at": a.at.isoformat()}
            for a in risk.assessments
        ],
    }


def _snapshot(risk: Risk) -> dict[str, Any]:
    """What the audit log keeps before and after each change."""
    return {
        "ref": risk.ref,
        "status": risk.status,
        "title": risk.title,
        "description": risk.description,
        "category": risk.category,
        "likelihood": risk.likelihood,
        "impact": risk.impact,
        "score": risk.score,
        "band": risk.band,
        "owner": risk.owner,
        "treatment": risk.treatment,
        "mitigation": risk.mitigation,
        "next_review": risk.next_review.isoformat() if risk.next_review else None,
        "closed_reason": risk.closed_reason,
        "closed_by": risk.closed_by,
        "closed_at": risk.closed_at.isoformat() if risk.closed_at else None,
    }


def card_key(risk: Risk) -> str:
    return f"risk:{risk.id}:card"


def render_card(risk: Risk) -> dict[str, Any]:
    return renderer.message("risk/card", r=risk)


def _score(risk: Risk, likelihood: int, impact: int, actor: str, note: str,
           at: datetime) -> None:
    """Set the risk's score and append the assessment to its history."""
    risk.likelihood, risk.impact = likelihood, impact
    risk.score = likelihood * impact
    risk.band = band_for(risk.score)
    risk.assessments.append(RiskAssessment(
        likelihood=likelihood, impact=impact, score=risk.score, band=risk.band, note=note,
        assessed_by=actor, at=at,
    ))


def _announce_if_critical(session: Session, risk: Risk, actor: str,
                          previous_band: str | None) -> None:
    """A risk that enters the critical band is announced in its channel at once."""
    if risk.band == CRITICAL and previous_band != CRITICAL:
        outbox.post_message(session, risk.team_id, risk.project.channel_id,
                            renderer.message("risk/critical", r=risk, actor=actor,
                                             logged=previous_band is None))


def log_risk(session: Session, project: Project, actor: str, draft: RiskDraft, *,
             default_tz: str = "UTC", now: datetime | None = None) -> Risk:
    """Record a new risk with its first assessment, audit it and queue its card."""
    now = now or utcnow()
    today = local_today(project, default_tz, now)
    draft = draft.validated(today)
    assessed = draft.likelihood is not None
    risk = Risk(
        team_id=project.team_id,
        number=number_at_commit(session, Risk, project.team_id),
        project=project,
        title=draft.title,
        description=draft.description,
        category=draft.category,
        owner=draft.owner,
        treatment=draft.treatment,
        mitigation=draft.mitigation,
        status=RiskStatus.OPEN,
        next_review=draft.next_review or today + REVIEW_INTERVAL,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    _score(risk, int(draft.likelihood or DEFAULT_RATING), int(draft.impact or DEFAULT_RATING),
           actor, "" if assessed else DEFAULT_NOTE, now)
    session.add(risk)
    pending(session, risk)
    session.flush()
    record_event(session, actor=actor, action="risk.created", entity=risk,
                 project_id=project.id, after=_snapshot(risk))
    outbox.post_message(session, project.team_id, project.channel_id, render_card(risk),
                        key=card_key(risk))
    _announce_if_critical(session, risk, actor, None)
    home.queue_home_refresh(session, risk.team_id, [risk.owner])
    settle(session)  # last: the workspace's counter row is held from here to the commit
    return risk


def ensure_not_closed(risk: Risk, doing: str) -> None:
    """A Conflict for a closed risk: it is kept as it was closed."""
    if risk.status == RiskStatus.CLOSED:
        raise Conflict(f"{risk.ref} is closed, so it can no longer be {doing}.")


def edit_risk(session: Session, risk: Risk, actor: str, draft: RiskDraft, *,
              default_tz: str = "UTC", now: datetime | None = None) -> Risk:
    """Change a risk's details (the "Add details" modal); the card updates in place.

    The score is not changed here: that is a re-assessment, which keeps the history.
    """
    ensure_not_closed(risk, "edited")
    today = local_today(risk.project, default_tz, now)
    draft = draft.validated(today, risk.next_review, scored=False)
    before = _snapshot(risk)
    risk.title = draft.title
    risk.description = draft.description
    risk.category = draft.category
    owners = [risk.owner, draft.owner]  # a new owner gains it, the old one loses it
    risk.owner = draft.owner
    risk.treatment = draft.treatment
    risk.mitigation = draft.mitigation
    risk.status = draft.status
    if draft.next_review:
        risk.next_review = draft.next_review  # type: ignore[assignment]
    after = _snapshot(risk)
    if after == before:
        return risk
    session.flush()
    record_event(session, actor=actor, action="risk.edited", entity=risk,
                 project_id=risk.project_id, before=before, after=after)
    outbox.update_message(session, risk.team_id, card_key(risk), render_card(risk))
    home.queue_home_refresh(session, risk.team_id, owners)
    return risk


def next_review_after_assessment(risk: Risk, today: date) -> date:
    """A re-assessment is a review: the next one is in 14 days, or later if already planned."""
    return max(risk.next_review, today + REVIEW_INTERVAL)


def reassess(session: Session, risk: Risk, actor: str, likelihood: Any, impact: Any,
             note: str = "", next_review: date | str | None = None, *,
             default_tz: str = "UTC", now: datetime | None = None) -> Risk:
    """Score the risk again with a note; the history keeps every score."""
    ensure_not_closed(risk, "re-assessed")
    likelihood, impact = rating(likelihood, "likelihood"), rating(impact, "impact")
    note = _text(note, "note", NOTE_LIMIT)
    now = now or utcnow()
    today = local_today(risk.project, default_tz, now)
    review = _review_date(next_review, today, None) or next_review_after_assessment(risk, today)
    before = _snapshot(risk)
    previous_band = risk.band
    _score(risk, likelihood, impact, actor, note, now)
    risk.next_review = review
    session.flush()
    record_event(session, actor=actor, action="risk.reassessed", entity=risk,
                 project_id=risk.project_id, before=before, after=_snapshot(risk))
    outbox.update_message(session, risk.team_id, card_key(risk), render_card(risk))
    outbox.post_message(session, risk.team_id, risk.project.channel_id,
                        renderer.message("risk/reassessed", r=risk, actor=actor, before=before,
                                         note=note),
                        thread_key=card_key(risk))
    _announce_if_critical(session, risk, actor, previous_band)
    home.queue_home_refresh(session, risk.team_id, [risk.owner])
    return risk


def close_risk(session: Session, risk: Risk, actor: str, reason: str,
               now: datetime | None = None) -> Risk:
    """Close the risk, saying why; a closed risk cannot be closed again."""
    if risk.status == RiskStatus.CLOSED:
        raise Conflict(f"{risk.ref} is already closed.")
    reason = _text(reason, "reason", TEXT_LIMIT)
    if not reason:
        raise InvalidInput("Say why the risk is closed.", field="reason")
    before = _snapshot(risk)
    risk.status = RiskStatus.CLOSED
    risk.closed_reason = reason
    risk.closed_by = actor
    risk.closed_at = now or utcnow()
    session.flush()
    record_event(session, actor=actor, action="risk.closed", entity=risk,
                 project_id=risk.project_id, before=before, after=_snapshot(risk))
    outbox.update_message(session, risk.team_id, card_key(risk), render_card(risk))
    outbox.post_message(session, risk.team_id, risk.project.channel_id,
                        renderer.message("risk/closed", r=risk, actor=actor),
                        thread_key=card_key(risk))
    home.queue_home_refresh(session, risk.team_id, [risk.owner])
    return risk


def get_risk(session: Session, team_id: str, ref: str) -> Risk:
    """The risk named by `ref` in the workspace, or a NotFound that says so."""
    return find_by_ref(session, Risk, team_id, ref, "risk")


def get_by_id(session: Session, risk_id: int, team_id: str) -> Risk:
    """The risk behind a button or form, never one of another workspace."""
    return find_by_id(session, Risk, risk_id, "risk", team_id=team_id)


@dataclass(frozen=True)
class Page:
    items: list[Risk]
    page: int
    pages: int
    total: int
    closed: int


def _open_in(project: Project) -> Any:
    return (Risk.project_id == project.id) & Risk.status.in_(OPEN_STATUSES)


def list_risks(session: Session, project: Project, page: int = 1) -> Page:
    """The project's risks that are not closed, highest score first, `PAGE_SIZE` at a time."""
    counts = dict(session.execute(
        select(Risk.status, func.count()).where(Risk.project_id == project.id)
        .group_by(Risk.status)
    ).all())
    closed = counts.pop(RiskStatus.CLOSED, 0)
    total = sum(counts.values())
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, page), pages)
    items = session.scalars(
        select(Risk).where(_open_in(project))
        .order_by(Risk.score.desc(), Risk.next_review, Risk.number)
        .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
    ).all()
    return Page(list(items), page, pages, total, closed)


@dataclass(frozen=True)
class Cell:
    likelihood: int
    impact: int
    count: int
    risks: list[Risk] = field(default_factory=list)

    @property
    def score(self) -> int:
        return self.likelihood * self.impact

    @property
    def band(self) -> str:
        return band_for(self.score)


@dataclass(frozen=True)
class HeatMap:
    """Open risks counted by likelihood x impact; `rows` run from likelihood 5 down to 1."""

    rows: list[list[Cell]]
    hottest: list[Cell]
    total: int

    @property
    def widest(self) -> int:
        """The largest count of a cell (the grid pads every count to its width)."""
        return max(cell.count for row in self.rows for cell in row)


def heat_map(session: Session, project: Project) -> HeatMap:
    """The 5x5 grid of the project's open risks and the risks of its hottest cells."""
    counts = {
        (likelihood, impact): count
        for likelihood, impact, count in session.execute(
            select(Risk.likelihood, Risk.impact, func.count())
            .where(_open_in(project)).group_by(Risk.likelihood, Risk.impact)
        )
    }
    rows = [[Cell(likelihood, impact, counts.get((likelihood, impact), 0))
             for impact in RATINGS] for likelihood in reversed(RATINGS)]
    filled = sorted((cell for row in rows for cell in row if cell.count),
                    key=lambda c: (-c.score, -c.count, -c.likelihood))
    hottest = [
        replace(cell, risks=list(session.scalars(
            select(Risk).where(_open_in(project), Risk.likelihood == cell.likelihood,
                               Risk.impact == cell.impact)
            .order_by(Risk.next_review, Risk.number).limit(HOT_CELL_RISKS)
        )))
        for cell in filled[:HOT_CELLS]
    ]
    return HeatMap(rows, hottest, sum(counts.values()))


def due_reviews(session: Session, project: Project, today: date) -> list[Risk]:
    """Risks of the project that are not closed and whose review date is today or past."""
    return list(session.scalars(
        select(Risk).where(_open_in(project), Risk.next_review <= today)
        .order_by(Risk.next_review, Risk.score.desc(), Risk.number)
    ))


def _send_digest(session: Session, project: Project, today: date) -> None:
    """The channel's digest of due reviews, and a DM to each owner with theirs."""
    risks = due_reviews(session, project, today)
    if not risks:
        return
    outbox.post_message(session, project.team_id, project.channel_id, renderer.message(
        "risk/digest", project=project, risks=risks[:DIGEST_LIMIT], total=len(risks),
        today=today, owner=None))
    by_owner: dict[str, list[Risk]] = defaultdict(list)
    for risk in risks:
        if risk.owner:
            by_owner[risk.owner].append(risk)
    for owner, owned in sorted(by_owner.items()):
        if not access.visible_to_user(project, owner):
            continue  # a private channel's risks reach only its members (docs/access.md)
        # A DM: chat.postMessage to a user ID posts in the app's conversation with them.
        outbox.post_message(session, project.team_id, owner, renderer.message(
            "risk/digest", project=project, risks=owned[:DIGEST_LIMIT], total=len(owned),
            today=today, owner=owner))


@sweep("risk_reviews")
def send_review_digests(session: Session, now: datetime) -> None:
    """Every morning at 09:00 in each project's time zone: the reviews that are due.

    Claimed once per project and local date, so each morning's digest goes out exactly once
    across replicas, and a process that starts later in the day still sends that day's.
    """
    default_tz = default_timezone()
    projects = session.scalars(
        select(Project).where(Project.id.in_(
            select(Risk.project_id).where(Risk.status.in_(OPEN_STATUSES))
        )).order_by(Project.id)
    ).all()
    due: dict[str, tuple[Project, date]] = {}
    for project in projects:
        local = now.astimezone(zone_of(project, default_tz))
        if local.time() >= DIGEST_TIME:
            due[f"risk_reviews:{project.id}:{local.date().isoformat()}"] = (project, local.date())
    if not due:
        return
    # One query for the mornings already handled, rather than an insert per project per tick.
    done = set(session.scalars(select(JobClaim.key).where(JobClaim.key.in_(list(due)))))
    for key, (project, today) in due.items():
        if key not in done and claim_once(session, key):
            _send_digest(session, project, today)


def export_records(session: Session) -> Iterator[dict[str, Any]]:
    """Every risk of every workspace with its score history, in reference order."""
    query = (select(Risk).options(selectinload(Risk.assessments))
             .order_by(Risk.team_id, Risk.number))
    for risk in session.scalars(query.execution_options(yield_per=500)):
        yield as_record(risk)
