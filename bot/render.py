"""The one renderer: Jinja2 templates in `templates/` to Block Kit JSON, escaped and within limits.

Templates are JSON with `{{ }}` holes. Every hole is escaped for Slack mrkdwn (`&`, `<`, `>`) and
for JSON by default, so user text can never ping `<!channel>` or break the JSON. Filters mark
the exceptions: `plain` (plain_text: JSON-escaped only), `typed` (a form field's initial value,
as typed), `json` (a whole JSON value), `user` (a `<@U…>` mention), `link` (a `<url|label>`
link). Trailing commas before `]` or `}` are allowed. Every filter but `typed` and `json` also
drops the invisible characters that could make text look like something else (`INVISIBLE`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup

import templates as templates_package
from bot.inert import markdown_records

TEMPLATE_DIR = Path(templates_package.__file__).parent
MESSAGE_BLOCK_LIMIT = 50
VIEW_BLOCK_LIMIT = 100
USER_ID = re.compile(r"[UWB][A-Z0-9]{2,20}")
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,20}")


class Raw(Markup):
    """Template output that is already escaped for its place in the JSON.

    Markup, so that Jinja passes it through untouched, as it does the output of macros.
    """


def slack_escape(text: str) -> str:
    """Escape the three characters Slack treats as control sequences in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_unescape(text: str) -> str:
    """Undo `slack_escape`, for text Slack sends us that goes back into a form."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


# What no database can store: NUL (PostgreSQL refuses it in text) and lone UTF-16 surrogates
# (JSON's "\ud800" parses to one; it cannot be encoded as UTF-8, so nothing can send it on).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """`value` (text, or lists and dicts of it, keys too) without what no database can store."""
    if isinstance(value, str):
        return UNSTORABLE.sub("", value)
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


# Characters that change how text around them is drawn without being seen themselves: the
# bidirectional embeddings, overrides and isolates and the implicit marks (a title holding
# U+202E shows `1-D` as `D-1`), and the zero-width ones (`D‍-1` looks like `D-1`). They are
# kept as typed in the database and exports, and left out of everything shown in Slack.
INVISIBLE = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c"
                       "\u200b-\u200d\u2060\ufeff]")


def displayable(text: str) -> str:
    """`text` as Slack may show it: without bidirectional controls and zero-width characters."""
    return INVISIBLE.sub("", text)


def _shown(text: str) -> str:
    """The renderer's escaping of user text for a mrkdwn hole: visible, and inert."""
    return _json_inner(slack_escape(displayable(text)))


def _json_inner(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _finalize(value: Any) -> Markup:
    if value is None:
        return Raw("")
    if isinstance(value, Markup):
        return value
    return Raw(_shown(str(value)))


def _plain(value: Any) -> Raw:
    return Raw(_json_inner(displayable("" if value is None else str(value))))


def _typed(value: Any) -> Raw:
    """A form field's initial value, as typed (JSON-escaped only): what is saved back."""
    return Raw(_json_inner("" if value is None else str(value)))


def _json_value(value: Any) -> Raw:
    return Raw(json.dumps(value, ensure_ascii=False, default=str))


def _user(user_id: Any) -> Raw:
    user_id = str(user_id or "")
    if USER_ID.fullmatch(user_id):
        return Raw(f"<@{user_id}>")
    return Raw(_shown(user_id or "someone"))


def _channel(channel_id: Any) -> Raw:
    channel_id = str(channel_id or "")
    if CHANNEL_ID.fullmatch(channel_id):
        return Raw(f"<#{channel_id}>")
    return Raw(_shown(channel_id))


def _mentioning(text: Any, mentions: tuple[str, ...] = ()) -> Raw:
    """`text` escaped like any user text, except its `<@U…>` and `<#C…>` of the ids in
    `mentions`, which stay mentions and channel links."""
    shown = _shown("" if text is None else str(text))
    for slack_id in mentions:
        sigil = "@" if USER_ID.fullmatch(slack_id) else "#" if CHANNEL_ID.fullmatch(slack_id) \
            else None
        if sigil:
            shown = shown.replace(f"&lt;{sigil}{slack_id}&gt;", f"<{sigil}{slack_id}>")
    return Raw(shown)


def _link(url: Any, label: Any = None) -> Raw:
    url = str(url or "")
    label_text = slack_escape(displayable(str(label) if label else url))
    if not url.startswith(("https://", "http://")) or any(c in url for c in "<>| \n"):
        return Raw(_json_inner(label_text))
    return Raw(_json_inner(f"<{url.replace('&', '&amp;')}|{label_text.replace('|', '¦')}>"))


def _date(value: datetime | None, fmt: str = "%Y-%m-%d") -> str:
    return value.strftime(fmt) if value else ""


def _datetime(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


# A JSON string (skipped whole, so commas inside it stay), or a comma before `]` or `}`.
_STRING_OR_TRAILING_COMMA = re.compile(r'("(?:[^"\\]|\\.)*")|,(\s*[\]}])')


def _strip_trailing_commas(text: str) -> str:
    """Drop commas that directly precede `]` or `}` outside JSON strings."""
    return _STRING_OR_TRAILING_COMMA.sub(lambda match: match.group(1) or match.group(2), text)


# Character limits Slack enforces, by (parent type, field).
TEXT_LIMITS = {
    "section": 3000,
    "section_field": 2000,
    "header": 150,
    "context": 2000,
    "button": 75,
    "option": 75,
    "option_description": 75,
    "label": 2000,
    "placeholder": 150,
    "modal_title": 24,
    "modal_button": 24,
}


def clip(text: str, limit: int) -> str:
    """Shorten `text` to `limit` characters with an ellipsis, never splitting `&amp;` or `<…>`."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:] and len(cut) - amp < 6:
        cut = cut[:amp]
    angle = cut.rfind("<")
    if angle != -1 and ">" not in cut[angle:]:
        cut = cut[:angle]
    return cut.rstrip() + "…"


def _clip_text_object(obj: Any, limit: int) -> None:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        obj["text"] = clip(obj["text"], limit)
        if not obj["text"].strip():
            obj["text"] = "—"


def _fit_element(element: dict[str, Any]) -> None:
    kind = element.get("type")
    if kind == "button":
        _clip_text_object(element.get("text"), TEXT_LIMITS["button"])
    for option in element.get("options", []) + element.get("initial_options", []):
        _clip_text_object(option.get("text"), TEXT_LIMITS["option"])
        _clip_text_object(option.get("description"), TEXT_LIMITS["option_description"])
    if isinstance(element.get("initial_option"), dict):
        _clip_text_object(element["initial_option"].get("text"), TEXT_LIMITS["option"])
    _clip_text_object(element.get("placeholder"), TEXT_LIMITS["placeholder"])
    if kind == "plain_text_input" and isinstance(element.get("initial_value"), str):
        limit = element.get("max_length", 3000)
        element["initial_value"] = element["initial_value"][:limit]


def fit_blocks(blocks: list[dict[str, Any]], block_limit: int) -> list[dict[str, Any]]:
    """Clip every text to Slack's limits and the block list to `block_limit` blocks."""
    for block in blocks:
        kind = block.get("type")
        if kind == "section":
            _clip_text_object(block.get("text"), TEXT_LIMITS["section"])
            for field in block.get("fields", []):
                _clip_text_object(field, TEXT_LIMITS["section_field"])
            if isinstance(block.get("accessory"), dict):
                _fit_element(block["accessory"])
        elif kind == "header":
            _clip_text_object(block.get("text"), TEXT_LIMITS["header"])
        elif kind == "context":
            for element in block.get("elements", []):
                _clip_text_object(element, TEXT_LIMITS["context"])
        elif kind == "actions":
            for element in block.get("elements", []):
                _fit_element(element)
        elif kind == "input":
            _clip_text_object(block.get("label"), TEXT_LIMITS["label"])
            _clip_text_object(block.get("hint"), TEXT_LIMITS["label"])
            if isinstance(block.get("element"), dict):
                _fit_element(block["element"])
    if len(blocks) > block_limit:
        hidden = len(blocks) - block_limit + 1
        note = f"…and {hidden} more blocks not shown"
        blocks = [*blocks[: block_limit - 1],
                  {"type": "context", "elements": [{"type": "mrkdwn", "text": note}]}]
    return blocks


class Renderer:
    """Renders `templates/<name>.json.j2` to Block Kit and `<name>.md.j2` to text."""

    def __init__(self, directory: Path = TEMPLATE_DIR) -> None:
        loader = jinja2.FileSystemLoader(str(directory))
        common: dict[str, Any] = {
            "loader": loader,
            "undefined": jinja2.StrictUndefined,
            "trim_blocks": True,
            "lstrip_blocks": True,
            "keep_trailing_newline": True,
        }
        # Autoescape makes macro output Markup; `_finalize` then escapes every other value.
        self.json_env = jinja2.Environment(autoescape=True, finalize=_finalize, **common)
        self.text_env = jinja2.Environment(autoescape=False, **common)
        for env in (self.json_env, self.text_env):
            env.filters.update(date=_date, datetime=_datetime)
        # Every `.md.j2` export loops over `records|markdown_inert`: user text stays text.
        self.text_env.filters.update(markdown_inert=markdown_records)
        self.json_env.filters.update(
            plain=_plain, typed=_typed, json=_json_value, user=_user, channel=_channel,
            link=_link, mentioning=_mentioning,
        )
        # QUORUM_PUBLIC_URL when the portal is on (set by `bot.web`); cards then link to it.
        self.public_url: str | None = None
        self.json_env.globals["portal_url"] = self.portal_url

    def portal_url(self, path: str) -> str:
        """The portal page at `path` (`decisions/D-3`), or "" when there is no portal."""
        if not self.public_url:
            return ""
        return f"{self.public_url}/portal/{quote(path, safe='/-')}"

    def _json(self, name: str, context: dict[str, Any]) -> Any:
        source = self.json_env.get_template(f"{name}.json.j2").render(**context)
        try:
            return json.loads(_strip_trailing_commas(source))
        except json.JSONDecodeError as exc:
            raise ValueError(f"template {name} produced invalid JSON: {exc}") from exc

    def message(self, name: str, **context: Any) -> dict[str, Any]:
        """A message: `{"text": fallback, "blocks": [...]}` within Slack's limits."""
        message = self._json(name, context)
        message["blocks"] = fit_blocks(message.get("blocks", []), MESSAGE_BLOCK_LIMIT)
        message["text"] = clip(message.get("text") or "Quorum", 3000)
        return message

    def view(self, name: str, **context: Any) -> dict[str, Any]:
        """A modal or Home view within Slack's limits."""
        view = self._json(name, context)
        view["blocks"] = fit_blocks(view.get("blocks", []), VIEW_BLOCK_LIMIT)
        for key, limit in (("title", "modal_title"), ("submit", "modal_button"),
                           ("close", "modal_button")):
            _clip_text_object(view.get(key), TEXT_LIMITS[limit])
        if len(view.get("private_metadata", "")) > 3000:
            raise ValueError(f"template {name}: private_metadata over 3,000 characters")
        return view

    def text(self, name: str, **context: Any) -> str:
        """Plain text output (Markdown exports, terminal rendering)."""
        return self.text_env.get_template(name).render(**context)

    def stream(self, name: str, **context: Any) -> Iterator[str]:
        """Plain text output piece by piece, for exports too large to hold as one string."""
        return self.text_env.get_template(name).generate(**context)


renderer = Renderer()
