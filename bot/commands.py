"""The one slash-command parser: each subcommand is declared by its usage pattern.

A pattern reads like the usage line people see, with a type after each placeholder:

    "show <ref:D-n>"                      "supersede <ref:D-n> <title:text>"
    "update <ref:R-n> likelihood <likelihood:1-5> impact <impact:1-5>"
    "request <milestone:words> [for <model:word> <version:version>] [roles <roles:list>]"

Types: `text` (the rest of the line), `word`, `words` (one quoted token, or the words up to the
next keyword of the pattern: `request <milestone:words> [for …]`), `version` (`v3` or `3`,
given as `3`), `duration` (`90m`, `2h`, `1d`, `1h30m`, given in seconds), `int`, `a-b` (an
integer range), `X-n` (a reference), `user` (an @mention), `list` (comma-separated words),
`date` (YYYY-MM-DD) and `a|b|c` (one of these words). Optional groups that follow one another
and each start with a word may be typed in any order (`roles ds due 2026-03-31` or
`due 2026-03-31 roles ds`). A `text` followed by optional groups ends where they, matched to
the end of the line, begin: `<title:text> [for <model:word> v<version:version>]` reads
`Ship it for churn v3` as the title `Ship it` for churn version 3, and `Ship it for churn` as a
title. A pattern that begins with a placeholder is the command's default form
(`/decision <title>`). The text `help` prints the usage; an empty text asks for the modal.

An optional group `[...]` is taken when the next word is its leading word, or a value its leading
placeholder accepts (`declare [<severity:sev1|sev2>] <title:text>`). A placeholder-led group that
ends the pattern is taken whenever text is left, so `conclude <ref:H-n> [<outcome:a|b>
<evidence:text>]` accepts `conclude H-1` and tells what is wrong with `conclude H-1 maybe so`.

Subcommands may share their first word when the words after it tell them apart
(`role add <user:user> <role:word>`, `role remove <user:user> <role:word>`); `Parsed.subcommand`
is then the leading words (`"role add"`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from bot.render import slack_unescape

# A token is a "quoted phrase" (straight or typographic quotes, as phones type them) or a word.
TOKEN = re.compile(r'"([^"]*)"|\u201c([^\u201d]*)\u201d|(\S+)')
DURATION = re.compile(r"^(?:(\d{1,4})d)?(?:(\d{1,4})h)?(?:(\d{1,5})m)?$")
DURATION_UNITS = (86400, 3600, 60)
PLACEHOLDER = re.compile(r"^(?P<prefix>[^<]*)<(?P<name>\w+):(?P<type>[^>]+)>$")
MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$|^@?([UW][A-Z0-9]{6,})$")


class UsageError(Exception):
    """The text does not fit the command; `message` says why, `usage` shows what would."""

    def __init__(self, message: str, usage: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


@dataclass(frozen=True)
class Parsed:
    """What the person asked for: a subcommand (`""` for the default form) and its arguments."""

    subcommand: str | None  # None: no text at all (open the modal)
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def wants_help(self) -> bool:
        return self.subcommand == "help"


@dataclass(frozen=True)
class _Token:
    text: str
    start: int
    end: int
    quoted: bool = False


@dataclass
class _Slot:
    name: str
    type: str
    prefix: str = ""  # literal glued to the value, like the `v` of `v<version:word>`


@dataclass
class _Group:
    items: list[_Literal | _Slot | _Group]
    optional: bool = False


@dataclass
class _Literal:
    word: str


def _compile(pattern: str) -> _Group:
    stack: list[_Group] = [_Group([])]
    for raw in pattern.replace("[", " [ ").replace("]", " ] ").split():
        if raw == "[":
            group = _Group([], optional=True)
            stack[-1].items.append(group)
            stack.append(group)
        elif raw == "]":
            stack.pop()
        elif match := PLACEHOLDER.match(raw):
            stack[-1].items.append(_Slot(match["name"], match["type"], match["prefix"]))
        else:
            stack[-1].items.append(_Literal(raw))
    return stack[0]


def _usage_of(group: _Group) -> str:
    parts = []
    for item in group.items:
        if isinstance(item, _Literal):
            parts.append(item.word)
        elif isinstance(item, _Slot):
            parts.append(f"{item.prefix}{_describe_slot(item)}")
        else:
            parts.append(f"[{_usage_of(item)}]")
    return " ".join(parts)


def _describe_slot(slot: _Slot) -> str:
    if slot.type.endswith("-n"):
        return slot.type
    if slot.type == "version" and not slot.prefix:
        return f"v<{slot.name}>"
    if slot.type == "user":
        return "@user"
    if "|" in slot.type or re.fullmatch(r"\d+-\d+", slot.type):
        return f"<{slot.type}>"
    return f"<{slot.name}>"


class Subcommand:
    """One form of a command, declared by its usage pattern."""

    def __init__(self, pattern: str, help: str) -> None:
        self.pattern = pattern
        self.help = help
        self.tree = _compile(pattern)
        # The literal words before the first placeholder or option name this subcommand.
        self.words: list[str] = []
        for item in self.tree.items:
            if not isinstance(item, _Literal):
                break
            self.words.append(item.word.lower())
        self.keyword = self.words[0] if self.words else ""
        self.name = " ".join(self.words)

    def usage(self, command: str) -> str:
        return f"{command} {_usage_of(self.tree)}".rstrip()


class Command:
    """A slash command and its subcommands."""

    def __init__(self, name: str, summary: str, subcommands: list[Subcommand],
                 bare: str | None = "open a form") -> None:
        self.name = name
        self.summary = summary
        self.subcommands = subcommands
        self.bare = bare  # what the command does with no text; None leaves it out of the usage

    def usage(self) -> list[str]:
        lines = [f"`{self.name}` — {self.bare}"] if self.bare else []
        lines += [f"`{sub.usage(self.name)}` — {sub.help}" for sub in self.subcommands]
        lines.append(f"`{self.name} help` — show this help")
        return lines

    def usage_for(self, sub: Subcommand) -> list[str]:
        return [f"`{sub.usage(self.name)}` — {sub.help}"]

    def parse(self, text: str) -> Parsed:
        """Parse a command's text as Slack sends it (`&`, `<`, `>` arrive escaped)."""
        text = slack_unescape(text).strip()
        if not text:
            return Parsed(None)
        tokens = [_token(m) for m in TOKEN.finditer(text)]
        head = tokens[0].text.lower()
        if head == "help" and len(tokens) == 1:
            return Parsed("help")
        candidates = [sub for sub in self.subcommands if sub.keyword and sub.keyword == head]
        if candidates:
            sub = self._choose(candidates, tokens)
            return Parsed(sub.name, self._match(sub, text, tokens))
        default = next((sub for sub in self.subcommands if not sub.keyword), None)
        if default is None:
            raise UsageError(f"`{tokens[0].text}` is not a `{self.name}` subcommand.", self.usage())
        return Parsed("", self._match(default, text, tokens))

    def _choose(self, candidates: list[Subcommand], tokens: list[_Token]) -> Subcommand:
        """Of the subcommands sharing the first word, the one whose leading words were typed."""
        if len(candidates) == 1:
            return candidates[0]
        typed = [token.text.lower() for token in tokens]
        fitting = [sub for sub in candidates if typed[: len(sub.words)] == sub.words]
        if fitting:
            return max(fitting, key=lambda sub: len(sub.words))
        choices = sorted({sub.words[1] for sub in candidates if len(sub.words) > 1})
        found = f"`{tokens[1].text}`" if len(tokens) > 1 else "nothing"
        usage = [line for sub in candidates for line in self.usage_for(sub)]
        raise UsageError(f"Expected {' or '.join(f'`{c}`' for c in choices)} after "
                         f"`{tokens[0].text}` but found {found}.", usage)

    def _match(self, sub: Subcommand, text: str, tokens: list[_Token]) -> dict[str, Any]:
        args: dict[str, Any] = {}
        try:
            position = _match_group(sub.tree, text, tokens, 0, args)
        except _NoMatch as exc:
            raise UsageError(exc.message, self.usage_for(sub)) from None
        if position < len(tokens):
            extra = text[tokens[position].start:]
            raise UsageError(f"Unexpected `{extra}` at the end.", self.usage_for(sub))
        return args


def _token(match: re.Match[str]) -> _Token:
    quoted = next((g for g in (match.group(1), match.group(2)) if g is not None), None)
    if quoted is not None:
        return _Token(quoted, match.start(), match.end(), quoted=True)
    return _Token(match.group(3), match.start(), match.end())


class _NoMatch(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


def _word_led(item: _Literal | _Slot | _Group) -> bool:
    return isinstance(item, _Group) and item.optional and isinstance(item.items[0], _Literal)


def _keywords(items: list[_Literal | _Slot | _Group]) -> set[str]:
    """The words that start the items after a `words` placeholder: where its value ends."""
    words: set[str] = set()
    for item in items:
        if isinstance(item, _Literal):
            words.add(item.word.lower())
            break
        if isinstance(item, _Group) and isinstance(item.items[0], _Literal):
            words.add(item.items[0].word.lower())
            if not item.optional:
                break
    return words


def _match_group(group: _Group, text: str, tokens: list[_Token], position: int,
                 args: dict[str, Any]) -> int:
    index = 0
    while index < len(group.items):
        item = group.items[index]
        if _word_led(item):
            # A run of optional groups that each start with a word: any order, each once.
            end = index
            while end < len(group.items) and _word_led(group.items[end]):
                end += 1
            pending = [g for g in group.items[index:end] if isinstance(g, _Group)]
            while position < len(tokens):
                lead = next((g for g in pending if _opens(g, tokens[position])), None)
                if lead is None:
                    break
                pending.remove(lead)
                position = _match_group(lead, text, tokens, position, args)
            index = end
            continue
        index += 1
        if isinstance(item, _Slot) and item.type == "words":
            position = _match_words(item, tokens, position, args,
                                    _keywords(group.items[index:]))
            continue
        if isinstance(item, _Literal):
            if position >= len(tokens) or tokens[position].text.lower() != item.word.lower():
                found = f"`{tokens[position].text}`" if position < len(tokens) else "nothing"
                raise _NoMatch(f"Expected `{item.word}` but found {found}.")
            position += 1
        elif isinstance(item, _Slot) and item.type == "text" and index < len(group.items):
            return _match_text_then_tail(item, group.items[index:], text, tokens, position, args)
        elif isinstance(item, _Slot):
            position = _match_slot(item, text, tokens, position, args)
        elif position < len(tokens) and (_opens(item, tokens[position])
                                         or (index == len(group.items)
                                             and isinstance(item.items[0], _Slot))):
            position = _match_group(item, text, tokens, position, args)
    return position


def _match_text_then_tail(slot: _Slot, tail: list[_Literal | _Slot | _Group], text: str,
                          tokens: list[_Token], position: int, args: dict[str, Any]) -> int:
    """A `text` placeholder followed by optional groups: the text ends where the groups,
    matched to the end of the line, begin (the last such place); else it takes the line."""
    rest = _Group(tail)
    for start in range(len(tokens) - 1, position, -1):
        found: dict[str, Any] = {}
        try:
            end = _match_group(rest, text, tokens, start, found)
        except _NoMatch:
            continue
        if end == len(tokens) and found:
            args[slot.name] = text[tokens[position].start:tokens[start - 1].end].strip()
            args.update(found)
            return end
    return _match_slot(slot, text, tokens, position, args)


def _match_words(slot: _Slot, tokens: list[_Token], position: int, args: dict[str, Any],
                 stops: set[str]) -> int:
    """A quoted phrase, or the words up to the next keyword of the pattern."""
    if position >= len(tokens) or (tokens[position].text.lower() in stops
                                   and not tokens[position].quoted):
        raise _NoMatch(f"{_missing(slot)} is missing.")
    if tokens[position].quoted:
        value, position = tokens[position].text, position + 1
    else:
        words = []
        while position < len(tokens) and (tokens[position].quoted
                                          or tokens[position].text.lower() not in stops):
            words.append(tokens[position].text)
            position += 1
        value = " ".join(words)
    if not value.strip():
        raise _NoMatch(f"{_missing(slot)} is missing.")
    args[slot.name] = " ".join(value.split())
    return position


def _opens(group: _Group, token: _Token) -> bool:
    """Whether an optional group starts at `token`: its leading word, or a value that its leading
    placeholder accepts (`[<severity:sev1|sev2>] <title:text>`)."""
    lead = group.items[0]
    if isinstance(lead, _Literal):
        return token.text.lower() == lead.word.lower()
    if not isinstance(lead, _Slot) or lead.type == "text":
        return False
    raw = token.text
    if lead.prefix:
        if not raw.lower().startswith(lead.prefix.lower()):
            return False
        raw = raw[len(lead.prefix):]
    try:
        convert(lead.type, raw, lead.name)
    except _NoMatch:
        return False
    return True


def _match_slot(slot: _Slot, text: str, tokens: list[_Token], position: int,
                args: dict[str, Any]) -> int:
    what = _describe_slot(slot)
    if slot.type == "text":
        value = text[tokens[position].start:].strip() if position < len(tokens) else ""
        if not value:
            raise _NoMatch(f"{_missing(slot)} is missing.")
        args[slot.name] = value
        return len(tokens)
    if position >= len(tokens):
        raise _NoMatch(f"{_missing(slot)} is missing.")
    raw = tokens[position].text
    if slot.prefix:
        if not raw.lower().startswith(slot.prefix.lower()):
            raise _NoMatch(f"Expected {slot.prefix}{what} but found `{raw}`.")
        raw = raw[len(slot.prefix):]
    args[slot.name] = convert(slot.type, raw, f"The {slot.name.replace('_', ' ')}")
    return position + 1


def _missing(slot: _Slot) -> str:
    if slot.type.endswith("-n"):
        return f"A reference like {slot.type[:-2]}-12"
    return f"{slot.prefix}{_describe_slot(slot)}"


def convert(kind: str, raw: str, what: str) -> Any:
    """Turn one token into a typed value, or raise a message that names the problem."""
    if kind == "word":
        return raw
    if kind == "version":
        version = raw[1:] if len(raw) > 1 and raw[0] in "vV" and raw[1].isdigit() else raw
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}", version):
            raise _NoMatch(f"`{raw[:50]}` is not a version: write `v3`, `3` or a tag like "
                           f"`1.2.0`.")
        return version
    if kind == "duration":
        match = DURATION.match(raw.lower())
        if not raw or not match or not any(match.groups()):
            raise _NoMatch(f"{what} must be a duration like `30m`, `2h`, `1d` or `1h30m`, "
                           f"not `{raw[:30]}`.")
        return sum(int(part or 0) * unit for part, unit in zip(match.groups(), DURATION_UNITS,
                                                               strict=True))
    if kind == "int":
        if not raw.isdigit():
            raise _NoMatch(f"{what} must be a whole number, not `{raw}`.")
        return int(raw)
    if re.fullmatch(r"\d+-\d+", kind):
        low, high = (int(part) for part in kind.split("-"))
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise _NoMatch(f"{what} must be a number from {low} to {high}, not `{raw}`.")
        return int(raw)
    if kind.endswith("-n"):
        prefix = kind[:-2]
        match = re.fullmatch(r"([A-Za-z]+)-(\d{1,9})", raw)
        if not match or match.group(1).upper() != prefix:
            raise _NoMatch(f"`{raw}` is not a reference like {prefix}-12.")
        return f"{prefix}-{int(match.group(2))}"
    if kind == "user":
        match = MENTION.match(raw)
        if not match:
            raise _NoMatch(f"`{raw}` is not a person: mention them with @.")
        return match.group(1) or match.group(2)
    if kind == "list":
        items = [item.strip().lower() for item in raw.split(",") if item.strip()]
        if not items:
            raise _NoMatch(f"{what} must be a comma-separated list.")
        return items
    if kind == "date":
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise _NoMatch(f"{what} must be a date like 2026-03-31, not `{raw}`.") from None
    if "|" in kind:
        choices = kind.split("|")
        if raw.lower() not in choices:
            raise _NoMatch(f"`{raw}` must be one of {', '.join(choices)}.")
        return raw.lower()
    raise ValueError(f"unknown placeholder type {kind!r}")
