"""Errors that carry a message a Slack user can act on, and the short reference ids for the rest."""

from __future__ import annotations

import secrets

_REF_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class UserFacingError(Exception):
    """An error whose message is safe and useful to show the user as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(UserFacingError):
    """The user typed something we cannot parse; `usage` shows the correct form."""

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.usage = usage


class PermissionDenied(UserFacingError):
    """The user lacks the role an action needs."""

    def __init__(self, message: str, *, action: str, role: str | None) -> None:
        super().__init__(message)
        self.action = action
        self.role = role


class StoreUnavailable(UserFacingError):
    """Redis, the system of record, could not be reached; nothing was changed."""


def new_ref() -> str:
    """A short id that ties the message a user sees to the log line with the traceback."""
    return "".join(secrets.choice(_REF_ALPHABET) for _ in range(6))
