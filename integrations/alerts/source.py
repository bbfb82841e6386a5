"""The alert-source seam: what a source is handed (`WebhookRequest`) and answers (`Accepted`, `Confirmation`, or
`WebhookRejected`), the `AlertSource` Protocol every source implements, and the faster `RawIntake` some offer.

A source authenticates a request, then parses it with a pure function of the decoded JSON. Whatever bytes arrive,
`receive` raises nothing but `WebhookRejected`, whose `reason` is precise, short and never holds a secret
(`rejects_only` guards this).

A source may also offer the faster intake of `RawIntake`: `admit` authenticates exactly as `receive` does and says
whether the body is certainly one `receive` accepts; such a body is stored as it came (one Redis write before the
answer) and `normalise` turns it into alerts later, in the stream's consumer.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar, runtime_checkable

from multidict import CIMultiDict, CIMultiDictProxy

from integrations.alerts.model import Alert, as_utc

__all__ = [
    "UNEXPECTED_REASON",
    "Accepted",
    "Admitted",
    "AlertSource",
    "Confirmation",
    "RawIntake",
    "WebhookRejected",
    "WebhookRequest",
    "accepted",
    "ignored",
    "rejects_only",
]

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class WebhookRequest:
    """One `POST /alerts/{source}` as a source sees it; header lookups are case-insensitive."""

    headers: Mapping[str, str]
    body: bytes
    remote: str | None = None
    now: datetime = field(default_factory=_now)

    def __post_init__(self) -> None:
        if not isinstance(self.headers, CIMultiDictProxy):
            object.__setattr__(self, "headers", CIMultiDictProxy(CIMultiDict(self.headers)))
        if not isinstance(self.body, bytes):
            object.__setattr__(self, "body", bytes(self.body))
        object.__setattr__(self, "now", as_utc(self.now, "now"))


@dataclass(frozen=True)
class Accepted:
    """The request was good: these alerts go to the pipeline; `reply` is the HTTP answer's text.

    `idempotency_key` is the sender's own id for this delivery (Sentry's `Request-ID`): the pipeline stores the
    alerts of one key once, so a redelivery is answered 2xx without storing them again. `ignored` says the request
    was authentic but carries nothing to alert on (a Sentry `installation` webhook): answered 204, nothing stored."""

    alerts: tuple[Alert, ...]
    truncated: int = 0
    reply: str = "accepted"
    idempotency_key: str | None = None
    ignored: bool = False


@dataclass(frozen=True)
class Confirmation:
    """An SNS SubscriptionConfirmation: the pipeline GETs `url` (which confirms the subscription), then answers 200."""

    url: str


class WebhookRejected(Exception):
    """A request refused with `status` (400, 401, 403, 413, or 503 to ask the sender to retry) and a `reason` that is
    safe to return in the HTTP body: precise, short, and never a secret."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        return f"WebhookRejected({self.status}, {self.reason!r})"


@runtime_checkable
class AlertSource(Protocol):
    """A monitoring tool that pushes alerts: authenticates a webhook request, then parses its body."""

    name: str

    async def receive(self, request: WebhookRequest) -> Accepted | Confirmation:
        """The alerts in `request` (or an SNS confirmation to follow); raises WebhookRejected and nothing else."""
        ...


@dataclass(frozen=True)
class Admitted:
    """An authentic request whose body `receive` certainly accepts with `count` alerts (after collapsing duplicates)
    and `truncated` more left out by the sender: it is stored as it came and normalised later."""

    count: int
    truncated: int = 0


@runtime_checkable
class RawIntake(Protocol):
    """A source whose well-formed bodies are stored as they came and normalised by the stream's consumer, so that
    the webhook's answer waits for one Redis write and not for normalisation."""

    name: str

    def admit(self, request: WebhookRequest) -> Admitted | None:
        """Authenticates `request` exactly as `receive` does (raising the same WebhookRejected); Admitted when its
        body is certainly one `receive` accepts with at least one alert, None when only `receive` can tell."""
        ...

    def normalise(self, body: bytes, received_at: datetime) -> Accepted:
        """What `receive` answers for an admitted `body` that arrived at `received_at`; WebhookRejected if it
        cannot be read (then the entry is dead-lettered, never dropped)."""
        ...


UNEXPECTED_REASON = "the payload could not be read"
"""The reason given when a source hits a bug on some input (logged with its traceback): never an unhandled error."""

_Source = TypeVar("_Source")
_Answer = TypeVar("_Answer", bound="Accepted | Confirmation")


def rejects_only(
    receive: Callable[[_Source, WebhookRequest], Awaitable[_Answer]],
) -> Callable[[_Source, WebhookRequest], Awaitable[_Answer]]:
    """Wraps a `receive` method so that any error other than WebhookRejected becomes a 400 (and an error log)."""

    @functools.wraps(receive)
    async def guarded(self: _Source, request: WebhookRequest) -> _Answer:
        try:
            return await receive(self, request)
        except WebhookRejected:
            raise
        except Exception:  # a source must answer every request; the traceback goes to the log
            log.exception("alert source %s failed on a request", getattr(self, "name", "?"))
            raise WebhookRejected(400, UNEXPECTED_REASON) from None

    return guarded


def accepted(alerts: Iterable[Alert], *, truncated: int = 0) -> Accepted:
    """An Accepted for `alerts` with duplicates (same fingerprint) collapsed to the last one, and a reply saying how
    many alerts were taken."""
    unique: dict[str, Alert] = {}
    total = 0
    for alert in alerts:
        total += 1
        unique.pop(alert.fingerprint, None)  # the last one wins, in its own position
        unique[alert.fingerprint] = alert
    kept = tuple(unique.values())
    reply = f"accepted {len(kept)} alert{'' if len(kept) == 1 else 's'}"
    notes = []
    if total > len(kept):
        notes.append(f"{total - len(kept)} duplicate{'' if total - len(kept) == 1 else 's'} dropped")
    if truncated:
        notes.append(f"{truncated} truncated by the sender")
    if notes:
        reply += f" ({', '.join(notes)})"
    return Accepted(alerts=kept, truncated=truncated, reply=reply)


def ignored(reason: str) -> Accepted:
    """An Accepted for an authentic request that holds no alert (answered 204, nothing stored); `reason` is logged."""
    return Accepted(alerts=(), reply=reason, ignored=True)
