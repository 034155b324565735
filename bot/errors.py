"""Errors the domain raises; their message is what the user is shown."""

from __future__ import annotations


class QuorumError(Exception):
    """A problem the person can fix; `message` is shown to them as it is."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(QuorumError):
    """A value that breaks a rule (empty, too long, out of range); `field` names it."""


class NotFound(QuorumError):
    """A reference that names no record."""


class Conflict(QuorumError):
    """An action the record's current state does not allow."""


class Forbidden(QuorumError):
    """An action this person may not take (not an admin, not a holder of the role)."""
