"""Errors the domain raises; their message is what the user is shown."""

from __future__ import annotations

from collections.abc import Iterable


class QuorumError(Exception):
    """A problem the person can fix; `message` is shown to them as it is.

    `mentions`: the user and channel ids the message names as `<@U…>` or `<#C…>`; in Slack
    those become mentions and links, while everything else in the message stays escaped (it
    may hold what someone typed).
    """

    def __init__(self, message: str, *, field: str | None = None,
                 mentions: Iterable[str | None] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.mentions = tuple(m for m in mentions if m)


class InvalidInput(QuorumError):
    """A value that breaks a rule (empty, too long, out of range); `field` names it."""


class NotFound(QuorumError):
    """A reference that names no record."""


class Conflict(QuorumError):
    """An action the record's current state does not allow."""


class Forbidden(QuorumError):
    """An action this person may not take (not an admin, not a holder of the role)."""
