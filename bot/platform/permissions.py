"""Who may do what: roles from the configuration, Slack user groups resolved through the Web API with a short cache."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.platform.errors import PermissionDenied

log = logging.getLogger(__name__)

ADMINS = "admins"
USERGROUP_CACHE_SECONDS = 60.0


class UsergroupDirectory:
    """Members of Slack user groups (`@handle` or `S…` id), cached for a minute; stale data beats none on error."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        ttl: float = USERGROUP_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._handles: tuple[float, dict[str, str]] | None = None
        self._inflight: dict[str, asyncio.Future[frozenset[str]]] = {}

    async def members(self, ref: str) -> frozenset[str]:
        """The user ids in the group; an empty set when Slack cannot tell and nothing is cached."""
        cached = self._members.get(ref)
        if cached and cached[0] > self._clock():
            return cached[1]
        if ref in self._inflight:
            return await asyncio.shield(self._inflight[ref])
        future: asyncio.Future[frozenset[str]] = asyncio.get_running_loop().create_future()
        self._inflight[ref] = future
        try:
            members = await self._fetch(ref, stale=cached[1] if cached else frozenset())
            future.set_result(members)
            return members
        finally:
            del self._inflight[ref]

    async def expand(self, members: Sequence[str]) -> set[str]:
        """The user ids `members` stand for: user ids as they are, user groups (`@handle`, `S…`) by their members."""
        users: set[str] = set()
        for member in members:
            if member.startswith(("@", "S")):
                users |= await self.members(member)
            else:
                users.add(member)
        return users

    async def _fetch(self, ref: str, *, stale: frozenset[str]) -> frozenset[str]:
        try:
            group_id = ref if not ref.startswith("@") else await self._group_id(ref[1:])
            if group_id is None:
                log.warning("user group %s does not exist in this workspace", ref)
                members: frozenset[str] = frozenset()
            else:
                response = await self._client.usergroups_users_list(usergroup=group_id)
                members = frozenset(response.get("users") or ())
        except SlackApiError as error:
            log.warning("could not resolve user group %s: %s", ref, error.response.get("error"))
            return stale
        self._members[ref] = (self._clock() + self._ttl, members)
        return members

    async def _group_id(self, handle: str) -> str | None:
        if self._handles is None or self._handles[0] <= self._clock():
            response = await self._client.usergroups_list()
            by_handle = {group["handle"]: group["id"] for group in response.get("usergroups") or ()}
            self._handles = (self._clock() + self._ttl, by_handle)
        return self._handles[1].get(handle)


class Permissions:
    """Checks that a user holds a role. Admins hold every role. Used by every command and every button."""

    def __init__(self, roles: Mapping[str, tuple[str, ...]], directory: UsergroupDirectory) -> None:
        self._roles = roles
        self._directory = directory

    def is_configured(self, role: str) -> bool:
        """Whether the configuration names this role at all."""
        return role in self._roles

    async def holds(self, user_id: str, role: str) -> bool:
        """True when the user is listed in the role (directly or through a user group) or is an admin."""
        for name in (role, ADMINS) if role != ADMINS else (ADMINS,):
            for member in self._roles.get(name, ()):
                if member == user_id:
                    return True
                if (member.startswith(("@", "S"))) and user_id in await self._directory.members(member):
                    return True
        return False

    async def require(self, user_id: str, role: str | None, *, action: str, everyone_if_unset: bool = False) -> None:
        """Raises PermissionDenied unless the user may do `action`; `role=None` means anyone may."""
        if role is None or (everyone_if_unset and role not in self._roles):
            return
        if await self.holds(user_id, role):
            return
        holders = ", ".join(_mention(m) for m in self._roles.get(role, ())) or "nobody yet"
        raise PermissionDenied(
            f"You need the `{role}` role to {action}. Members: {holders}. "
            f"An admin can add you under `roles.{role}` in chatops.yaml.",
            action=action,
            role=role,
        )


def _mention(member: str) -> str:
    if member.startswith("@"):
        return member
    if member.startswith("S"):
        return f"<!subteam^{member}>"
    return f"<@{member}>"
