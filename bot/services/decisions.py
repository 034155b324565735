"""Decision records (ADR/MADR shape): log, edit, supersede, list, search."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, column, func, literal_column, or_, select, table, text
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from bot import outbox
from bot.errors import Conflict, InvalidInput
from bot.models import Decision, DecisionStatus, Project
from bot.render import renderer
from bot.services.audit import record_event, snapshot
from bot.services.hypotheses import resolve_for_decision
from bot.services.records import find_by_id, find_by_ref, lock
from bot.services.refs import next_number

TITLE_LIMIT = 150
TEXT_LIMIT = 3000
TEXT_FIELDS = ("context", "options", "decision", "consequences")
SETTABLE_STATUSES = (DecisionStatus.PROPOSED, DecisionStatus.ACCEPTED, DecisionStatus.REJECTED)
PAGE_SIZE = 10


@dataclass
class DecisionDraft:
    """The fields a person fills in; validated before anything is written."""

    title: str
    context: str = ""
    options: str = ""
    decision: str = ""
    consequences: str = ""
    status: str = DecisionStatus.PROPOSED
    deciders: Sequence[str] = ()
    source_permalink: str | None = None
    # References (`H-3`) of the hypotheses it is based on; None leaves them as they are.
    hypotheses: Sequence[str] | None = None

    def validated(self) -> DecisionDraft:
        title = " ".join((self.title or "").split())
        if not title:
            raise InvalidInput("The title is empty: say what was decided.", field="title")
        if len(title) > TITLE_LIMIT:
            raise InvalidInput(
                f"The title is {len(title)} characters long; keep it within {TITLE_LIMIT}.",
                field="title",
            )
        values = {}
        for name in TEXT_FIELDS:
            value = (getattr(self, name) or "").strip()
            if len(value) > TEXT_LIMIT:
                raise InvalidInput(
                    f"The {name} is {len(value)} characters long; keep it within {TEXT_LIMIT}.",
                    field=name,
                )
            values[name] = value
        if self.status not in SETTABLE_STATUSES:
            raise InvalidInput(
                f"`{self.status}` is not a status: use proposed, accepted or rejected.",
                field="status",
            )
        deciders = list(dict.fromkeys(d for d in self.deciders if d))
        hypotheses = None if self.hypotheses is None else list(dict.fromkeys(self.hypotheses))
        return DecisionDraft(title=title, status=DecisionStatus(self.status), deciders=deciders,
                             source_permalink=self.source_permalink, hypotheses=hypotheses,
                             **values)


def as_record(decision: Decision) -> dict[str, Any]:
    """The decision as plain values: the shape of exports and of audit snapshots."""
    return {
        "ref": decision.ref,
        "project": decision.project.name if decision.project else None,
        "channel": decision.project.channel_id if decision.project else None,
        "status": decision.status,
        "title": decision.title,
        "context": decision.context,
        "options": decision.options,
        "decision": decision.decision,
        "consequences": decision.consequences,
        "deciders": list(decision.deciders or []),
        "source_permalink": decision.source_permalink,
        "supersedes": decision.supersedes.ref if decision.supersedes else None,
        "superseded_by": decision.superseded_by.ref if decision.superseded_by else None,
        "hypotheses": [hypothesis.ref for hypothesis in decision.hypotheses],
        "created_by": decision.created_by,
        "created_at": decision.created_at.isoformat(),
        "updated_at": decision.updated_at.isoformat() if decision.updated_at else None,
    }


def _snapshot(decision: Decision) -> dict[str, Any]:
    return snapshot(as_record(decision))


def card_key(decision: Decision) -> str:
    return f"decision:{decision.id}:card"


def render_card(decision: Decision) -> dict[str, Any]:
    return renderer.message("decision/card", d=decision)


def log_decision(session: Session, project: Project, actor: str, draft: DecisionDraft,
                 supersedes: Decision | None = None) -> Decision:
    """Record a new decision, audit it and queue its card for the project's channel."""
    draft = draft.validated()
    hypotheses = resolve_for_decision(session, project, draft.hypotheses or [])
    decision = Decision(
        team_id=project.team_id,
        number=next_number(session, project.team_id, Decision.ref_prefix),
        project=project,
        title=draft.title,
        context=draft.context,
        options=draft.options,
        decision=draft.decision,
        consequences=draft.consequences,
        status=draft.status,
        deciders=list(draft.deciders),
        source_permalink=draft.source_permalink,
        supersedes=supersedes,
        hypotheses=hypotheses,
        created_by=actor,
    )
    session.add(decision)
    session.flush()
    # Nothing can supersede a record that did not exist a moment ago; saying so spares a query.
    set_committed_value(decision, "superseded_by", None)
    record_event(session, actor=actor, action="decision.created", entity=decision,
                 project_id=project.id, after=_snapshot(decision))
    outbox.post_message(session, project.team_id, project.channel_id, render_card(decision),
                        key=card_key(decision))
    return decision


def edit_decision(session: Session, decision: Decision, actor: str,
                  draft: DecisionDraft) -> Decision:
    """Change a decision's fields (the "Add details" modal); the card updates in place."""
    lock(session, decision)
    if decision.status == DecisionStatus.SUPERSEDED:
        raise Conflict(f"{decision.ref} was superseded by {decision.superseded_by.ref}; "
                       f"it can no longer be edited." if decision.superseded_by else
                       f"{decision.ref} was superseded; it can no longer be edited.")
    draft = draft.validated()
    hypotheses = None if draft.hypotheses is None else \
        resolve_for_decision(session, decision.project, draft.hypotheses)
    before = _snapshot(decision)
    decision.title = draft.title
    for name in TEXT_FIELDS:
        setattr(decision, name, getattr(draft, name))
    decision.status = draft.status
    decision.deciders = list(draft.deciders)
    if draft.source_permalink:
        decision.source_permalink = draft.source_permalink
    if hypotheses is not None:
        decision.hypotheses = hypotheses
    session.flush()
    after = _snapshot(decision)
    if after == before:
        return decision
    record_event(session, actor=actor, action="decision.edited", entity=decision,
                 project_id=decision.project_id, before=before, after=after)
    outbox.update_message(session, decision.team_id, card_key(decision), render_card(decision))
    return decision


def supersede(session: Session, old: Decision, actor: str, title: str,
              project: Project | None = None) -> Decision:
    """Replace `old` with a new proposed decision; both records stay and link to each other."""
    lock(session, old)
    if old.status == DecisionStatus.SUPERSEDED:
        by = f" by {old.superseded_by.ref}" if old.superseded_by else ""
        raise Conflict(f"{old.ref} is already superseded{by}; supersede that one instead.")
    draft = DecisionDraft(title=title).validated()
    before = _snapshot(old)
    new = log_decision(session, project or old.project, actor, draft, supersedes=old)
    old.status = DecisionStatus.SUPERSEDED
    session.flush()
    session.refresh(old, ["superseded_by"])
    record_event(session, actor=actor, action="decision.superseded", entity=old,
                 project_id=old.project_id, before=before, after=_snapshot(old))
    outbox.update_message(session, old.team_id, card_key(old), render_card(old))
    return new


def get_decision(session: Session, team_id: str, ref: str) -> Decision:
    """The decision named by `ref` in the workspace, or a NotFound that says so."""
    return find_by_ref(session, Decision, team_id, ref, "decision")


def get_by_id(session: Session, decision_id: int, team_id: str) -> Decision:
    """The decision behind a button or form, never one of another workspace."""
    return find_by_id(session, Decision, decision_id, "decision", team_id=team_id)


@dataclass(frozen=True)
class Page:
    items: list[Decision]
    page: int
    pages: int
    total: int


def list_decisions(session: Session, project: Project, page: int = 1) -> Page:
    """The project's decisions, newest first, `PAGE_SIZE` at a time."""
    where = Decision.project_id == project.id
    total = session.scalar(select(func.count()).select_from(Decision).where(where)) or 0
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, page), pages)
    items = session.scalars(
        select(Decision).where(where).order_by(Decision.created_at.desc(), Decision.id.desc())
        .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
    ).all()
    return Page(list(items), page, pages, total)


SEARCH_LIMIT = 20
# Each word is one more condition on every row; a dozen finds anything worth finding.
SEARCH_WORDS_LIMIT = 12


def search_decisions(session: Session, project: Project, words: str) -> list[Decision]:
    """Decisions of the project matching every word, newest first.

    A word matches through the database's full-text index (PostgreSQL tsvector, SQLite FTS5)
    with prefix matching, or as a case-insensitive substring so that partial words are found
    too. Each word must match one way or the other: a word the index drops (an English stop
    word on PostgreSQL) is still required as a substring.
    """
    terms = [term.lower() for term in re.findall(r"\w+", words)]
    if not terms:
        raise InvalidInput("Give at least one word to search for.", field="words")
    if len(terms) > SEARCH_WORDS_LIMIT:
        raise InvalidInput(f"Search for at most {SEARCH_WORDS_LIMIT} words, not {len(terms)}.",
                           field="words")
    dialect = session.get_bind().dialect.name
    haystack = func.lower(
        Decision.title + " " + Decision.context + " " + Decision.decision + " "
        + Decision.consequences
    )
    if dialect == "postgresql":
        document = func.to_tsvector(
            text("'english'"),
            func.coalesce(Decision.title, "") + " " + func.coalesce(Decision.context, "") + " "
            + func.coalesce(Decision.decision, "") + " "
            + func.coalesce(Decision.consequences, ""),
        )

        def indexed(term: str) -> Any:
            return document.op("@@")(func.to_tsquery(text("'english'"), f"{term}:*"))
    else:
        fts = table("decisions_fts", column("rowid"))

        def indexed(term: str) -> Any:
            return Decision.id.in_(select(fts.c.rowid).where(
                literal_column("decisions_fts").op("MATCH")(f'"{term}"*')))
    every_word = and_(*(or_(indexed(term), haystack.contains(term, autoescape=True))
                        for term in terms))
    return list(
        session.scalars(
            select(Decision)
            .where(Decision.project_id == project.id, every_word)
            .order_by(Decision.created_at.desc(), Decision.id.desc())
            .limit(SEARCH_LIMIT)
        )
    )
