"""Authenticating a webhook request: bearer tokens, constant-time comparison of credentials and signatures, and
what the sources sharing a way to authenticate have in common (`BearerTokenSource`, `SignedSource`).

Every failure is a WebhookRejected(401) whose reason says what was missing or wrong, never the expected value.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from integrations.alerts.payload import check_size, load_json
from integrations.alerts.source import WebhookRejected, WebhookRequest

__all__ = ["BearerTokenSource", "SignedSource", "bearer_token", "check_bearer", "constant_time_equal"]

SettingsT = TypeVar("SettingsT")


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


class BearerTokenSource(Generic[SettingsT]):
    """Base of a source whose requests carry `Authorization: Bearer <token>`: its settings, its token (read from
    the environment when it is built), and a body read only once the token checks out."""

    def __init__(self, settings: SettingsT, token: str) -> None:
        self._settings = settings
        self._token = token

    def _authentic_json(self, request: WebhookRequest) -> Any:
        """The decoded body of `request`; 413 when it is too large, 401 without the token, 400 when it is not JSON
        (checked in that order)."""
        check_size(request.body)
        check_bearer(request.headers, self._token)
        return load_json(request.body)


class SignedSource(Generic[SettingsT]):
    """Base of a source whose requests are signed with a shared secret (an HMAC of the body): its settings and the
    secret's bytes, which each source's own `verify` checks the signature with."""

    def __init__(self, settings: SettingsT, secret: str) -> None:
        self._settings = settings
        self._secret = _credential_bytes(secret)
