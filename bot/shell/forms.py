"""Modals and menus filled in at the prompt, for `quorum shell`.

A modal the app opens is asked for field by field, as Slack would show it: Enter keeps the value
shown or skips an optional field, `-` clears it, `/cancel` (or Ctrl-C) closes the form. What is
typed becomes the value Slack puts in `state.values` (options by number or name, people and
channels by name, dates, times, numbers), the form is submitted as a `view_submission`, and the
fields the app answers with errors are asked for again. A menu pressed in a message is chosen the
same way.
"""

from __future__ import annotations

import re
from datetime import date
from typing import TYPE_CHECKING, Any

from bot import slack_payloads as payloads
from bot.shell.render import clip
from bot.shell.slack import TEAM_ID, Directory, app_answer

if TYPE_CHECKING:
    from bot.shell.session import Shell

TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class Cancelled(Exception):
    """The person closed the form (`/cancel`, Ctrl-C)."""


class FormPrompts:
    """Asks for the inputs of a shell's modals, and the choice of a menu, at its prompt."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell

    def fill(self, view_id: str) -> None:
        """Fill the modal at prompts, submit it, and follow the app's answer."""
        stack = [view_id]
        while stack:
            view = self.shell.slack.views[stack[-1]]
            try:
                answer = self._fill_one(view)
            except Cancelled:
                self.shell.write(self.shell.style.dim("(form closed without saving)"))
                return
            action = answer.get("response_action")
            if action == "update" and isinstance(answer.get("view"), dict):
                self.shell.slack.store_view(answer["view"], view["id"])
            elif action == "push" and isinstance(answer.get("view"), dict):
                stack.append(self.shell.slack.store_view(answer["view"])["id"])
            elif action == "clear":
                stack.clear()
            else:
                stack.pop()

    def _fill_one(self, view: dict[str, Any]) -> dict[str, Any]:
        blocks = self.shell.block_text()
        submit = blocks.text(view.get("submit")) or "Submit"
        self.shell.write(self.shell.style.bold(f"[form] {blocks.text(view.get('title'))}"))
        for block in view.get("blocks", []):
            if block.get("type") != "input":
                for line in blocks.block(block):
                    self.shell.write("  " + line)
        self.shell.write(self.shell.style.dim(
            f"  Enter keeps the [value shown] or skips an optional field; `-` clears it; "
            f"`/cancel` closes the form. The form is sent ({submit}) after the last field."))
        inputs = [b for b in view.get("blocks", []) if b.get("type") == "input"]
        if not view.get("submit") and not inputs:  # a read-only modal: shown, then closed
            return {}
        values: dict[str, Any] = {}
        ask = inputs
        while True:
            for block in ask:
                element = block.get("element", {})
                current = values.get(block["block_id"], payloads.initial_value(element))
                values[block["block_id"]] = self.ask_value(
                    blocks.text(block.get("label")), element,
                    optional=bool(block.get("optional")), current=current,
                    hint=blocks.text(block.get("hint")) if block.get("hint") else "")
            payload = payloads.view_submission(view, values, team=TEAM_ID, user=self.shell.user_id)
            response = self.shell.dispatch(payloads.interaction_body(payload))
            answer = app_answer(response)
            if response.status != 200:
                self.shell.complain(f"Quorum did not accept the form (HTTP {response.status}).")
                return {}
            if answer.get("response_action") != "errors":
                self.shell.write(self.shell.style.dim(f"({submit}: sent)"))
                return answer
            errors = answer.get("errors") or {}
            labels = {b["block_id"]: blocks.text(b.get("label")) for b in inputs}
            for block_id, message in errors.items():
                self.shell.complain(f"  {labels.get(block_id, block_id)}: {message}")
            ask = [b for b in inputs if b["block_id"] in errors] or inputs

    def ask_value(self, label: str, element: dict[str, Any], *, optional: bool,
                   current: Any, hint: str = "") -> Any:
        """Ask for one input until the answer is valid; returns it as `state.values` holds it."""
        kind = element.get("type", "")
        options = payloads.options_of(element)
        if options:
            blocks = self.shell.block_text()
            listed = "   ".join(f"{i}) {blocks.text(o.get('text'))}"
                               for i, o in enumerate(options, 1))
            self.shell.write(f"  {label} — choose by number or name: {listed}")
        if hint:
            self.shell.write(self.shell.style.dim(f"  {hint}"))
        shown = self._shown(element, current)
        extra = []
        if optional:
            extra.append("optional")
        if kind.startswith("multi_") or kind == "checkboxes":
            extra.append("several, comma-separated")
        if kind == "plain_text_input" and element.get("multiline"):
            extra.append("\\n for a new line")
        if kind == "datepicker":
            extra.append("YYYY-MM-DD")
        if kind == "timepicker":
            extra.append("HH:MM")
        prompt = f"{label}{' (' + ', '.join(extra) + ')' if extra else ''}" \
                 f"{' [' + shown + ']' if shown else ''}: "
        while True:
            raw = self.shell.read_field(prompt).strip()
            if raw == "":
                if _present(current) or optional:
                    return current if _present(current) else _empty(kind)
                self.shell.complain("  This field is required.")
                continue
            if raw == "-":
                if optional:
                    return _empty(kind)
                self.shell.complain("  This field is required.")
                continue
            try:
                return self._convert(element, raw)
            except ValueError as exc:
                self.shell.complain(f"  {exc}")

    def _shown(self, element: dict[str, Any], current: Any) -> str:
        if not _present(current):
            return ""
        kind = element.get("type", "")
        if kind in ("users_select", "multi_users_select"):
            ids = current if isinstance(current, list) else [current]
            return ", ".join("@" + self.shell.directory.name(i) for i in ids)
        if kind in ("conversations_select", "channels_select", "multi_conversations_select",
                    "multi_channels_select"):
            ids = current if isinstance(current, list) else [current]
            return ", ".join("#" + self.shell.directory.name(i) for i in ids)
        texts = {o["value"]: self.shell.block_text().text(o.get("text"))
                 for o in payloads.options_of(element)}
        if isinstance(current, list):
            return ", ".join(texts.get(v, str(v)) for v in current)
        text = texts.get(current, str(current)).replace("\n", "\\n")
        return clip(text)

    def _convert(self, element: dict[str, Any], raw: str) -> Any:
        """Turn what was typed into the element's value, or raise ValueError saying why."""
        kind = element.get("type", "")
        if kind in ("static_select", "radio_buttons"):
            return self._option(element, raw)
        if kind in ("multi_static_select", "checkboxes"):
            return [self._option(element, part) for part in _split(raw)]
        if kind in ("users_select", "multi_users_select"):
            people = []
            for part in _split(raw):
                name = Directory.valid(part)
                if name is None:
                    raise ValueError(f"“{clip(part)}” is not a person's name.")
                people.append(self.shell.directory.user_id(name))
            if kind == "users_select":
                if len(people) != 1:
                    raise ValueError("Name one person.")
                return people[0]
            return list(dict.fromkeys(people))
        if kind in ("conversations_select", "channels_select", "multi_conversations_select",
                    "multi_channels_select"):
            channels = []
            for part in _split(raw):
                name = Directory.valid(part)
                if name is None:
                    raise ValueError(f"“{clip(part)}” is not a channel name.")
                channels.append(self.shell.directory.channel_id(name))
            return channels if kind.startswith("multi_") else channels[0]
        if kind == "datepicker":
            try:
                return date.fromisoformat(raw).isoformat()
            except ValueError:
                raise ValueError("Give a date like 2026-03-31.") from None
        if kind == "timepicker":
            if not TIME.match(raw):
                raise ValueError("Give a time like 09:30.")
            hours, minutes = raw.split(":")
            return f"{int(hours):02d}:{minutes}"
        if kind == "number_input":
            try:
                number = float(raw) if element.get("is_decimal_allowed") else int(raw)
            except ValueError:
                raise ValueError("Give a number.") from None
            low, high = element.get("min_value"), element.get("max_value")
            if (low is not None and number < float(low)) or \
                    (high is not None and number > float(high)):
                raise ValueError(f"Give a number from {low} to {high}.")
            return raw
        text = raw.replace("\\n", "\n") if element.get("multiline") else raw
        if kind == "url_text_input" and not text.startswith(("http://", "https://")):
            raise ValueError("Give a link starting with https://.")
        if kind == "email_text_input" and "@" not in text:
            raise ValueError("Give an email address.")
        limit, minimum = element.get("max_length"), element.get("min_length")
        if limit and len(text) > int(limit):
            raise ValueError(f"Keep it within {limit} characters (this is {len(text)}).")
        if minimum and len(text) < int(minimum):
            raise ValueError(f"Write at least {minimum} characters.")
        return text

    def _option(self, element: dict[str, Any], raw: str) -> str:
        options = payloads.options_of(element)
        blocks = self.shell.block_text()
        if raw.isdigit() and 1 <= int(raw) <= len(options):
            return str(options[int(raw) - 1]["value"])
        for option in options:
            if raw.lower() in (str(option["value"]).lower(), blocks.text(option.get("text"))
                               .lower()):
                return str(option["value"])
        raise ValueError(f"Choose one of 1 to {len(options)}, by number or name.")



def _present(value: Any) -> bool:
    return value not in (None, "", [], {})


def _empty(kind: str) -> Any:
    if kind.startswith("multi_") or kind == "checkboxes":
        return []
    if kind in ("plain_text_input", "url_text_input", "email_text_input", "number_input"):
        return ""
    return None


def _split(raw: str) -> list[str]:
    return [part for part in re.split(r"[,\s]+", raw) if part]
