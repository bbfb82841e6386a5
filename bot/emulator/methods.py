"""The Web API methods the emulator answers, as functions of the state and the call's arguments: the same
arguments, answers and error codes as Slack (`channel_not_found`, `not_in_channel`, `invalid_blocks`, ...), and
Slack's per-channel rate limit for chat.postMessage / chat.update. No HTTP here: `bot.emulator.server` parses the
request, authenticates it, and turns `ApiError` / `RateLimited` into Slack's envelopes."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.emulator.state import State, StateError, is_reply, random_id
from bot.emulator.validation import (
    VIEW_BLOCKS_LIMIT,
    BlocksFormatError,
    parse_blocks,
    validate_blocks,
)
from bot.emulator.workspace import CHANNEL_NAME, Channel, Workspace

TEXT_LIMIT = 40_000
TOPIC_LIMIT = 250
RATE_LIMITED_METHODS = frozenset({"chat.postMessage", "chat.update"})


class ApiError(Exception):
    """A Slack API error: `{"ok": false, "error": code}` plus optional response_metadata messages."""

    def __init__(self, code: str, *, messages: list[str] | None = None, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.messages = messages or []
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body Slack sends for this error."""
        body: dict[str, Any] = {"ok": False, "error": self.code, **self.extra}
        if self.messages:
            body["response_metadata"] = {"messages": self.messages}
        return body


class RateLimited(Exception):
    """The call went over the rate limit; Slack answers 429 with Retry-After."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"ratelimited, retry after {retry_after}s")
        self.retry_after = retry_after


@dataclass
class RateLimiter:
    """A token bucket per channel: `per_second` messages a second, bursts of at most max(1, per_second)."""

    per_second: float
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def check(self, key: str, now: float | None = None) -> int | None:
        """Takes a token for `key`; returns None if allowed, else the whole seconds to wait (at least 1)."""
        now = time.monotonic() if now is None else now
        capacity = max(1.0, self.per_second)
        tokens, last = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * self.per_second)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.per_second))


class Args:
    """A call's arguments merged from query, form and JSON body, read the way Slack reads them."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def has(self, key: str) -> bool:
        """Whether the argument was sent (even empty)."""
        return key in self.data and self.data[key] is not None

    def text(self, key: str, default: str = "") -> str:
        """The argument as a string."""
        value = self.data.get(key)
        return default if value is None else str(value)

    def flag(self, key: str) -> bool:
        """The argument as Slack's booleans: true, "true", "1"."""
        value = self.data.get(key)
        return value is True or (isinstance(value, str) and value.lower() in {"true", "1"}) or value == 1

    def number(self, key: str, default: int) -> int:
        """The argument as an integer, else `default`."""
        try:
            return int(self.data.get(key, default))
        except (TypeError, ValueError):
            return default

    def decoded(self, key: str) -> Any:
        """The argument decoded if it was sent as a JSON string."""
        value = self.data.get(key)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as error:
                raise ApiError(
                    "invalid_arguments", messages=[f"[ERROR] {key} must be JSON [json-pointer:/{key}]"]
                ) from error
        return value

    def ids(self, key: str) -> list[str]:
        """A comma-separated list (or a JSON list) of ids."""
        value = self.data.get(key)
        if isinstance(value, list):
            return [str(v).strip() for v in value if str(v).strip()]
        return [part.strip() for part in self.text(key).split(",") if part.strip()]


Method = Callable[[Args], dict[str, Any]]


class WebApi:
    """Slack's Web API methods over a `State`, acting as the app's bot user."""

    def __init__(self, state: State, *, origin: Callable[[], str]) -> None:
        self.state = state
        self.workspace = state.workspace
        self._origin = origin
        self.limiter: RateLimiter | None = None
        # Users whose users.info answers an error (as Slack does for a deleted or foreign user, or in an outage).
        self.users_info_fails: dict[str, str] = {}
        # m_chat_postMessage answers "chat.postMessage", m_usergroups_users_list "usergroups.users.list".
        self.methods: dict[str, Method] = {
            attr[2:].replace("_", "."): getattr(self, attr) for attr in dir(self) if attr.startswith("m_")
        }

    @property
    def origin(self) -> str:
        """The emulator's origin URL (for permalinks, file and upload URLs)."""
        return self._origin()

    @property
    def bot(self) -> str:
        """The bot user id every call acts as."""
        return self.workspace.bot_user_id

    def call(self, method: str, data: dict[str, Any]) -> dict[str, Any]:
        """Runs one method; returns the ok body or raises ApiError / RateLimited."""
        handler = self.methods.get(method)
        if handler is None:
            raise ApiError("unknown_method")
        args = Args(data)
        if self.limiter is not None and method in RATE_LIMITED_METHODS:
            channel = self.workspace.channel(args.text("channel"))
            key = channel.id if channel is not None else args.text("channel")
            wait = self.limiter.check(key)
            if wait is not None:
                raise RateLimited(wait)
        try:
            body = handler(args)
        except StateError as error:
            raise ApiError(error.code) from error
        return {"ok": True, **body}

    # -- helpers ------------------------------------------------------------------------------------------------

    def _channel(self, ref: str) -> Channel:
        channel = self.workspace.channel(ref)
        if channel is None:
            raise ApiError("channel_not_found")
        return channel

    def _postable(self, ref: str) -> Channel:
        """The conversation a message goes to: a channel the bot is in, or a DM opened for a user id."""
        if ref[:1] in {"U", "W"} and self.workspace.user(ref) is not None:
            channel = self.workspace.im_with(ref)
            assert channel is not None
            self.state.channel_changed(channel)
            return channel
        channel = self._channel(ref)
        if channel.is_archived:
            raise ApiError("is_archived")
        if self.bot not in channel.members:
            raise ApiError("not_in_channel")
        return channel

    def _content(
        self, args: Args, *, require: bool = True
    ) -> tuple[str | None, list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
        """(text, blocks, attachments) of a message call, validated like Slack."""
        text = args.text("text") if args.has("text") else None
        blocks = None
        if args.has("blocks") and args.data["blocks"] != "":
            try:
                blocks = parse_blocks(args.data["blocks"])
            except BlocksFormatError as error:
                raise ApiError("invalid_blocks_format") from error
            problems = validate_blocks(blocks)
            if problems:
                raise ApiError("invalid_blocks", messages=problems)
        attachments = (
            args.decoded("attachments") if args.has("attachments") and args.data["attachments"] != "" else None
        )
        if attachments is not None and not (
            isinstance(attachments, list) and all(isinstance(a, dict) for a in attachments)
        ):
            raise ApiError("invalid_attachments")
        if attachments:
            for i, attachment in enumerate(attachments):
                if isinstance(attachment.get("blocks"), list):
                    problems = validate_blocks(attachment["blocks"])
                    if problems:
                        raise ApiError(
                            "invalid_blocks",
                            messages=[p.replace("/blocks", f"/attachments/{i}/blocks") for p in problems],
                        )
        if require and not text and not blocks and not attachments:
            raise ApiError("no_text")
        if text is not None and len(text) > TEXT_LIMIT:
            raise ApiError("msg_too_long")
        return text, blocks, attachments

    def _message_json(self, message: dict[str, Any], *, metadata: bool = True) -> dict[str, Any]:
        """A stored message as Slack returns it from the API (without emulator-only keys); conversations.history
        includes a message's `metadata` only when asked with `include_all_metadata`, as Slack does."""
        hidden = {"channel", "ephemeral_to"} if metadata else {"channel", "ephemeral_to", "metadata"}
        return {k: v for k, v in message.items() if k not in hidden}

    def _user(self, user_id: str) -> Any:
        user = self.workspace.user(user_id)
        if user is None:
            raise ApiError("user_not_found")
        return user

    def _page(self, items: list[Any], args: Args, default_limit: int = 100) -> tuple[list[Any], str]:
        """Cursor pagination: a page of `items` and the next cursor ("" when done)."""
        limit = max(1, min(args.number("limit", default_limit) or default_limit, 1000))
        start = args.number("cursor", 0) if args.text("cursor").isdigit() else 0
        page = items[start : start + limit]
        return page, str(start + limit) if start + limit < len(items) else ""

    # -- auth, team ---------------------------------------------------------------------------------------------

    def m_api_test(self, args: Args) -> dict[str, Any]:
        """api.test: echoes the arguments."""
        return {"args": {k: v for k, v in args.data.items() if k != "token"}}

    def m_auth_test(self, args: Args) -> dict[str, Any]:
        """auth.test: who the token is (the bot user)."""
        ws = self.workspace
        return {
            "url": f"{self.origin}/",
            "team": ws.team_name,
            "user": self._user(self.bot).name,
            "team_id": ws.team_id,
            "user_id": self.bot,
            "bot_id": ws.bot_id,
            "is_enterprise_install": False,
        }

    def m_team_info(self, args: Args) -> dict[str, Any]:
        """team.info: the workspace."""
        return {"team": self.workspace.team_json()}

    def m_bots_info(self, args: Args) -> dict[str, Any]:
        """bots.info: the app's bot."""
        ws = self.workspace
        if args.text("bot", ws.bot_id) != ws.bot_id:
            raise ApiError("bot_not_found")
        return {
            "bot": {
                "id": ws.bot_id,
                "deleted": False,
                "name": "chatops",
                "app_id": ws.app_id,
                "user_id": ws.bot_user_id,
                "icons": {},
            }
        }

    # -- chat ---------------------------------------------------------------------------------------------------

    def m_chat_postMessage(self, args: Args) -> dict[str, Any]:
        """chat.postMessage: to a channel (id or #name) or a user's DM; threads and reply_broadcast."""
        channel = self._postable(args.text("channel"))
        text, blocks, attachments = self._content(args)
        extra: dict[str, Any] = {}
        metadata = args.decoded("metadata") if args.has("metadata") else None
        if isinstance(metadata, dict):
            extra["metadata"] = metadata
        if args.has("mrkdwn") and not args.flag("mrkdwn"):
            extra["mrkdwn"] = False
        if args.text("username"):
            extra["username"] = args.text("username")
        if args.text("icon_emoji"):
            extra["icons"] = {"emoji": args.text("icon_emoji")}
        message = self.state.post(
            channel,
            user=self.bot,
            text=text or "",
            blocks=blocks,
            attachments=attachments,
            thread_ts=args.text("thread_ts") or None,
            reply_broadcast=args.flag("reply_broadcast"),
            extra=extra,
        )
        return {"channel": channel.id, "ts": message["ts"], "message": self._message_json(message)}

    def m_chat_postEphemeral(self, args: Args) -> dict[str, Any]:
        """chat.postEphemeral: a message only `user` sees."""
        channel = self._postable(args.text("channel"))
        user_id = args.text("user")
        if not user_id or self.workspace.user(user_id) is None:
            raise ApiError("user_not_found")
        if user_id not in channel.members:
            raise ApiError("user_not_in_channel")
        text, blocks, attachments = self._content(args)
        message = self.state.post(
            channel,
            user=self.bot,
            text=text or "",
            blocks=blocks,
            attachments=attachments,
            thread_ts=args.text("thread_ts") or None,
            ephemeral_to=user_id,
        )
        return {"message_ts": message["ts"]}

    def m_chat_update(self, args: Args) -> dict[str, Any]:
        """chat.update: the bot's own message, in place; omitted parts are kept."""
        channel = self._channel(args.text("channel"))
        ts = args.text("ts")
        message = self.state.find(channel.id, ts)
        if message is None or message.get("ephemeral_to"):
            raise ApiError("message_not_found")
        if message.get("user") != self.bot:
            raise ApiError("cant_update_message")
        text, blocks, attachments = self._content(args, require=False)
        if text is None and blocks is None and attachments is None:
            raise ApiError("no_text")
        updated = self.state.update(channel.id, ts, editor=self.bot, text=text, blocks=blocks, attachments=attachments)
        return {
            "channel": channel.id,
            "ts": ts,
            "text": updated.get("text", ""),
            "message": self._message_json(updated),
        }

    def m_chat_delete(self, args: Args) -> dict[str, Any]:
        """chat.delete: the bot's own message."""
        channel = self._channel(args.text("channel"))
        ts = args.text("ts")
        message = self.state.find(channel.id, ts)
        if message is None or message.get("ephemeral_to") or message.get("subtype") == "tombstone":
            raise ApiError("message_not_found")
        if message.get("user") != self.bot:
            raise ApiError("cant_delete_message")
        self.state.delete(channel.id, ts)
        return {"channel": channel.id, "ts": ts}

    def m_chat_getPermalink(self, args: Args) -> dict[str, Any]:
        """chat.getPermalink: a link to a message on the dev page."""
        channel = self._channel(args.text("channel"))
        ts = args.text("message_ts")
        message = self.state.find(channel.id, ts)
        if message is None or message.get("ephemeral_to"):
            raise ApiError("message_not_found")
        permalink = f"{self.origin}/archives/{channel.id}/p{ts.replace('.', '')}"
        if is_reply(message):
            permalink += f"?thread_ts={message['thread_ts']}&cid={channel.id}"
        return {"channel": channel.id, "permalink": permalink}

    # -- conversations ------------------------------------------------------------------------------------------

    def m_conversations_create(self, args: Args) -> dict[str, Any]:
        """conversations.create: a new channel with the bot as member."""
        name = args.text("name")
        if not name:
            raise ApiError("invalid_name_required")
        if not CHANNEL_NAME.match(name):
            raise ApiError("invalid_name_specials")
        if self.workspace.channel("#" + name) is not None:
            raise ApiError("name_taken")
        channel = Channel(
            id=_new_channel_id(self.workspace, "G" if args.flag("is_private") else "C"),
            name=name,
            members=[self.bot],
            is_private=args.flag("is_private"),
            creator=self.bot,
        )
        self.workspace.channels.append(channel)
        self.state.channel_changed(channel)
        return {"channel": channel.to_slack(viewer=self.bot)}

    def m_conversations_invite(self, args: Args) -> dict[str, Any]:
        """conversations.invite: people into a channel the bot is in."""
        channel = self._channel(args.text("channel"))
        if channel.is_im:
            raise ApiError("method_not_supported_for_channel_type")
        if self.bot not in channel.members:
            raise ApiError("not_in_channel")
        users = args.ids("users")
        if not users:
            raise ApiError("no_user")
        for user_id in users:
            if user_id == self.bot:
                raise ApiError("cant_invite_self")
            if self.workspace.user(user_id) is None:
                raise ApiError("user_not_found")
            if user_id in channel.members:
                raise ApiError("already_in_channel")
        for user_id in users:
            channel.members.append(user_id)
            self.state.post(
                channel,
                user=user_id,
                text=f"<@{user_id}> has joined the channel",
                subtype="channel_join",
                extra={"inviter": self.bot},
            )
        self.state.channel_changed(channel)
        return {"channel": channel.to_slack(viewer=self.bot)}

    def m_conversations_kick(self, args: Args) -> dict[str, Any]:
        """conversations.kick: removes a member."""
        channel = self._channel(args.text("channel"))
        user_id = args.text("user")
        if user_id == self.bot:
            raise ApiError("cant_kick_self")
        if user_id not in channel.members:
            raise ApiError("not_in_channel")
        channel.members.remove(user_id)
        self.state.channel_changed(channel)
        return {}

    def m_conversations_info(self, args: Args) -> dict[str, Any]:
        """conversations.info: one conversation."""
        channel = self._channel(args.text("channel"))
        info = channel.to_slack(viewer=self.bot)
        if not args.flag("include_num_members"):
            info.pop("num_members", None)
        return {"channel": info}

    def m_conversations_join(self, args: Args) -> dict[str, Any]:
        """conversations.join: the bot joins a public channel."""
        channel = self._channel(args.text("channel"))
        if channel.is_im or channel.is_private:
            raise ApiError("method_not_supported_for_channel_type")
        if channel.is_archived:
            raise ApiError("is_archived")
        if self.bot in channel.members:
            return {
                "channel": channel.to_slack(viewer=self.bot),
                "warning": "already_in_channel",
                "response_metadata": {"warnings": ["already_in_channel"]},
            }
        channel.members.append(self.bot)
        self.state.post(channel, user=self.bot, text=f"<@{self.bot}> has joined the channel", subtype="channel_join")
        self.state.channel_changed(channel)
        return {"channel": channel.to_slack(viewer=self.bot)}

    def m_conversations_leave(self, args: Args) -> dict[str, Any]:
        """conversations.leave: the bot leaves a channel."""
        channel = self._channel(args.text("channel"))
        if self.bot not in channel.members:
            return {"not_in_channel": True}
        channel.members.remove(self.bot)
        self.state.channel_changed(channel)
        return {}

    def m_conversations_setTopic(self, args: Args) -> dict[str, Any]:
        """conversations.setTopic: sets the topic and posts Slack's notice."""
        return self._set_about(args, "topic")

    def m_conversations_setPurpose(self, args: Args) -> dict[str, Any]:
        """conversations.setPurpose: sets the description and posts Slack's notice."""
        return self._set_about(args, "purpose")

    def _set_about(self, args: Args, which: str) -> dict[str, Any]:
        channel = self._channel(args.text("channel"))
        if self.bot not in channel.members:
            raise ApiError("not_in_channel")
        value = args.text(which)
        if len(value) > TOPIC_LIMIT:
            raise ApiError("too_long")
        setattr(channel, which, value)
        verb = "set the channel topic" if which == "topic" else "set the channel description"
        self.state.post(
            channel, user=self.bot, text=f"{verb}: {value}", subtype=f"channel_{which}", extra={which: value}
        )
        self.state.channel_changed(channel)
        return {"channel": channel.to_slack(viewer=self.bot)}

    def m_conversations_members(self, args: Args) -> dict[str, Any]:
        """conversations.members: member ids, paginated."""
        channel = self._channel(args.text("channel"))
        page, cursor = self._page(list(channel.members), args)
        return {"members": page, "response_metadata": {"next_cursor": cursor}}

    def m_conversations_open(self, args: Args) -> dict[str, Any]:
        """conversations.open: the bot's DM with one user."""
        if args.text("channel"):
            return {"channel": self._channel(args.text("channel")).to_slack(viewer=self.bot)}
        users = [u for u in args.ids("users") if u != self.bot]
        if len(users) != 1:
            raise ApiError("users_list_not_supplied" if not users else "not_supported")
        self._user(users[0])
        channel = self.workspace.im_with(users[0])
        assert channel is not None
        self.state.channel_changed(channel)
        return {"channel": {"id": channel.id} if not args.flag("return_im") else channel.to_slack(viewer=self.bot)}

    def m_conversations_list(self, args: Args) -> dict[str, Any]:
        """conversations.list: conversations of the requested types, paginated."""
        types = set(args.ids("types") or ["public_channel"])
        chosen = [
            c
            for c in self.workspace.channels
            if (c.is_im and "im" in types)
            or (not c.is_im and c.is_private and "private_channel" in types)
            or (not c.is_im and not c.is_private and "public_channel" in types)
        ]
        if args.flag("exclude_archived"):
            chosen = [c for c in chosen if not c.is_archived]
        page, cursor = self._page([c.to_slack(viewer=self.bot) for c in chosen], args)
        return {"channels": page, "response_metadata": {"next_cursor": cursor}}

    def m_conversations_history(self, args: Args) -> dict[str, Any]:
        """conversations.history: top-level messages, newest first."""
        channel = self._channel(args.text("channel"))
        if self.bot not in channel.members:
            raise ApiError("not_in_channel")
        oldest, latest = _ts_bound(args.text("oldest"), 0.0), _ts_bound(args.text("latest"), float("inf"))
        with_metadata = args.flag("include_all_metadata")
        top = [
            self._message_json(m, metadata=with_metadata)
            for m in self.state.messages(channel.id)
            if not m.get("ephemeral_to")
            and (not is_reply(m) or m.get("subtype") == "thread_broadcast")
            and oldest < float(m["ts"]) < latest
        ]
        top.reverse()
        page, cursor = self._page(top, args)
        return {"messages": page, "has_more": bool(cursor), "response_metadata": {"next_cursor": cursor}}

    def m_conversations_replies(self, args: Args) -> dict[str, Any]:
        """conversations.replies: a thread's parent, then its replies between `oldest` and `latest`; `metadata`
        only with `include_all_metadata`, as conversations.history."""
        channel = self._channel(args.text("channel"))
        ts = args.text("ts")
        parent = self.state.find(channel.id, ts)
        if parent is None:
            raise ApiError("thread_not_found")
        thread_ts = str(parent.get("thread_ts") or parent["ts"])
        oldest, latest = _ts_bound(args.text("oldest"), 0.0), _ts_bound(args.text("latest"), float("inf"))
        with_metadata = args.flag("include_all_metadata")
        messages = [
            self._message_json(m, metadata=with_metadata)
            for m in self.state.replies(channel.id, thread_ts)
            if not m.get("ephemeral_to") and (str(m["ts"]) == thread_ts or oldest < float(m["ts"]) < latest)
        ]
        page, cursor = self._page(messages, args, 1000)
        return {"messages": page, "has_more": bool(cursor), "response_metadata": {"next_cursor": cursor}}

    # -- pins, reactions ----------------------------------------------------------------------------------------

    def m_pins_add(self, args: Args) -> dict[str, Any]:
        """pins.add: pins a message."""
        channel = self._channel(args.text("channel"))
        ts = args.text("timestamp")
        if not ts:
            raise ApiError("no_item_specified")
        self.state.pin(channel.id, ts, self.bot)
        return {}

    def m_pins_remove(self, args: Args) -> dict[str, Any]:
        """pins.remove: unpins a message."""
        channel = self._channel(args.text("channel"))
        self.state.unpin(channel.id, args.text("timestamp"))
        return {}

    def m_pins_list(self, args: Args) -> dict[str, Any]:
        """pins.list: the channel's pinned messages."""
        channel = self._channel(args.text("channel"))
        return {
            "items": [
                {"type": "message", "channel": channel.id, "message": self._message_json(m)}
                for m in self.state.pinned(channel.id)
            ]
        }

    def m_reactions_add(self, args: Args) -> dict[str, Any]:
        """reactions.add: the bot reacts to a message."""
        channel = self._channel(args.text("channel"))
        self.state.react(channel.id, args.text("timestamp"), args.text("name").strip(":"), self.bot, add=True)
        return {}

    def m_reactions_remove(self, args: Args) -> dict[str, Any]:
        """reactions.remove: the bot takes its reaction back."""
        channel = self._channel(args.text("channel"))
        self.state.react(channel.id, args.text("timestamp"), args.text("name").strip(":"), self.bot, add=False)
        return {}

    # -- users, usergroups --------------------------------------------------------------------------------------

    def m_users_info(self, args: Args) -> dict[str, Any]:
        """users.info: one user with tz, tz_offset and profile (or the error set in `users_info_fails`)."""
        failure = self.users_info_fails.get(args.text("user"))
        if failure is not None:
            raise ApiError(failure)
        return {"user": self._user(args.text("user")).to_slack(self.workspace.team_id)}

    def m_users_list(self, args: Args) -> dict[str, Any]:
        """users.list: every user, paginated."""
        page, cursor = self._page([u.to_slack(self.workspace.team_id) for u in self.workspace.users], args, 200)
        return {"members": page, "cache_ts": int(time.time()), "response_metadata": {"next_cursor": cursor}}

    def m_users_lookupByEmail(self, args: Args) -> dict[str, Any]:
        """users.lookupByEmail: the user with an email."""
        user = self.workspace.user_by_email(args.text("email"))
        if user is None:
            raise ApiError("users_not_found")
        return {"user": user.to_slack(self.workspace.team_id)}

    def m_usergroups_list(self, args: Args) -> dict[str, Any]:
        """usergroups.list: every usergroup (members with include_users)."""
        include = args.flag("include_users")
        return {
            "usergroups": [g.to_slack(self.workspace.team_id, include_users=include) for g in self.workspace.usergroups]
        }

    def m_usergroups_users_list(self, args: Args) -> dict[str, Any]:
        """usergroups.users.list: a usergroup's members."""
        group = self.workspace.usergroup(args.text("usergroup"))
        if group is None:
            raise ApiError("no_such_subteam")
        return {"users": list(group.members)}

    # -- views --------------------------------------------------------------------------------------------------

    def _view_arg(self, args: Args, *, kinds: set[str]) -> dict[str, Any]:
        view = args.decoded("view")
        if not isinstance(view, dict):
            raise ApiError("invalid_arguments", messages=["[ERROR] missing required field: view [json-pointer:/view]"])
        problems: list[str] = []
        if view.get("type") not in kinds:
            problems.append(f"[ERROR] must be one of {', '.join(sorted(kinds))} [json-pointer:/view/type]")
        if view.get("type") == "modal":
            title = view.get("title")
            if not isinstance(title, dict) or title.get("type") != "plain_text" or not title.get("text"):
                problems.append("[ERROR] missing required field: title [json-pointer:/view/title]")
            elif len(str(title["text"])) > 24:
                problems.append("[ERROR] must be less than 25 characters [json-pointer:/view/title/text]")
        try:
            blocks = parse_blocks(view.get("blocks", []))
        except BlocksFormatError:
            blocks = None
        problems += [p.replace("/blocks", "/view/blocks") for p in validate_blocks(blocks, limit=VIEW_BLOCKS_LIMIT)]
        if problems:
            raise ApiError("invalid_arguments", messages=problems)
        return view | {"blocks": blocks}

    def m_views_open(self, args: Args) -> dict[str, Any]:
        """views.open: shows a modal to the user of trigger_id."""
        trigger = args.text("trigger_id")
        if not trigger:
            raise ApiError("invalid_trigger_id")
        view = self._view_arg(args, kinds={"modal"})
        user = self.state.triggers.get(trigger, self.workspace.me)
        return {"view": self.state.open_view(view, user=user)}

    def m_views_push(self, args: Args) -> dict[str, Any]:
        """views.push: stacks a modal on the user's open one."""
        trigger = args.text("trigger_id")
        if not trigger:
            raise ApiError("invalid_trigger_id")
        view = self._view_arg(args, kinds={"modal"})
        user = self.state.triggers.get(trigger, self.workspace.me)
        current = next((vid for vid, owner in reversed(list(self.state.view_users.items())) if owner == user), None)
        return {"view": self.state.open_view(view, user=user, previous=current)}

    def m_views_update(self, args: Args) -> dict[str, Any]:
        """views.update: replaces an open modal (by view_id or external_id)."""
        ref = args.text("view_id") or args.text("external_id")
        existing = self.state.find_view(ref) if ref else None
        if existing is None:
            raise ApiError("not_found")
        if args.text("hash") and args.text("hash") != existing.get("hash"):
            raise ApiError("hash_conflict")
        view = self._view_arg(args, kinds={"modal"})
        return {"view": self.state.update_view(existing["id"], view)}

    def m_views_publish(self, args: Args) -> dict[str, Any]:
        """views.publish: a user's App Home."""
        user = self._user(args.text("user_id"))
        view = self._view_arg(args, kinds={"home"})
        return {"view": self.state.publish_home(user.id, view)}

    # -- files --------------------------------------------------------------------------------------------------

    def m_files_getUploadURLExternal(self, args: Args) -> dict[str, Any]:
        """files.getUploadURLExternal: announces a file and returns where to upload it."""
        name = args.text("filename")
        length = args.number("length", -1)
        if not name or length < 0:
            raise ApiError("invalid_arguments", messages=["[ERROR] missing required field: filename or length"])
        stored = self.state.announce_file(
            name, length, self.bot, alt_txt=args.text("alt_txt"), snippet_type=args.text("snippet_type")
        )
        return {"upload_url": f"{self.origin}/emulator/upload/{stored.id}", "file_id": stored.id}

    def m_files_completeUploadExternal(self, args: Args) -> dict[str, Any]:
        """files.completeUploadExternal: shares uploaded files in channel_id / thread_ts."""
        files = args.decoded("files")
        if not isinstance(files, list) or not files or not all(isinstance(f, dict) and f.get("id") for f in files):
            raise ApiError("invalid_arguments", messages=["[ERROR] files must be a non-empty list of {id, title}"])
        stored = []
        for item in files:
            record = self.state.files.get(str(item["id"]))
            if record is None or record.content is None:
                raise ApiError("file_not_found")
            stored.append((record, item))
        channel = self._postable(args.text("channel_id")) if args.text("channel_id") else None
        for record, item in stored:
            record.title = str(item.get("title") or record.title or record.name)
        if channel is not None:
            blocks = None
            if args.has("blocks") and args.data["blocks"] != "":
                try:
                    blocks = parse_blocks(args.data["blocks"])
                except BlocksFormatError as error:
                    raise ApiError("invalid_blocks_format") from error
                problems = validate_blocks(blocks)
                if problems:
                    raise ApiError("invalid_blocks", messages=problems)
            for record, _ in stored:
                record.shared_in.append(channel.id)
            self.state.post(
                channel,
                user=self.bot,
                text=args.text("initial_comment"),
                blocks=blocks,
                thread_ts=args.text("thread_ts") or None,
                files=[record.to_slack(self.origin) for record, _ in stored],
            )
        return {"files": [{"id": record.id, "title": record.title} for record, _ in stored]}

    def m_files_info(self, args: Args) -> dict[str, Any]:
        """files.info: one uploaded file."""
        record = self.state.files.get(args.text("file"))
        if record is None or record.content is None:
            raise ApiError("file_not_found")
        return {"file": record.to_slack(self.origin)}


def _new_channel_id(workspace: Workspace, prefix: str) -> str:
    while True:
        candidate = random_id(prefix, 9)
        if workspace.channel(candidate) is None:
            return candidate


def _ts_bound(text: str, default: float) -> float:
    """An `oldest`/`latest` argument of conversations.history (a message ts; exclusive bounds, as Slack's
    default `inclusive=false`)."""
    try:
        return float(text) if text else default
    except ValueError:
        return default
