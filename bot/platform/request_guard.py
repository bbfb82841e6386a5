"""The idempotency guard of Slack requests: the one way the request dispatcher reaches Redis (retries and replays
answered once, a quick second click on the same button held back, and a probe of whether Redis answers)."""

from __future__ import annotations

from bot.platform.store import Store


class RequestGuard:
    """Claims of request and click identities in Redis; built by the composition root for the dispatcher."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def claim_once(self, kind: str, request_id: str) -> bool:
        """True for the first caller with this request id; False for every retry or replay after it."""
        return await self._store.claim_once(kind, request_id)

    async def claim_click(self, user_id: str, message_ref: str, action_id: str, value: str) -> bool:
        """True unless this user pressed the same button on the same message a moment ago."""
        return await self._store.claim_click(user_id, message_ref, action_id, value)

    async def ping(self) -> None:
        """Raises StoreUnavailable unless Redis answers."""
        await self._store.ping()
