"""Cron expressions are read as cron reads them: Quorum's occurrences agree with cronsim's own
iteration over a year, across daylight-saving changes in three time zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from bot.errors import InvalidInput
from bot.services.ritual_times import occurrences, parse_when

START = datetime(2026, 1, 1, tzinfo=UTC)
END = START + timedelta(days=366)
# Southern and northern hemispheres, and a zone whose change is at 02:00 local on a Sunday.
ZONES = ("Europe/Paris", "America/New_York", "Australia/Sydney")
CORPUS = [
    "30 9 * * 1-5", "0 9 * * 1-5/2", "0 9 * * */2", "0 9 1 * 1", "0 9 15 * 5", "0 9 1,15 * *",
    "0 2 * * *", "30 2 * * *", "0 3 * * 0", "30 1 * * *", "45 23 * * *", "0 0 * * *",
    "0 9 L * *", "0 9 * * 5L", "0 9 * * 5#2", "0 9 * * 1#1", "0 9 LW * *", "0 17 * * fri",
    "0 9 * * mon,wed,fri", "0 9 * * MON-FRI", "0 9 * jan-mar *", "0 9 * */3 mon",
    "0 9 1-7 * 1", "0 10 * * 0-2", "0 10 * * 7", "0 8-18/2 * * 1-5", "15 14 1 * *",
    "0 22 * * 1-5", "0 9 28 2 *", "0 9 31 * *", "0 12 */10 * *", "0 6 * * sat,sun",
    "0 9 * 6-8 1-5", "30 8 2-30/7 * *", "0 9 * * 2#3", "5 4 * * sun", "0 0,12 1 */2 *",
    "0 9 13 * 5", "20 3 * 3,10 0", "0 2 25-31 3 0", "0 1 * 10,11 0", "0 23 * * 6",
    "0 9,17 * * 1-5", "0 7 1 1 *",
]


def library(cron: str, zone: str) -> list[datetime]:
    found = []
    for fire in CronSim(cron, START.astimezone(ZoneInfo(zone))):
        if fire.astimezone(UTC) > END:
            return found
        found.append(fire.astimezone(UTC))
    return found


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("cron", CORPUS)
def test_occurrences_agree_with_cronsim_over_a_year(cron: str, zone: str) -> None:
    when = parse_when(f'"{cron}"')
    ours = list(occurrences(when.cron, zone, 1, date(2025, 12, 29), START, END))
    assert ours == library(cron, zone)
    assert ours, cron  # every expression of the corpus fires within the year


def test_the_corpus_is_large_and_crosses_daylight_saving_changes() -> None:
    assert len(set(CORPUS)) >= 40
    changes = {zone: [d for d in (START + timedelta(hours=h) for h in range(0, 366 * 24, 1))
                      if d.astimezone(ZoneInfo(zone)).utcoffset() !=
                      (d + timedelta(hours=1)).astimezone(ZoneInfo(zone)).utcoffset()]
               for zone in ZONES}
    assert all(len(found) == 2 for found in changes.values())


def days(cron: str, zone: str = "UTC", count: int = 8) -> list[str]:
    when = parse_when(f'"{cron}"')
    found = occurrences(when.cron, zone, 1, date(2025, 12, 29), START, END)
    return [d.astimezone(ZoneInfo(zone)).strftime("%a %d") for _, d in zip(range(count), found,
                                                                            strict=False)]


def test_the_reported_bugs() -> None:
    # The step of a day-of-week range is kept: Monday, Wednesday, Friday.
    assert {d.split()[0] for d in days("0 9 * * 1-5/2", count=12)} == {"Mon", "Wed", "Fri"}
    # `*/2` in the day-of-week field: Sunday (0), Tuesday, Thursday, Saturday.
    assert {d.split()[0] for d in days("0 9 * * */2", count=12)} == {"Sun", "Tue", "Thu", "Sat"}
    # Day of month and day of week both restricted: either one (1 January 2026 is a Thursday).
    assert days("0 9 1 * 1", count=3) == ["Thu 01", "Mon 05", "Mon 12"]
    assert "Sun 01" in days("0 9 1 * 1", count=40)  # 1 February 2026, a Sunday


def test_names_last_and_nth_weekday() -> None:
    assert days("0 9 L * *", count=2) == ["Sat 31", "Sat 28"]
    assert days("0 9 * * 5#2", count=2) == ["Fri 09", "Fri 13"]
    assert days("0 9 * * MON-FRI", count=2) == ["Thu 01", "Fri 02"]


@pytest.mark.parametrize("text", ["0 9 * * 8", "61 9 * * *", "0 9 * * funday", "0 9 32 * *"])
def test_bad_cron_is_refused_with_examples(text: str) -> None:
    with pytest.raises(InvalidInput) as error:
        parse_when(f'"{text}"')
    assert "weekdays 09:30" in error.value.message


def test_a_date_that_never_comes_says_so() -> None:
    with pytest.raises(InvalidInput) as error:
        parse_when('"0 9 31 2 *"')
    assert "never happens" in error.value.message
