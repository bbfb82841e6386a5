"""What chatops needs to know about Slack users beyond their IDs: their time zone (`users.info`, cached for an
hour so every `/oncall` answer does not cost a Web API call), who `@alice` is when a command's text was not
escaped by Slack (`users.list`, cached for five minutes), and who has an email (`users.lookupByEmail`, cached for
an hour, misses too: people acknowledging in PagerDuty are found by their email)."""

from __future__ import annotations

import logging
import re
import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.platform.errors import UserFacingError
from bot.text.blocks import external_text

log = logging.getLogger(__name__)

CACHE_SECONDS = 3600
NAMES_CACHE_SECONDS = 300
_ESCAPED = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


class PeopleDirectory:
    """Time zones of Slack users (UTC when Slack does not say, or cannot be asked)."""

    def __init__(self, slack: AsyncWebClient) -> None:
        self._slack = slack
        self._zones: dict[str, tuple[float, ZoneInfo]] = {}
        self._names: tuple[float, dict[str, str]] | None = None
        self._emails: dict[str, tuple[float, str | None]] = {}
        self._display: dict[str, tuple[float, str]] = {}

    async def timezone(self, user_id: str) -> ZoneInfo:
        """The user's IANA time zone as their Slack profile sets it."""
        cached = self._zones.get(user_id)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        zone = ZoneInfo("UTC")
        try:
            response = await self._slack.users_info(user=user_id)
            zone = ZoneInfo(str(response["user"].get("tz") or "UTC"))
        except (SlackApiError, ZoneInfoNotFoundError, ValueError, KeyError) as error:
            log.warning("no time zone for %s (%s); using UTC", user_id, type(error).__name__)
        self._zones[user_id] = (time.monotonic(), zone)
        return zone

    async def display_name(self, user_id: str) -> str:
        """The name Slack shows for the user (display name, else real name, else handle), for places that do not
        render mentions (channel topics, plain text); `@` + the ID when Slack cannot say. Cached for an hour."""
        cached = self._display.get(user_id)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        try:
            user = (await self._slack.users_info(user=user_id))["user"]
            profile = user.get("profile") or {}
            name = str(
                profile.get("display_name")
                or profile.get("real_name")
                or user.get("real_name")
                or user.get("name")
                or ""
            )
        except (SlackApiError, KeyError, TypeError) as error:
            log.warning("no name for %s (%s)", user_id, type(error).__name__)
            return f"@{user_id}"  # not cached: Slack may answer next time
        self._display[user_id] = (time.monotonic(), name or f"@{user_id}")
        return name or f"@{user_id}"

    async def by_email(self, email: str) -> str | None:
        """The Slack user ID with this email, or None (nobody, or Slack cannot say now: not cached then)."""
        key = email.strip().lower()
        cached = self._emails.get(key)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        try:
            response = await self._slack.users_lookupByEmail(email=key)
            found: str | None = str(response["user"]["id"])
        except SlackApiError as error:
            if error.response.get("error") != "users_not_found":
                log.warning("users.lookupByEmail failed: %s", error.response.get("error"))
                return None
            found = None
        except (KeyError, TypeError):
            found = None
        self._emails[key] = (time.monotonic(), found)
        return found

    async def resolve(self, mention: str) -> str:
        """The user ID a command's `<@U…|alice>`, `U…` or `@alice` names; UserFacingError if nobody."""
        escaped = _ESCAPED.fullmatch(mention)
        if escaped:
            return escaped.group(1)
        if _USER_ID.fullmatch(mention):
            return mention
        if not mention.startswith("@") or len(mention) < 2:
            raise UserFacingError(f"`{external_text(mention)}` is not a person: mention them, like `@alice`.")
        name = mention[1:].lower()
        user_id = (await self._names_by_handle()).get(name)
        if user_id is None:
            raise UserFacingError(f"There is nobody called `{external_text(mention)}` in this workspace.")
        return user_id

    async def _names_by_handle(self) -> dict[str, str]:
        if self._names is not None and time.monotonic() - self._names[0] < NAMES_CACHE_SECONDS:
            return self._names[1]
        names: dict[str, str] = {}
        try:
            async for page in await self._slack.users_list(limit=200):
                for user in page.get("members", []):
                    if user.get("deleted") or user.get("is_bot"):
                        continue
                    profile = user.get("profile") or {}
                    for handle in (
                        user.get("name"),
                        profile.get("display_name"),
                        profile.get("display_name_normalized"),
                    ):
                        if handle:
                            names.setdefault(str(handle).lower(), str(user["id"]))
        except SlackApiError as error:
            raise UserFacingError(
                f"Slack would not list users to find that person ({error.response.get('error')}); mention them instead."
            ) from None
        self._names = (time.monotonic(), names)
        return names
