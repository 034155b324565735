"""Waiting for what happens in the background (outbox deliveries, listeners after ack)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Retry `check` until it returns a truthy value without raising; fail with its last error."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
            error: BaseException | None = AssertionError(f"{check} stayed falsy")
        except AssertionError as exc:
            error = exc
        if time.monotonic() > deadline:
            raise error
        time.sleep(0.02)
