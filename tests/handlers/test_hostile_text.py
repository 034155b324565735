"""Hostile text everywhere text comes in (issue #11 item 7), as property-based tests.

Arbitrary Unicode (NUL, lone surrogates, bidi and zero-width characters), Slack control
sequences, SQL and LIKE metacharacters and very long strings go into every slash command and
subcommand, every modal field, thread replies and every webhook field, through the signed HTTP
endpoint of one Quorum per database. Whatever comes in: no 5xx and no "something went wrong";
bad input gets an ephemeral usage reply (or field errors, or a 4xx JSON reason) and leaves the
database as it was; everything that reaches Slack is valid Block Kit; no control sequence from
the input is ever live in what Slack shows; and search still finds what it should, and only that.

`HYPOTHESIS_PROFILE=explore` runs many more examples than the default "ci" profile (with
`--timeout 0`: the sweep over every subcommand then takes minutes).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot import outbox
from bot import slack_payloads as payloads
from bot.commands import MENTION, PLACEHOLDER
from bot.config import load_settings
from bot.manifest import command_definitions
from bot.models import Decision, RitualUpdate
from bot.render import TEMPLATE_DIR, slack_unescape, storable
from bot.services.decisions import SEARCH_WORDS_LIMIT
from bot.services.rituals import TEXT_LIMIT
from handlers.common import OUR_FAULT
from support.db_snapshot import snapshot
from support.fake_github import new_private_key, protection_rule_event
from support.fake_slack import Call, FakeSlack, SlackError, check_reply, mrkdwn_texts
from support.mlflow_signing import mlflow_signed
from support.quorum_server import QuorumServer
from support.slack_requests import SIGNING_SECRET, TEAM, SlackSender
from support.waiting import eventually

CHANNEL = "C0CHURN01"
ALICE, BOB = "U0ALICE01", "U0BOB0001"
TOKEN = "hostile-webhook-token"
SECRET = "hostile-mlflow-secret"
GITHUB_SECRET = "hostile-github-secret"
FORM = "application/x-www-form-urlencoded"
REPLY_LIMIT = TEXT_LIMIT * 3  # what a thread reply keeps

# ---------------------------------------------------------------------------- hostile text

# Control sequences someone might smuggle in. The ids and addresses are ones no template ever
# renders, so finding one live (unescaped) in a message proves that input was injected.
CONTROL = ["<!channel>", "<!here>", "<!everyone>", "<!subteam^SEVIL0001>", "<@UEVIL0001>",
           "<@UEVIL0001|boss>", "<#CEVIL0001>", "<#CEVIL0001|general>",
           "<http://evil.example|ok>", "<https://evil.example|ok>", "<mailto:evil@evil.example|ok>"]
INJECTED = re.compile(r"<!(?:channel|here|everyone|subteam)|<[@#][UC]EVIL"
                      r"|<(?:https?://evil\.|mailto:evil)")
SQL = ["'", '"', ";", "--", "%", "_", "\\", "' OR '1'='1", "%_%", "'; DROP TABLE decisions; --",
       "\\%", "[a-z]", "*", ":*", "&", "|", "!", "()", "$1", "?"]
ODD = ["\x00", "\ud800", "\udfff", "\u202e", "\u200b", "\u200d", "\ufeff", "e\u0301", "\ufdfd",
       "\U0001d573", "\U0001f3f3\ufe0f\u200d\U0001f308", "\r\n", "\t", "&amp;", "&lt;", "&gt;",
       "&", "<", ">", "`", "*bold*", "~", "```", "payload", "payload=x", "help", "\u0085"]

piece = st.sampled_from(CONTROL + SQL + ODD)
short_hostile = st.lists(st.one_of(piece, st.text(max_size=8)), min_size=1, max_size=8).map(
    "".join)
# Longer than every limit: Slack's (75, 150, 2,000, 3,000) and Quorum's own.
long_hostile = st.builds(lambda part, times: part * times, st.sampled_from(CONTROL + SQL + ["é"]),
                         st.integers(min_value=200, max_value=4000))
hostile = st.one_of(short_hostile, short_hostile, long_hostile)


# ------------------------------------------------------------------- one Quorum per database


class World:
    """Quorum on one database, with one of every record and every modal it opens."""

    def __init__(self, server: QuorumServer, slack: SlackSender, fake: FakeSlack) -> None:
        self.server, self.slack, self.fake = server, slack, fake
        self.views: dict[str, dict[str, Any]] = {}  # by callback_id
        self.standup_ts = ""

    def __repr__(self) -> str:  # hypothesis prints it with every failing example
        return f"World({self.server.settings.database_url.split(':')[0]})"

    @property
    def db(self) -> Any:
        return self.server.runtime.db


@pytest.fixture(scope="module")
def world(module_database_url: str, fake_slack_server: FakeSlack) -> Iterator[World]:
    fake = fake_slack_server
    fake.reset()
    url = module_database_url
    settings = load_settings(
        SLACK_BOT_TOKEN=fake.token, SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=fake.url, DATABASE_URL=url, QUORUM_WEBHOOK_TOKEN=TOKEN,
        MLFLOW_WEBHOOK_SECRET=SECRET, QUORUM_DEFAULT_CHANNEL=CHANNEL,
        GITHUB_APP_ID="4242", GITHUB_APP_PRIVATE_KEY=new_private_key()[0],
        GITHUB_WEBHOOK_SECRET=GITHUB_SECRET, GITHUB_API_URL="http://127.0.0.1:9")
    server = QuorumServer(settings).start()
    slack = SlackSender(server.url, fake.response_url(), team=TEAM)
    world = World(server, slack, fake)
    try:
        _furnish(world)
        yield world
    finally:
        slack.close()
        server.stop()


def _furnish(world: World) -> None:
    """One record of each kind (D-1, H-1, G-1, R-1, INC-1, a standup and a retro), and every
    modal: the bare commands' and those behind every button of every card."""
    slack, fake = world.slack, world.fake
    for command, text in [("/quorum", "role add <@U0ALICE01> ds"),
                          ("/quorum", "github map acme/hostile production model churn-model"),
                          ("/decision", "Setup"),
                          ("/hypothesis", "Setup"), ("/gate", "request launch roles ds"),
                          ("/risk", "Setup"), ("/incident", "declare sev2 Setup"),
                          ("/standup", "now"), ("/retro", "now"),
                          ("/standup", "schedule weekdays 09:30"), ("/standup", "questions"),
                          ("/ritual", "now review")]:
        assert slack.command(command, text).status_code == 200
    for command in ("/decision", "/hypothesis", "/gate", "/risk", "/incident"):
        assert slack.command(command).status_code == 200
    settle(world)

    def every_modal_opened() -> bool:  # a listener opens its modal after acknowledging
        for call in fake.calls_to("views.open"):
            view = call.response["view"]
            world.views.setdefault(view["callback_id"], view)
        missing = MODALS - set(world.views)
        assert not missing, f"no way to open {missing}: teach _furnish to open it"
        return True

    # A click may need an earlier one to have gone through ("Conclude" H-1 after "Start"),
    # so the buttons are pressed again until every modal has opened.
    for attempt in range(4):
        for card in list(fake.messages.get(CHANNEL, {}).values()):
            for button in _buttons(card):
                if button[0] not in ("gate_approve", "incident_mitigate"):
                    slack.click(*button, message=card)
                if button[0] == "ritual_add_update":
                    world.standup_ts = card["ts"]
        settle(world)
        try:
            eventually(every_modal_opened, timeout=1 + 3 * attempt)
            break
        except AssertionError:
            if attempt == 3:
                raise


def _modal_callback_ids() -> set[str]:
    """The callback_id of every modal in `templates/`."""
    found = set()
    for path in TEMPLATE_DIR.rglob("*.json.j2"):
        source = path.read_text()
        if '"type": "modal"' in source:
            found.update(re.findall(r'"callback_id": "(\w+)"', source))
    return found


MODALS = _modal_callback_ids()


def _buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for block in message.get("blocks", []):
        for element in [*block.get("elements", []), block.get("accessory") or {}]:
            if element.get("type") == "button" and "value" in element:
                found.append((element["action_id"], element["value"]))
    return found


def settle(world: World) -> None:
    """Wait until the outbox has delivered everything queued."""
    def drained() -> bool:
        with world.db.session() as session:
            return outbox.pending_count(session) == 0

    eventually(drained, timeout=30)


# ---------------------------------------------------------------------------- what must hold


def shown_texts(message: dict[str, Any]) -> list[str]:
    """The texts of a message or view that Slack parses for mentions and links."""
    texts = mrkdwn_texts([message.get("blocks") or [], message.get("view") or {}])
    if isinstance(message.get("text"), str):
        texts.append(message["text"])
    return texts


def assert_safe(message: dict[str, Any], where: str) -> None:
    """No live control sequence from the input and no apology in what Slack shows."""
    for text in shown_texts(message):
        live = INJECTED.search(text)
        assert live is None, f"{where}: {live.group()!r} is live in {text[:300]!r}"
        assert OUR_FAULT not in text, f"{where}: {text[:300]!r}"


def assert_valid_reply(reply: dict[str, Any], where: str) -> None:
    try:
        check_reply(reply)
    except SlackError as exc:
        raise AssertionError(f"{where}: Slack would refuse the reply: {exc.error} "
                             f"{exc.extra}") from None
    assert_safe(reply, where)


def is_error(reply: dict[str, Any]) -> bool:
    """The common/error template: an ephemeral that starts with a warning."""
    blocks = reply.get("blocks") or [{}]
    return blocks[0].get("text", {}).get("text", "").startswith(":warning:")


class Delivered:
    """The Slack calls made from here on; `check()` settles the outbox and checks them all."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.mark = len(world.fake.calls)

    def check(self) -> list[Call]:
        settle(self.world)
        calls = list(self.world.fake.calls)[self.mark:]
        for call in calls:
            assert call.ok, f"Slack refused {call.method}: {call.response} {call.args!r:.300}"
            assert_safe(call.args, call.method)
        return calls


def unchanged(world: World) -> Callable[[], None]:
    """A check that nothing was stored since it was made."""
    before = _stored(world)

    def check() -> None:
        after = _stored(world)
        assert [name for name in after if after[name] != before[name]] == []

    return check


def _stored(world: World) -> dict[str, Any]:
    """Every row of every table (`support.db_snapshot`), except what the outbox worker writes
    on its own meanwhile: which rows were sent, and where keyed messages landed."""
    tables: dict[str, Any] = snapshot(world.db)
    tables["outbox"] = [row[0] for row in tables["outbox"]]  # which messages were queued
    del tables["slack_messages"]
    return tables


def command_body(world: World, command: str, text: str) -> str:
    """A slash command's body as Slack posts it; a lone surrogate goes as the (invalid) UTF-8
    bytes it stands for, which is as close as a form body can come to carrying one."""
    form = payloads.slash_command(command, text, team=TEAM, user=ALICE, channel=CHANNEL,
                                  channel_name="churn-model",
                                  response_url=world.slack.response_url)
    return urlencode(form, errors="surrogatepass")


def send_command(world: World, command: str, text: str) -> dict[str, Any]:
    """Send the command; check the HTTP answer and return the reply (empty: a modal opened)."""
    where = f"{command} {text[:80]!r}"
    response = world.slack.post(command_body(world, command, text), FORM)
    assert response.status_code == 200, f"{where}: {response.status_code} {response.text[:300]}"
    reply = response.json() if response.content else {}
    assert_valid_reply(reply, where)
    if is_error(reply):
        assert reply.get("response_type") == "ephemeral", where
    return reply


# ---------------------------------------------------------------------------- slash commands

# A fitting value for each kind of placeholder (`bot.commands`), for the slots not under test.
SAMPLES = {"text": "fine words", "word": "churn", "int": "2", "user": "<@U0BOB0001>",
           "list": "ds,eng", "date": "2026-12-31", "version": "3", "milestone": "launch"}


def _sample(name: str, kind: str) -> str:
    if name in SAMPLES:
        return SAMPLES[name]
    if kind.endswith("-n"):
        return f"{kind[:-2]}-1"
    if re.fullmatch(r"\d+-\d+", kind):
        return kind.split("-")[0]
    return SAMPLES.get(kind) or kind.split("|")[0]


def command_forms() -> list[tuple[str, str, str]]:
    """Every subcommand of every command, once with the hostile text (`{}`) in each of its
    placeholders (optional groups included) and fitting values in the others; a subcommand
    without placeholders gets it after its words; and each command gets it alone. Each form
    comes with the kind of placeholder the text goes into ("" for none)."""
    forms = []
    for name, command in sorted(command_definitions().items()):
        forms.append((name, "{}", ""))
        for sub in command.subcommands:
            tokens = sub.pattern.replace("[", " ").replace("]", " ").split()
            slots = [index for index, token in enumerate(tokens) if PLACEHOLDER.match(token)]
            for target in slots or [None]:
                words = []
                for index, token in enumerate(tokens):
                    match = PLACEHOLDER.match(token)
                    if match is None:
                        words.append(token)
                    else:
                        value = "{}" if index == target else _sample(match["name"], match["type"])
                        words.append(match["prefix"] + value)
                kind = "" if target is None else PLACEHOLDER.match(tokens[target])["type"]
                forms.append((name, " ".join(words) + (" {}" if target is None else ""), kind))
    return list(dict.fromkeys(forms))


FORMS = command_forms()


# Each example is a request per form (~70): a third of the profile's examples is plenty.
@settings(max_examples=max(2, settings.default.max_examples // 3))
@given(words=hostile)
@example(words="payload limits")
@example(words="\x00\ud800 <!channel> %_ '; --")
def test_every_subcommand_answers_hostile_text_safely(world: World, words: str) -> None:
    """Each answer is valid and safe; an error is an ephemeral that changed nothing."""
    delivered = Delivered(world)
    before = _stored(world)
    for command, form, kind in FORMS:
        if kind == "user" and MENTION.match((words.split() or [""])[0]):
            continue  # a mention where a person goes names that person: no injection
        reply = send_command(world, command, form.format(words))
        after = _stored(world)  # also what the next form starts from
        if is_error(reply):
            assert [name for name in after if after[name] != before[name]] == [], (command, form)
        before = after
    delivered.check()


@given(title=hostile)
@example(title="Use payload=v2 for <!here> & 'x'; -- \x00\ud800")
def test_a_hostile_title_is_stored_as_typed_and_shown_inert(world: World, title: str) -> None:
    """`/decision <title>` keeps exactly what was typed (less NUL and lone surrogates, which no
    database stores), or says why not and stores nothing."""
    delivered = Delivered(world)
    still = unchanged(world)
    typed = "T " + title
    reply = send_command(world, "/decision", typed)
    # What the person meant: the form's bytes decoded as Quorum decodes them, unescaped.
    received = dict(parse_qsl(command_body(world, "/decision", typed)))["text"]
    expected = " ".join(storable(slack_unescape(received)).split())
    if is_error(reply):
        still()
        assert len(expected) > 200 or not expected, reply["text"]
    else:
        ref = re.search(r"D-\d+", reply["text"]).group()
        with world.db.session() as session:
            decision = session.scalars(select(Decision).where(
                Decision.number == int(ref[2:]))).one()
            assert decision.title == expected
    delivered.check()


def test_command_text_with_the_word_payload_reaches_its_command(world: World) -> None:
    """Bolt took any form body containing "payload" for an interaction: a 404 for
    `/decision payload limits`."""
    reply = send_command(world, "/decision", "Raise the payload limits")
    assert not is_error(reply) and "Logged" in reply["text"], reply


# ---------------------------------------------------------------------------- search


WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéüñ", min_size=5, max_size=10)
META = st.sampled_from(["%", "'", '"', ";", "--", "\\", "*", ":*", "&", "|", "!", "()", "<>",
                        "%'", "<!channel>", "\x00"])
_unique = itertools.count(1)


@given(word=WORD, noise=short_hostile, meta=META)
def test_search_finds_a_hostile_word_and_metacharacters_match_nothing_more(
        world: World, word: str, noise: str, meta: str) -> None:
    word = f"{word}{next(_unique)}q"  # the same word never comes back in a later example
    reply = send_command(world, "/decision", f"T {noise[:80]} {meta}{word}{meta}")
    if is_error(reply):  # the noise made the title unusable; nothing to look for
        return
    ref = re.search(r"D-\d+", reply["text"]).group()
    found = send_command(world, "/decision", f"search {meta} {word.upper()} {meta}")
    assert not is_error(found), found["text"]
    assert re.search(rf"\b{ref}\b", json.dumps(found)), (ref, word, found["text"])
    for wildcard in ("%", "%%", "_%", "*"):
        answer = send_command(world, "/decision", f"search {wildcard}")
        with world.db.session() as session:
            every = session.scalars(select(Decision)).all()
            holding = [d.ref for d in every if wildcard.strip("%*") in
                       f"{d.title} {d.context} {d.decision} {d.consequences}".lower()]
        if wildcard.strip("%*"):  # "_" is a word character: only records holding it
            shown = set(re.findall(r"\bD-\d+\b", json.dumps(answer)))
            assert shown <= set(holding), (wildcard, shown - set(holding))
        else:
            assert is_error(answer) and "at least one word" in answer["text"], answer


def test_search_takes_at_most_twelve_words_and_needs_every_one(world: World) -> None:
    words = [f"w{index}zz{next(_unique)}" for index in range(SEARCH_WORDS_LIMIT)]
    reply = send_command(world, "/decision", "T " + " ".join(words))
    ref = re.search(r"D-\d+", reply["text"]).group()
    all_twelve = send_command(world, "/decision", "search " + " ".join(words))
    assert re.search(rf"\b{ref}\b", json.dumps(all_twelve))
    one_more = send_command(world, "/decision", "search " + " ".join([*words, "extra"]))
    assert is_error(one_more) and f"at most {SEARCH_WORDS_LIMIT}" in one_more["text"]
    # A stop word that no record holds ("the") still has to match.
    missing = send_command(world, "/decision", f"search {words[0]} the")
    assert not re.search(rf"\b{ref}\b", json.dumps(missing))


# ---------------------------------------------------------------------------- modals


def _choices(view: dict[str, Any]) -> dict[str, Any]:
    """A choice in every menu the form leaves empty (say, a risk's likelihood), so that the
    text fields decide whether it is saved."""
    chosen = {}
    for block in view.get("blocks", []):
        element = block.get("element") or {}
        if block.get("type") == "input" and element.get("type") in (
                "static_select", "radio_buttons") and not element.get("initial_option"):
            chosen[block["block_id"]] = payloads.options_of(element)[0]["value"]
    return chosen


def _text_inputs(view: dict[str, Any]) -> list[str]:
    return [block["block_id"] for block in view.get("blocks", [])
            if block.get("type") == "input"
            and block["element"]["type"] in ("plain_text_input", "url_text_input")]


@pytest.mark.parametrize("callback_id", sorted(MODALS))
@given(data=st.data())
def test_every_modal_field_takes_hostile_text_safely(world: World, callback_id: str,
                                                     data: st.DataObject) -> None:
    """A submission is saved, or answered with field errors and nothing saved."""
    view = {key: value for key, value in world.views[callback_id].items() if key != "id"}
    fields = _text_inputs(view)
    assert fields, f"{callback_id} has no text field"
    values = {**_choices(view), **{block_id: data.draw(st.one_of(st.none(), hostile),
                                                       label=block_id) for block_id in fields}}
    delivered = Delivered(world)
    still = unchanged(world)
    response = world.slack.submit(view, values)  # a fresh view id: never a double submit
    assert response.status_code == 200, response.text[:300]
    answer = response.json() if response.content else {}
    if answer.get("response_action") == "errors":
        blocks = {block.get("block_id") for block in view["blocks"]}
        assert set(answer["errors"]) <= blocks and all(answer["errors"].values()), answer
        assert not any(OUR_FAULT[:40] in message for message in answer["errors"].values())
        still()
    else:
        assert answer.get("response_action") in (None, "clear", "update", "push"), answer
        assert_safe(answer.get("view") or {}, callback_id)
    delivered.check()


@pytest.mark.parametrize("callback_id", sorted(MODALS))
def test_every_modal_field_drops_what_no_database_stores(world: World, callback_id: str) -> None:
    """NUL and lone surrogates in every text field: saved without them, or field errors."""
    view = {key: value for key, value in world.views[callback_id].items() if key != "id"}
    fields = {block_id: f"Fine\x00 text\ud800 <!here> {block_id}"
              for block_id in _text_inputs(view)}
    delivered = Delivered(world)
    response = world.slack.submit(view, {**_choices(view), **fields})
    assert response.status_code == 200, response.text[:300]
    answer = response.json() if response.content else {}
    assert OUR_FAULT not in json.dumps(answer), answer
    if answer.get("response_action") != "errors":
        stored = _texts(_stored(world))
        for block_id in fields:
            clean = f"Fine text <!here> {block_id}"
            assert any(clean in text for text in stored), f"{block_id} not stored as {clean!r}"
    delivered.check()


def _texts(value: Any) -> list[str]:
    """Every string in the stored rows, JSON columns included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _texts(item)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _texts(item)]
    return []


# ---------------------------------------------------------------------------- thread replies


@given(text=hostile)
@example(text="done \x00 <!channel> \ud800 & blocked by <@UEVIL0001> ' OR 1=1 --")
def test_a_hostile_thread_reply_is_stored_without_what_no_database_takes(
        world: World, text: str) -> None:
    delivered = Delivered(world)
    number = next(_unique)
    ts = f"{int(time.time())}.{number:06d}"
    user = f"U0H{number:06d}"  # each example by someone new: one update per person
    text = f"today: {text} (done)"  # labelled, so it answers the standup
    event = {"type": "message", "channel": CHANNEL, "user": user, "ts": ts,
             "thread_ts": world.standup_ts, "text": payloads.as_slack_sends(text)}
    response = world.slack.event(event)
    assert response.status_code == 200, response.text[:300]

    def stored() -> list[RitualUpdate]:
        with world.db.session() as session:
            return list(session.scalars(select(RitualUpdate).where(
                RitualUpdate.user_id == user)))

    [update] = eventually(stored)
    assert update.message_ts == ts
    assert update.parts[ts] == update.text == storable(text).strip()[:REPLY_LIMIT]
    delivered.check()


# ---------------------------------------------------------------------------- webhooks

JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                      hostile)
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(short_hostile, inner, max_size=3)),
    max_leaves=6)


def _mlflow_headers(body: bytes) -> dict[str, str]:
    return mlflow_signed(body, SECRET)


def _bearer(_: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}


def _alertmanager(value: Any, path: str) -> dict[str, Any]:
    alert = {"status": "firing", "labels": {"alertname": "Latency", "severity": "critical",
                                           "project": "churn-model"},
             "annotations": {"summary": "p99 above 2s", "description": "slow"},
             "startsAt": "2026-11-25T09:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "http://prometheus:9090/graph", "fingerprint": "abc123"}
    payload = {"receiver": "quorum", "status": "firing", "alerts": [alert],
               "groupLabels": {"alertname": "Latency"}, "commonLabels": dict(alert["labels"]),
               "commonAnnotations": {"summary": "p99 above 2s"},
               "externalURL": "http://alertmanager:9093", "version": "4",
               "groupKey": f"{{}}:{{alertname=\"Latency\",n=\"{next(_unique)}\"}}",
               "truncatedAlerts": 0}
    _put(payload, path, value)
    return payload


def _promotion(value: Any, path: str) -> dict[str, Any]:
    payload = {"model": "churn-model", "version": "3", "to": "production", "from": "staging",
               "actor": "ci-bot", "url": "https://ci.example/run/1", "note": "nightly",
               "channel": CHANNEL}
    _put(payload, path, value)
    return payload


def _mlflow(value: Any, path: str) -> dict[str, Any]:
    payload = {"entity": "model_version_alias", "action": "created",
               "timestamp": "2026-11-25T09:30:00.123456+00:00",
               "data": {"name": "churn-model", "alias": "champion", "version": "3"}}
    _put(payload, path, value)
    return payload


def _github_headers(body: bytes) -> dict[str, str]:
    digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-GitHub-Event": "deployment_protection_rule",
            "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": f"sha256={digest}"}


def _github(value: Any, path: str) -> dict[str, Any]:
    payload = protection_rule_event(
        "acme/hostile", "production", "http://127.0.0.1:9/repos/acme/hostile/actions/runs/1/"
        "deployment_protection_rule", 77, payload={"version": "3"})
    _put(payload, path, value)
    return payload


def _put(payload: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = payload
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value


HOOKS: dict[str, tuple[Callable[[Any, str], dict[str, Any]], Callable[[bytes], dict[str, str]],
                       list[str]]] = {
    "/hooks/alertmanager": (_alertmanager, _bearer, [
        "receiver", "status", "groupKey", "externalURL", "version", "commonLabels.project",
        "commonLabels.alertname", "commonAnnotations.summary", "groupLabels.alertname",
        "alerts.0.status", "alerts.0.labels.alertname", "alerts.0.labels.severity",
        "alerts.0.labels.project", "alerts.0.labels.model", "alerts.0.annotations.summary",
        "alerts.0.annotations.description", "alerts.0.startsAt", "alerts.0.endsAt",
        "alerts.0.generatorURL", "alerts.0.fingerprint", "alerts"]),
    "/hooks/promotion": (_promotion, _bearer, [
        "model", "version", "to", "from", "actor", "url", "note", "channel"]),
    "/hooks/mlflow": (_mlflow, _mlflow_headers, [
        "entity", "action", "timestamp", "data", "data.name", "data.alias", "data.version"]),
    "/hooks/github": (_github, _github_headers, [
        "action", "environment", "deployment_callback_url", "repository",
        "repository.full_name", "installation", "installation.id", "deployment",
        "deployment.sha", "deployment.ref", "deployment.payload", "deployment.payload.version"]),
}
# The field of each hook that holds the version "3" (the raw-body tests rewrite it).
VERSION_FIELD = {"/hooks/alertmanager": "alerts.0.labels.model", "/hooks/mlflow": "data.version",
                 "/hooks/github": "deployment.payload.version"}


def post_hook(world: World, route: str, body: bytes) -> httpx.Response:
    headers = HOOKS[route][1](body)
    return httpx.post(f"{world.server.url}{route}", content=body, headers=headers, timeout=10)


def assert_hook_answer(world: World, route: str, body: bytes, what: str) -> None:
    """200/201/202, or a 4xx JSON reason that changed nothing; never a 5xx."""
    delivered = Delivered(world)
    still = unchanged(world)
    response = post_hook(world, route, body)
    assert response.status_code < 500, f"{route} {what}: {response.status_code} {response.text}"
    answer = response.json()
    if response.status_code >= 400:
        assert answer["ok"] is False and isinstance(answer["reason"], str) and answer["reason"]
        still()
    delivered.check()


def test_every_webhook_is_driven(world: World) -> None:
    routes = {route.path for route in world.server.web.routes}
    assert {path for path in routes if path.startswith("/hooks/")} == set(HOOKS)


@pytest.mark.parametrize("route", sorted(HOOKS))
@given(data=st.data())
def test_every_webhook_field_takes_any_json_safely(world: World, route: str,
                                                   data: st.DataObject) -> None:
    build, _, paths = HOOKS[route]
    path = data.draw(st.sampled_from(paths), label="field")
    value = data.draw(st.one_of(hostile, JSON_VALUE), label="value")
    body = json.dumps(build(value, path)).encode()  # ensure_ascii: surrogates go as \ud800
    assert_hook_answer(world, route, body, f"{path}={value!r:.80}")


@pytest.mark.parametrize("route", sorted(HOOKS))
@pytest.mark.parametrize("raw", [
    pytest.param(lambda body: body.replace(b'"3"', b'"3\\u0000"'), id="nul"),
    pytest.param(lambda body: body.replace(b'"3"', b'"\\ud800"'), id="lone-surrogate"),
    pytest.param(lambda body: body.replace(b'"3"', b'[' * 40 + b']' * 40), id="nested-40"),
    pytest.param(lambda body: body.replace(b'"3"', b'[' * 100_000 + b']' * 100_000),
                 id="nested-100000"),
    pytest.param(lambda body: body.replace(b'"3"', b'{"a":' * 5000 + b'1' + b'}' * 5000),
                 id="nested-objects"),
    pytest.param(lambda body: body[:-1], id="truncated"),
    pytest.param(lambda body: b"[" + body + b"]", id="not-an-object"),
    pytest.param(lambda body: body.replace(b'"3"', b'"\xff\xfe"'), id="not-utf8"),
])
def test_unstorable_or_deeply_nested_webhook_bodies_get_a_400(
        world: World, route: str, raw: Callable[[bytes], bytes]) -> None:
    build = HOOKS[route][0]
    path = VERSION_FIELD.get(route, "version")
    body = raw(json.dumps(build("3", path)).encode())
    still = unchanged(world)
    response = post_hook(world, route, body)
    assert response.status_code == 400, response.text[:300]
    assert response.json()["ok"] is False and response.json()["reason"]
    still()


# A request line must fit uvicorn's 16 KiB (h11) however the value percent-encodes.
query_value = hostile.map(lambda text: text[:400])


@given(model=query_value, version=query_value, milestone=st.one_of(st.none(), query_value))
def test_the_ci_gate_check_answers_any_query(world: World, model: str, version: str,
                                             milestone: str | None) -> None:
    query = {"model": model, "version": version, **({"milestone": milestone} if milestone
                                                     else {})}
    url = f"{world.server.url}/api/gates?{urlencode(query, errors='surrogatepass')}"
    response = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code in (200, 400), response.text[:300]
    answer = response.json()
    assert answer["ok"] is (response.status_code == 200), answer
    if response.status_code == 200:
        assert answer["passed"] in (True, False), answer
