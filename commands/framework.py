"""What a command or button handler receives and returns: the parsed request, the reply, and the helpers that
every handler must use (permission check with audit of refusals, background work, answering through response_url);
and `Command`, the declaration every command module makes of itself (its handler, buttons, modals, shortcuts,
events, which buttons only show something), checked when the module is imported."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from slack_sdk.errors import SlackApiError

from bot.platform.audit import Result
from bot.platform.errors import PermissionDenied, UserFacingError
from bot.shell.deps import Deps
from bot.text.blocks import show_placeholders
from commands.catalog import Catalog, CommandSpec, Shortcut

T = TypeVar("T")


@dataclass(frozen=True)
class Reply:
    """A message for the user: ephemeral unless `in_channel`."""

    text: str
    blocks: list[dict[str, Any]] | None = None
    in_channel: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", show_placeholders(self.text))
        if self.blocks is not None:
            object.__setattr__(self, "blocks", show_placeholders(self.blocks))

    def as_ack(self) -> dict[str, Any]:
        """The body of the HTTP answer to a slash command."""
        body: dict[str, Any] = {"text": self.text, "response_type": "in_channel" if self.in_channel else "ephemeral"}
        if self.blocks is not None:
            body["blocks"] = self.blocks
        return body


@dataclass(frozen=True)
class Invocation:
    """A slash command as Slack sent it."""

    user_id: str
    user_name: str
    channel_id: str
    channel_name: str
    team_id: str
    command: str
    text: str
    response_url: str
    trigger_id: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Invocation:
        """Reads the form fields of a slash command request."""
        return cls(**{name: str(body.get(name) or "") for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class _Handling:
    """What command and button contexts share: who, where, the deps, and the permission helper."""

    user_id: str
    channel_id: str
    response_url: str
    deps: Deps
    catalog: Catalog
    spec: CommandSpec

    async def require(self, role: str | None, *, action: str, everyone_if_unset: bool = False) -> None:
        """Checks the user holds `role` for `action`; a refusal is audited and raised as PermissionDenied."""
        try:
            await self.deps.permissions.require(self.user_id, role, action=action, everyone_if_unset=everyone_if_unset)
        except PermissionDenied:
            await self.audit(action=f"{self.spec.name}.{action}", result="denied", detail=f"needs role {role}")
            raise

    async def audit(self, *, action: str, result: Result, target: str = "", detail: str = "") -> str:
        """Appends an audit record for this user and channel."""
        return await self.deps.audit.record(
            actor=self.user_id, action=action, result=result, target=target, channel=self.channel_id, detail=detail
        )

    async def refusals_audited(self, action: str, target: str, awaitable: Awaitable[T]) -> T:
        """Awaits a service call; a refusal (UserFacingError) is audited as `refused` before it reaches the user."""
        try:
            return await awaitable
        except UserFacingError as refusal:
            await self.audit(action=action, result="refused", target=target, detail=refusal.message)
            raise

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> None:
        """Continues work after Slack has its answer."""
        self.deps.tasks.spawn(coro, name=name)

    async def respond(self, reply: Reply, *, replace_original: bool = False, delete_original: bool = False) -> None:
        """Answers through the request's response_url (works for ephemeral messages too)."""
        response = await self.deps.replies.to_response_url(
            self.response_url,
            text=reply.text,
            blocks=reply.blocks,
            response_type="in_channel" if reply.in_channel else "ephemeral",
            replace_original=replace_original,
            delete_original=delete_original,
        )
        if response.status_code >= 300:
            raise RuntimeError(f"response_url answered {response.status_code}: {response.body[:200]}")


@dataclass(frozen=True)
class CommandContext(_Handling):
    """A slash command being handled: the invocation and the text after the command (and subcommand) name."""

    invocation: Invocation = field(kw_only=True)
    args: str = field(kw_only=True)


@dataclass(frozen=True)
class ActionContext(_Handling):
    """A button press or menu choice being handled (after Slack already got its answer)."""

    action_id: str = field(kw_only=True)
    value: str = field(kw_only=True)
    message_ts: str = field(kw_only=True)
    is_ephemeral: bool = field(kw_only=True)
    trigger_id: str = field(kw_only=True)
    message: Mapping[str, Any] = field(kw_only=True, default_factory=dict)


@dataclass(frozen=True)
class ShortcutContext(_Handling):
    """A shortcut being handled (after Slack got its answer); for a message shortcut, the message it was used on."""

    callback_id: str = field(kw_only=True)
    trigger_id: str = field(kw_only=True)
    message: Mapping[str, Any] = field(kw_only=True, default_factory=dict)


@dataclass(frozen=True)
class ViewContext(_Handling):
    """A modal submission: the submitted values by block id and action id, and the view's private_metadata.
    There is no response_url: `respond` answers with an ephemeral message in `channel_id` (or a DM)."""

    callback_id: str = field(kw_only=True)
    values: Mapping[str, Mapping[str, Any]] = field(kw_only=True)
    private_metadata: str = field(kw_only=True, default="")
    trigger_id: str = field(kw_only=True, default="")

    def value(self, block_id: str, action_id: str) -> str:
        """A text input's value or a select's chosen value ("" when empty)."""
        entry = (self.values.get(block_id) or {}).get(action_id) or {}
        chosen = entry.get("selected_option") or {}
        return str(entry.get("value") or chosen.get("value") or "")

    async def respond(self, reply: Reply, *, replace_original: bool = False, delete_original: bool = False) -> None:
        """An ephemeral message in the channel the modal was opened from; a DM when there is none or it fails."""
        replies = self.deps.replies
        if self.channel_id:
            try:
                await replies.ephemeral(self.channel_id, self.user_id, text=reply.text, blocks=reply.blocks)
                return
            except SlackApiError:
                pass
        await replies.direct_message(self.user_id, text=reply.text, blocks=reply.blocks)


CommandHandler = Callable[[CommandContext], Awaitable[Reply]]
ActionHandler = Callable[[ActionContext], Awaitable[None]]
ViewHandler = Callable[[ViewContext], Awaitable["dict[str, str] | None"]]
"""A modal's submit handler: errors by input block id (shown under the inputs, the modal stays), or None."""
EventHandler = Callable[[Deps, Mapping[str, Any]], Coroutine[Any, Any, None]]
_COMMAND_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")


@dataclass(frozen=True, kw_only=True)
class Command:
    """A command module's declaration of itself, `COMMAND = Command(...)`, listed in `commands.registry`. Its
    docstring (`doc`, the module's `__doc__`) is its help: summary, description, `Usage:` and `Examples:`. A
    misspelt part (`action=` for `actions=`), a docstring without usage, or a read-only action that is not one of
    its actions fails when the module is imported, not silently at run time."""

    name: str
    doc: str | None
    handler: CommandHandler | None  # None: announced, not built yet
    usage_hint: str = ""
    actions: Mapping[str, ActionHandler] = field(default_factory=dict)
    read_only_actions: frozenset[str] = frozenset()  # buttons that only show something: never dropped as a double click
    # First words that only show something ("" the bare command, "*" every form): answered without an idempotency
    # record (commands/dispatch.py: Slack does not retry slash commands).
    read_only_subcommands: frozenset[str] = frozenset()
    shortcuts: tuple[Shortcut, ...] = ()
    views: Mapping[str, ViewHandler] = field(default_factory=dict)  # modal submissions by callback_id
    events: Mapping[str, EventHandler] = field(default_factory=dict)  # Events API handlers by event type
    escapes_mentions: bool = False  # Slack sends @alice as <@U…|alice>
    # What the catalog routes, help shows and the manifest lists, built from the above.
    spec: CommandSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _COMMAND_NAME.fullmatch(self.name):
            raise ValueError(f"command name {self.name!r} is not a slash command name (lower-case letters, digits, -)")
        unknown = set(self.read_only_actions) - set(self.actions)
        if unknown:
            raise ValueError(f"/{self.name}: read-only actions {sorted(unknown)} are not among its actions")
        object.__setattr__(self, "read_only_actions", frozenset(self.read_only_actions))
        object.__setattr__(self, "read_only_subcommands", frozenset(self.read_only_subcommands))
        object.__setattr__(
            self,
            "spec",
            CommandSpec.build(
                self.name,
                self.doc,
                usage_hint=self.usage_hint,
                handler=self.handler,
                actions=dict(self.actions),
                escapes_mentions=self.escapes_mentions,
                shortcuts=tuple(self.shortcuts),
                views=dict(self.views),
                events=dict(self.events),
                read_only_actions=self.read_only_actions,
                read_only_subcommands=self.read_only_subcommands,
            ),
        )
