"""Slack's rate limits on `chat.postMessage`, for the fake Slack (`FakeSlack.limit_posts`).

Slack allows about one message per second in a channel, and a workspace-wide number per
minute on top of that; past either it answers HTTP 429 with `Retry-After` in whole seconds.
The workspace limit is a token bucket: `per_minute / 60` tokens a second, holding at most
`burst` (one second's worth by default), so a sender that keeps to the rate is never refused.

    limits = PostLimits(workspace_per_minute=600)
    wait = limits.admit("C0CHURN01")   # 0.0: post it; otherwise seconds until it would pass
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

EPSILON = 1e-9


class PostLimits:
    """Admits or refuses posts by channel and workspace; thread-safe."""

    def __init__(self, *, per_channel_per_second: float = 1.0,
                 workspace_per_minute: float | None = None, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_channel_per_second <= 0 or (workspace_per_minute or 1) <= 0:
            raise ValueError("rates must be positive")
        self.channel_interval = 1.0 / per_channel_per_second
        self.rate = workspace_per_minute / 60 if workspace_per_minute else None
        self.burst = burst if burst is not None else max(1.0, self.rate or 1.0)
        self.clock = clock
        self._tokens = self.burst
        self._filled_at = clock()
        self._last_post: dict[str, float] = {}
        self._lock = threading.Lock()

    def admit(self, channel: str) -> float:
        """0.0 if a post to `channel` may go now (and count it); else seconds until it may."""
        with self._lock:
            now = self.clock()
            channel_wait = self._last_post.get(channel, -math.inf) + self.channel_interval - now
            workspace_wait = 0.0
            if self.rate is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._filled_at) * self.rate)
                self._filled_at = now
                workspace_wait = max(0.0, (1.0 - self._tokens) / self.rate)
            wait = max(channel_wait, workspace_wait)
            if wait > EPSILON:  # float sums of intervals land a hair short of the boundary
                return wait
            self._last_post[channel] = now
            if self.rate is not None:
                self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0

    @staticmethod
    def retry_after(wait: float) -> int:
        """The whole seconds Slack's `Retry-After` gives for a wait: never less than the wait."""
        return max(1, math.ceil(wait))

    def minimum_seconds(self, posts: int) -> float:
        """The least time in which `posts` posts to distinct channels can all go out, counted
        from the first (a full bucket at the start)."""
        if self.rate is None:
            return 0.0
        return max(0.0, posts - self.burst) / self.rate
