"""The one Slack Web API client the bot uses: instrumented, retrying on 429 and connection errors."""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.metrics import Metrics

# A rate-limited call waits for Retry-After and tries again; enough attempts that a burst never drops a message.
RATE_LIMIT_RETRIES = 20
CONNECTION_RETRIES = 3


class InstrumentedWebClient(AsyncWebClient):
    """An AsyncWebClient that counts its calls and errors by method for /metrics."""

    def __init__(self, *args: Any, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:  # type: ignore[override]
        """Makes the call, counting it, and counting its error if Slack answers ok=false."""
        self._metrics.slack_calls.labels(method=api_method).inc()
        try:
            return await super().api_call(api_method, **kwargs)
        except SlackApiError as error:
            code = str(error.response.get("error", "unknown")) if error.response is not None else "unknown"
            self._metrics.slack_errors.labels(method=api_method, error=code).inc()
            raise
        except Exception:
            self._metrics.slack_errors.labels(method=api_method, error="transport").inc()
            raise


def build_slack_client(
    *, token: str, base_url: str, metrics: Metrics, session: aiohttp.ClientSession | None = None
) -> InstrumentedWebClient:
    """Builds the bot's Slack client with slack_sdk's own retry handlers."""
    return InstrumentedWebClient(
        token=token,
        base_url=base_url,
        timeout=10,
        session=session,
        metrics=metrics,
        retry_handlers=[
            AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
            AsyncConnectionErrorRetryHandler(max_retry_count=CONNECTION_RETRIES),
        ],
    )
