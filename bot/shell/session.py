"""`quorum shell`: talk to the real Quorum in a terminal, with no Slack at all.

Like Hubot's shell adapter or Errbot's text backend: what you type becomes the payloads Slack
would send (`bot.slack_payloads`), dispatched to the same Bolt app, listeners, services,
templates and database as `quorum serve`; the Web API calls they make are answered in-process
(`bot.shell.slack.LocalSlack`) and printed as text (`bot.shell.render`), and the modals they
open are filled in at the prompt (`bot.shell.forms`). The outbox worker and the scheduler run as
they do in production, so cards arrive through the outbox and scheduled rituals post while the
shell is open.

Each command waits until its effects have settled (the listener finished, the outbox delivered)
before printing, so a piped session prints the same transcript every time.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

from slack_bolt import App, BoltResponse
from sqlalchemy import func, select

from bot import outbox
from bot import slack_payloads as payloads
from bot.delivery import OutboxWorker
from bot.manifest import SlashCommand, slash_commands
from bot.models import OutboxMessage, utcnow
from bot.runtime import Runtime
from bot.scheduler import Scheduler
from bot.shell.forms import Cancelled, FormPrompts
from bot.shell.render import BlockText, Style, clip
from bot.shell.slack import TEAM_ID, Directory, Event, LocalSlack, app_answer
from bot.slack_app import bolt_request, build_app, web_client

FORM = "application/x-www-form-urlencoded"
SETTLE_SECONDS = 10.0


@dataclass
class Control:
    """A pressable element printed as `[N]`, and where it sits."""

    element: dict[str, Any]
    block_id: str
    channel: str = ""
    ts: str = ""  # the message it is on
    ephemeral: bool = False
    view: dict[str, Any] | None = None  # an App Home (no channel, no response_url)


# `@name` or `#channel` standing alone (not inside an email address, a `<…>` entity or a word),
# a name ending in a letter or digit: `@dana,` mentions dana.
MENTION = re.compile(r"(?<![\w<@#|.-])([@#])([A-Za-z0-9](?:[A-Za-z0-9._-]{0,38}[A-Za-z0-9])?)"
                     r"(?![\w@-])")
SPECIAL_MENTIONS = ("here", "channel", "everyone")


@dataclass
class ResponseTarget:
    """What a response_url handed to a listener answers: a channel, maybe one message in it."""

    channel: str
    ts: str = ""
    ephemeral: bool = False


class Shell:
    """One terminal session; see the module docstring."""

    def __init__(self, runtime: Runtime, *, user: str, channel: str, stdin: TextIO,
                 stdout: TextIO, interactive: bool = False, color: bool = False,
                 scheduler_tick: float = 10.0) -> None:
        self.stdin, self.out = stdin, stdout
        self.interactive = interactive
        self.style = Style(color)
        self.directory = Directory()
        self.user, self.channel = user, channel
        self.lock = threading.RLock()
        self.pending: list[Event] = []
        self.idle = False
        self.prompt = ""
        self.controls: dict[int, Control] = {}
        self.ephemerals: dict[str, dict[str, Any]] = {}  # ts → message, for clicks and edits
        self.responses: dict[str, ResponseTarget] = {}
        self._counter = 0
        self.forms = FormPrompts(self)  # the modals and menus, asked for at the prompt
        self.slack = LocalSlack(self.directory, self._on_event).start()
        # Same settings as the person's, but Slack is the one in this process.
        settings = runtime.settings.model_copy(update={
            "slack_api_url": self.slack.api_url, "slack_bot_token": "xoxb-quorum-shell"})
        self.runtime = Runtime(settings=settings, db=runtime.db)
        # Processing before responding: the reply is printed once the listener is done.
        self.app: App = build_app(self.runtime, verify_requests=False)
        self.worker = OutboxWorker(self.runtime.db, web_client(self.runtime, timeout=5),
                                   poll_seconds=0.2)
        self.scheduler = Scheduler(self.runtime.db, tick_seconds=scheduler_tick,
                                   settings=self.runtime.settings)
        self.commands: dict[str, SlashCommand] = {c.name: c for c in slash_commands(self.runtime)}

    # ------------------------------------------------------------------ identities

    @property
    def user_id(self) -> str:
        return self.directory.user_id(self.user)

    @property
    def channel_id(self) -> str:
        return self.directory.channel_id(self.channel)

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    # ------------------------------------------------------------------ the loop

    def run(self) -> int:
        """Read commands until `quit` or the end of input; the exit status is 0."""
        self.worker.start()
        self.scheduler.start()
        try:
            self.write(self.style.bold("Quorum shell") + f" · you are @{self.user} in "
                       f"#{self.channel} · database {self.runtime.db.engine.url!r}")
            self.write("Type a slash command as in Slack (/decision Use XGBoost), `press N` to "
                       "press button [N], `help` for more, `quit` to leave.")
            self._settle()
            while True:
                line = self._read(f"{self.user}@#{self.channel}> ")
                if line is None or not self.handle(line):
                    break
        except EOFError:
            pass  # the input ended inside a form
        finally:
            self._settle()
            self.scheduler.stop()
            self.worker.stop()
            self.slack.stop()
        return 0

    def handle(self, line: str) -> bool:
        """Act on one line; False when the session should end."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        word, _, rest = line.partition(" ")
        rest, lower = rest.strip(), word.lower()
        if lower in ("quit", "exit", "/quit", "/exit"):
            return False
        if lower in ("help", "/help", "?"):
            self._help()
        elif lower == "/user":
            self._switch("user", rest)
        elif lower == "/channel":
            self._switch("channel", rest)
        elif lower == "press":
            self._press(rest)
        elif lower == "home":
            self._home()
        elif word.startswith("/"):
            self._slash(word, rest)
        else:
            self.complain(f"Not understood: “{clip(line)}”. Type a slash command like "
                          "/decision, `press N`, or `help`.")
        return True

    def _help(self) -> None:
        width = max((len(name) for name in self.commands), default=8) + 2
        self.write(self.style.bold("Slash commands") + " (add `help` after one for its usage):")
        for command in self.commands.values():
            self.write(f"  {command.name.ljust(width)}{command.description}")
        self.write(self.style.bold("Shell commands") + ":")
        for usage, meaning in (
                ("/user NAME", f"act as someone else (now @{self.user})"),
                ("/channel NAME", f"move to another channel (now #{self.channel})"),
                ("press N", "press button or menu [N]"),
                ("home", "open your App Home tab"),
                ("help", "this list"),
                ("quit", "leave (so does Ctrl-D, or the end of piped input)")):
            self.write(f"  {usage.ljust(16)}{meaning}")

    def _switch(self, what: str, rest: str) -> None:
        name = Directory.valid(rest) if rest and " " not in rest else None
        if name is None:
            self.complain(f"Usage: /{what} NAME (letters, digits, dots, dashes), "
                          f"e.g. /{what} {'bob' if what == 'user' else 'fraud-model'}.")
            return
        setattr(self, what, name)
        if what == "channel":
            self.directory.channel_id(name)  # a channel of this session, for `#name`
        where = f"@{name}" if what == "user" else f"#{name}"
        self.write(self.style.dim(f"(you are now {'' if what == 'user' else 'in '}{where})"))

    # ------------------------------------------------------------------ talking to the app

    def dispatch(self, body: str, content_type: str = FORM) -> BoltResponse:
        return self.app.dispatch(bolt_request(body, {"content-type": content_type}))

    def _response_url(self, target: ResponseTarget) -> str:
        key = f"r{self._next()}"
        self.responses[key] = target
        return self.slack.response_url(key)

    def _slash(self, command: str, text: str) -> None:
        command = command.lower()
        if command not in self.commands:
            known = ", ".join(self.commands) or "none yet"
            self.complain(f"Unknown command {clip(command)}. Quorum's commands: {known} "
                          "(`help` lists everything).")
            return
        form = payloads.slash_command(
            command, self._escaped(text), team=TEAM_ID, user=self.user_id, user_name=self.user,
            channel=self.channel_id, channel_name=self.channel,
            response_url=self._response_url(ResponseTarget(self.channel_id)))
        response = self.dispatch(payloads.form_body(form))
        reply = app_answer(response)
        if response.status != 200:
            self.complain(f"Quorum did not answer {command} (HTTP {response.status}).")
        elif reply.get("response_type") == "in_channel":
            # Printed before whatever the outbox delivered meanwhile, as Slack would show it.
            stored = self.slack.post(self.channel_id, reply, announce=False)
            with self.lock:
                self._print_message(f"[#{self.channel}] Quorum:", stored,
                                    Control({}, "", self.channel_id, stored["ts"]))
        elif reply.get("text") or reply.get("blocks"):
            with self.lock:
                self._print_ephemeral(self.channel_id, reply, self.user_id)
        self._after()

    def _escaped(self, text: str) -> str:
        """Typed text as Slack sends a command with `should_escape` on: `@dana` becomes
        `<@UDANA|dana>`, `@here` `<!here>`, and `#fraud-model` (a channel of this session)
        `<#CFRAUDMODEL|fraud-model>`."""

        def mention(match: re.Match[str]) -> str:
            sigil, name = match.group(1), match.group(2)
            bare = name.lower()
            if sigil == "@" and bare in SPECIAL_MENTIONS:
                return f"<!{bare}>"
            if sigil == "@":
                return f"<@{self.directory.user_id(bare)}|{bare}>"
            # Slack escapes only channels that exist: here, those this session has been in.
            known = self.directory.knows(self.directory.channel_id(bare, remember=False))
            return f"<#{self.directory.channel_id(bare)}|{bare}>" if known else match.group(0)

        return MENTION.sub(mention, text)

    def _press(self, rest: str) -> None:
        number = int(rest) if rest.isdigit() else None
        control = self.controls.get(number) if number is not None else None
        if not rest:
            self.complain("Say which button: `press 1` presses the button marked [1].")
            return
        if control is None:
            self.complain(f"There is no button [{clip(rest)}] to press: use the number "
                          "printed before it, like `press 1`.")
            return
        element = control.element
        if element.get("url") and element.get("type") == "button":
            self.write(self.style.dim(f"(opens {element['url']})"))
        try:
            action = self._action(element)
        except Cancelled:
            self.write(self.style.dim("(nothing chosen)"))
            return
        if control.view is not None:
            payload = payloads.block_actions(
                action, team=TEAM_ID, user=self.user_id, channel=None, channel_name=None,
                response_url=None, block_id=control.block_id,
                view=self.slack.views.get(str(control.view.get("id")), control.view))
        else:
            message = self.ephemerals.get(control.ts) if control.ephemeral else \
                self.slack.messages.get((control.channel, control.ts))
            target = ResponseTarget(control.channel, control.ts, control.ephemeral)
            payload = payloads.block_actions(
                action, team=TEAM_ID, user=self.user_id, channel=control.channel,
                channel_name=self.directory.name(control.channel),
                response_url=self._response_url(target),
                message={"ts": control.ts, **(message or {})}, ephemeral=control.ephemeral,
                block_id=control.block_id)
        response = self.dispatch(payloads.interaction_body(payload))
        if response.status == 404:
            self.complain("Nothing in Quorum answers that button.")
        self._after()

    def _action(self, element: dict[str, Any]) -> dict[str, Any]:
        """The `actions[0]` of a click on `element`, asking for a choice for menus."""
        kind = element.get("type")
        base = {"action_id": element.get("action_id", ""), "type": kind}
        if kind == "button":
            base["text"] = element.get("text", {"type": "plain_text", "text": ""})
            if "value" in element:
                base["value"] = element["value"]
            return base
        if kind == "overflow":
            chosen = self.forms.ask_value("Choose", {**element, "type": "static_select"},
                                          optional=False, current=None)
            option = next(o for o in payloads.options_of(element) if o["value"] == chosen)
            return {**base, "selected_option": option}
        value = self.forms.ask_value("Choose", element, optional=False,
                                     current=payloads.initial_value(element))
        state = payloads.element_state(element, value)
        return {**base, **state}

    def _home(self) -> None:
        event = {"type": "app_home_opened", "user": self.user_id, "tab": "home",
                 "channel": "D" + self.user_id[1:], "event_ts": self.slack.new_ts()}
        body = json.dumps(payloads.event_callback(event, team=TEAM_ID))
        response = self.dispatch(body, "application/json")
        if response.status == 404:
            self.complain("Quorum has no App Home tab yet.")
        self._after()

    # ------------------------------------------------------------------ settling and printing

    def _after(self) -> None:
        """Wait for the effects of a command, print them, then fill any form it opened."""
        self._settle()
        while opened := self.slack.take_opened():
            for view_id in opened:
                self.forms.fill(view_id)
                self._settle()

    def _settle(self, timeout: float = SETTLE_SECONDS) -> None:
        """Wait until the outbox has delivered what is due, then print what arrived."""
        deadline = time.monotonic() + timeout
        self.worker.wake()
        while time.monotonic() < deadline:
            with self.runtime.db.session() as session:
                due = session.scalar(
                    select(func.count()).select_from(OutboxMessage).where(
                        OutboxMessage.status.in_(outbox.UNFINISHED),
                        OutboxMessage.next_attempt_at <= utcnow()))
            if not due:
                break
            time.sleep(0.02)
        with self.lock:
            self._flush()

    def _on_event(self, event: Event) -> None:
        """From the Web API thread: print now if the person is waiting at the prompt."""
        with self.lock:
            self.pending.append(event)
            if self.idle:
                self.out.write("\n")
                self._flush()
                self.out.write(self.prompt + _typed_so_far())
                self.out.flush()

    def _flush(self) -> None:
        events, self.pending = self.pending, []
        for event in events:
            self._print_event(event)

    def write(self, text: str) -> None:
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()

    def complain(self, text: str) -> None:
        self.write(self.style.error(text))

    def block_text(self, control: Control | None = None) -> BlockText:
        def number(element: dict[str, Any], block_id: str) -> int:
            assert control is not None
            n = self._next_control()
            self.controls[n] = Control(element, block_id, control.channel, control.ts,
                                       control.ephemeral, control.view)
            return n

        return BlockText(self.style, self.directory.name, self.directory.name,
                         number if control is not None else None)

    def _next_control(self) -> int:
        return max(self.controls, default=0) + 1

    def _print_message(self, title: str, message: dict[str, Any], where: Control) -> None:
        self.write(self.style.dim(title))
        for line in self.block_text(where).message(message):
            self.write("  " + line)

    def _print_event(self, event: Event) -> None:
        where = f"#{self.directory.name(event.channel)}" if event.channel else ""
        if event.kind == "post":
            title = f"[{where}] Quorum:"
            if event.parent is not None:
                title = f"[{where}] Quorum, in the thread of “{_summary(event.parent)}”:"
            self._print_message(title, event.message,
                                Control({}, "", event.channel, event.message["ts"]))
        elif event.kind == "update":
            self._print_message(f"[{where}] Quorum updated a message:", event.message,
                                Control({}, "", event.channel, event.message["ts"]))
        elif event.kind == "delete":
            self.write(self.style.dim(f"[{where}] Quorum deleted a message."))
        elif event.kind == "ephemeral":
            self._print_ephemeral(event.channel, event.message, event.user)
        elif event.kind == "home":
            self._print_message(f"[App Home of @{self.directory.name(event.user)}]",
                                event.message, Control({}, "", view=event.message))
        elif event.kind == "respond":
            self._print_response(event)
        else:
            self.write(self.style.dim(f"[{where}] {event.message.get('text', '')}"))

    def _print_ephemeral(self, channel: str, message: dict[str, Any], user: str,
                         ts: str | None = None, replaced: bool = False) -> None:
        ts = ts or self.slack.new_ts()
        self.ephemerals[ts] = message
        who = "you" if user in ("", self.user_id) else f"@{self.directory.name(user)}"
        verb = "updated its reply" if replaced else ""
        place = f"#{self.directory.name(channel)}"
        title = f"[{place}] Quorum {verb} (only {who} can see this):".replace("  ", " ")
        self._print_message(title, message, Control({}, "", channel, ts, ephemeral=True))

    def _print_response(self, event: Event) -> None:
        body, target = event.message, self.responses.get(event.key)
        if target is None:
            return
        if body.get("delete_original"):
            if target.ts and not target.ephemeral:
                self.slack.messages.pop((target.channel, target.ts), None)
            self.write(self.style.dim(f"[#{self.directory.name(target.channel)}] "
                                      "Quorum deleted a message."))
            return
        message = {key: body[key] for key in ("text", "blocks", "attachments") if key in body}
        if body.get("replace_original") and target.ts:
            if target.ephemeral:
                self._print_ephemeral(target.channel, message, self.user_id, ts=target.ts,
                                      replaced=True)
            else:
                self.slack.update(target.channel, target.ts, message)
                self._flush()
        elif body.get("response_type") == "in_channel":
            self.slack.post(target.channel, message)
            self._flush()
        else:
            self._print_ephemeral(target.channel, message, self.user_id)

    # ------------------------------------------------------------------ reading

    def _read(self, prompt: str) -> str | None:
        """One line of input, or None at the end of input; piped lines are echoed."""
        if self.interactive:
            with self.lock:
                self._flush()
                self.prompt, self.idle = prompt, True
            try:
                return input(prompt)
            except EOFError:
                self.out.write("\n")
                return None
            except KeyboardInterrupt:
                self.out.write("^C\n")
                return ""
            finally:
                with self.lock:
                    self.idle = False
        line = self.stdin.readline()
        if not line:
            return None
        line = line.rstrip("\r\n")
        self.write(prompt + line)
        return line

    def read_field(self, prompt: str) -> str:
        try:
            line = self._read(prompt) if not self.interactive else input(prompt)
        except KeyboardInterrupt:
            raise Cancelled from None
        except EOFError:
            line = None
        if line is None:
            self.write(self.style.dim("(form closed: end of input)"))
            raise EOFError
        if line.strip().lower() == "/cancel":
            raise Cancelled
        return line


def _typed_so_far() -> str:
    """What the person had typed at the prompt when a message arrived, to show it again."""
    try:
        import readline
    except ImportError:
        return ""
    return readline.get_line_buffer()


def _summary(message: dict[str, Any]) -> str:
    """A thread parent in a few words: its header, or the start of its text."""
    for block in message.get("blocks") or []:
        if block.get("type") == "header":
            return clip(str(block.get("text", {}).get("text", "")))
    return clip(str(message.get("text", "")).split("\n")[0])
