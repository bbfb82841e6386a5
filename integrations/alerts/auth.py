"""Authenticating a webhook request: bearer tokens and constant-time comparison of credentials and signatures.

Every failure is a WebhookRejected(401) whose reason says what was missing or wrong, never the expected value.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from integrations.alerts.source import WebhookRejected

__all__ = ["bearer_token", "check_bearer", "constant_time_equal"]


def _credential_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    value = headers.get("Authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def check_bearer(headers: Mapping[str, str], expected: str) -> None:
    """401 "missing bearer token" or "bad bearer token" unless the request carries `expected` (compared in constant
    time)."""
    token = bearer_token(headers)
    if token is None:
        raise WebhookRejected(401, "missing bearer token")
    if not hmac.compare_digest(_credential_bytes(token), _credential_bytes(expected)):
        raise WebhookRejected(401, "bad bearer token")


def constant_time_equal(given: str, expected: str) -> bool:
    """`given == expected` without leaking where they differ."""
    return hmac.compare_digest(_credential_bytes(given), _credential_bytes(expected))
