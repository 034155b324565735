"""The slash-command parser."""

from __future__ import annotations

from datetime import date

import pytest

from bot.commands import Command, Subcommand, UsageError

COMMAND = Command("/thing", "things", [
    Subcommand("<title:text>", "log one"),
    Subcommand("show <ref:T-n>", "show one"),
    Subcommand("update <ref:T-n> likelihood <likelihood:1-5> impact <impact:1-5>", "rescore"),
    Subcommand("request <milestone:word> [for <model:word> v<version:word>] [roles <roles:list>]",
               "request"),
    Subcommand("away <who:user> until <day:date>", "away"),
    Subcommand("conclude <ref:T-n> <outcome:supported|refuted> <evidence:text>", "conclude"),
])


def test_empty_text_asks_for_the_modal_and_help_is_help() -> None:
    assert COMMAND.parse("   ").subcommand is None
    assert COMMAND.parse("help").wants_help
    assert COMMAND.parse("HELP").wants_help


def test_default_form_keeps_the_text_as_typed() -> None:
    parsed = COMMAND.parse('  Use "gradient"   boosting <!channel> ')
    assert parsed.subcommand == ""
    assert parsed.args["title"] == 'Use "gradient"   boosting <!channel>'


def test_text_arrives_escaped_by_slack_and_is_read_as_typed() -> None:
    parsed = COMMAND.parse("Ship A &amp; B &lt;today&gt;")
    assert parsed.args["title"] == "Ship A & B <today>"


def test_typed_arguments() -> None:
    assert COMMAND.parse("show t-7").args == {"ref": "T-7"}
    assert COMMAND.parse("update T-2 likelihood 5 impact 1").args == {
        "ref": "T-2", "likelihood": 5, "impact": 1}
    assert COMMAND.parse("request launch for churn v3.1 roles DS,eng").args == {
        "milestone": "launch", "model": "churn", "version": "3.1", "roles": ["ds", "eng"]}
    assert COMMAND.parse("request data").args == {"milestone": "data"}
    assert COMMAND.parse("away <@U0BOB0001|bob> until 2026-12-24").args == {
        "who": "U0BOB0001", "day": date(2026, 12, 24)}
    assert COMMAND.parse("conclude T-1 Refuted recall fell 2 points").args == {
        "ref": "T-1", "outcome": "refuted", "evidence": "recall fell 2 points"}


@pytest.mark.parametrize(("text", "message", "usage"), [
    ("show", "A reference like T-12 is missing.", "/thing show T-n"),
    ("show D-3", "`D-3` is not a reference like T-12.", "/thing show T-n"),
    ("show T-3 extra", "Unexpected `extra` at the end.", "/thing show T-n"),
    ("update T-2 likelihood 6 impact 1", "The likelihood must be a number from 1 to 5, not `6`.",
     "likelihood <1-5> impact <1-5>"),
    ("update T-2 likelihood x impact 1", "not `x`", "/thing update"),
    ("update T-2 impact 1", "Expected `likelihood` but found `impact`.", "/thing update"),
    ("request launch for churn 3", "Expected v<version> but found `3`.", "[for <model>"),
    ("away bob until 2026-12-24", "`bob` is not a person: mention them with @.", "@user"),
    ("away <@U0BOB0001> until tomorrow", "must be a date like", "/thing away"),
    ("conclude T-1 maybe", "`maybe` must be one of supported, refuted.", "/thing conclude"),
    ("conclude T-1 refuted", "<evidence> is missing.", "/thing conclude"),
])
def test_errors_say_what_is_wrong_and_show_the_usage(text: str, message: str, usage: str) -> None:
    with pytest.raises(UsageError) as error:
        COMMAND.parse(text)
    assert message in error.value.message
    assert any(usage in line for line in error.value.usage)


def test_unknown_subcommand_without_default_lists_everything() -> None:
    strict = Command("/strict", "s", [Subcommand("list", "list them")])
    with pytest.raises(UsageError) as error:
        strict.parse("frobnicate now")
    assert error.value.message == "`frobnicate` is not a `/strict` subcommand."
    assert error.value.usage == ["`/strict` — open a form", "`/strict list` — list them",
                                 "`/strict help` — show this help"]


# Subcommands that share their first word

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


def test_an_optional_group_may_start_with_a_typed_placeholder() -> None:
    command = Command("/incident", "incidents", [
        Subcommand("declare [<severity:sev1|sev2>] <title:text>", "declare"),
        Subcommand("tag [v<version:int>] <words:text>", "tag"),
    ])
    assert command.parse("declare SEV2 Disk full").args == {"severity": "sev2",
                                                            "title": "Disk full"}
    assert command.parse("declare Severe drift").args == {"title": "Severe drift"}
    assert command.parse("declare sev9 Severe drift").args == {"title": "sev9 Severe drift"}
    assert command.parse("tag v12 shipped").args == {"version": 12, "words": "shipped"}
    assert command.parse("tag vnext shipped").args == {"words": "vnext shipped"}
    assert command.usage()[1] == "`/incident declare [<sev1|sev2>] <title>` — declare"
    with pytest.raises(UsageError, match="<title> is missing"):
        command.parse("declare sev1")
