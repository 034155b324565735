"""Block Kit and Slack mrkdwn as terminal text, for `quorum shell`.

Headers are bold, sections and fields become lines, context is dimmed, buttons and menus are
numbered so that they can be pressed by number, `<@U…>` mentions show the person's name and
links show their label and address. Colour (ANSI) only when writing to a terminal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The emoji Quorum's templates use, and a few common ones; others stay as `:name:`.
EMOJI = {
    "white_check_mark": "✅", "heavy_check_mark": "✔", "x": "❌", "warning": "⚠️",
    "large_blue_circle": "🔵", "large_green_circle": "🟢", "large_yellow_circle": "🟡",
    "red_circle": "🔴", "white_circle": "⚪", "large_orange_circle": "🟠",
    "arrows_counterclockwise": "🔄", "hourglass_flowing_sand": "⏳", "hourglass": "⌛",
    "grey_question": "❔", "question": "❓", "exclamation": "❗", "rotating_light": "🚨",
    "tada": "🎉", "rocket": "🚀", "memo": "📝", "calendar": "📅", "clipboard": "📋",
    "lock": "🔒", "bell": "🔔", "fire": "🔥", "bulb": "💡", "mag": "🔍", "test_tube": "🧪",
    "chart_with_upwards_trend": "📈", "shield": "🛡", "construction": "🚧", "sparkles": "✨",
    "wave": "👋", "eyes": "👀", "thumbsup": "👍", "+1": "👍", "no_entry": "⛔",
    "stopwatch": "⏱", "alarm_clock": "⏰", "link": "🔗", "pushpin": "📌", "scales": "⚖️",
}
RULE = "─"
ANGLE = re.compile(r"<([^<>\n]+)>")
ENTITY = re.compile(r"&(lt|gt|amp);")
EMOJI_CODE = re.compile(r":([a-z0-9_+\-]+):")
BOLD = re.compile(r"(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])")
ITALIC = re.compile(r"(?<![\w_])_(?!\s)([^_\n]+?)(?<!\s)_(?![\w_])")
STRIKE = re.compile(r"(?<![\w~])~(?!\s)([^~\n]+?)(?<!\s)~(?![\w~])")
FIELD = re.compile(r"^\*([^*\n]+)\*\s*\n(.*)$", re.DOTALL)
ENTITIES = {"lt": "<", "gt": ">", "amp": "&"}


@dataclass(frozen=True)
class Style:
    """How emphasis is shown: ANSI escapes on a terminal, nothing when piped."""

    color: bool = False

    def _wrap(self, text: str, on: str, off: str) -> str:
        return f"\x1b[{on}m{text}\x1b[{off}m" if self.color and text else text

    def bold(self, text: str) -> str:
        return self._wrap(text, "1", "22")

    def italic(self, text: str) -> str:
        return self._wrap(text, "3", "23")

    def dim(self, text: str) -> str:
        return self._wrap(text, "2", "22")

    def strike(self, text: str) -> str:
        return self._wrap(text, "9", "29") if self.color else f"~{text}~"

    def error(self, text: str) -> str:
        return self._wrap(text, "31", "39")


Namer = Callable[[str], str]
# Called for each interactive element shown; returns the number it is pressed by.
Numberer = Callable[[dict[str, Any], str], int]


class BlockText:
    """Renders Block Kit to lines of text; see the module docstring."""

    def __init__(self, style: Style, user_name: Namer, channel_name: Namer,
                 number: Numberer | None = None) -> None:
        self.style = style
        self.user_name = user_name
        self.channel_name = channel_name
        self.number = number

    # ------------------------------------------------------------------ text

    def mrkdwn(self, text: str) -> str:
        """Slack mrkdwn as terminal text."""
        text = EMOJI_CODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)
        text = BOLD.sub(lambda m: self.style.bold(m.group(1)), text)
        text = ITALIC.sub(lambda m: self.style.italic(m.group(1)), text)
        text = STRIKE.sub(lambda m: self.style.strike(m.group(1)), text)
        text = ANGLE.sub(lambda m: self._angle(m.group(1)), text)
        # A literal `>` opens a quote; user text arrives escaped as `&gt;` and stays text.
        text = "\n".join("│ " + line[2:] if line.startswith("> ") else line
                         for line in text.split("\n"))
        return unescape(text)

    def _angle(self, inner: str) -> str:
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            return "@" + (label or self.user_name(target[1:]))
        if target.startswith("#"):
            return "#" + (label or self.channel_name(target[1:]))
        if target.startswith("!"):
            name = target[1:].split("^")[0]
            if name in ("channel", "here", "everyone"):
                return f"@{name}"
            return label or name
        if not label or unescape(label) == unescape(target):
            return target
        return f"{label} ({target})"

    def text(self, obj: Any) -> str:
        """A text object (plain_text or mrkdwn), or a bare string."""
        if isinstance(obj, str):
            return self.mrkdwn(obj)
        if not isinstance(obj, dict):
            return ""
        raw = str(obj.get("text", ""))
        if obj.get("type") == "mrkdwn":
            return self.mrkdwn(raw)
        return EMOJI_CODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), raw) \
            if obj.get("emoji", True) else raw

    # ------------------------------------------------------------------ messages and blocks

    def message(self, message: dict[str, Any]) -> list[str]:
        """A message's lines: its blocks, or its text when it has none, then attachments."""
        lines = self.blocks(message.get("blocks") or [])
        if not lines and message.get("text"):
            lines = self.mrkdwn(str(message["text"])).split("\n")
        for attachment in message.get("attachments") or []:
            lines += ["│ " + line for line in self._attachment(attachment)]
        return lines

    def blocks(self, blocks: list[dict[str, Any]]) -> list[str]:
        lines: list[str] = []
        for block in blocks:
            lines += self.block(block)
        return lines

    def block(self, block: dict[str, Any]) -> list[str]:
        kind = block.get("type")
        block_id = str(block.get("block_id", ""))
        if kind == "header":
            title = self.text(block.get("text"))
            return [self.style.bold(title), RULE * min(max(len(title), 3), 60)]
        if kind == "section":
            return self._section(block, block_id)
        if kind == "context":
            parts = [self._context_element(e) for e in block.get("elements", [])]
            return [self.style.dim(line) for line in "  ".join(p for p in parts if p).split("\n")]
        if kind == "divider":
            return [RULE * 20]
        if kind == "actions":
            controls = [self.control(e, block_id) for e in block.get("elements", [])]
            return ["   ".join(controls)] if controls else []
        if kind == "image":
            return [f"[image: {block.get('alt_text', '')}]"]
        if kind == "input":
            label = self.text(block.get("label"))
            return [f"{label}: {self.describe_value(block.get('element', {}))}"]
        if kind == "rich_text":
            return self._rich_text(block.get("elements", []))
        if kind == "markdown":
            return str(block.get("text", "")).split("\n")
        return [f"[{kind} block]"]

    def _section(self, block: dict[str, Any], block_id: str) -> list[str]:
        lines: list[str] = []
        if block.get("text"):
            lines += self.text(block["text"]).split("\n")
        for field in block.get("fields", []):
            raw = field.get("text", "") if isinstance(field, dict) else str(field)
            match = FIELD.match(raw) if isinstance(field, dict) and \
                field.get("type") == "mrkdwn" else None
            if match:
                label = self.style.bold(self.mrkdwn(match.group(1)))
                value = self.mrkdwn(match.group(2)).split("\n")
                lines.append(f"{label}: {value[0]}")
                lines += ["  " + more for more in value[1:]]
            else:
                lines += self.text(field).split("\n")
        accessory = block.get("accessory")
        if isinstance(accessory, dict):
            if accessory.get("type") == "image":
                lines.append(f"[image: {accessory.get('alt_text', '')}]")
            else:
                lines.append(self.control(accessory, block_id))
        return lines

    def _context_element(self, element: dict[str, Any]) -> str:
        if element.get("type") == "image":
            return f"[{element.get('alt_text', 'image')}]"
        return self.text(element)

    def control(self, element: dict[str, Any], block_id: str) -> str:
        """An interactive element as `[N] Label`, numbered when the shell can press it."""
        kind = element.get("type")
        if kind == "button":
            label = self.text(element.get("text"))
            if element.get("style") == "danger":
                label = self.style.error(label)
            elif element.get("style") == "primary":
                label = self.style.bold(label)
        elif kind == "overflow":
            label = "⋯ more"
        elif kind == "datepicker":
            label = f"📅 {element.get('initial_date') or self.text(element.get('placeholder'))}"
        else:
            current = self.describe_value(element)
            shown = current if current != "—" else self.text(element.get("placeholder"))
            label = f"{shown or 'choose'} ▾"
        if self.number is None:
            return f"[{label}]"
        return f"[{self.number(element, block_id)}] {label}"

    def describe_value(self, element: dict[str, Any]) -> str:
        """The value an element holds now, as text ("—" when none)."""
        kind = element.get("type", "")
        if "initial_option" in element:
            return self.text(element["initial_option"].get("text"))
        if element.get("initial_options"):
            return ", ".join(self.text(o.get("text")) for o in element["initial_options"])
        if element.get("initial_users"):
            return ", ".join("@" + self.user_name(u) for u in element["initial_users"])
        if element.get("initial_user"):
            return "@" + self.user_name(element["initial_user"])
        for key in ("initial_conversations", "initial_channels"):
            if element.get(key):
                return ", ".join("#" + self.channel_name(c) for c in element[key])
        for key in ("initial_conversation", "initial_channel"):
            if element.get(key):
                return "#" + self.channel_name(element[key])
        for key in ("initial_value", "initial_date", "initial_time"):
            if element.get(key):
                return str(element[key])
        return "—" if kind else ""

    def _rich_text(self, elements: list[dict[str, Any]]) -> list[str]:
        lines: list[str] = []
        for element in elements:
            inner = "".join(self._rich_piece(piece) for piece in element.get("elements", [])) \
                if element.get("type") != "rich_text_list" else ""
            if element.get("type") == "rich_text_list":
                for item in element.get("elements", []):
                    lines.append("• " + "".join(self._rich_piece(p)
                                                for p in item.get("elements", [])))
            elif element.get("type") == "rich_text_quote":
                lines += ["│ " + line for line in inner.split("\n")]
            else:
                lines += inner.split("\n")
        return lines

    def _rich_piece(self, piece: dict[str, Any]) -> str:
        kind = piece.get("type")
        if kind == "text":
            text = str(piece.get("text", ""))
            return self.style.bold(text) if (piece.get("style") or {}).get("bold") else text
        if kind == "link":
            url, label = str(piece.get("url", "")), piece.get("text")
            return f"{label} ({url})" if label else url
        if kind == "user":
            return "@" + self.user_name(str(piece.get("user_id", "")))
        if kind == "channel":
            return "#" + self.channel_name(str(piece.get("channel_id", "")))
        if kind == "emoji":
            return EMOJI.get(str(piece.get("name")), f":{piece.get('name')}:")
        return ""

    def _attachment(self, attachment: dict[str, Any]) -> list[str]:
        lines: list[str] = []
        for key in ("pretext", "title", "text"):
            if attachment.get(key):
                text = self.mrkdwn(str(attachment[key]))
                lines += (self.style.bold(text) if key == "title" else text).split("\n")
        for field in attachment.get("fields", []):
            lines.append(f"{self.style.bold(str(field.get('title', '')))}: "
                         f"{self.mrkdwn(str(field.get('value', '')))}")
        lines += self.blocks(attachment.get("blocks") or [])
        return lines


def unescape(text: str) -> str:
    """Undo Slack's `&lt;`, `&gt;`, `&amp;` in one pass (so `&amp;lt;` stays `&lt;`)."""
    return ENTITY.sub(lambda m: ENTITIES[m.group(1)], text)


def clip(text: str, limit: int = 40) -> str:
    """`text` cut to `limit` characters, with `…` where it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
