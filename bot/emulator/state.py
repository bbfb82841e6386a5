"""What the emulated workspace remembers besides its directory: messages per channel (with Slack's ts, thread and
ephemeral semantics), pins and reactions, uploaded files, open modals and App Home views, response URLs and trigger
ids. Pure state with no I/O; every change is announced to listeners (the page's WebSocket) as a small event dict."""

from __future__ import annotations

import copy
import mimetypes
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.emulator.workspace import Channel, Workspace

Event = dict[str, Any]
Listener = Callable[[Event], None]

_ID_ALPHABET = string.ascii_uppercase + string.digits
_BLOCK_ID_ALPHABET = string.ascii_letters + string.digits


class StateError(Exception):
    """A Slack API error code raised by a state change (e.g. `message_not_found`)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def random_id(prefix: str, length: int = 10) -> str:
    """A Slack-looking id such as `F07ABCDE12`."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def ts_to_micros(ts: str) -> int:
    """A message ts ("1700000000.000100") as integer microseconds."""
    seconds, _, fraction = ts.partition(".")
    return int(seconds) * 1_000_000 + int((fraction + "000000")[:6])


def micros_to_ts(micros: int) -> str:
    """Integer microseconds as a message ts with six decimals."""
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def with_block_ids(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A deep copy of the blocks where every block has a block_id, as Slack returns them."""
    out = copy.deepcopy(blocks)
    for block in out:
        if isinstance(block, dict) and not block.get("block_id"):
            block["block_id"] = "".join(secrets.choice(_BLOCK_ID_ALPHABET) for _ in range(5))
    return out


def is_reply(message: dict[str, Any]) -> bool:
    """Whether the message is a thread reply (not the parent)."""
    return bool(message.get("thread_ts")) and message.get("thread_ts") != message.get("ts")


@dataclass
class StoredFile:
    """An uploaded file: announced by files.getUploadURLExternal, filled by the upload, shared on completion."""

    id: str
    name: str
    length: int
    user: str
    title: str = ""
    alt_txt: str = ""
    snippet_type: str = ""
    content: bytes | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    shared_in: list[str] = field(default_factory=list)

    @property
    def mimetype(self) -> str:
        """The file's MIME type guessed from its name."""
        return mimetypes.guess_type(self.name)[0] or "application/octet-stream"

    def to_slack(self, origin: str) -> dict[str, Any]:
        """The file object Slack returns (files.info, message `files`)."""
        filetype = self.name.rsplit(".", 1)[-1].lower() if "." in self.name else "binary"
        url = f"{origin}/emulator/files/{self.id}"
        return {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.name,
            "title": self.title or self.name,
            "mimetype": self.mimetype,
            "filetype": filetype,
            "pretty_type": filetype.upper(),
            "user": self.user,
            "size": len(self.content or b""),
            "mode": "hosted",
            "is_external": False,
            "is_public": True,
            "url_private": url,
            "url_private_download": f"{url}?download=1",
            "permalink": url,
            "channels": list(self.shared_in),
            "alt_txt": self.alt_txt or None,
        }


@dataclass
class ResponseTarget:
    """Where a response_url posts: the channel and user of a command or action, and the message it may replace."""

    token: str
    kind: str
    channel: str
    user: str
    message_ts: str | None = None
    thread_ts: str | None = None
    created: float = field(default_factory=time.time)
    uses: int = 0


class State:
    """The workspace's messages, files, views, response URLs and triggers."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self._last_ts: dict[str, int] = {}
        self.files: dict[str, StoredFile] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.view_users: dict[str, str] = {}
        self.home_views: dict[str, dict[str, Any]] = {}
        self.responses: dict[str, ResponseTarget] = {}
        self.triggers: dict[str, str] = {}
        self._listeners: list[Listener] = []

    # -- events -------------------------------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        """Calls `listener(event)` for every change."""
        self._listeners.append(listener)

    def emit(self, event: Event) -> None:
        """Announces a change to every listener."""
        for listener in list(self._listeners):
            listener(event)

    # -- messages -----------------------------------------------------------------------------------------------

    def new_ts(self, channel_id: str) -> str:
        """A fresh ts for `channel_id`: the current time, strictly after the channel's previous ts."""
        micros = max(int(time.time() * 1_000_000), self._last_ts.get(channel_id, 0) + 1)
        self._last_ts[channel_id] = micros
        return micros_to_ts(micros)

    def new_action_ts(self) -> str:
        """A unique, increasing action_ts for a click."""
        return self.new_ts("\x00actions")

    def messages(self, channel_id: str) -> list[dict[str, Any]]:
        """Every message of the channel in ts order (top-level, replies and ephemeral ones)."""
        return self._messages.get(channel_id, [])

    def all_messages(self) -> dict[str, list[dict[str, Any]]]:
        """Every channel's messages."""
        return self._messages

    def find(self, channel_id: str, ts: str) -> dict[str, Any] | None:
        """The message with this ts in the channel, or None."""
        return next((m for m in self._messages.get(channel_id, []) if m.get("ts") == ts), None)

    def replies(self, channel_id: str, thread_ts: str) -> list[dict[str, Any]]:
        """The parent of a thread followed by its replies."""
        return [
            m for m in self._messages.get(channel_id, []) if m.get("ts") == thread_ts or m.get("thread_ts") == thread_ts
        ]

    def post(
        self,
        channel: Channel,
        *,
        user: str,
        text: str = "",
        blocks: list[dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        reply_broadcast: bool = False,
        ephemeral_to: str | None = None,
        files: list[dict[str, Any]] | None = None,
        subtype: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Stores a new message and returns it; a reply updates its parent's reply_count and latest_reply."""
        parent = None
        if thread_ts:
            parent = self.find(channel.id, thread_ts)
            if parent is not None and is_reply(parent):
                parent = self.find(channel.id, str(parent["thread_ts"]))
        ts = self.new_ts(channel.id)
        message: dict[str, Any] = {
            "type": "message",
            "ts": ts,
            "channel": channel.id,
            "team": self.workspace.team_id,
            "user": user,
            "text": text,
        }
        author = self.workspace.user(user)
        if author is not None and author.is_bot:
            message["bot_id"] = author.bot_id
            message["app_id"] = self.workspace.app_id
            message["bot_profile"] = {
                "id": author.bot_id,
                "app_id": self.workspace.app_id,
                "name": author.name,
                "deleted": False,
                "team_id": self.workspace.team_id,
            }
        if subtype:
            message["subtype"] = subtype
        if blocks is not None:
            message["blocks"] = with_block_ids(blocks)
        if attachments:
            message["attachments"] = copy.deepcopy(attachments)
        if files:
            message["files"] = files
            message["upload"] = True
        if thread_ts:
            message["thread_ts"] = parent["ts"] if parent is not None else thread_ts
            if reply_broadcast and not ephemeral_to:
                message["subtype"] = "thread_broadcast"
        if ephemeral_to:
            message["ephemeral_to"] = ephemeral_to
        if extra:
            message.update(extra)
        self._messages.setdefault(channel.id, []).append(message)
        if parent is not None and not ephemeral_to:
            self._add_reply(channel.id, parent, message)
        self.emit({"type": "message", "channel": channel.id, "message": message})
        return message

    def _add_reply(self, channel_id: str, parent: dict[str, Any], reply: dict[str, Any]) -> None:
        parent["thread_ts"] = parent["ts"]
        parent["reply_count"] = int(parent.get("reply_count", 0)) + 1
        users = [u for u in parent.get("reply_users", []) if u != reply["user"]] + [reply["user"]]
        parent["reply_users"] = users[-5:]
        parent["reply_users_count"] = len(set(users))
        parent["latest_reply"] = reply["ts"]
        self.emit({"type": "message", "channel": channel_id, "message": parent})

    def update(
        self,
        channel_id: str,
        ts: str,
        *,
        editor: str,
        text: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        mark_edited: bool = True,
    ) -> dict[str, Any]:
        """Changes a message in place (None keeps a part); marks it edited like Slack."""
        message = self.find(channel_id, ts)
        if message is None:
            raise StateError("message_not_found")
        if text is not None:
            message["text"] = text
        if blocks is not None:
            if blocks:
                message["blocks"] = with_block_ids(blocks)
            else:
                message.pop("blocks", None)
        if attachments is not None:
            if attachments:
                message["attachments"] = copy.deepcopy(attachments)
            else:
                message.pop("attachments", None)
        if mark_edited:
            message["edited"] = {"user": editor, "ts": micros_to_ts(int(time.time() * 1_000_000))}
        self.emit({"type": "message", "channel": channel_id, "message": message})
        return message

    def delete(self, channel_id: str, ts: str) -> None:
        """Deletes a message; a parent with replies leaves Slack's tombstone, a reply updates its parent."""
        message = self.find(channel_id, ts)
        if message is None:
            raise StateError("message_not_found")
        if message.get("reply_count"):
            message.clear()
            message.update(
                {
                    "type": "message",
                    "subtype": "tombstone",
                    "ts": ts,
                    "thread_ts": ts,
                    "channel": channel_id,
                    "text": "This message was deleted.",
                    "user": "USLACKBOT",
                    "hidden": True,
                    "reply_count": len(self.replies(channel_id, ts)) - 1,
                }
            )
            self.emit({"type": "message", "channel": channel_id, "message": message})
            return
        self._messages[channel_id].remove(message)
        if is_reply(message) and not message.get("ephemeral_to"):
            parent = self.find(channel_id, str(message["thread_ts"]))
            if parent is not None:
                remaining = [
                    m for m in self.replies(channel_id, parent["ts"]) if is_reply(m) and not m.get("ephemeral_to")
                ]
                parent["reply_count"] = len(remaining)
                parent["latest_reply"] = remaining[-1]["ts"] if remaining else None
                if not remaining:
                    for key in ("reply_count", "reply_users", "reply_users_count", "latest_reply"):
                        parent.pop(key, None)
                self.emit({"type": "message", "channel": channel_id, "message": parent})
        self.emit({"type": "message_deleted", "channel": channel_id, "ts": ts})

    def pin(self, channel_id: str, ts: str, user: str) -> None:
        """Pins a message (`already_pinned`, `message_not_found`)."""
        message = self.find(channel_id, ts)
        if message is None or message.get("ephemeral_to"):
            raise StateError("message_not_found")
        if channel_id in message.get("pinned_to", []):
            raise StateError("already_pinned")
        message.setdefault("pinned_to", []).append(channel_id)
        message["pinned_info"] = {"channel": channel_id, "pinned_by": user, "pinned_ts": int(time.time())}
        self.emit({"type": "message", "channel": channel_id, "message": message})

    def unpin(self, channel_id: str, ts: str) -> None:
        """Unpins a message (`no_pin`, `message_not_found`)."""
        message = self.find(channel_id, ts)
        if message is None:
            raise StateError("message_not_found")
        if channel_id not in message.get("pinned_to", []):
            raise StateError("no_pin")
        message["pinned_to"].remove(channel_id)
        if not message["pinned_to"]:
            message.pop("pinned_to")
            message.pop("pinned_info", None)
        self.emit({"type": "message", "channel": channel_id, "message": message})

    def pinned(self, channel_id: str) -> list[dict[str, Any]]:
        """The channel's pinned messages."""
        return [m for m in self.messages(channel_id) if channel_id in m.get("pinned_to", [])]

    def react(self, channel_id: str, ts: str, name: str, user: str, *, add: bool) -> None:
        """Adds or removes a reaction (`already_reacted`, `no_reaction`, `message_not_found`)."""
        message = self.find(channel_id, ts)
        if message is None or message.get("ephemeral_to"):
            raise StateError("message_not_found")
        reactions: list[dict[str, Any]] = message.setdefault("reactions", [])
        reaction = next((r for r in reactions if r["name"] == name), None)
        if add:
            if reaction is not None and user in reaction["users"]:
                raise StateError("already_reacted")
            if reaction is None:
                reaction = {"name": name, "users": [], "count": 0}
                reactions.append(reaction)
            reaction["users"].append(user)
        else:
            if reaction is None or user not in reaction["users"]:
                raise StateError("no_reaction")
            reaction["users"].remove(user)
            if not reaction["users"]:
                reactions.remove(reaction)
        if reaction is not None:
            reaction["count"] = len(reaction["users"])
        if not reactions:
            message.pop("reactions")
        self.emit({"type": "message", "channel": channel_id, "message": message})

    # -- channels -----------------------------------------------------------------------------------------------

    def channel_changed(self, channel: Channel) -> None:
        """Announces a new or changed conversation."""
        self.emit({"type": "channel", "channel": self.workspace.channel_page_json(channel)})

    # -- interactivity ------------------------------------------------------------------------------------------

    def new_trigger(self, user: str) -> str:
        """A trigger_id for an interaction by `user` (views.open accepts it)."""
        trigger = f"{int(time.time())}{secrets.randbelow(1000):03d}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        self.triggers[trigger] = user
        return trigger

    def new_response_target(
        self, kind: str, *, channel: str, user: str, message_ts: str | None = None, thread_ts: str | None = None
    ) -> ResponseTarget:
        """Registers a response_url token for a command or an action."""
        target = ResponseTarget(
            token=secrets.token_urlsafe(18),
            kind=kind,
            channel=channel,
            user=user,
            message_ts=message_ts,
            thread_ts=thread_ts,
        )
        self.responses[target.token] = target
        return target

    def open_view(self, view: dict[str, Any], *, user: str, previous: str | None = None) -> dict[str, Any]:
        """Stores a modal shown to `user` and returns it as Slack does (with id, hash, state)."""
        stored = self._view_shape(view, view_id=random_id("V"), previous=previous)
        self.views[stored["id"]] = stored
        self.view_users[stored["id"]] = user
        self.emit({"type": "view", "user": user, "view": stored})
        return stored

    def update_view(self, view_id: str, view: dict[str, Any]) -> dict[str, Any]:
        """Replaces an open modal's content, keeping its id (`not_found` if it is not open)."""
        if view_id not in self.views:
            raise StateError("not_found")
        old = self.views[view_id]
        stored = self._view_shape(view, view_id=view_id, previous=old.get("previous_view_id"))
        stored["root_view_id"] = old.get("root_view_id", view_id)
        self.views[view_id] = stored
        self.emit({"type": "view", "user": self.view_users.get(view_id, ""), "view": stored})
        return stored

    def close_view(self, view_id: str) -> None:
        """Closes a modal (after an empty submission answer or `clear`)."""
        self.views.pop(view_id, None)
        user = self.view_users.pop(view_id, "")
        self.emit({"type": "view_closed", "user": user, "view_id": view_id})

    def find_view(self, ref: str) -> dict[str, Any] | None:
        """An open view by id or external_id."""
        return self.views.get(ref) or next((v for v in self.views.values() if v.get("external_id") == ref), None)

    def publish_home(self, user: str, view: dict[str, Any]) -> dict[str, Any]:
        """Stores a user's App Home view."""
        existing = self.home_views.get(user)
        stored = self._view_shape(view, view_id=existing["id"] if existing else random_id("V"), previous=None)
        self.home_views[user] = stored
        self.emit({"type": "home", "user": user, "view": stored})
        return stored

    def _view_shape(self, view: dict[str, Any], *, view_id: str, previous: str | None) -> dict[str, Any]:
        stored = copy.deepcopy(view)
        stored["blocks"] = with_block_ids(list(view.get("blocks") or []))
        for block in stored["blocks"]:
            element = block.get("element") if block.get("type") == "input" else None
            if isinstance(element, dict) and not element.get("action_id"):
                element["action_id"] = "".join(secrets.choice(_BLOCK_ID_ALPHABET) for _ in range(5))
        stored.update(
            {
                "id": view_id,
                "team_id": self.workspace.team_id,
                "app_id": self.workspace.app_id,
                "bot_id": self.workspace.bot_id,
                "app_installed_team_id": self.workspace.team_id,
                "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
                "state": {"values": {}},
                "root_view_id": view_id,
                "previous_view_id": previous,
                "private_metadata": view.get("private_metadata", ""),
                "callback_id": view.get("callback_id", ""),
                "external_id": view.get("external_id", ""),
                "clear_on_close": bool(view.get("clear_on_close")),
                "notify_on_close": bool(view.get("notify_on_close")),
            }
        )
        return stored

    # -- files --------------------------------------------------------------------------------------------------

    def announce_file(
        self, name: str, length: int, user: str, *, alt_txt: str = "", snippet_type: str = ""
    ) -> StoredFile:
        """Registers a file to be uploaded (files.getUploadURLExternal)."""
        stored = StoredFile(
            id=random_id("F"), name=name, length=length, user=user, alt_txt=alt_txt, snippet_type=snippet_type
        )
        self.files[stored.id] = stored
        return stored
