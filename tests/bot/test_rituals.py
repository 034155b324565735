"""Ritual times and replies: `<when>` parsing, time zones, occurrences, reply fields."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from bot.errors import InvalidInput
from bot.services.ritual_times import occurrences, parse_when, resolve_zone
from bot.services.rituals import parse_reply, split_when
from bot.services.rituals.schedules import WhenText


@pytest.mark.parametrize(("text", "cron", "every"), [
    ("weekdays 09:30", "30 9 * * mon-fri", 1),
    ("mon,thu 10:00", "0 10 * * mon,thu", 1),
    ("Fridays 15:00", "0 15 * * fri", 1),
    ("every 2 weeks on friday 15:00", "0 15 * * fri", 2),
    ("every other week on tue 3pm", "0 15 * * tue", 2),
    ("daily 8am", "0 8 * * *", 1),
    ('"30 9 * * 1-5"', "30 9 * * 1-5", 1),  # cron is kept as typed: cronsim reads it
    ("0 9 * * 0", "0 9 * * 0", 1),
    ("0 9 * * MON-FRI", "0 9 * * mon-fri", 1),
])
def test_when_is_read_as_cron_with_day_names(text: str, cron: str, every: int) -> None:
    when = parse_when(text)
    assert (when.cron, when.every_weeks) == (cron, every)


@pytest.mark.parametrize("text", ["", "sometimes", "weekdays 25:00", "funday 09:00",
                                  "every 2 weeks 15:00", "0 9 * *", "0 9 * * 9",
                                  "every 12 weeks on mon 9:00"])
def test_unreadable_when_shows_examples(text: str) -> None:
    with pytest.raises(InvalidInput) as error:
        parse_when(text)
    assert "weekdays 09:30" in error.value.message


def test_time_zones_are_canonical_and_unknown_ones_get_suggestions() -> None:
    assert resolve_zone("europe/paris") == "Europe/Paris"
    with pytest.raises(InvalidInput) as error:
        resolve_zone("Europe/Pariss")
    assert "Europe/Paris" in error.value.message
    assert split_when('"30 9 * * 1-5" tz Asia/Tokyo') == WhenText('"30 9 * * 1-5"', "Asia/Tokyo")
    assert split_when("weekdays 09:30") == WhenText("weekdays 09:30")
    assert split_when("weekdays 09:30 tz Asia/Tokyo each") == \
        WhenText("weekdays 09:30", "Asia/Tokyo", each=True)
    assert split_when("fridays 15:00 votes 5") == WhenText("fridays 15:00", votes=5)


def test_fortnightly_parity_is_anchored_on_the_creation_week() -> None:
    found = list(occurrences("0 15 * * fri", "UTC", 2, date(2026, 11, 16),
                             datetime(2026, 11, 16, tzinfo=UTC),
                             datetime(2026, 12, 31, tzinfo=UTC)))
    assert [d.date() for d in found] == [date(2026, 11, 20), date(2026, 12, 4),
                                         date(2026, 12, 18)]


def test_reply_fields() -> None:
    assert parse_reply("Yesterday: a\nToday: b\nBlockers: none") == ("a", "b", "")
    assert parse_reply("- today: ship it\n- blocked: waiting on data") == \
        ("", "ship it", "waiting on data")
    # No label: conversation, not an update (see test_standup_answers for the rules).
    assert parse_reply("just shipping the model") == ("", "", "")
