"""Rituals: scheduled standups, retrospectives, design reviews and demos in project channels.

- `schedules`: when each kind is held, skipped days, people away;
- `occurrences`: the sweep that posts each occurrence exactly once, reminds and closes;
- `standups`: questions, answers from replies, DMs and the form, the summary;
- `zones`: each person's own time zone (`each` standups);
- `retros`: items, votes, action items and the digest;
- `reviews`: design reviews and demos (agenda, reminder, outcome);
- `export`: `quorum export rituals`.

The names below are the package's interface for handlers, the CLI and other services.
"""

from __future__ import annotations

from bot.services.rituals import occurrences, retros, reviews, standups, zones
from bot.services.rituals.base import (
    TEXT_LIMIT,
    card_key,
    ensure_open,
    get_occurrence,
    zone_name,
)
from bot.services.rituals.export import export_records
from bot.services.rituals.occurrences import close, run_now, run_rituals
from bot.services.rituals.retros import (
    ItemDraft,
    add_item,
    complete_item,
    find_action,
    item_record,
    open_actions_of,
    retro_digest,
    vote,
)
from bot.services.rituals.reviews import add_agenda_item, record_outcome
from bot.services.rituals.schedules import (
    check_options,
    check_schedule,
    participants,
    people,
    set_away,
    set_schedule,
    skip_date,
    split_when,
    status,
    turn_off,
)
from bot.services.rituals.standups import (
    add_update,
    parse_answers,
    parse_reply,
    questions_of,
    record_reply,
    set_questions,
    thread_occurrence,
)

__all__ = [
    "TEXT_LIMIT",
    "ItemDraft",
    "add_agenda_item",
    "add_item",
    "add_update",
    "card_key",
    "check_options",
    "check_schedule",
    "close",
    "complete_item",
    "ensure_open",
    "export_records",
    "find_action",
    "get_occurrence",
    "item_record",
    "occurrences",
    "open_actions_of",
    "parse_answers",
    "parse_reply",
    "participants",
    "people",
    "questions_of",
    "record_outcome",
    "record_reply",
    "retro_digest",
    "retros",
    "reviews",
    "run_now",
    "run_rituals",
    "set_away",
    "set_questions",
    "set_schedule",
    "skip_date",
    "split_when",
    "standups",
    "status",
    "thread_occurrence",
    "turn_off",
    "vote",
    "zone_name",
    "zones",
]
