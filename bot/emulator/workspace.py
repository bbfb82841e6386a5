"""The emulated Slack workspace's directory: team, users, channels (and DMs) and usergroups, with the JSON shapes
Slack's Web API returns for them. Pure data and lookups; messages live in `bot.emulator.state`."""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CHANNEL_NAME = re.compile(r"^[a-z0-9_-]{1,80}$")

# Avatar colours for the page (Slack-like, readable with white initials).
AVATAR_COLOURS = ("#e8912d", "#2bac76", "#1d9bd1", "#de4e2b", "#7c3085", "#cd2553", "#3e8e7e", "#e0a01b", "#4a5bcf")


def tz_offset(tz: str, at: dt.datetime | None = None) -> int:
    """The UTC offset of IANA zone `tz` in seconds (0 if the zone is unknown)."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return 0
    offset = (at or dt.datetime.now(dt.UTC)).astimezone(zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


@dataclass
class User:
    """A workspace member (a person or a bot user)."""

    id: str
    name: str
    real_name: str = ""
    display_name: str = ""
    tz: str = "UTC"
    title: str = ""
    email: str = ""
    is_bot: bool = False
    bot_id: str | None = None
    is_admin: bool = False
    deleted: bool = False
    color: str = ""

    def label(self) -> str:
        """The name Slack shows for the user (display name, else real name, else handle)."""
        return self.display_name or self.real_name or self.name

    def to_slack(self, team_id: str) -> dict[str, Any]:
        """The user object of users.info / users.list."""
        offset = tz_offset(self.tz)
        zone_label = dt.datetime.now(dt.UTC).astimezone(_zone(self.tz)).tzname() or self.tz
        profile: dict[str, Any] = {
            "real_name": self.real_name or self.name,
            "real_name_normalized": self.real_name or self.name,
            "display_name": self.display_name,
            "display_name_normalized": self.display_name,
            "title": self.title,
            "team": team_id,
        }
        if self.email:
            profile["email"] = self.email
        if self.bot_id:
            profile["bot_id"] = self.bot_id
        return {
            "id": self.id,
            "team_id": team_id,
            "name": self.name,
            "deleted": self.deleted,
            "color": (self.color or "#4a5bcf").lstrip("#"),
            "real_name": self.real_name or self.name,
            "tz": self.tz,
            "tz_label": zone_label,
            "tz_offset": offset,
            "profile": profile,
            "is_admin": self.is_admin,
            "is_owner": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": 1700000000,
        }


def _zone(tz: str) -> dt.tzinfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


@dataclass
class Channel:
    """A conversation: a public or private channel, or a DM (`is_im`, with `user`)."""

    id: str
    name: str
    members: list[str] = field(default_factory=list)
    is_private: bool = False
    is_im: bool = False
    user: str | None = None
    topic: str = ""
    purpose: str = ""
    creator: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    is_archived: bool = False
    is_general: bool = False

    def to_slack(self, *, viewer: str) -> dict[str, Any]:
        """The conversation object of conversations.info, as seen by user `viewer` (for is_member)."""
        if self.is_im:
            return {
                "id": self.id,
                "created": self.created,
                "is_im": True,
                "is_org_shared": False,
                "user": self.user,
                "is_user_deleted": False,
                "priority": 0,
            }
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "is_channel": not self.is_private,
            "is_group": self.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": self.is_private,
            "created": self.created,
            "creator": self.creator,
            "is_archived": self.is_archived,
            "is_general": self.is_general,
            "is_shared": False,
            "is_org_shared": False,
            "is_member": viewer in self.members,
            "num_members": len(self.members),
            "topic": {"value": self.topic, "creator": self.creator if self.topic else "", "last_set": 0},
            "purpose": {"value": self.purpose, "creator": self.creator if self.purpose else "", "last_set": 0},
        }


@dataclass
class Usergroup:
    """A user group (`@handle`)."""

    id: str
    handle: str
    name: str = ""
    members: list[str] = field(default_factory=list)
    description: str = ""

    def to_slack(self, team_id: str, *, include_users: bool) -> dict[str, Any]:
        """The usergroup object of usergroups.list."""
        group: dict[str, Any] = {
            "id": self.id,
            "team_id": team_id,
            "is_usergroup": True,
            "is_subteam": True,
            "name": self.name or self.handle,
            "description": self.description,
            "handle": self.handle,
            "is_external": False,
            "date_create": 1700000000,
            "date_update": 1700000000,
            "date_delete": 0,
            "auto_type": None,
            "created_by": "",
            "updated_by": "",
            "deleted_by": None,
            "prefs": {"channels": [], "groups": []},
            "user_count": len(self.members),
        }
        if include_users:
            group["users"] = list(self.members)
        return group


@dataclass
class Workspace:
    """A Slack team with its users, channels and usergroups; `bot_user_id` is the app's bot user."""

    team_id: str = "T0CHATOPS"
    team_name: str = "Acme"
    domain: str = "acme"
    users: list[User] = field(default_factory=list)
    channels: list[Channel] = field(default_factory=list)
    usergroups: list[Usergroup] = field(default_factory=list)
    bot_user_id: str = "U0BOT"
    bot_id: str = "B0BOT"
    app_id: str = "A0CHATOPS"
    me: str = "U0DEMO"

    def __post_init__(self) -> None:
        for i, user in enumerate(self.users):
            if not user.color:
                user.color = AVATAR_COLOURS[i % len(AVATAR_COLOURS)]
        if not any(u.id == self.bot_user_id for u in self.users):
            self.users.append(
                User(
                    id=self.bot_user_id,
                    name="chatops",
                    real_name="chatops",
                    is_bot=True,
                    bot_id=self.bot_id,
                    color="#611f69",
                )
            )

    @classmethod
    def demo(cls) -> Workspace:
        """The demo team `acme`: you (U0DEMO), Alice, Bob and Carol, the chatops bot, two usergroups, six channels."""
        people = ["U0DEMO", "U0ALICE", "U0BOB", "U0CAROL"]
        users = [
            User(
                "U0DEMO",
                "demo",
                "Demo User",
                tz="Europe/Berlin",
                title="Platform engineer",
                email="demo@acme.example",
                is_admin=True,
            ),
            User(
                "U0ALICE",
                "alice",
                "Alice Anders",
                tz="America/New_York",
                title="Platform lead",
                email="alice@acme.example",
            ),
            User("U0BOB", "bob", "Bob Brown", tz="Asia/Kolkata", title="SRE", email="bob@acme.example"),
            User("U0CAROL", "carol", "Carol Chen", tz="Australia/Sydney", title="SRE", email="carol@acme.example"),
            User("U0BOT", "chatops", "chatops", tz="UTC", is_bot=True, bot_id="B0BOT", color="#611f69"),
        ]
        topics = {
            "general": "Company-wide announcements",
            "deploys": "Deploys and rollbacks, announced by chatops",
            "alerts": "Alerts from monitoring",
            "incidents": "Incident coordination",
            "oncall": "Who is on call",
            "backups": "Backup runs and restores",
        }
        channels = [
            Channel(
                f"C0{name.upper()}",
                name,
                members=[*people, "U0BOT"],
                topic=topic,
                creator="U0DEMO",
                is_general=name == "general",
                created=1700000000,
            )
            for name, topic in topics.items()
        ]
        usergroups = [
            Usergroup("S0PLATFORM", "platform", "Platform team", ["U0DEMO", "U0ALICE"]),
            Usergroup("S0SRE", "sre", "SRE team", ["U0BOB", "U0CAROL"]),
        ]
        return cls(users=users, channels=channels, usergroups=usergroups)

    # -- lookups ------------------------------------------------------------------------------------------------

    def user(self, user_id: str) -> User | None:
        """The user with this id, or None."""
        return next((u for u in self.users if u.id == user_id), None)

    def channel(self, ref: str) -> Channel | None:
        """The conversation with this id, or "#name" / "name", or None."""
        if not ref:
            return None
        if ref.startswith("#"):
            name = ref[1:]
            return next((c for c in self.channels if c.name == name and not c.is_im), None)
        return next((c for c in self.channels if c.id == ref), None) or next(
            (c for c in self.channels if c.name == ref and not c.is_im), None
        )

    def usergroup(self, group_id: str) -> Usergroup | None:
        """The usergroup with this id, or None."""
        return next((g for g in self.usergroups if g.id == group_id), None)

    def user_by_email(self, email: str) -> User | None:
        """The user with this email, or None."""
        return next((u for u in self.users if u.email and u.email.lower() == email.lower()), None)

    def im_with(self, user_id: str, *, create: bool = True) -> Channel | None:
        """The bot's DM with `user_id`, opened on first use."""
        existing = next((c for c in self.channels if c.is_im and c.user == user_id), None)
        if existing is not None or not create:
            return existing
        channel = Channel(
            id="D" + user_id[1:],
            name=user_id,
            members=[user_id, self.bot_user_id],
            is_im=True,
            user=user_id,
            creator=self.bot_user_id,
        )
        self.channels.append(channel)
        return channel

    # -- changes ------------------------------------------------------------------------------------------------

    def add_user(self, id: str, name: str, *, real_name: str = "", tz: str = "UTC", **extra: Any) -> User:
        """Adds a person (joined to no channel) and returns them."""
        if self.user(id) is not None:
            raise ValueError(f"user {id} already exists")
        user = User(
            id=id,
            name=name,
            real_name=real_name or name.title(),
            display_name=extra.pop("display_name", ""),
            tz=tz,
            **extra,
        )
        if not user.color:
            user.color = AVATAR_COLOURS[len(self.users) % len(AVATAR_COLOURS)]
        self.users.append(user)
        return user

    def add_channel(
        self,
        name: str,
        *,
        id: str | None = None,
        members: list[str] | None = None,
        bot_member: bool = True,
        is_private: bool = False,
        topic: str = "",
    ) -> Channel:
        """Adds a channel (the bot joins unless `bot_member` is False) and returns it."""
        if not CHANNEL_NAME.match(name):
            raise ValueError(f"invalid channel name {name!r}")
        if self.channel("#" + name) is not None:
            raise ValueError(f"channel #{name} already exists")
        channel_id = id or f"C0{name.upper().replace('-', '').replace('_', '')[:9]}"
        if any(c.id == channel_id for c in self.channels):
            raise ValueError(f"channel id {channel_id} already exists")
        member_ids = list(members or [])
        if bot_member and self.bot_user_id not in member_ids:
            member_ids.append(self.bot_user_id)
        channel = Channel(
            id=channel_id, name=name, members=member_ids, is_private=is_private, topic=topic, creator=self.me
        )
        self.channels.append(channel)
        return channel

    def add_usergroup(self, id: str, handle: str, members: list[str], *, name: str = "") -> Usergroup:
        """Adds a usergroup and returns it."""
        if self.usergroup(id) is not None:
            raise ValueError(f"usergroup {id} already exists")
        group = Usergroup(id=id, handle=handle, name=name or handle, members=list(members))
        self.usergroups.append(group)
        return group

    # -- shapes -------------------------------------------------------------------------------------------------

    def team_json(self) -> dict[str, Any]:
        """The team object (team.info)."""
        return {
            "id": self.team_id,
            "name": self.team_name,
            "domain": self.domain,
            "email_domain": "",
            "icon": {"image_default": True},
        }

    def page_json(self) -> dict[str, Any]:
        """The directory as the dev page needs it: team, users (with colours), conversations."""
        return {
            "team": self.team_json() | {"bot_user_id": self.bot_user_id, "me": self.me},
            "users": [
                {
                    "id": u.id,
                    "name": u.name,
                    "label": u.label(),
                    "real_name": u.real_name or u.name,
                    "is_bot": u.is_bot,
                    "color": u.color,
                    "tz": u.tz,
                    "title": u.title,
                }
                for u in self.users
            ],
            "usergroups": [{"id": g.id, "handle": g.handle, "members": list(g.members)} for g in self.usergroups],
            "channels": [self.channel_page_json(c) for c in self.channels],
        }

    def channel_page_json(self, channel: Channel) -> dict[str, Any]:
        """One conversation as the dev page shows it in its sidebar."""
        return {
            "id": channel.id,
            "name": channel.name,
            "is_im": channel.is_im,
            "user": channel.user,
            "is_private": channel.is_private,
            "topic": channel.topic,
            "members": list(channel.members),
        }
