"""When rituals happen: `<when>` (cron or plain words) to a schedule, time zones, occurrences.

The cron form is read by `cronsim`, a maintained cron library, exactly as cron reads it: steps
(`1-5/2`), ranges, names, `L`, `LW`, `5L`, `5#2`, and the rule that a restricted day of month
and a restricted day of week are alternatives (`0 9 1 * 1`: the 1st *or* any Monday). Plain
words (`weekdays 09:30`) become a cron expression with day names. Occurrences are computed on
the schedule's time zone with cron's daylight-saving rules, as cronsim implements them: a
09:30 standup stays at 09:30 local across changes, a time in the hour that happens twice
(autumn) fires once, and a time that does not exist (spring) fires once, at the change.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

from bot.errors import InvalidInput

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_WORDS = {
    **{day: day for day in DAYS},
    "monday": "mon", "tuesday": "tue", "tues": "tue", "wednesday": "wed", "thursday": "thu",
    "thur": "thu", "thurs": "thu", "friday": "fri", "saturday": "sat", "sunday": "sun",
}
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


def _from_cron(raw: str) -> When:
    fields = raw.split()
    if len(fields) != 5:
        raise _unparseable(raw, f"a cron expression has 5 fields, this has {len(fields)}")
    cron = " ".join(field.lower() for field in fields)
    try:
        CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        if fields[3] != "*" and _valid_cron(" ".join([*fields[:3], "*", fields[4]])):
            raise InvalidInput(f"`{raw[:80]}` never happens (no such date), so nothing would "
                               f"ever be posted.", field="when") from None
        raise _unparseable(raw, str(exc).lower()) from None
    return When(cron=cron, description=raw)


def _valid_cron(cron: str) -> bool:
    try:
        CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError:
        return False
    return True


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
    if re.fullmatch(r"[\d*/,\-a-zA-Z#]+(\s+[\d*/,\-a-zA-Z#]+){4}", text) and \
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
    for fire in CronSim(cron, after.astimezone(zone)):
        instant = fire.astimezone(UTC)
        if instant > until:
            return
        if instant > after and week_matches(fire.date(), anchor_week, every_weeks):
            yield instant


@lru_cache(maxsize=4096)
def first_after(cron: str, zone_name: str, every_weeks: int, anchor_week: date,
                after: datetime) -> datetime | None:
    """The first instant after `after` at which the schedule fires (None past the horizon).

    Cached: the ritual sweep asks it of every schedule on every tick; the answer only changes
    when the schedule or its `checked_until` (`after`) does, and both are part of the key.
    """
    found = next_occurrences(cron, zone_name, every_weeks, anchor_week, after, count=1)
    return found[0] if found else None


def next_occurrences(cron: str, zone_name: str, every_weeks: int, anchor_week: date,
                     now: datetime, count: int = 3) -> list[datetime]:
    """The next `count` instants after `now` (fewer only if the schedule never fires)."""
    found: list[datetime] = []
    for instant in occurrences(cron, zone_name, every_weeks, anchor_week, now, now + HORIZON):
        found.append(instant)
        if len(found) == count:
            break
    return found
