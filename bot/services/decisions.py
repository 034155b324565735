"""Decision records (ADR/MADR shape): log, edit, supersede, list, search."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    String,
    and_,
    column,
    func,
    literal_column,
    or_,
    select,
    table,
    text,
    tuple_,
)
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value

from bot import outbox
from bot.errors import Conflict, InvalidInput
from bot.models import Decision, DecisionStatus, Hypothesis, Project, decision_hypotheses
from bot.render import renderer
from bot.services.audit import record_event, snapshot
from bot.services.hypotheses import resolve_for_decision
from bot.services.model_versions import clean_model_version
from bot.services.records import find_by_id, find_by_ref, lock
from bot.services.refs import number_at_commit, pending, settle

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
    # The model version it is about (`v3` or `3`); None leaves them as they are, "" clears.
    model: str | None = None
    version: str | None = None

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
        model, version = (None, None) if self.model is None and self.version is None else \
            clean_model_version(self.model, self.version)
        return DecisionDraft(title=title, status=DecisionStatus(self.status), deciders=deciders,
                             source_permalink=self.source_permalink, hypotheses=hypotheses,
                             model=model, version=version, **values)


def as_record(decision: Decision) -> dict[str, Any]:
    """The decision as plain values: the shape of exports (see `export_records`) and of audit
    snapshots."""
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
        "model": decision.model,
        "version": decision.version,
        "created_by": decision.created_by,
        "created_at": decision.created_at.isoformat(),
        "updated_at": decision.updated_at.isoformat() if decision.updated_at else None,
    }


def export_records(session: Session) -> Iterator[dict[str, Any]]:
    """Every decision of every workspace in reference order, each in `as_record`'s shape.

    Read as plain rows a chunk at a time with the linked references joined in, and the cited
    hypotheses of each chunk in one query: building a million ORM objects (and their links)
    took most of an export's minutes.
    """
    earlier, later = aliased(Decision), aliased(Decision)
    query = (
        select(Decision.id, Project.name, Project.channel_id, Decision.number, Decision.status,
               Decision.title, Decision.context, Decision.options, Decision.decision,
               Decision.consequences, Decision.deciders, Decision.source_permalink,
               earlier.number.label("supersedes"), later.number.label("superseded_by"),
               Decision.model, Decision.version,
               Decision.created_by, Decision.created_at, Decision.updated_at)
        .join(Project, Project.id == Decision.project_id)
        .outerjoin(earlier, earlier.id == Decision.supersedes_id)
        .outerjoin(later, later.supersedes_id == Decision.id)
        .order_by(Decision.team_id, Decision.number)
    )
    ref = Decision.ref_prefix + "-{}"
    for chunk in session.execute(query.execution_options(yield_per=2000)).partitions():
        cited: dict[int, list[str]] = defaultdict(list)
        for decision_id, number in session.execute(
                select(decision_hypotheses.c.decision_id, Hypothesis.number)
                .join(Hypothesis, Hypothesis.id == decision_hypotheses.c.hypothesis_id)
                .where(decision_hypotheses.c.decision_id.in_([row.id for row in chunk]))
                .order_by(Hypothesis.number)):
            cited[decision_id].append(f"{Hypothesis.ref_prefix}-{number}")
        for row in chunk:
            yield {
                "ref": ref.format(row.number),
                "project": row.name,
                "channel": row.channel_id,
                "status": row.status,
                "title": row.title,
                "context": row.context,
                "options": row.options,
                "decision": row.decision,
                "consequences": row.consequences,
                "deciders": list(row.deciders or []),
                "source_permalink": row.source_permalink,
                "supersedes": ref.format(row.supersedes) if row.supersedes else None,
                "superseded_by": ref.format(row.superseded_by) if row.superseded_by else None,
                "hypotheses": cited.get(row.id, []),
                "model": row.model,
                "version": row.version,
                "created_by": row.created_by,
                "created_at": row.created_at.isoformat(),
                "updated_at": row.updated_at.isoformat() if row.updated_at else None,
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
    decision = _new_decision(session, project, actor, draft, supersedes)
    settle(session)  # last: the workspace's counter row is held from here to the commit
    return decision


def _new_decision(session: Session, project: Project, actor: str, draft: DecisionDraft,
                  supersedes: Decision | None) -> Decision:
    draft = draft.validated()
    hypotheses = resolve_for_decision(session, project, draft.hypotheses or [])
    decision = Decision(
        team_id=project.team_id,
        number=number_at_commit(session, Decision, project.team_id),
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
        model=draft.model or None,
        version=draft.version or None,
        created_by=actor,
    )
    session.add(decision)
    pending(session, decision)
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
    if draft.model is not None:
        decision.model, decision.version = draft.model or None, draft.version or None
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
    # The successor is about the same model version as the decision it replaces.
    draft = DecisionDraft(title=title, model=old.model, version=old.version).validated()
    before = _snapshot(old)
    new = _new_decision(session, project or old.project, actor, draft, supersedes=old)
    old.status = DecisionStatus.SUPERSEDED
    session.flush()
    session.refresh(old, ["superseded_by"])
    record_event(session, actor=actor, action="decision.superseded", entity=old,
                 project_id=old.project_id, before=before, after=_snapshot(old))
    outbox.update_message(session, old.team_id, card_key(old), render_card(old))
    settle(session)
    return new


def get_decision(session: Session, team_id: str, ref: str) -> Decision:
    """The decision named by `ref` in the workspace, or a NotFound that says so."""
    return find_by_ref(session, Decision, team_id, ref, "decision")


def get_by_id(session: Session, decision_id: int, team_id: str) -> Decision:
    """The decision behind a button or form, never one of another workspace."""
    return find_by_id(session, Decision, decision_id, "decision", team_id=team_id)


@dataclass(frozen=True)
class Page:
    """One page of a project's decisions; `newer` and `older` are the cursors of the buttons."""

    items: list[Decision]
    page: int
    pages: int
    total: int
    newer: str | None = None
    older: str | None = None


def _cursor(page: int, direction: str, decision: Decision) -> str:
    return f"{page}:{direction}:{decision.id}"


def list_decisions(session: Session, project: Project, cursor: str | None = None) -> Page:
    """The project's decisions, newest first, `PAGE_SIZE` at a time.

    Pages are read by keyset, not OFFSET: a cursor (`"3:older:1234"`, "page 3: the decisions
    after decision 1234") seeks the (project, created_at, id) index, so page 5,000 costs what
    page 1 does, and a decision logged meanwhile never shifts a page by one. A cursor that
    cannot be read (an old button, a decision of another project) shows the first page.
    """
    where = Decision.project_id == project.id
    newest_first = (Decision.created_at.desc(), Decision.id.desc())
    total = session.scalar(select(func.count()).select_from(Decision).where(where)) or 0
    pages = max(1, -(-total // PAGE_SIZE))
    page, direction, anchor = _read_cursor(session, project, cursor)
    items: list[Decision] = []
    if anchor is not None:
        key, anchor_key = tuple_(Decision.created_at, Decision.id), \
            tuple_(anchor.created_at, anchor.id)
        if direction == "older":
            items = list(session.scalars(select(Decision).where(where, key < anchor_key)
                                         .order_by(*newest_first).limit(PAGE_SIZE)))
        else:
            items = list(session.scalars(
                select(Decision).where(where, key > anchor_key)
                .order_by(Decision.created_at, Decision.id).limit(PAGE_SIZE)))[::-1]
    if not items or page <= 1 or (direction == "newer" and len(items) < PAGE_SIZE):
        page = 1  # the first page, or a "Newer" click that reached it
        items = list(session.scalars(select(Decision).where(where).order_by(*newest_first)
                                     .limit(PAGE_SIZE)))
    page = min(page, pages)
    newer = _cursor(page - 1, "newer", items[0]) if page > 1 else None
    older = _cursor(page + 1, "older", items[-1]) \
        if len(items) == PAGE_SIZE and page < pages else None
    return Page(items, page, pages, total, newer, older)


def _read_cursor(session: Session, project: Project,
                 cursor: str | None) -> tuple[int, str, Decision | None]:
    """The page number, the direction and the anchor decision a cursor names, if it names one
    of this project's decisions."""
    match = re.fullmatch(r"(\d{1,9}):(older|newer):(\d{1,18})", cursor or "")
    if not match:
        return 1, "older", None
    anchor = session.get(Decision, int(match[3]))
    if anchor is None or anchor.project_id != project.id:
        return 1, "older", None
    return int(match[1]), match[2], anchor


SEARCH_LIMIT = 20
# The text a word is looked for in. On PostgreSQL migration 0012's trigram index is built on
# this very expression (it is used only by a query that repeats it, hence SQL, not bind values).
SEARCHED_TEXT = ("lower(coalesce(decisions.title, '') || ' ' || coalesce(decisions.context, '') "
                 "|| ' ' || coalesce(decisions.decision, '') || ' ' "
                 "|| coalesce(decisions.consequences, ''))")
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
    haystack = literal_column(SEARCHED_TEXT, String)
    if dialect == "postgresql":
        def indexed(term: str) -> Any:
            # The stored `search_vector` column (migration 0010), not a to_tsvector() per row.
            return literal_column("decisions.search_vector").op("@@")(
                func.to_tsquery(text("'english'"), f"{term}:*"))
    else:
        fts = table("decisions_fts", column("rowid"))

        def indexed(term: str) -> Any:
            return Decision.id.in_(select(fts.c.rowid).where(
                literal_column("decisions_fts").op("MATCH")(f'"{term}"*')))
    # Read newest first along the (project, created_at, id) index and stop at SEARCH_LIMIT
    # matches. Each word's substring test comes first: for ASCII words it finds what the
    # full-text match would, so SQLite only gathers the FTS5 matches when rows fail it.
    every_word = and_(*(or_(haystack.contains(term, autoescape=True), indexed(term))
                        for term in terms))
    return list(
        session.scalars(
            select(Decision)
            .where(Decision.project_id == project.id, every_word)
            .order_by(Decision.created_at.desc(), Decision.id.desc())
            .limit(SEARCH_LIMIT)
        )
    )
