"""Hostile sample contexts of the access templates (`templates/admin/self_approval`, the owners
on `admin/roles`, `common/lives_in`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from support.gate_samples import GATE_SAMPLES

HOSTILE_IDS = ["U0123ABCD", "<!channel>", "x" * 500, ""]


def _self_approval() -> list[dict[str, Any]]:
    return [{"allowed": allowed, "actor": actor} for allowed in (True, False)
            for actor in HOSTILE_IDS]


def _roles() -> list[dict[str, Any]]:
    """The roles view with owners: none, hostile ids, and many."""
    contexts = []
    for n, context in enumerate(GATE_SAMPLES["admin/roles"]()):
        owners = [[], HOSTILE_IDS, [f"U0OWNER{i:03d}" for i in range(200)]][n % 3]
        contexts.append({**context, "owners": owners})
    return contexts


def _lives_in() -> list[dict[str, Any]]:
    return [{"channel": channel} for channel in ("C0123ABCD", "<!channel>", "x" * 500, "")]


ACCESS_SAMPLES: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "admin/self_approval": _self_approval,
    "admin/roles": _roles,
    "common/lives_in": _lives_in,
}
