"""When rituals happen: `<when>` (cron or plain words) to a schedule, time zones, occurrences.

Occurrences are computed by APScheduler's `CronTrigger` on the *wall clock* of the schedule's
time zone (the trigger runs in UTC over naive local times, which have no daylight-saving jumps),
and each wall-clock time is then placed in the zone with `fold=0`. So a 09:30 standup stays at
09:30 local across DST changes, an hour that happens twice (autumn) fires once, and a time that
does not exist (spring) fires once, at the same instant an hour later on the clock.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from bot.errors import InvalidInput

if TYPE_CHECKING:  # imported where used: CLI commands such as `gate check` import this module
    from apscheduler.triggers.cron import CronTrigger

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_WORDS = {
    **{day: day for day in DAYS},
    "monday": "mon", "tuesday": "tue", "tues": "tue", "wednesday": "wed", "thursday": "thu",
    "thur": "thu", "thurs": "thu", "friday": "fri", "saturday": "sat", "sunday": "sun",
}
# Standard cron numbers days from Sunday = 0 (and 7); APScheduler from Monday = 0, so numeric
# day-of-week fields are translated to names before APScheduler reads them.
CRON_DAY_NUMBERS = {0: "sun", 1: "mon", 2: "tue", 3: "wed", 4: "thu", 5: "fri", 6: "sat", 7: "sun"}
EXAMPLES = ('`weekdays 09:30`', '`mon,thu 10:00`', '`fridays 15:00`',
            '`every 2 weeks on friday 15:00`', '`"30 9 * * 1-5"` (cron)')
TIME_WORD = re.compile(r"^(?:at\s+)?(\d{1,2})(?::(\d{2}))?\s*(am|pm)?$")
EVERY_WEEKS = re.compile(r"^every\s+(\d+|other)\s+weeks?\s+(?:on\s+)?(.+)$")
MAX_EVERY_WEEKS = 8
# How far ahead a schedule must fire at least once to be accepted.
HORIZON = timedelta(days=366 * 2)


@dataclass(frozen=True)
class When:
    """A parsed `<when>`: a five-field cron expression with day names, every n-th week."""

    cron: str
    every_weeks: int = 1
    description: str = ""


def _unparseable(raw: str, why: str = "") -> InvalidInput:
    reason = f" ({why})" if why else ""
    return InvalidInput(f"I could not read `{raw[:80]}` as a time{reason}. Try "
                        f"{', '.join(EXAMPLES)}.", field="when")


def _cron_day(part: str) -> str:
    """One element of a cron day-of-week field, numbers turned into APScheduler's day names."""
    if re.fullmatch(r"\d", part):
        return CRON_DAY_NUMBERS.get(int(part), part)
    match = re.fullmatch(r"(\d)-(\d)(/\d+)?", part)
    if match:
        low, high, step = int(match[1]), int(match[2]), match[3] or ""
        if low > 7 or high > 7 or low > high:
            return part  # left for CronTrigger to refuse
        if (low == 0 and high >= 6) or (low == 0 and high == 7):
            return "*" + step
        if low == 0:  # Sunday first: APScheduler's week starts on Monday
            return f"sun,mon-{CRON_DAY_NUMBERS[high]}" if high > 1 else "sun,mon"
        return f"{CRON_DAY_NUMBERS[low]}-{CRON_DAY_NUMBERS[min(high, 7)]}{step}"
    return part.lower()


def trigger_for(cron: str) -> CronTrigger:
    """The trigger of a normalized cron expression, on the naive wall clock (see module doc)."""
    from apscheduler.triggers.cron import CronTrigger

    minute, hour, day, month, day_of_week = cron.split()
    return CronTrigger(minute=minute, hour=hour, day=day, month=month,
                       day_of_week=day_of_week, timezone=UTC)


def _from_cron(raw: str) -> When:
    fields = raw.split()
    if len(fields) != 5:
        raise _unparseable(raw, f"a cron expression has 5 fields, this has {len(fields)}")
    fields[4] = ",".join(_cron_day(part) for part in fields[4].split(","))
    cron = " ".join(fields)
    try:
        trigger_for(cron)
    except ValueError as exc:
        raise _unparseable(raw, str(exc)) from None
    return When(cron=cron, description=raw)


def _time_of(text: str, raw: str) -> tuple[int, int]:
    match = TIME_WORD.match(text)
    if not match:
        raise _unparseable(raw, "say the time like 09:30 or 3pm")
    hour, minute = int(match[1]), int(match[2] or 0)
    if match[3]:
        if not 1 <= hour <= 12:
            raise _unparseable(raw, f"{hour}{match[3]} is not a time")
        hour = hour % 12 + (12 if match[3] == "pm" else 0)
    if hour > 23 or minute > 59:
        raise _unparseable(raw, f"{hour:02d}:{minute:02d} is not a time of day")
    return hour, minute


def _days_of(text: str, raw: str) -> str:
    words = [w for w in re.split(r"[\s,]+|\band\b", text.strip()) if w and w not in ("on",
                                                                                   "every")]
    if not words or words in (["day"], ["daily"], ["everyday"]):
        return "*"
    if words in (["weekdays"], ["weekday"], ["workdays"]):
        return "mon-fri"
    if words in (["weekends"], ["weekend"]):
        return "sat,sun"
    days: list[str] = []
    for word in words:
        bounds = word.split("-")
        names = [DAY_WORDS.get(b.removesuffix("s")) or DAY_WORDS.get(b) for b in bounds]
        if not all(names) or len(names) > 2:
            raise _unparseable(raw, f"`{word}` is not a day")
        if len(names) == 2 and DAYS.index(names[0]) > DAYS.index(names[1]):  # type: ignore[arg-type]
            raise _unparseable(raw, f"`{word}` runs backwards")
        days.append("-".join(names))  # type: ignore[arg-type]
    return ",".join(dict.fromkeys(days))


def _from_words(raw: str) -> When:
    text = " ".join(raw.lower().split())
    every = 1
    match = EVERY_WEEKS.match(text)
    if match:
        every = 2 if match[1] == "other" else int(match[1])
        if not 1 <= every <= MAX_EVERY_WEEKS:
            raise _unparseable(raw, f"every 1 to {MAX_EVERY_WEEKS} weeks")
        text = match[2]
    elif text.startswith("every week "):
        text = text.removeprefix("every week ")
    parts = text.rsplit(" ", 1)
    if len(parts) == 2 and parts[1] in ("am", "pm"):  # `fridays 3 pm`
        parts = [parts[0].rsplit(" ", 1)[0], parts[0].rsplit(" ", 1)[-1] + parts[1]]
    if len(parts) != 2:
        raise _unparseable(raw, "say the days and the time, like weekdays 09:30")
    days_text = parts[0].removesuffix(" at")
    hour, minute = _time_of(parts[1], raw)
    days = _days_of(days_text, raw)
    if every > 1 and days == "*":
        raise _unparseable(raw, "name the day of the week, like every 2 weeks on friday 15:00")
    return When(cron=f"{minute} {hour} * * {days}", every_weeks=every,
                description=" ".join(raw.split()))


def parse_when(raw: str) -> When:
    """`<when>` as typed: a (quoted) cron expression or plain words; InvalidInput otherwise."""
    text = (raw or "").strip().strip('"').strip()
    if not text:
        raise _unparseable(raw or "", "it is empty")
    if len(text) > 120:
        raise _unparseable(text, "it is too long")
    if re.fullmatch(r"[\d*/,\-a-zA-Z]+(\s+[\d*/,\-a-zA-Z]+){4}", text) and \
            re.match(r"^[\d*]", text):
        return _from_cron(text)
    return _from_words(text)


@lru_cache(maxsize=1)
def _zones() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


def resolve_zone(raw: str) -> str:
    """A time zone name as IANA spells it; an unknown one is refused with close matches."""
    name = (raw or "").strip()
    if name.lower() in _zones():
        return _zones()[name.lower()]
    try:
        ZoneInfo(name)
        return name
    except (ZoneInfoNotFoundError, ValueError):
        pass
    lowered = name.lower().replace(" ", "_")
    suggestions = difflib.get_close_matches(lowered, list(_zones()), n=3, cutoff=0.6)
    suggestions += [key for key in sorted(_zones()) if lowered and
                    key.rsplit("/", 1)[-1] == lowered.rsplit("/", 1)[-1]]
    named = [f"`{_zones()[key]}`" for key in dict.fromkeys(suggestions)][:4]
    hint = f" Did you mean {' or '.join(named)}?" if named else \
        " Use an Area/City name such as `Europe/Paris` or `America/New_York`."
    raise InvalidInput(f"`{name[:60]}` is not a time zone I know.{hint}", field="tz")


def week_matches(local_day: date, anchor_week: date, every_weeks: int) -> bool:
    """Whether the ISO week of `local_day` is one of the schedule's (every n-th from anchor)."""
    if every_weeks <= 1:
        return True
    monday = local_day - timedelta(days=local_day.weekday())
    return ((monday - anchor_week).days // 7) % every_weeks == 0


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def occurrences(cron: str, zone_name: str, every_weeks: int, anchor_week: date,
                after: datetime, until: datetime) -> Iterator[datetime]:
    """The instants (UTC) in (`after`, `until`] at which the schedule fires, in order."""
    zone = ZoneInfo(zone_name)
    trigger = trigger_for(cron)
    # Wall-clock times may map out of order by an hour around a change: start a day early.
    wall = after.astimezone(zone).replace(tzinfo=UTC) - timedelta(days=1)
    last_wall = until.astimezone(zone).replace(tzinfo=UTC) + timedelta(days=1)
    previous: datetime | None = None
    while True:
        fire = trigger.get_next_fire_time(previous, wall)
        if fire is None or fire > last_wall:
            return
        instant = fire.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if after < instant <= until and week_matches(fire.date(), anchor_week, every_weeks):
            yield instant
        previous, wall = fire, fire + timedelta(seconds=1)


@lru_cache(maxsize=4096)
def first_after(cron: str, zone_name: str, every_weeks: int, anchor_week: date,
                after: datetime) -> datetime | None:
    """The first instant after `after` at which the schedule fires (None past the horizon).

    Cached: the ritual sweep asks it of every schedule on every tick, and working out a cron
    trigger costs more than the rest of the sweep together; the answer only changes when the
    schedule or its `checked_until` (`after`) does, and both are part of the key.
    """
    found = next_occurrences(cron, zone_name, every_weeks, anchor_week, after, count=1)
    return found[0] if found else None


def next_occurrences(cron: str, zone_name: str, every_weeks: int, anchor_week: date,
                     now: datetime, count: int = 3) -> list[datetime]:
    """The next `count` instants after `now` (fewer only if the schedule never fires)."""
    found: list[datetime] = []
    start = now
    end = now + HORIZON
    trigger = trigger_for(cron)
    if trigger.get_next_fire_time(None, now.replace(tzinfo=UTC)) is None:
        return []
    for instant in occurrences(cron, zone_name, every_weeks, anchor_week, start, end):
        found.append(instant)
        if len(found) == count:
            break
    return found
