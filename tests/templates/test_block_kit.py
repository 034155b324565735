"""Every template, rendered with hostile input, is valid Block Kit within Slack's limits and
never lets user text ping anyone."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.render import TEMPLATE_DIR, renderer
from support.fake_slack import mrkdwn_texts
from support.template_samples import SAMPLES

JSON_TEMPLATES = sorted(
    str(path.relative_to(TEMPLATE_DIR)).removesuffix(".json.j2")
    for path in TEMPLATE_DIR.rglob("*.json.j2")
)
# A special mention or a link that did not come from the template itself.
INJECTED = re.compile(r"<!(channel|here|everyone)>|<https://evil")


def test_every_template_has_hostile_samples() -> None:
    assert set(JSON_TEMPLATES) == set(SAMPLES), "add samples in tests/support/template_samples.py"


def _check_blocks(blocks: list[dict[str, Any]], limit: int) -> None:
    assert 0 < len(blocks) <= limit
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()
        assert parsed.to_dict()  # validates nested elements too
        for text in mrkdwn_texts(block):
            assert len(text) <= 3000


@pytest.mark.parametrize("name", JSON_TEMPLATES)
def test_template_renders_valid_block_kit(name: str) -> None:
    for context in SAMPLES[name]():
        source = renderer.json_env.get_template(f"{name}.json.j2").render(**context)
        kind = "view" if '"type": "modal"' in source or '"type": "home"' in source else "message"
        if kind == "view":
            view = renderer.view(name, **context)
            View(**view).validate_json()
            _check_blocks(view["blocks"], 100)
            rendered: dict[str, Any] = view
        else:
            message = renderer.message(name, **context)
            assert message["text"] and len(message["text"]) <= 3000
            _check_blocks(message["blocks"], 50)
            rendered = message
        for text in [*mrkdwn_texts(rendered), rendered.get("text", "")]:
            assert not INJECTED.search(text), (name, text[:200])
        json.dumps(rendered)
