"""Standups: the questions, answers read from thread replies, DMs or the form, and the summary.

An update is one person's answers to one standup. It is made of their top-level replies in the
standup's thread (or their DM answers in `each` mode, or the form): a later reply extends it and
an edit replaces that reply's part. A reply that is clearly conversation — it starts with a
mention (it answers someone), or it answers none of the questions (a question, "sure, looking
now") — is not an update. Answers are read from labels (`Yesterday:`, `y:`, `t:`, `b:`,
`blockers:` or a custom question's words or number), on one line or several, separated by
newlines, `;` or `.`; the raw text is kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import outbox
from bot.errors import InvalidInput, NotFound
from bot.models import (
    OccurrenceStatus,
    Project,
    RitualKind,
    RitualOccurrence,
    RitualUpdate,
    SlackMessage,
    utcnow,
)
from bot.render import renderer
from bot.services import access
from bot.services.audit import record_event
from bot.services.records import lock
from bot.services.rituals import occurrences as cards
from bot.services.rituals.base import (
    TEXT_LIMIT,
    card_key,
    clean,
    ensure_open,
    schedule_of,
)
from bot.services.rituals.schedules import away_on, schedule_snapshot

MAX_QUESTIONS = 6
QUESTION_LIMIT = 150
NO_BLOCKER = re.compile(r"^(none|no|nope|n/?a|nothing|nil|-|—)\W*$", re.I)
BLOCKER_WORDS = re.compile(
    r"\b(blocks?|blocked|blocking|blockers?|impediments?|stuck|in your way)\b", re.I)
MENTION_FIRST = re.compile(r"^\s*(<@[UW][A-Z0-9]+(\|[^>]*)?>|@\w)")
# Common abbreviations of the default questions' labels.
DEFAULT_LABELS = {
    "yesterday": ("yesterday", "yday", "y", "done", "did"),
    "today": ("today", "t", "td", "plan", "plans", "doing"),
    "blockers": ("blockers", "blocker", "blocked", "blocking", "b", "impediments"),
}


@dataclass(frozen=True)
class Question:
    key: str
    text: str
    required: bool = False

    @property
    def blocker(self) -> bool:
        """Answers to it are blockers: listed first in the summary, and "none" means none."""
        return self.key == "blockers" or bool(BLOCKER_WORDS.search(self.text))

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "text": self.text, "required": self.required}


DEFAULT_QUESTIONS = (
    Question("yesterday", "Yesterday — what did you do?"),
    Question("today", "Today — what will you do?", required=True),
    Question("blockers", "Blockers — is anything in your way?"),
)


def questions_of(source: RitualOccurrence | Any) -> list[Question]:
    """The questions of an occurrence or schedule (the default three when it has none)."""
    stored = getattr(source, "questions", None)
    if not stored:
        return list(DEFAULT_QUESTIONS)
    return [Question(str(q["key"]), str(q["text"]), bool(q.get("required"))) for q in stored]


def labels_of(questions: Sequence[Question]) -> dict[str, str]:
    """Every label a person may type before an answer, lowercased, to its question's key."""
    labels: dict[str, str] = {}
    for number, question in enumerate(questions, 1):
        for label in DEFAULT_LABELS.get(question.key, ()):
            labels.setdefault(label, question.key)
        words = re.sub(r"[?:.!]+$", "", question.text.strip()).lower()
        labels.setdefault(words, question.key)
        head = re.split(r"\s+[\u2014\u2013-]\s+|[?:,]", words)[0].strip()  # "yesterday — what…"
        if head:
            labels.setdefault(head, question.key)
        labels.setdefault(str(number), question.key)
        labels.setdefault(f"q{number}", question.key)
    return labels


def _label_pattern(questions: Sequence[Question]) -> re.Pattern[str]:
    labels = sorted(labels_of(questions), key=len, reverse=True)
    alternatives = "|".join(re.escape(label).replace(r"\ ", r"\s+") for label in labels)
    # A label starts the text or follows a separator (newline, `;` or `.`), maybe after a
    # bullet, and is followed by `:` or a dash.
    return re.compile(rf"(?:^|(?<=[\n;.]))[ \t\-•*>]*\**({alternatives})\**\s*"
                      rf"(?::|\s[-\u2013\u2014]\s?)", re.I)


def parse_answers(text: str, questions: Sequence[Question]) -> dict[str, str]:
    """The answers in a message, by question key; {} when it answers none."""
    labels = labels_of(questions)
    found = list(_label_pattern(questions).finditer(text))
    answers: dict[str, list[str]] = {}
    for index, match in enumerate(found):
        end = found[index + 1].start() if index + 1 < len(found) else len(text)
        value = text[match.end():end].strip().lstrip("*").strip().rstrip(";").strip()
        if value.endswith(".") and not value.endswith(".."):
            value = value[:-1].rstrip()
        key = labels[" ".join(match[1].lower().split())]
        if value:
            answers.setdefault(key, []).append(value)
    if not found and len(questions) == 1 and text.strip() and not text.strip().endswith("?"):
        answers[questions[0].key] = [text.strip()]  # one question: the reply is its answer
    result = {key: "\n".join(values) for key, values in answers.items()}
    for question in questions:
        if question.blocker and question.key in result and NO_BLOCKER.match(result[question.key]):
            result[question.key] = ""
    return result


def parse_reply(text: str) -> tuple[str, str, str]:
    """Yesterday, today and blockers from a reply to the default questions."""
    answers = parse_answers(text, DEFAULT_QUESTIONS)
    return answers.get("yesterday", ""), answers.get("today", ""), answers.get("blockers", "")


def is_conversation(text: str, questions: Sequence[Question]) -> bool:
    """A reply that answers someone, or answers none of the standup's questions."""
    return bool(MENTION_FIRST.match(text)) or not parse_answers(text, questions)


def set_questions(session: Session, project: Project, actor: str,
                  rows: Sequence[tuple[str, bool]]) -> list[Question]:
    """The standup's own questions (1 to 6, each required or optional), from the form."""
    schedule = schedule_of(session, project, RitualKind.STANDUP)
    if schedule is None:
        raise NotFound("Schedule the standup first (`/standup schedule weekdays 09:30`); its "
                       "questions belong to the schedule.")
    questions: list[Question] = []
    for number, (text, required) in enumerate(rows, 1):
        words = " ".join((text or "").split())
        if not words:
            continue
        if len(words) > QUESTION_LIMIT:
            raise InvalidInput(f"Question {number} is {len(words)} characters long; keep it "
                               f"within {QUESTION_LIMIT}.", field=f"question_{number}")
        questions.append(Question(f"q{len(questions) + 1}", words, required))
    if not questions:
        raise InvalidInput("Ask at least one question.", field="question_1")
    if len(questions) > MAX_QUESTIONS:
        raise InvalidInput(f"Ask at most {MAX_QUESTIONS} questions.", field="question_1")
    if not any(q.required for q in questions):
        raise InvalidInput("Make at least one question required, so an update says something.",
                           field="required_1")
    before = schedule_snapshot(schedule)
    schedule.questions = [q.as_dict() for q in questions]
    session.flush()
    record_event(session, actor=actor, action="standup.questions_set", entity=schedule,
                 project_id=project.id, before=before, after=schedule_snapshot(schedule))
    return questions


# --- updates ---------------------------------------------------------------------------------


def thread_occurrence(session: Session, channel: str, thread_ts: str) -> RitualOccurrence | None:
    """The ritual whose card is the parent of a thread, if any."""
    key = session.scalars(select(SlackMessage.key).where(
        SlackMessage.channel == channel, SlackMessage.ts == thread_ts,
        SlackMessage.key.like("ritual:%:card"))).first()
    if key is None:
        return None
    return session.get(RitualOccurrence, int(key.split(":")[1]))


def update_of(session: Session, occurrence: RitualOccurrence, user: str) -> RitualUpdate | None:
    return session.scalars(select(RitualUpdate).where(
        RitualUpdate.occurrence_id == occurrence.id, RitualUpdate.user_id == user)
        .order_by(RitualUpdate.id).limit(1)).one_or_none()


def _set_answers(update: RitualUpdate, answers: dict[str, str]) -> None:
    update.answers = dict(answers)
    update.yesterday = answers.get("yesterday", "")
    update.today = answers.get("today", "")
    update.blockers = answers.get("blockers", "")


def _merged(parts: dict[str, str], questions: Sequence[Question]) -> dict[str, str]:
    """Each part's answers in the order written: a later answer to a question replaces it."""
    answers: dict[str, str] = {}
    for ts in sorted(parts, key=lambda ts: tuple(int(x) for x in ts.split(".") if x.isdigit())):
        answers.update(parse_answers(parts[ts], questions))
    return answers


def record_message(session: Session, occurrence: RitualOccurrence, user: str, text: str,
                   ts: str, source: str = "thread", *, edited: bool = False
                   ) -> RitualUpdate | None:
    """A person's message to an open standup (a thread reply, an edit of one, a DM answer).

    Returns the update it made or changed; None when it is conversation, a repeat (Slack
    retries) or the standup is closed.
    """
    if occurrence.kind != RitualKind.STANDUP:
        return None
    lock(session, occurrence)  # one update per person, even with two replies at once
    if occurrence.status != OccurrenceStatus.OPEN:
        return None
    questions = questions_of(occurrence)
    text = text.strip()[:TEXT_LIMIT * 3]
    update = update_of(session, occurrence, user)
    parts = dict(update.parts or {}) if update else {}
    if parts.get(ts) == text:
        return None  # the same message again: a retried event
    if is_conversation(text, questions):
        if not (edited and ts in parts):
            return None
        del parts[ts]  # edited into conversation: that message no longer answers
    else:
        parts[ts] = text
    if update is None:
        update = RitualUpdate(occurrence_id=occurrence.id, user_id=user, source=source,
                              message_ts=ts, created_at=utcnow())
        session.add(update)
    update.parts = parts
    update.text = "\n".join(parts[k] for k in sorted(parts))
    _set_answers(update, _merged(parts, questions) if parts else {})
    update.updated_at = utcnow()
    session.flush()
    session.refresh(occurrence, ["updates"])
    _audit_update(session, occurrence, update, user, edited or len(parts) > 1)
    if source == "dm":
        outbox.post_message(session, occurrence.team_id, occurrence.project.channel_id,
                            renderer.message("ritual/update", u=update,
                                             questions=questions_of(occurrence)),
                            thread_key=card_key(occurrence))
    cards.refresh_card(session, occurrence)
    return update


def record_reply(session: Session, channel: str, thread_ts: str, user: str, text: str,
                 ts: str, *, edited: bool = False) -> RitualUpdate | None:
    """A top-level reply in a standup's thread, or an edit of one (`message_changed`)."""
    occurrence = thread_occurrence(session, channel, thread_ts)
    if occurrence is None:
        return None
    return record_message(session, occurrence, user, text, ts, edited=edited)


def forget_message(session: Session, channel: str, thread_ts: str, user: str,
                   ts: str) -> RitualUpdate | None:
    """A deleted reply no longer answers; an update left with no part is removed."""
    occurrence = thread_occurrence(session, channel, thread_ts)
    if occurrence is None or occurrence.kind != RitualKind.STANDUP:
        return None
    lock(session, occurrence)
    update = update_of(session, occurrence, user)
    if occurrence.status != OccurrenceStatus.OPEN or update is None or \
            ts not in (update.parts or {}):
        return None
    parts = {k: v for k, v in update.parts.items() if k != ts}
    if not parts and update.source != "modal":
        session.delete(update)
        session.flush()
        session.refresh(occurrence, ["updates"])
        record_event(session, actor=user, action="standup.update_removed", entity=occurrence,
                     project_id=occurrence.project_id, after={"user": user})
        cards.refresh_card(session, occurrence)
        return None
    update.parts = parts
    update.text = "\n".join(parts[k] for k in sorted(parts))
    _set_answers(update, _merged(parts, questions_of(occurrence)))
    session.flush()
    _audit_update(session, occurrence, update, user, True)
    cards.refresh_card(session, occurrence)
    return update


def _audit_update(session: Session, occurrence: RitualOccurrence, update: RitualUpdate,
                  actor: str, changed: bool = False) -> None:
    record_event(session, actor=actor,
                 action="standup.update_changed" if changed else "standup.update_added",
                 entity=occurrence, project_id=occurrence.project_id,
                 after={"user": update.user_id, "source": update.source,
                        "answers": update.answers})


def validate_form(occurrence: RitualOccurrence, values: dict[str, Any]) -> dict[str, str]:
    """The form's answers by question key; InvalidInput on the field that is wrong."""
    questions = questions_of(occurrence)
    answers = {q.key: clean(values.get(q.key), q.key) for q in questions}
    for question in questions:
        if question.required and not answers[question.key]:
            raise InvalidInput("Answer this one; it is required." if question.key != "today"
                               else "Say at least what you plan to do today.",
                               field=question.key)
        if question.blocker and NO_BLOCKER.match(answers[question.key]):
            answers[question.key] = ""
    return answers


def add_update(session: Session, occurrence: RitualOccurrence, user: str,
               values: dict[str, Any]) -> RitualUpdate:
    """The "Add my update" form: it sets this person's answers (submitting again edits them)."""
    answers = validate_form(occurrence, values)
    ensure_open(occurrence)
    lock(session, occurrence)
    ensure_open(occurrence)
    update = update_of(session, occurrence, user)
    if update is None:
        update = RitualUpdate(occurrence_id=occurrence.id, user_id=user, source="modal",
                              message_ts=f"modal:{user}", created_at=utcnow(), parts={})
        session.add(update)
    else:
        update.source = "modal"
    _set_answers(update, answers)
    update.updated_at = utcnow()
    session.flush()
    session.refresh(occurrence, ["updates"])
    _audit_update(session, occurrence, update, user)
    outbox.post_message(session, occurrence.team_id, occurrence.project.channel_id,
                        renderer.message("ritual/update", u=update,
                                         questions=questions_of(occurrence)),
                        thread_key=card_key(occurrence))
    cards.refresh_card(session, occurrence)
    return update


# --- card, reminder, summary -----------------------------------------------------------------


def answered(occurrence: RitualOccurrence) -> list[str]:
    """Who has an update with at least one answer (people, not messages)."""
    return list(dict.fromkeys(u.user_id for u in occurrence.updates
                              if any((u.answers or {}).values()) or u.source == "modal"))


def card_context(session: Session, occurrence: RitualOccurrence) -> dict[str, Any]:
    return {"count": len(answered(occurrence)), "questions": questions_of(occurrence)}


def remind(session: Session, occurrence: RitualOccurrence) -> None:
    """A DM to each expected person who has not answered yet."""
    done = set(answered(occurrence))
    away = set(away_on(session, occurrence.project_id, occurrence.local_date))
    for user in occurrence.participants or []:
        if user in done or user in away or not access.visible_to_user(occurrence.project, user):
            continue  # a private channel's ritual reaches only its members (docs/access.md)
        # A DM: chat.postMessage to a user ID posts in the app's conversation with them.
        outbox.post_message(session, occurrence.team_id, user, renderer.message(
            "ritual/reminder", o=occurrence, project=occurrence.project, user=user))


@dataclass
class Answer:
    question: Question
    text: str


@dataclass
class PersonUpdate:
    user: str
    answers: list[Answer]
    blockers: list[str]


@dataclass
class Summary:
    """What a standup's closing message lists: people, not messages."""

    updates: list[PersonUpdate] = field(default_factory=list)
    blockers: list[tuple[str, str]] = field(default_factory=list)  # (user, blocker)
    missing: list[str] = field(default_factory=list)
    away: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, session: Session, occurrence: RitualOccurrence) -> Summary:
        questions = questions_of(occurrence)
        done = answered(occurrence)
        by_user = {u.user_id: u for u in occurrence.updates}
        away = [user for user in away_on(session, occurrence.project_id, occurrence.local_date)
                if user not in done]
        summary = cls(away=away, missing=[user for user in occurrence.participants or []
                                          if user not in done and user not in away])
        for user in done:
            answers = by_user[user].answers or {}
            person = PersonUpdate(user, [Answer(q, answers[q.key]) for q in questions
                                         if answers.get(q.key) and not q.blocker],
                                  [answers[q.key] for q in questions
                                   if q.blocker and answers.get(q.key)])
            summary.updates.append(person)
            summary.blockers += [(user, text) for text in person.blockers]
        return summary


def summary_message(session: Session, occurrence: RitualOccurrence) -> dict[str, Any]:
    return renderer.message("ritual/standup_summary", o=occurrence,
                            s=Summary.of(session, occurrence))
