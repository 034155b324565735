"""The parser's handling of subcommands that share their first word."""

from __future__ import annotations

import pytest

from bot.commands import Command, Subcommand, UsageError

QUORUM = Command("/quorum", "admin", [
    Subcommand("role add <user:user> <role:word>", "give a role"),
    Subcommand("role remove <user:user> <role:word>", "take a role"),
    Subcommand("roles", "list roles"),
    Subcommand("settings self-approval <value:on|off>", "self-approval"),
    Subcommand("settings reminders <hours:1-168>", "reminders"),
], bare=None)


def test_leading_words_choose_the_subcommand() -> None:
    parsed = QUORUM.parse("role add <@U0BOB0001|bob> ds")
    assert (parsed.subcommand, parsed.args) == ("role add", {"user": "U0BOB0001", "role": "ds"})
    assert QUORUM.parse("ROLE Remove @U0BOB0001 pm").subcommand == "role remove"
    assert QUORUM.parse("roles").subcommand == "roles"
    assert QUORUM.parse("settings self-approval ON").args == {"value": "on"}
    assert QUORUM.parse("settings reminders 12").args == {"hours": 12}


@pytest.mark.parametrize(("text", "message"), [
    ("role", "Expected `add` or `remove` after `role` but found nothing"),
    ("role grant <@U0BOB0001> ds", "Expected `add` or `remove` after `role` but found `grant`"),
    ("role add <@U0BOB0001>", "<role> is missing"),
    ("settings colour blue", "Expected `reminders` or `self-approval` after `settings`"),
])
def test_errors_name_the_choices(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        QUORUM.parse(text)
    assert message in caught.value.message
    assert all(line.startswith(f"`/quorum {text.split()[0]}") for line in caught.value.usage)


def test_usage_leaves_out_the_bare_form_when_asked() -> None:
    assert QUORUM.usage()[0].startswith("`/quorum role add @user <role>`")
    other = Command("/decision", "decisions", [Subcommand("list", "list")])
    assert other.usage()[0] == "`/decision` — open a form"
