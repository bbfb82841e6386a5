"""The one Slack Web API client the bot uses: instrumented, retrying on 429, and turning every way a call can fail
(Slack's `ok: false`, an HTML error page from a proxy, a timeout, a dropped connection) into one `SlackApiError`
whose `response["error"]` says what happened, so callers handle a single exception type.

Whether a failed call may be retried, and whether it may already have taken effect, are told by `is_transient`
and `maybe_applied`: an idempotent producer (bot/platform/slack_post.py) looks for its own message before
re-posting after an answer that does not rule out that the post went through.
"""

from __future__ import annotations

import copy
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.platform.metrics import Metrics

# A rate-limited call waits for Retry-After and tries again; enough attempts that a burst never drops a message.
RATE_LIMIT_RETRIES = 20
CONNECTION_RETRIES = 3
DEFAULT_TIMEOUT_SECONDS = 10.0

# Codes we give failures that Slack itself did not name (no JSON answer): the HTTP status, or the transport.
TIMEOUT = "request_timeout"
CONNECTION = "connection_error"
HTTP_ERROR = "http_error"

# Errors that a later attempt can get past. Slack documents internal_error and fatal_error as "it's possible some
# aspect of the operation succeeded"; 429 (ratelimited) is the one transient answer that rules that out.
_TRANSIENT = frozenset(
    {
        "ratelimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "connection_error",
        "http_error",
        "team_added_to_org",
    }
)
_NOT_APPLIED = frozenset({"ratelimited"})
# Posting is not idempotent: these methods are never retried blindly after a dropped connection.
_NOT_IDEMPOTENT = ("chat.postMessage", "chat.postEphemeral", "files.completeUploadExternal")


def error_code(error: SlackApiError) -> str:
    """The error code of a failed call (`ratelimited`, `channel_not_found`, `request_timeout`…)."""
    response = error.response
    try:
        code = response.get("error") if response is not None else None
    except AttributeError:
        code = None
    return str(code or HTTP_ERROR)


def is_transient(error: SlackApiError) -> bool:
    """Whether trying again later can succeed (Slack down, slow, rate limiting, or a proxy's error page)."""
    status = _status(error)
    return error_code(error) in _TRANSIENT or status == 429 or status >= 500


def maybe_applied(error: SlackApiError) -> bool:
    """Whether the failed call may nevertheless have taken effect (a post may exist): true for timeouts, dropped
    connections, 5xx and error pages; false for 429 and for Slack's definite `ok: false` answers."""
    if error_code(error) in _NOT_APPLIED or _status(error) == 429:
        return False
    return is_transient(error)


def retry_after_seconds(error: SlackApiError) -> float | None:
    """The wait Slack asked for with a 429 (its `Retry-After`, at least 1 s), or None if the error is not a 429."""
    if error_code(error) not in _NOT_APPLIED and _status(error) != 429:
        return None
    headers = getattr(error.response, "headers", None) or {}
    raw = next((str(value) for name, value in headers.items() if str(name).lower() == "retry-after"), "")
    try:
        return max(1.0, float(raw))
    except ValueError:
        return 1.0


def _status(error: SlackApiError) -> int:
    status = getattr(error.response, "status_code", None)
    if status is None:
        status = getattr(error.response, "status", 0)
    return int(status or 0)


class _IdempotentConnectionRetryHandler(AsyncConnectionErrorRetryHandler):
    """slack_sdk's connection-error retry, except for posting: a post whose connection dropped may have gone
    through, and the caller (who can look for it) decides."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if request.url.rstrip("/").endswith(_NOT_IDEMPOTENT):
            return False
        return await super()._can_retry_async(state=state, request=request, response=response, error=error)


class InstrumentedWebClient(AsyncWebClient):
    """An AsyncWebClient that counts its calls and errors by method for /metrics, and raises only SlackApiError."""

    def __init__(self, *args: Any, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
        """Makes the call, counting it, and counting its error if it fails (every failure as SlackApiError)."""
        self._metrics.slack_calls.labels(method=api_method).inc()
        try:
            return await super().api_call(api_method, **kwargs)
        except SlackApiError as error:
            if not isinstance(error.response, AsyncSlackResponse) or not isinstance(error.response.data, dict):
                error = self._failure(
                    api_method, HTTP_ERROR, _status(error), "Slack answered with something that is not JSON"
                )
            elif not error.response.data.get("error"):  # e.g. a 502 with an empty or HTML body
                status = _status(error)
                error = self._failure(
                    api_method, HTTP_ERROR, status, f"Slack answered HTTP {status} without an error code"
                )
            self._metrics.slack_errors.labels(method=api_method, error=error_code(error)).inc()
            raise error from None
        except TimeoutError as timeout:
            self._metrics.slack_errors.labels(method=api_method, error=TIMEOUT).inc()
            raise self._failure(api_method, TIMEOUT, 0, f"no answer from Slack within {self.timeout}s") from timeout
        except aiohttp.ClientError as failure:
            self._metrics.slack_errors.labels(method=api_method, error=CONNECTION).inc()
            raise self._failure(
                api_method, CONNECTION, 0, f"could not reach Slack: {type(failure).__name__}"
            ) from failure

    def _failure(self, api_method: str, code: str, status: int, message: str) -> SlackApiError:
        """A SlackApiError with a readable response, for failures Slack did not describe itself."""
        response = AsyncSlackResponse(
            client=self,
            http_verb="POST",
            api_url=f"{self.base_url}{api_method}",
            req_args={},
            data={"ok": False, "error": code},
            headers={},
            status_code=status,
        )
        return SlackApiError(f"{api_method}: {message}", response)


def build_slack_client(
    *,
    token: str,
    base_url: str,
    metrics: Metrics,
    session: aiohttp.ClientSession | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> InstrumentedWebClient:
    """Builds the bot's Slack client with slack_sdk's own retry handlers (connection retries only where safe)."""
    handlers: list[AsyncRetryHandler] = [
        AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
        _IdempotentConnectionRetryHandler(max_retry_count=CONNECTION_RETRIES),
    ]
    return InstrumentedWebClient(
        token=token,
        base_url=base_url,
        timeout=timeout,
        session=session,
        metrics=metrics,
        retry_handlers=handlers,
    )


def without_rate_limit_waits(client: AsyncWebClient) -> AsyncWebClient:
    """The same client (token, session, metrics, connection retries) except that a 429 is raised at once instead
    of waited out: for a caller with other work queued behind the call, which leaves it to a later pass."""
    quick = copy.copy(client)
    quick.retry_handlers = [
        handler for handler in client.retry_handlers if not isinstance(handler, AsyncRateLimitErrorRetryHandler)
    ]
    return quick
