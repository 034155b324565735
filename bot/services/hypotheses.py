"""The hypothesis log: propose, start, conclude with evidence, reopen by citing; list and show.

The lifecycle is `proposed → running → supported | refuted | inconclusive`. A conclusion
stands: a concluded hypothesis is reopened only by a new hypothesis that cites it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import outbox
from bot.errors import Conflict, InvalidInput, NotFound
from bot.models import Hypothesis, HypothesisStatus, Project, utcnow
from bot.render import renderer
from bot.services.audit import changed_fields, history, record_event, snapshot
from bot.services.model_versions import clean_model_version
from bot.services.records import find_by_id, find_by_ref, lock
from bot.services.refs import number_at_commit, pending, settle

STATEMENT_LIMIT = 300
TEXT_LIMIT = 3000
TEXT_FIELDS = ("metric", "expected_effect", "notes")
FIELD_NAMES = {"metric": "metric", "expected_effect": "expected effect", "notes": "notes",
               "evidence": "evidence", "experiment_url": "experiment link"}
OUTCOMES = (HypothesisStatus.SUPPORTED, HypothesisStatus.REFUTED, HypothesisStatus.INCONCLUSIVE)
CONCLUDED = frozenset(OUTCOMES)
STATUSES = (HypothesisStatus.PROPOSED, HypothesisStatus.RUNNING, *OUTCOMES)
# What `/hypothesis list [status]` accepts: a status, or `concluded` for all three outcomes.
LIST_FILTERS = (*(status.value for status in STATUSES), "concluded")
OPTION_LIMIT = 100  # Slack's cap on the options of a select menu
# Hypotheses shown per status group, so that a listing stays within Slack's 50 blocks.
LIST_LIMITS = {None: 7, "concluded": 13}
FILTERED_LIST_LIMIT = 40
UNSAFE_URL_CHARACTERS = set('<>|"')


def _clean_text(value: str | None, field: str) -> str:
    value = (value or "").strip()
    if len(value) > TEXT_LIMIT:
        raise InvalidInput(
            f"The {FIELD_NAMES[field]} is {len(value)} characters long; "
            f"keep it within {TEXT_LIMIT}.", field=field)
    return value


def clean_statement(statement: str | None) -> str:
    """The statement on one line; refused when empty or longer than `STATEMENT_LIMIT`."""
    statement = " ".join((statement or "").split())
    if not statement:
        raise InvalidInput("The statement is empty: say what you expect to happen, e.g. "
                           "“tenure features lift churn recall by 3 points”.", field="statement")
    if len(statement) > STATEMENT_LIMIT:
        raise InvalidInput(
            f"The statement is {len(statement)} characters long; keep it within "
            f"{STATEMENT_LIMIT} and put the rest in the notes.", field="statement")
    return statement


def clean_url(url: str | None) -> str:
    """An http(s) URL with a host, or "" for none; anything else is refused."""
    url = (url or "").strip()
    if not url:
        return ""
    problem = InvalidInput(
        f"The experiment link `{url[:100]}` is not an http(s) URL: paste the full address, "
        f"e.g. https://mlflow.example.com/#/experiments/1/runs/0a1b2c.", field="experiment_url")
    if len(url) > TEXT_LIMIT or any(c.isspace() or c in UNSAFE_URL_CHARACTERS for c in url):
        raise problem
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise problem from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise problem
    return url


@dataclass
class HypothesisDraft:
    """The fields a person fills in; validated before anything is written."""

    statement: str
    metric: str = ""
    expected_effect: str = ""
    owner: str | None = None
    experiment_url: str = ""
    notes: str = ""
    # The model version it is about (`v3` or `3`); None leaves them as they are, "" clears.
    model: str | None = None
    version: str | None = None

    def validated(self) -> HypothesisDraft:
        model, version = (None, None) if self.model is None and self.version is None else \
            clean_model_version(self.model, self.version)
        return HypothesisDraft(
            statement=clean_statement(self.statement),
            metric=_clean_text(self.metric, "metric"),
            expected_effect=_clean_text(self.expected_effect, "expected_effect"),
            owner=self.owner or None,
            experiment_url=clean_url(self.experiment_url),
            notes=_clean_text(self.notes, "notes"),
            model=model,
            version=version,
        )


def clean_conclusion(outcome: str | None, evidence: str | None) -> tuple[HypothesisStatus, str]:
    """The outcome and evidence of a conclusion, or an error naming the field at fault."""
    words = ", ".join(OUTCOMES)
    if not outcome:
        raise InvalidInput(f"Choose the outcome: {words}.", field="outcome")
    if outcome.lower() not in OUTCOMES:
        raise InvalidInput(f"`{outcome}` is not an outcome: use {words}.", field="outcome")
    evidence = _clean_text(evidence, "evidence")
    if not evidence:
        raise InvalidInput("Give the evidence that concluded it: the result, and where to see "
                           "it.", field="evidence")
    return HypothesisStatus(outcome.lower()), evidence


def is_concluded(hypothesis: Hypothesis) -> bool:
    return hypothesis.status in CONCLUDED


def as_record(hypothesis: Hypothesis) -> dict[str, Any]:
    """The hypothesis as plain values: the shape of exports and of audit snapshots."""
    return {
        "ref": hypothesis.ref,
        "project": hypothesis.project.name if hypothesis.project else None,
        "channel": hypothesis.project.channel_id if hypothesis.project else None,
        "status": hypothesis.status,
        "statement": hypothesis.statement,
        "metric": hypothesis.metric,
        "expected_effect": hypothesis.expected_effect,
        "owner": hypothesis.owner,
        "experiment_url": hypothesis.experiment_url or None,
        "notes": hypothesis.notes,
        "evidence": hypothesis.evidence,
        "started_at": _iso(hypothesis.started_at),
        "concluded_at": _iso(hypothesis.concluded_at),
        "concluded_by": hypothesis.concluded_by,
        "cites": hypothesis.cites.ref if hypothesis.cites else None,
        "reopened_by": [later.ref for later in hypothesis.reopened_by],
        "decisions": [decision.ref for decision in hypothesis.decisions],
        "model": hypothesis.model,
        "version": hypothesis.version,
        "created_by": hypothesis.created_by,
        "created_at": hypothesis.created_at.isoformat(),
        "updated_at": _iso(hypothesis.updated_at),
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def _snapshot(hypothesis: Hypothesis) -> dict[str, Any]:
    # Decisions record their own links to hypotheses.
    return snapshot(as_record(hypothesis), "decisions")


def card_key(hypothesis: Hypothesis) -> str:
    return f"hypothesis:{hypothesis.id}:card"


def render_card(hypothesis: Hypothesis) -> dict[str, Any]:
    return renderer.message("hypothesis/card", h=hypothesis)


def _update_card(session: Session, hypothesis: Hypothesis) -> None:
    outbox.update_message(session, hypothesis.team_id, card_key(hypothesis),
                          render_card(hypothesis))


def _reply_in_thread(session: Session, hypothesis: Hypothesis, template: str,
                     **context: Any) -> None:
    outbox.post_message(session, hypothesis.team_id, hypothesis.project.channel_id,
                        renderer.message(template, h=hypothesis, **context),
                        thread_key=card_key(hypothesis))


def log_hypothesis(session: Session, project: Project, actor: str, draft: HypothesisDraft,
                   cites: Hypothesis | None = None) -> Hypothesis:
    """Record a proposed hypothesis, audit it and queue its card for the project's channel.

    With `cites`, the new hypothesis reopens that concluded one: its card and thread say so.
    """
    draft = draft.validated()
    before_cited = None
    if cites is not None:
        _check_can_cite(lock(session, cites), project)
        before_cited = _snapshot(cites)  # before the new record joins its `reopened_by`
    hypothesis = Hypothesis(
        team_id=project.team_id,
        number=number_at_commit(session, Hypothesis, project.team_id),
        project=project,
        statement=draft.statement,
        metric=draft.metric,
        expected_effect=draft.expected_effect,
        owner=draft.owner,
        experiment_url=draft.experiment_url,
        notes=draft.notes,
        status=HypothesisStatus.PROPOSED,
        evidence="",
        cites=cites,
        model=draft.model or None,
        version=draft.version or None,
        created_by=actor,
    )
    session.add(hypothesis)
    pending(session, hypothesis)
    session.flush()
    record_event(session, actor=actor, action="hypothesis.created", entity=hypothesis,
                 project_id=project.id, after=_snapshot(hypothesis))
    outbox.post_message(session, project.team_id, project.channel_id, render_card(hypothesis),
                        key=card_key(hypothesis))
    if cites is not None:
        record_event(session, actor=actor, action="hypothesis.reopened", entity=cites,
                     project_id=cites.project_id, before=before_cited, after=_snapshot(cites))
        _update_card(session, cites)
        _reply_in_thread(session, cites, "hypothesis/reopened", new=hypothesis, actor=actor)
    settle(session)  # last: the workspace's counter row is held from here to the commit
    return hypothesis


def _check_can_cite(cited: Hypothesis, project: Project) -> None:
    if cited.team_id != project.team_id or cited.project_id != project.id:
        raise InvalidInput(f"{cited.ref} belongs to another channel; reopen it from there.",
                           field="cites")
    if not is_concluded(cited):
        raise Conflict(f"{cited.ref} is still {cited.status}; only a concluded hypothesis is "
                       f"reopened, and this one can still be worked on as it is.", field="cites")


def check_can_edit(hypothesis: Hypothesis) -> None:
    """A conclusion stands: a concluded hypothesis's details no longer change."""
    if is_concluded(hypothesis):
        raise Conflict(_concluded_reason(hypothesis, "its details can no longer change"))


def edit_hypothesis(session: Session, hypothesis: Hypothesis, actor: str,
                    draft: HypothesisDraft) -> Hypothesis:
    """Change a hypothesis's details (the "Add details" form); the card updates in place."""
    check_can_edit(lock(session, hypothesis))
    draft = draft.validated()
    before = _snapshot(hypothesis)
    for name in ("statement", "metric", "expected_effect", "owner", "experiment_url", "notes"):
        setattr(hypothesis, name, getattr(draft, name))
    if draft.model is not None:
        hypothesis.model, hypothesis.version = draft.model or None, draft.version or None
    session.flush()
    after = _snapshot(hypothesis)
    if after == before:
        return hypothesis
    record_event(session, actor=actor, action="hypothesis.edited", entity=hypothesis,
                 project_id=hypothesis.project_id, before=before, after=after)
    _update_card(session, hypothesis)
    return hypothesis


def start_hypothesis(session: Session, hypothesis: Hypothesis, actor: str) -> Hypothesis:
    """`proposed → running`; anything else is refused with the reason."""
    lock(session, hypothesis)
    if hypothesis.status == HypothesisStatus.RUNNING:
        since = f" since {hypothesis.started_at:%Y-%m-%d}" if hypothesis.started_at else ""
        raise Conflict(f"{hypothesis.ref} is already running{since}.")
    if is_concluded(hypothesis):
        raise Conflict(_concluded_reason(hypothesis, "it cannot be started again"))
    before = _snapshot(hypothesis)
    hypothesis.status = HypothesisStatus.RUNNING
    hypothesis.started_at = utcnow()
    session.flush()
    record_event(session, actor=actor, action="hypothesis.started", entity=hypothesis,
                 project_id=hypothesis.project_id, before=before, after=_snapshot(hypothesis))
    _update_card(session, hypothesis)
    return hypothesis


def check_can_conclude(hypothesis: Hypothesis) -> None:
    """Refuse, with the reason, to conclude a hypothesis that is not running."""
    if is_concluded(hypothesis):
        raise Conflict(_concluded_reason(hypothesis, "it cannot be concluded twice"),
                       field="outcome")
    if hypothesis.status == HypothesisStatus.PROPOSED:
        raise Conflict(f"{hypothesis.ref} has not started: run `/hypothesis start "
                       f"{hypothesis.ref}` when the experiment begins, and conclude it once it "
                       f"has shown something.", field="outcome")


def conclude_hypothesis(session: Session, hypothesis: Hypothesis, actor: str, outcome: str,
                        evidence: str) -> Hypothesis:
    """`running → supported | refuted | inconclusive` with the evidence; announced in the thread."""
    check_can_conclude(lock(session, hypothesis))
    status, evidence = clean_conclusion(outcome, evidence)
    before = _snapshot(hypothesis)
    hypothesis.status = status
    hypothesis.evidence = evidence
    hypothesis.concluded_at = utcnow()
    hypothesis.concluded_by = actor
    session.flush()
    record_event(session, actor=actor, action="hypothesis.concluded", entity=hypothesis,
                 project_id=hypothesis.project_id, before=before, after=_snapshot(hypothesis))
    _update_card(session, hypothesis)
    _reply_in_thread(session, hypothesis, "hypothesis/concluded")
    return hypothesis


def _concluded_reason(hypothesis: Hypothesis, consequence: str) -> str:
    when = f" on {hypothesis.concluded_at:%Y-%m-%d}" if hypothesis.concluded_at else ""
    return (f"{hypothesis.ref} was concluded {hypothesis.status}{when}, so {consequence}. "
            f"To revisit it, log a new hypothesis that cites it (Reopen on its card).")


def get_hypothesis(session: Session, team_id: str, ref: str) -> Hypothesis:
    """The hypothesis named by `ref` in the workspace, or a NotFound that says so."""
    return find_by_ref(session, Hypothesis, team_id, ref, "hypothesis")


def get_by_id(session: Session, hypothesis_id: int, team_id: str) -> Hypothesis:
    """The hypothesis behind a button or form; never one of another workspace."""
    return find_by_id(session, Hypothesis, hypothesis_id, "hypothesis", team_id=team_id)


def get_cited(session: Session, project: Project, ref: str) -> Hypothesis:
    """The hypothesis a new one reopens, chosen in the form: one of the project's concluded."""
    try:
        cited = get_hypothesis(session, project.team_id, ref)
    except NotFound as exc:
        raise InvalidInput(exc.message, field="cites") from None
    _check_can_cite(cited, project)
    return cited


def _project_of_channel(session: Session, team_id: str, channel_id: str) -> Project | None:
    """The channel's project if it has one (a form is opened without creating it)."""
    return session.scalars(
        select(Project).where(Project.team_id == team_id, Project.channel_id == channel_id)
    ).one_or_none()


def _newest(session: Session, project_id: int, *conditions: Any) -> list[Hypothesis]:
    return list(session.scalars(
        select(Hypothesis).where(Hypothesis.project_id == project_id, *conditions)
        .order_by(Hypothesis.created_at.desc(), Hypothesis.id.desc()).limit(OPTION_LIMIT)
    ))


def choices_for_decision(session: Session, team_id: str, channel_id: str,
                         cited: Sequence[Hypothesis] = ()) -> list[Hypothesis]:
    """The options of a decision's "Based on hypotheses": the channel's hypotheses, newest first.

    Those the decision already cites are kept first, so that they survive the cap of 100.
    """
    project = _project_of_channel(session, team_id, channel_id)
    newest = _newest(session, project.id) if project is not None else []
    kept = list({h.id: h for h in [*cited, *newest]}.values())[:OPTION_LIMIT]
    return sorted(kept, key=lambda h: (h.created_at, h.id), reverse=True)


def reopen_choices(session: Session, team_id: str, channel_id: str) -> list[Hypothesis]:
    """The channel's concluded hypotheses, newest first: what a new hypothesis may reopen."""
    project = _project_of_channel(session, team_id, channel_id)
    if project is None:
        return []
    return _newest(session, project.id, Hypothesis.status.in_([s.value for s in OUTCOMES]))


def resolve_for_decision(session: Session, project: Project,
                         refs: Sequence[str]) -> list[Hypothesis]:
    """The hypotheses a decision of `project` is based on; unknown or foreign ones are refused."""
    found: list[Hypothesis] = []
    for ref in dict.fromkeys(refs):
        try:
            hypothesis = get_hypothesis(session, project.team_id, ref)
        except (NotFound, InvalidInput) as exc:
            raise InvalidInput(exc.message, field="hypotheses") from None
        if hypothesis.project_id != project.id:
            raise InvalidInput(f"{hypothesis.ref} belongs to another channel; a decision is "
                               f"based on its own channel's hypotheses.", field="hypotheses")
        found.append(hypothesis)
    return found


@dataclass(frozen=True)
class Group:
    """The hypotheses of one status in a listing, newest first, `total` before the cap."""

    status: str
    items: list[Hypothesis]
    total: int


def list_hypotheses(session: Session, project: Project, status: str | None = None) -> list[Group]:
    """The project's hypotheses grouped by status in lifecycle order, newest first in each."""
    if status is not None and status not in LIST_FILTERS:
        raise InvalidInput(f"`{status}` is not a status: use {', '.join(LIST_FILTERS)}.",
                           field="status")
    if status == "concluded":
        wanted = [s.value for s in OUTCOMES]
    elif status:
        wanted = [status]
    else:
        wanted = [s.value for s in STATUSES]
    limit = LIST_LIMITS.get(status, FILTERED_LIST_LIMIT)
    counts = dict(session.execute(
        select(Hypothesis.status, func.count()).where(Hypothesis.project_id == project.id)
        .group_by(Hypothesis.status)
    ).all())
    groups = []
    for value in wanted:
        items = list(session.scalars(
            select(Hypothesis).where(Hypothesis.project_id == project.id,
                                     Hypothesis.status == value)
            .order_by(Hypothesis.created_at.desc(), Hypothesis.id.desc()).limit(limit)
        ))
        groups.append(Group(value, items, counts.get(value, 0)))
    return groups


def history_records(session: Session, hypothesis: Hypothesis) -> list[dict[str, Any]]:
    """The audit trail of one hypothesis as plain values (for exports)."""
    return [
        {"at": event.at.isoformat(), "by": event.actor, "action": event.action.split(".")[-1],
         "changed": changed_fields(event.before, event.after) if event.before else []}
        for event in history(session, hypothesis)
    ]

