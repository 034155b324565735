"""Every risk template, rendered with hostile input, is valid Block Kit within Slack's limits and
never lets user text ping anyone (the same checks as the shared template test)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View
from support.risk_samples import RISK_SAMPLES

from bot.render import TEMPLATE_DIR, renderer

RISK_TEMPLATES = sorted(
    str(path.relative_to(TEMPLATE_DIR)).removesuffix(".json.j2")
    for path in (TEMPLATE_DIR / "risk").glob("*.json.j2")
)
INJECTED = re.compile(r"<!(channel|here|everyone)>|<https://evil")


def test_every_risk_template_has_hostile_samples() -> None:
    assert set(RISK_TEMPLATES) == set(RISK_SAMPLES)


def _mrkdwn_texts(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
            found.append(node["text"])
        for value in node.values():
            found += _mrkdwn_texts(value)
    elif isinstance(node, list):
        for value in node:
            found += _mrkdwn_texts(value)
    return found


def _check_blocks(blocks: list[dict[str, Any]], limit: int) -> None:
    assert 0 < len(blocks) <= limit
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()
        assert parsed.to_dict()
        for text in _mrkdwn_texts(block):
            assert len(text) <= 3000


@pytest.mark.parametrize("name", RISK_TEMPLATES)
def test_risk_template_renders_valid_block_kit(name: str) -> None:
    for context in RISK_SAMPLES[name]():
        source = renderer.json_env.get_template(f"{name}.json.j2").render(**context)
        if '"type": "modal"' in source:
            view = renderer.view(name, **context)
            View(**view).validate_json()
            _check_blocks(view["blocks"], 100)
            rendered: dict[str, Any] = view
        else:
            message = renderer.message(name, **context)
            assert message["text"] and len(message["text"]) <= 3000
            _check_blocks(message["blocks"], 50)
            rendered = message
        for text in [*_mrkdwn_texts(rendered), rendered.get("text", "")]:
            assert not INJECTED.search(text), (name, text[:200])
        json.dumps(rendered)


def test_heatmap_grid_keeps_its_shape_with_huge_counts() -> None:
    [busy, *_] = RISK_SAMPLES["risk/heatmap"]()
    message = renderer.message("risk/heatmap", **busy)
    grid = next(b for b in message["blocks"] if b["type"] == "section")["text"]["text"]
    lines = grid.splitlines()
    assert len(lines) == 6 and all(line.count("_square:") == 5 for line in lines[:5])
    assert "`108025`" in lines[0] and "`  4321`" in lines[4]  # padded to the widest count
