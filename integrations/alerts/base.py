"""The alert-source seam: what a monitoring tool's webhook becomes (`Alert`), what a source is handed
(`WebhookRequest`) and answers (`Accepted`, `Confirmation`, or `WebhookRejected`), the `AlertSource` Protocol every
source implements, and the helpers the sources share (size and JSON checks, shape errors that name the path,
RFC 3339 times, severity normalisation, fingerprints, bearer tokens).

A source authenticates a request, then parses it with a pure function of the decoded JSON. Whatever bytes arrive,
`receive` raises nothing but `WebhookRejected`, whose `reason` is precise, short and never holds a secret.

A source may also offer the faster intake of `RawIntake`: `admit` authenticates exactly as `receive` does and says
whether the body is certainly one `receive` accepts; such a body is stored as it came (one Redis write before the
answer) and `normalise` turns it into alerts later, in the stream's consumer.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import (
    Annotated,
    Any,
    Literal,
    Protocol,
    TypeVar,
    get_args,
    runtime_checkable,
)
from urllib.parse import urlsplit

from multidict import CIMultiDict, CIMultiDictProxy
import orjson
from pydantic import AfterValidator

from integrations.types import describe_value

__all__ = [
    "MAX_BODY_BYTES", "MAX_SUMMARY_CHARS", "MAX_TITLE_CHARS", "UNEXPECTED_REASON", "Accepted", "Admitted", "Alert",
    "AlertSource", "Confirmation", "RawIntake",
    "EnvVarName", "Severity", "SourceConfigError", "Status", "WebhookRejected",
    "WebhookRequest", "accepted", "bearer_token", "best_summary", "check_bearer", "check_size", "clean", "clip",
    "constant_time_equal", "field_path", "http_links", "ignored", "load_json", "make_fingerprint", "make_title",
    "normalise_severity", "optional_string", "parse_time", "read_secret", "rejects_only", "require_object",
    "severity_from_labels", "string_map", "string_values", "valid_fingerprint", "valid_time",
]

log = logging.getLogger(__name__)

Severity = Literal["critical", "warning", "info"]
"""How urgent an alert is, after normalisation."""

Status = Literal["firing", "resolved"]
"""Whether an alert is still going on."""

MAX_BODY_BYTES = 5 * 1024 * 1024
"""Largest webhook body a source reads; larger ones are rejected with 413."""

MAX_TITLE_CHARS = 200
"""Longest `Alert.title`; longer titles are clipped with an ellipsis."""

MAX_SUMMARY_CHARS = 1000
"""Longest `Alert.summary`; longer summaries are clipped with an ellipsis."""

_FINGERPRINT = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
_SEVERITIES: tuple[str, ...] = get_args(Severity)
_STATUSES: tuple[str, ...] = get_args(Status)


# -- the normalised alert ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Alert:
    """One alert from any source, normalised; immutable, and `to_json`/`from_json` round-trip it losslessly."""

    source: str
    fingerprint: str
    status: Status
    title: str
    severity: Severity
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    summary: str
    starts_at: datetime
    ends_at: datetime | None
    links: Mapping[str, str]
    group_key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise ValueError("source must be a non-empty string")
        if not isinstance(self.fingerprint, str) or not _FINGERPRINT.fullmatch(self.fingerprint):
            raise ValueError("fingerprint must match [a-zA-Z0-9:_-]{1,128}")
        if self.status not in _STATUSES:
            raise ValueError(f"status must be firing or resolved, not {describe_value(self.status)}")
        if self.severity not in _SEVERITIES:
            raise ValueError(f"severity must be critical, warning or info, not {describe_value(self.severity)}")
        if not isinstance(self.title, str) or not self.title or len(self.title) > MAX_TITLE_CHARS:
            raise ValueError(f"title must be a string of 1 to {MAX_TITLE_CHARS} characters")
        if not isinstance(self.summary, str) or len(self.summary) > MAX_SUMMARY_CHARS:
            raise ValueError(f"summary must be a string of at most {MAX_SUMMARY_CHARS} characters")
        if self.group_key is not None and not isinstance(self.group_key, str):
            raise ValueError("group_key must be a string or None")
        for name in ("labels", "annotations", "links"):
            value = getattr(self, name)
            if not isinstance(value, Mapping) or not all(
                    isinstance(key, str) and isinstance(item, str) for key, item in value.items()):
                raise ValueError(f"{name} must map strings to strings")
            object.__setattr__(self, name, MappingProxyType(dict(value)))
        for name, url in self.links.items():
            if not _is_http_url(url):
                raise ValueError(f"links[{name!r}] must be an http(s) URL")
        object.__setattr__(self, "starts_at", _utc(self.starts_at, "starts_at"))
        if self.ends_at is not None:
            object.__setattr__(self, "ends_at", _utc(self.ends_at, "ends_at"))

    def __hash__(self) -> int:
        return hash((self.source, self.fingerprint, self.status, self.starts_at, self.ends_at))

    def to_json(self) -> str:
        """This alert as compact JSON (ASCII, keys sorted), for the Redis stream."""
        return json.dumps({
            "v": 1,
            "source": self.source,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "title": self.title,
            "severity": self.severity,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "summary": self.summary,
            "starts_at": self.starts_at.isoformat(),
            "ends_at": None if self.ends_at is None else self.ends_at.isoformat(),
            "links": dict(self.links),
            "group_key": self.group_key,
        }, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Alert:
        """The alert `to_json` wrote; ValueError when `text` is not one."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise ValueError(f"not an alert: {error}") from None
        if not isinstance(data, dict) or data.get("v") != 1:
            raise ValueError("not an alert: expected a version 1 alert object")
        expected = {"v", "source", "fingerprint", "status", "title", "severity", "labels", "annotations", "summary",
                    "starts_at", "ends_at", "links", "group_key"}
        if set(data) != expected:
            raise ValueError(f"not an alert: fields {sorted(set(data) ^ expected)} missing or unexpected")
        try:
            starts_at = datetime.fromisoformat(data["starts_at"])
            ends_at = None if data["ends_at"] is None else datetime.fromisoformat(data["ends_at"])
        except (TypeError, ValueError):
            raise ValueError("not an alert: starts_at/ends_at are not ISO times") from None
        return cls(source=data["source"], fingerprint=data["fingerprint"], status=data["status"],
                   title=data["title"], severity=data["severity"], labels=data["labels"],
                   annotations=data["annotations"], summary=data["summary"], starts_at=starts_at, ends_at=ends_at,
                   links=data["links"], group_key=data["group_key"])


def _utc(value: object, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


# -- what a source is handed and answers ------------------------------------------------------------------------

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
        object.__setattr__(self, "now", _utc(self.now, "now"))


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


class SourceConfigError(Exception):
    """A source cannot be built (a missing environment variable, an unreadable file); names the variable or file,
    never a secret's value."""


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


# -- configuration helpers -------------------------------------------------------------------------------------

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"{describe_value(value)} is not an environment variable name")
    return value


EnvVarName = Annotated[str, AfterValidator(_check_env_name)]
"""The name of an environment variable that holds a secret (the secret itself never goes in the config file)."""


def read_secret(environ: Mapping[str, str], variable: str, what: str, *, strip: bool = False) -> str:
    """The non-empty value of `variable` (without surrounding whitespace when `strip`, as tokens read from files
    have a trailing newline); SourceConfigError naming the variable (never a value) otherwise."""
    value = environ.get(variable)
    if value is not None and strip:
        value = value.strip()
    if not value:
        raise SourceConfigError(f"environment variable {variable} ({what}) is not set")
    return value


# -- request checks ---------------------------------------------------------------------------------------------

def check_size(body: bytes) -> None:
    """413 for a body over MAX_BODY_BYTES."""
    if len(body) > MAX_BODY_BYTES:
        raise WebhookRejected(413, f"body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB")


def load_json(body: bytes) -> Any:
    """The decoded JSON of a UTF-8 body; 400 saying where it is not JSON."""
    check_size(body)
    try:  # orjson reads the usual body several times faster; what it refuses, the standard parser decides, as before
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise WebhookRejected(400, "not JSON: the body is not UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise WebhookRejected(400, f"not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise WebhookRejected(400, "not JSON: nested too deeply") from None
    except ValueError as error:  # e.g. an integer with more digits than Python converts
        raise WebhookRejected(400, f"not JSON: {str(error)[:80]}") from None


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


# -- shape helpers: each error names the path of the offending value --------------------------------------------

_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,39}")


def field_path(path: str, key: str) -> str:
    """`path.key`, or `path["odd key"]` for a key that is not a plain name (clipped, so errors stay short)."""
    if _SIMPLE_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    shown = json.dumps(clip(key, 40))
    return f"{path}[{shown}]"


def require_object(value: Any, path: str) -> dict[str, Any]:
    """`value` when it is a JSON object; 400 "<path> must be an object" otherwise."""
    if not isinstance(value, dict):
        raise WebhookRejected(400, f"{path or 'body'} must be an object")
    return value


def string_map(value: Any, path: str) -> dict[str, str]:
    """A JSON object of strings (None is {}); 400 naming the first entry that is not a string."""
    if value is None:
        return {}
    obj = require_object(value, path)
    out: dict[str, str] = {}
    for key, item in obj.items():
        if not isinstance(item, str):
            raise WebhookRejected(400, f"{field_path(path, key)} must be a string")
        out[clean(key)] = clean(item)
    return out


def string_values(value: Any) -> bool:
    """Whether `string_map` accepts `value` (None, or an object whose values are all strings)."""
    return value is None or (type(value) is dict and all(type(item) is str for item in value.values()))


def optional_string(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    """`obj[key]` when it is a string, None when absent or null; 400 when it is anything else."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise WebhookRejected(400, f"{field_path(path, key)} must be a string")
    return clean(value)


def clean(text: str) -> str:
    """`text` with lone surrogates (which JSON allows and UTF-8 cannot encode) replaced by U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def make_title(text: str | None, fallback: str = "unnamed alert") -> str:
    """`text` on one line (runs of whitespace, newlines included, become one space) and clipped to MAX_TITLE_CHARS;
    `fallback` when nothing is left."""
    line = " ".join((text or "").split())
    return clip(line or fallback, MAX_TITLE_CHARS)


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,12}))?([Zz]|[+-]\d{2}:?\d{2})", re.ASCII)


def parse_time(value: Any, path: str) -> datetime | None:
    """An RFC 3339 time (nanoseconds and `+0000` offsets too) as UTC; None for Go's zero time `0001-01-01T00:00:00Z`
    (which Alertmanager and Grafana send for "not ended"); 400 naming `path` for anything else."""
    moment = _time_or_bad(value)
    if moment is _BAD_TIME:
        raise WebhookRejected(400, f"{path} must be an RFC 3339 time like 2024-05-01T12:00:00Z")
    return moment


def valid_time(value: Any) -> bool:
    """Whether `parse_time` accepts `value`, answered without building the time for the usual UTC ones (a webhook
    body holds two per alert, so this is on the hot path of every request)."""
    if type(value) is str:
        text = value.strip()
        match = _RFC3339.fullmatch(text)
        if match is None:
            return False
        if match.group(8) in ("Z", "z"):  # UTC: valid when the date and time of day exist (or Go's zero date)
            if text.startswith("0001-01-01"):
                return True
            try:
                datetime.fromisoformat(text[:19])
            except ValueError:
                return False
            return True
    return _time_or_bad(value) is not _BAD_TIME


_BAD_TIME = datetime.min.replace(tzinfo=UTC)


def _time_or_bad(value: Any) -> datetime | None:
    """`parse_time`'s answer, or _BAD_TIME where it raises."""
    if not isinstance(value, str):
        return _BAD_TIME
    match = _RFC3339.fullmatch(value.strip())
    if not match:
        return _BAD_TIME
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if year == "0001" and month == "01" and day == "01":
        return None
    try:
        if offset in ("Z", "z"):
            tz = UTC
        else:
            sign = -1 if offset[0] == "-" else 1
            digits = offset[1:].replace(":", "")
            tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        micros = int((fraction or "0")[:6].ljust(6, "0"))
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tzinfo=tz)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return _BAD_TIME


# -- normalisation -----------------------------------------------------------------------------------------------

_SEVERITY_WORDS: dict[str, Severity] = {
    **dict.fromkeys(("critical", "crit", "page", "paging", "error", "err", "high", "p0", "p1", "sev0", "sev1",
                     "fatal", "emergency", "emerg", "alert", "disaster", "major", "urgent"), "critical"),
    **dict.fromkeys(("warning", "warn", "medium", "moderate", "average", "p2", "p3", "sev2", "sev3", "minor"),
                    "warning"),
    **dict.fromkeys(("info", "information", "informational", "notice", "debug", "low", "p4", "p5", "sev4", "sev5",
                     "none", "unknown"), "info"),
}


def normalise_severity(value: object) -> Severity | None:
    """critical / warning / info for the usual spellings (page, error, high, P1 → critical; warn, medium, P2, P3 →
    warning; low, P4, P5, none, unknown → info), case-insensitively; None for anything else."""
    if not isinstance(value, str):
        return None
    return _SEVERITY_WORDS.get(value.strip().lower().replace("-", "").replace(" ", ""))


def severity_from_labels(labels: Mapping[str, str], default: Severity) -> Severity:
    """The normalised `severity` (else `priority`, else `level`) label; `default` when none is there or known."""
    for key in ("severity", "priority", "level"):
        found = normalise_severity(labels.get(key))
        if found is not None:
            return found
    return default


def best_summary(annotations: Mapping[str, str], fallback: str) -> str:
    """The best human line: the summary, description or message annotation, else `fallback` (clipped)."""
    for key in ("summary", "description", "message"):
        text = annotations.get(key, "").strip()
        if text:
            return clip(text, MAX_SUMMARY_CHARS)
    return clip(fallback, MAX_SUMMARY_CHARS)


def valid_fingerprint(value: str | None) -> bool:
    """Whether a sender's fingerprint can be used as `Alert.fingerprint` as it is."""
    return value is not None and _FINGERPRINT.fullmatch(value) is not None


def make_fingerprint(source: str, identity: Mapping[str, str] | str) -> str:
    """A stable fingerprint: hex SHA-256 of the source and the identity (a dedup key, or labels sorted by name)."""
    if isinstance(identity, str):
        material: Any = [source, identity]
    else:
        material = [source, sorted(identity.items())]
    encoded = json.dumps(material, separators=(",", ":"), ensure_ascii=True).encode()
    return hashlib.sha256(encoded).hexdigest()


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str) or not value or any(ch.isspace() for ch in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def http_links(candidates: Mapping[str, object]) -> dict[str, str]:
    """The candidates that are non-empty http(s) URLs (anything else, including javascript:, is dropped)."""
    return {name: url for name, url in candidates.items() if isinstance(url, str) and _is_http_url(url)}


@dataclass(frozen=True)
class GroupEnvelope:
    """The outer shape Alertmanager's webhook and Grafana's (its descendant) share."""

    body: dict[str, Any]
    alerts: list[Any]
    group_key: str | None
    truncated: int


def group_envelope(data: Any, *, version: str) -> GroupEnvelope:
    """Checks the shared outer shape (`version`, `alerts[]`, `groupKey`, `truncatedAlerts`); WebhookRejected(400)
    naming the first thing wrong."""
    body = require_object(data, "")
    given = body.get("version")
    if given is not None and given != version:
        raise WebhookRejected(400, f"unsupported payload version {describe_value(given)} (expected \"{version}\")")
    raw_alerts = body.get("alerts")
    if not isinstance(raw_alerts, list):
        raise WebhookRejected(400, "alerts must be a list")
    truncated = body.get("truncatedAlerts", 0)
    if truncated is None:
        truncated = 0
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise WebhookRejected(400, "truncatedAlerts must be a non-negative integer")
    return GroupEnvelope(body, raw_alerts, optional_string(body, "groupKey", ""), truncated)


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
