"""`SlackEmulator`: Slack's side of the wire for `chatops dev` and the tests. Serves the Web API at /api/{method}
(Slack's envelopes, auth, errors and rate limits), response URLs and file uploads, Socket Mode (apps.connections.open
and the WebSocket it hands out), and the dev page with its JSON endpoints and WebSocket; sends the bot slash
commands, block_actions, view submissions and events (signed over HTTP, or as Socket Mode envelopes while the bot
holds a Socket Mode connection), and applies the bot's answers the way Slack does; `emu.faults` makes Web API calls
fail as Slack and its proxies do (429, 500, HTML 502, timeouts, applied-then-500: bot/emulator/faults.py). The
aiohttp handlers live here; the logic they use is in the pure modules next to this one (state, methods, payloads,
validation, render, mrkdwn, faults)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from bot.emulator import payloads
from bot.emulator.faults import HTML_502, INTERNAL_ERROR, Fault, FaultPlan
from bot.emulator.methods import ApiError, RateLimited, RateLimiter, WebApi
from bot.emulator.mrkdwn import Names, escape
from bot.emulator.render import render_message, render_view
from bot.emulator.state import Event, ResponseTarget, State, is_reply
from bot.emulator.validation import BlocksFormatError, parse_blocks, validate_blocks
from bot.emulator.workspace import Channel, User, Workspace

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
RESPONSE_URL_MAX_USES = 5
RESPONSE_URL_LIFETIME_SECONDS = 30 * 60
# How long Slack says a Socket Mode connection lives before it is refreshed (the hello's debug_info; not enforced).
SOCKET_CONNECTION_SECONDS = 18060
# How long wait_for_socket waits for the app's Socket Mode connection(s).
SOCKET_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class RecordedCall:
    """One Web API call the emulator answered."""

    method: str
    args: dict[str, Any]
    ok: bool
    error: str | None
    status: int
    response: dict[str, Any]
    # The kind of token the call carried: "bot" (xoxb-), "app" (xapp-), "user" (xoxp-), "other" or "none".
    token_type: str = ""
    # The fault injected into this call (a `FaultPlan` mode), or None when it was answered normally.
    fault: str | None = None


@dataclass(frozen=True)
class SignedResult:
    """The bot's HTTP answer to a signed request (`error` is Slack's word when there was no answer)."""

    status: int
    body: str
    json: dict[str, Any] | None
    error: str | None = None


@dataclass(frozen=True)
class SocketDelivery:
    """One Socket Mode envelope the emulator sent, and the bot's ack (None when none came: see `error`)."""

    envelope: dict[str, Any]
    ack: dict[str, Any] | None
    error: str | None = None


class _AppSocket:
    """One Socket Mode connection from the app, with the envelopes still waiting for their ack."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.pending: dict[str, asyncio.Future[dict[str, Any] | None]] = {}

    def ack(self, message: dict[str, Any]) -> bool:
        future = self.pending.get(str(message.get("envelope_id", "")))
        if future is None or future.done():
            return False
        future.set_result(message)
        return True

    def abandon(self) -> None:
        """The connection closed: every envelope still waiting gets no ack."""
        for future in self.pending.values():
            if not future.done():
                future.set_result(None)


class SlackEmulator:
    """An in-process Slack: Web API, response URLs, signed requests to the bot, and the dev page."""

    def __init__(
        self, *, signing_secret: str, bot_token: str, workspace: Workspace | None = None, app_token: str | None = None
    ) -> None:
        self.signing_secret = signing_secret
        self.bot_token = bot_token
        # The app-level token (xapp-...) that apps.connections.open accepts; None: Socket Mode is off.
        self.app_token = app_token
        self.workspace = workspace if workspace is not None else Workspace.demo()
        self.state = State(self.workspace)
        self.api = WebApi(self.state, origin=lambda: self.origin)
        self.calls: list[RecordedCall] = []
        # Users whose users.info request gets no answer: the connection is closed, as in a network outage
        # (`api.users_info_fails` makes Slack answer an error instead).
        self.users_info_unreachable: set[str] = set()
        # Failures to inject into Web API calls (bot/emulator/faults.py); empty: Slack behaves.
        self.faults = FaultPlan()
        self._closing = False
        self.origin = "http://127.0.0.1"
        self.app_url: str | None = None
        self.ack_timeout = 10.0
        self.response_url_max_uses = RESPONSE_URL_MAX_USES
        self._session: aiohttp.ClientSession | None = None
        self._sockets: dict[web.WebSocketResponse, asyncio.Queue[str | None]] = {}
        # Socket Mode: the server's ping interval (slack_sdk answers pings), open tickets, connections, deliveries.
        self.socket_ping_interval: float | None = 30.0
        self.deliveries: list[SocketDelivery] = []
        self._tickets: set[str] = set()
        self._app_sockets: list[_AppSocket] = []
        self._sockets_opened = asyncio.Condition()  # notified when the app opens a Socket Mode connection
        self._next_socket = 0
        self._last_commands: dict[tuple[str, str, str, str], tuple[dict[str, str], ResponseTarget]] = {}
        self.state.subscribe(self._broadcast)

    # -- wiring -------------------------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The Web API base URL for AsyncWebClient(base_url=...) / SLACK_API_URL."""
        return f"{self.origin}/api/"

    def install(self, app: web.Application, *, page: bool = True) -> None:
        """Adds the emulator's routes (and, with `page`, the dev page at /) to an existing aiohttp app."""
        router = app.router
        router.add_get("/api/{method}", self._handle_api)
        router.add_post("/api/{method}", self._handle_api)
        router.add_post("/emulator/response/{token}", self._handle_response_url)
        router.add_post("/emulator/upload/{file_id}", self._handle_upload)
        router.add_get("/emulator/files/{file_id}", self._handle_file)
        router.add_get("/emulator/socket", self._handle_socket_mode)
        if page:
            router.add_get("/", self._handle_index)
            router.add_static("/emulator/static/", STATIC_DIR, append_version=True)
            router.add_get("/emulator/state", self._handle_state)
            router.add_get("/emulator/ws", self._handle_ws)
            router.add_post("/emulator/command", self._handle_page_command)
            router.add_post("/emulator/action", self._handle_page_action)
            router.add_post("/emulator/message", self._handle_page_message)
            router.add_post("/emulator/view", self._handle_page_view)
            router.add_post("/emulator/view/close", self._handle_page_view_close)
            router.add_get("/archives/{channel}/{p}", self._handle_permalink)
        app.cleanup_ctx.append(self._lifecycle)
        app.on_shutdown.append(self._close_sockets)

    def make_app(self, *, page: bool = True) -> web.Application:
        """A standalone aiohttp app serving only the emulator."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.install(app, page=page)
        return app

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        self._client()
        yield
        await self.aclose()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def aclose(self) -> None:
        """Closes the emulator's HTTP client (done on app cleanup; call it if you never served the app)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def set_rate_limit(self, per_channel_per_second: float | None) -> None:
        """Turns Slack's per-channel rate limit of chat.postMessage / chat.update on (messages a second) or off."""
        self.api.limiter = RateLimiter(per_channel_per_second) if per_channel_per_second else None

    # -- inspection ---------------------------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[RecordedCall]:
        """The recorded calls of one Web API method."""
        return [call for call in self.calls if call.method == method]

    def channel(self, id_or_name: str) -> dict[str, Any]:
        """A conversation as conversations.info returns it (KeyError if unknown)."""
        found = self.workspace.channel(id_or_name)
        if found is None:
            raise KeyError(id_or_name)
        return found.to_slack(viewer=self.workspace.bot_user_id) | {"members": list(found.members)}

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Every message in a channel (id or #name): top-level, replies and ephemeral ones (`ephemeral_to`)."""
        found = self.workspace.channel(channel)
        if found is None:
            raise KeyError(channel)
        return list(self.state.messages(found.id))

    def find_message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """The message with this ts in the channel (id or #name), or None."""
        found = self.workspace.channel(channel)
        return self.state.find(found.id, ts) if found is not None else None

    def file_content(self, file_id: str) -> bytes:
        """The bytes uploaded for a file (KeyError if none were)."""
        record = self.state.files.get(file_id)
        if record is None or record.content is None:
            raise KeyError(file_id)
        return record.content

    def open_views(self, user_id: str | None = None) -> list[dict[str, Any]]:
        """The modals currently open (for one user, or all)."""
        return [
            v for vid, v in self.state.views.items() if user_id is None or self.state.view_users.get(vid) == user_id
        ]

    @property
    def names(self) -> Names:
        """How the page names users, channels and groups."""
        return Names.of(self.workspace)

    # -- Web API ------------------------------------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        token = _bearer(request)
        try:
            args = await _read_args(request)
        except ValueError:
            return self._record(method, {}, {"ok": False, "error": "invalid_json"}, 200, token=token)
        token = token or str(args.get("token", "") or "")
        args.pop("token", None)
        if method == "users.info" and str(args.get("user", "")) in self.users_info_unreachable and request.transport:
            request.transport.close()
            return web.Response(status=503)  # never arrives: the client sees the connection drop
        if method == "apps.connections.open":
            return self._record(method, args, self._connections_open(token), 200, token=token)
        if method not in self.api.methods:
            return self._record(method, args, {"ok": False, "error": "unknown_method"}, 200, token=token)
        if not token:
            return self._record(method, args, {"ok": False, "error": "not_authed"}, 200, token=token)
        if token != self.bot_token:
            wrong_type = self.app_token is not None and token == self.app_token
            error = "not_allowed_token_type" if wrong_type else "invalid_auth"
            return self._record(method, args, {"ok": False, "error": error}, 200, token=token)
        fault = self.faults.pick(method)
        if fault is not None:
            return await self._inject(fault, method, args, token)
        try:
            body = self.api.call(method, args)
        except ApiError as error:
            return self._record(method, args, error.body(), 200, token=token)
        except RateLimited as limited:
            return self._record(
                method,
                args,
                {"ok": False, "error": "ratelimited"},
                429,
                token=token,
                headers={"Retry-After": str(limited.retry_after)},
            )
        return self._record(method, args, body, 200, token=token)

    def _record(
        self,
        method: str,
        args: dict[str, Any],
        body: dict[str, Any],
        status: int,
        headers: dict[str, str] | None = None,
        token: str | None = None,
        fault: str | None = None,
    ) -> web.Response:
        self.calls.append(
            RecordedCall(
                method=method,
                args=args,
                ok=bool(body.get("ok")),
                error=body.get("error"),
                status=status,
                response=body,
                token_type=_token_type(token),
                fault=fault,
            )
        )
        return web.json_response(body, status=status, headers=headers)

    async def _inject(self, fault: Fault, method: str, args: dict[str, Any], token: str) -> web.Response:
        """Answers a call the way `fault` says (bot/emulator/faults.py), recording it with the fault's mode."""
        mode = fault.mode
        if mode == "429":
            return self._record(
                method,
                args,
                {"ok": False, "error": "ratelimited"},
                429,
                token=token,
                fault=mode,
                headers={"Retry-After": str(fault.retry_after)},
            )
        if mode == "applied_then_500":
            try:
                self.api.call(method, args)
            except ApiError as error:  # nothing was applied: the real answer
                return self._record(method, args, error.body(), 200, token=token)
            except RateLimited as limited:
                return self._record(
                    method,
                    args,
                    {"ok": False, "error": "ratelimited"},
                    429,
                    token=token,
                    headers={"Retry-After": str(limited.retry_after)},
                )
            return self._record(method, args, dict(INTERNAL_ERROR), 500, token=token, fault=mode)
        if mode == "500":
            return self._record(method, args, dict(INTERNAL_ERROR), 500, token=token, fault=mode)
        if mode == "html502":
            self._record(method, args, {"ok": False, "error": "bad_gateway"}, 502, token=token, fault=mode)
            return web.Response(status=502, text=HTML_502, content_type="text/html")
        # "timeout": hold the request past the client's timeout; clear() or shutdown let it go early.
        if not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.faults.released.wait(), fault.hold)
        self._record(method, args, {"ok": False, "error": "timeout"}, 504, token=token, fault=mode)
        return web.Response(status=504)

    def _connections_open(self, token: str) -> dict[str, Any]:
        """apps.connections.open: only the app-level token; answers a one-use WebSocket URL for Socket Mode."""
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token == self.bot_token or token.startswith(("xoxb-", "xoxp-")):
            return {"ok": False, "error": "not_allowed_token_type"}
        if self.app_token is None or token != self.app_token:
            return {"ok": False, "error": "invalid_auth"}
        ticket = secrets.token_hex(16)
        self._tickets.add(ticket)
        ws_origin = "ws" + self.origin[4:] if self.origin.startswith("http") else self.origin
        return {"ok": True, "url": f"{ws_origin}/emulator/socket?ticket={ticket}&app_id={self.workspace.app_id}"}

    # -- response URLs, uploads, files --------------------------------------------------------------------------

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        target = self.state.responses.get(request.match_info["token"])
        if target is None:
            return _hook_error("no_active_hooks", 404)
        if time.time() - target.created > RESPONSE_URL_LIFETIME_SECONDS:
            return _hook_error("expired_url", 404)
        if target.uses >= self.response_url_max_uses:
            return _hook_error("used_url", 404)
        try:
            body = await _read_hook_body(request)
        except ValueError:
            return _hook_error("invalid_payload", 400)
        target.uses += 1
        try:
            self.apply_response(target, body)
        except ApiError as error:
            return web.json_response(error.body(), status=404 if error.code == "message_not_found" else 400)
        return web.Response(text="ok")

    def apply_response(self, target: ResponseTarget, body: dict[str, Any]) -> dict[str, Any] | None:
        """Applies a response_url body (replace_original / delete_original / new message); returns the message."""
        channel = self.workspace.channel(target.channel)
        if channel is None:
            raise ApiError("channel_not_found")

        def truthy(key: str) -> bool:
            return body.get(key) in (True, "true", "1", 1)

        if truthy("delete_original"):
            if not target.message_ts or self.state.find(channel.id, target.message_ts) is None:
                raise ApiError("message_not_found")
            self.state.delete(channel.id, target.message_ts)
            target.message_ts = None
            return None
        text = str(body.get("text") or "")
        blocks = _blocks_of(body)
        attachments = body.get("attachments") if isinstance(body.get("attachments"), list) else None
        if not text and not blocks and not attachments:
            raise ApiError("no_text")
        if truthy("replace_original") and target.message_ts and self.state.find(channel.id, target.message_ts):
            return self.state.update(
                channel.id,
                target.message_ts,
                editor=self.workspace.bot_user_id,
                text=text,
                blocks=blocks or [],
                attachments=attachments or [],
                mark_edited=False,
            )
        in_channel = body.get("response_type") == "in_channel"
        message = self.state.post(
            channel,
            user=self.workspace.bot_user_id,
            text=text,
            blocks=blocks,
            attachments=attachments,
            thread_ts=str(body.get("thread_ts") or target.thread_ts or "") or None,
            ephemeral_to=None if in_channel else target.user,
        )
        if target.kind == "command":
            target.message_ts = message["ts"]
        return message

    async def _handle_upload(self, request: web.Request) -> web.Response:
        record = self.state.files.get(request.match_info["file_id"])
        if record is None:
            return web.Response(status=404, text="file_not_found")
        if request.content_type.startswith("multipart/"):
            content = b""
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, aiohttp.BodyPartReader) and (part.filename or part.name in {"file", "filename"}):
                    content = await part.read()
                    break
        else:
            content = await request.read()
        record.content = content
        return web.Response(text=f"OK - {len(content)}", content_type="text/plain")

    async def _handle_file(self, request: web.Request) -> web.Response:
        record = self.state.files.get(request.match_info["file_id"])
        if record is None or record.content is None:
            raise web.HTTPNotFound(text="file_not_found")
        disposition = "attachment" if request.query.get("download") else "inline"
        return web.Response(
            body=record.content,
            content_type=record.mimetype,
            headers={"Content-Disposition": f'{disposition}; filename="{record.name}"'},
        )

    # -- requests to the bot ------------------------------------------------------------------------------------

    async def send_signed(
        self, body: str, content_type: str, headers: dict[str, str] | None = None, timestamp: int | None = None
    ) -> SignedResult:
        """POSTs `body` to app_url signed as Slack signs it; returns the bot's answer."""
        if not self.app_url:
            raise RuntimeError("SlackEmulator.app_url is not set: where should Slack's requests go?")
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = SignatureVerifier(self.signing_secret).generate_signature(timestamp=ts, body=body)
        sent = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": str(signature),
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        } | (headers or {})
        try:
            async with self._client().post(
                self.app_url, data=body.encode(), headers=sent, timeout=aiohttp.ClientTimeout(total=self.ack_timeout)
            ) as response:
                text = await response.text()
                status = response.status
        except TimeoutError:
            return SignedResult(status=0, body="", json=None, error="operation_timeout")
        except aiohttp.ClientError as error:
            log.warning("the bot at %s could not be reached: %s", self.app_url, error)
            return SignedResult(status=0, body="", json=None, error="dispatch_failed")
        parsed = None
        if text.strip().startswith("{"):
            with contextlib.suppress(ValueError):
                parsed = json.loads(text)
        return SignedResult(status=status, body=text, json=parsed if isinstance(parsed, dict) else None)

    async def send_command(
        self,
        *,
        command: str = "/chatops",
        text: str = "",
        user_id: str | None = None,
        channel_id: str | None = None,
        retry_num: int | None = None,
    ) -> SignedResult:
        """Sends a slash command and applies the answer like Slack (message, ephemeral, or failure text): signed over
        HTTP, or as a `slash_commands` envelope while the app holds a Socket Mode connection (the answer is then
        the ack's payload).

        With `retry_num`, the previous identical command is resent as Slack's retry (same body and trigger_id) with
        X-Slack-Retry-Num / X-Slack-Retry-Reason headers (over a socket: retry_attempt / retry_reason)."""
        user = self._user(user_id or self.workspace.me)
        channel = self._channel(channel_id or "#general")
        command = command if command.startswith("/") else "/" + command
        key = (command, text, user.id, channel.id)
        headers: dict[str, str] = {}
        previous = self._last_commands.get(key) if retry_num is not None else None
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        if previous is None:
            target = self.state.new_response_target("command", channel=channel.id, user=user.id)
            form = payloads.command_form(
                self.workspace,
                command=command,
                text=text,
                user=user,
                channel=channel,
                response_url=self._response_url(target),
                trigger_id=self.state.new_trigger(user.id),
            )
            previous = self._last_commands[key] = (form, target)
        form, target = previous
        if self._app_sockets:
            reason = "timeout" if retry_num is not None else None
            result = await self.send_socket_envelope(
                "slash_commands", dict(form), retry_attempt=retry_num, retry_reason=reason
            )
        else:
            result = await self.send_signed(urlencode(form), "application/x-www-form-urlencoded", headers)
        self._apply_command_answer(result, command=command, text=text, user=user, channel=channel, target=target)
        return result

    def _apply_command_answer(
        self,
        result: SignedResult,
        *,
        command: str,
        text: str,
        user: User,
        channel: Channel,
        target: ResponseTarget | None,
    ) -> None:
        failure = result.error
        if failure is None and result.status != 200:
            failure = (
                "http_client_error"
                if 400 <= result.status < 500
                else "http_service_error"
                if result.status >= 500
                else "dispatch_failed"
            )
        if failure is not None:
            self._command_error(channel, user, f'{command} failed with the error "{failure}"')
            return
        if not result.body.strip():
            return
        if result.json is None:
            answer: dict[str, Any] = {"text": result.body}
        else:
            answer = result.json
        try:
            blocks = _blocks_of(answer)
        except ApiError as error:
            self._command_error(channel, user, f'{command} failed with the error "{error.code}"')
            return
        text_out = str(answer.get("text") or "")
        if not text_out and not blocks and not answer.get("attachments"):
            return
        in_channel = answer.get("response_type") == "in_channel"
        if in_channel:
            self.state.post(channel, user=user.id, text=f"{command} {text}".strip(), extra={"client_msg_id": "cmd"})
        message = self.state.post(
            channel,
            user=self.workspace.bot_user_id,
            text=text_out,
            blocks=blocks,
            attachments=answer.get("attachments") if isinstance(answer.get("attachments"), list) else None,
            ephemeral_to=None if in_channel else user.id,
        )
        if target is not None:
            target.message_ts = message["ts"]

    def _command_error(self, channel: Channel, user: User, text: str) -> None:
        self.state.emit({"type": "command_error", "channel": channel.id, "user": user.id, "text": text})

    async def send_block_action(
        self,
        *,
        channel: str,
        message_ts: str,
        action_id: str,
        user_id: str | None = None,
        value: str | None = None,
        selected_option: str | dict[str, Any] | None = None,
        block_id: str | None = None,
    ) -> SignedResult:
        """Sends the block_actions payload of a click on `action_id` in a message (ValueError if absent): signed
        over HTTP, or as an `interactive` envelope while the app holds a Socket Mode connection."""
        user = self._user(user_id or self.workspace.me)
        found = self._channel(channel)
        message = self.state.find(found.id, message_ts)
        if message is None:
            raise ValueError(f"no message {message_ts} in {channel}")
        if message.get("ephemeral_to") and message["ephemeral_to"] != user.id:
            raise ValueError(f"message {message_ts} is only visible to {message['ephemeral_to']}")
        block, element = payloads.find_action(message, action_id, block_id)
        action = payloads.action_json(
            block, element, value=value, selected_option=selected_option, action_ts=self.state.new_action_ts()
        )
        thread_ts = str(message["thread_ts"]) if is_reply(message) else None
        target = self.state.new_response_target(
            "action", channel=found.id, user=user.id, message_ts=message_ts, thread_ts=thread_ts
        )
        payload = payloads.block_actions(
            self.workspace,
            user=user,
            channel=found,
            message=copy.deepcopy(message),
            action=action,
            response_url=self._response_url(target),
            trigger_id=self.state.new_trigger(user.id),
        )
        result = await self._send_interactive(payload)
        if result.error or result.status != 200:
            self.state.emit(
                {
                    "type": "action_error",
                    "channel": found.id,
                    "user": user.id,
                    "ts": message_ts,
                    "action_id": action_id,
                    "text": result.error or f"HTTP {result.status}",
                }
            )
        return result

    async def send_message_shortcut(
        self, *, channel: str, message_ts: str, callback_id: str, user_id: str | None = None
    ) -> SignedResult:
        """Sends the message_action payload of a message shortcut used on a message (ValueError if absent); its
        response_url posts a new (by default ephemeral) message in the channel, as Slack's does."""
        user = self._user(user_id or self.workspace.me)
        found = self._channel(channel)
        message = self.state.find(found.id, message_ts)
        if message is None:
            raise ValueError(f"no message {message_ts} in {channel}")
        if message.get("ephemeral_to"):
            raise ValueError("message shortcuts are not offered on ephemeral messages")
        thread_ts = str(message["thread_ts"]) if is_reply(message) else None
        target = self.state.new_response_target("shortcut", channel=found.id, user=user.id, thread_ts=thread_ts)
        payload = payloads.message_action(
            self.workspace,
            user=user,
            channel=found,
            message=copy.deepcopy(message),
            callback_id=callback_id,
            response_url=self._response_url(target),
            trigger_id=self.state.new_trigger(user.id),
            action_ts=self.state.new_action_ts(),
        )
        return await self._send_interactive(payload)

    async def send_view_submission(
        self, *, view_id: str, user_id: str | None = None, values: dict[str, dict[str, Any]] | None = None
    ) -> SignedResult:
        """Submits an open modal with `values[block_id][action_id]` and applies the bot's response_action."""
        view = self.state.views.get(view_id)
        if view is None:
            raise ValueError(f"no open view {view_id}")
        user = self._user(user_id or self.state.view_users.get(view_id) or self.workspace.me)
        payload = payloads.view_submission(
            self.workspace,
            user=user,
            view=copy.deepcopy(view),
            values=values or {},
            trigger_id=self.state.new_trigger(user.id),
        )
        result = await self._send_interactive(payload)
        if result.error or result.status != 200:
            return result
        answer = result.json or {}
        action = answer.get("response_action")
        if not result.body.strip() or action is None:
            self.state.close_view(view_id)
        elif action == "clear":
            for vid in [v for v, owner in self.state.view_users.items() if owner == user.id]:
                self.state.close_view(vid)
        elif action == "update" and isinstance(answer.get("view"), dict):
            self.state.update_view(view_id, answer["view"])
        elif action == "push" and isinstance(answer.get("view"), dict):
            self.state.open_view(answer["view"], user=user.id, previous=view_id)
        return result

    async def send_view_closed(self, *, view_id: str, user_id: str | None = None) -> SignedResult | None:
        """Closes a modal as the user's Cancel does; tells the bot when the view asked (notify_on_close)."""
        view = self.state.views.get(view_id)
        if view is None:
            return None
        user = self._user(user_id or self.state.view_users.get(view_id) or self.workspace.me)
        self.state.close_view(view_id)
        if not view.get("notify_on_close"):
            return None
        payload = payloads.view_closed(self.workspace, user=user, view=view)
        return await self._send_interactive(payload)

    async def send_event(self, event: dict[str, Any]) -> SignedResult:
        """Sends an Events API event_callback envelope around `event`: signed over HTTP, or as an `events_api`
        envelope while the app holds a Socket Mode connection."""
        envelope = payloads.event_envelope(self.workspace, event)
        if self._app_sockets:
            return await self.send_socket_envelope("events_api", envelope)
        return await self.send_signed(json.dumps(envelope), "application/json")

    async def _send_interactive(self, payload: dict[str, Any]) -> SignedResult:
        if self._app_sockets:
            return await self.send_socket_envelope("interactive", payload)
        return await self.send_signed(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")

    def post_as_user(self, channel: str, user_id: str, text: str, *, thread_ts: str | None = None) -> dict[str, Any]:
        """Posts a plain message as a person (what typing in the page's composer does)."""
        return self.state.post(
            self._channel(channel),
            user=self._user(user_id).id,
            text=text,
            thread_ts=thread_ts,
            extra={"client_msg_id": f"{time.time():.6f}"},
        )

    def _user(self, user_id: str) -> User:
        user = self.workspace.user(user_id)
        if user is None:
            raise ValueError(f"unknown user {user_id}")
        return user

    def _channel(self, ref: str) -> Channel:
        channel = self.workspace.channel(ref)
        if channel is None:
            raise ValueError(f"unknown channel {ref}")
        return channel

    def _response_url(self, target: ResponseTarget) -> str:
        return f"{self.origin}/emulator/response/{target.token}"

    # -- Socket Mode --------------------------------------------------------------------------------------------

    @property
    def app_connected(self) -> bool:
        """Whether Slack's requests have somewhere to go: app_url, or an open Socket Mode connection."""
        return bool(self.app_url) or bool(self._app_sockets)

    @property
    def socket_connections(self) -> int:
        """How many Socket Mode connections the app holds open."""
        return len(self._app_sockets)

    async def wait_for_socket(self, count: int = 1) -> None:
        """Waits until the app holds at least `count` Socket Mode connections; TimeoutError after
        SOCKET_WAIT_SECONDS, saying how many it holds."""
        try:
            async with asyncio.timeout(SOCKET_WAIT_SECONDS), self._sockets_opened:
                await self._sockets_opened.wait_for(lambda: len(self._app_sockets) >= count)
        except TimeoutError:
            raise TimeoutError(
                f"the app opened {len(self._app_sockets)} of {count} Socket Mode connection(s) "
                f"within {SOCKET_WAIT_SECONDS:g} s"
            ) from None

    async def send_socket_envelope(
        self, kind: str, payload: dict[str, Any], *, retry_attempt: int | None = None, retry_reason: str | None = None
    ) -> SignedResult:
        """Sends one envelope (`slash_commands`, `interactive`, `events_api`) over a Socket Mode connection (one
        of them, in turn, as Slack spreads envelopes) and waits for the bot's ack, as long as the HTTP path waits
        for an answer. The result reads like the HTTP answer: status 200 and `json` = the ack's payload; an ack
        without payload has an empty body; no ack is `operation_timeout`, a lost connection `dispatch_failed`."""
        if not self._app_sockets:
            raise RuntimeError("no Socket Mode connection: the app has not called apps.connections.open and connected")
        conn = self._app_sockets[self._next_socket % len(self._app_sockets)]
        self._next_socket += 1
        envelope_id = str(uuid.uuid4())
        envelope = payloads.socket_envelope(
            kind, payload, envelope_id=envelope_id, retry_attempt=retry_attempt, retry_reason=retry_reason
        )
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        conn.pending[envelope_id] = future
        ack: dict[str, Any] | None = None
        error: str | None = None
        try:
            await conn.ws.send_str(json.dumps(envelope))
            ack = await asyncio.wait_for(future, self.ack_timeout)
            if ack is None:
                error = "dispatch_failed"
        except TimeoutError:
            error = "operation_timeout"
        except (ConnectionError, RuntimeError) as failure:
            log.warning("could not send a Socket Mode envelope: %s", failure)
            error = "dispatch_failed"
        finally:
            conn.pending.pop(envelope_id, None)
        self.deliveries.append(SocketDelivery(envelope=envelope, ack=ack, error=error))
        if error is not None or ack is None:
            return SignedResult(status=0, body="", json=None, error=error or "dispatch_failed")
        answer = ack.get("payload")
        if isinstance(answer, dict) and answer:
            return SignedResult(status=200, body=json.dumps(answer), json=answer)
        return SignedResult(status=200, body="", json=None)

    async def disconnect_sockets(self, reason: str = "refresh_requested") -> None:
        """Tells every connected app to reconnect, as Slack does before it recycles a connection: a `disconnect`
        message (`warning`, `refresh_requested`, `link_disabled`); the app opens a new connection and closes the
        old one."""
        text = json.dumps(payloads.socket_disconnect(reason))
        for conn in list(self._app_sockets):
            if not conn.ws.closed:
                await conn.ws.send_str(text)

    async def _handle_socket_mode(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(heartbeat=self.socket_ping_interval, autoping=True)
        await ws.prepare(request)
        conn = _AppSocket(ws)
        self._app_sockets.append(conn)
        async with self._sockets_opened:
            self._sockets_opened.notify_all()
        try:
            hello = payloads.socket_hello(
                self.workspace, num_connections=len(self._app_sockets), connection_time=SOCKET_CONNECTION_SECONDS
            )
            await ws.send_str(json.dumps(hello))
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(message.data)
                except ValueError:
                    log.warning("the app sent a Socket Mode message that is not JSON: %.200s", message.data)
                    continue
                if not isinstance(data, dict) or not data.get("envelope_id"):
                    log.warning("the app sent a Socket Mode message that is not an ack: %.200s", message.data)
                    continue
                if not any(c.ack(data) for c in [conn, *self._app_sockets]):
                    log.warning("the app acknowledged an unknown envelope %s", data.get("envelope_id"))
        except (ConnectionError, RuntimeError) as failure:
            log.info("a Socket Mode connection ended: %s", failure)
        finally:
            self._app_sockets.remove(conn)
            conn.abandon()
        return ws

    # -- the dev page -------------------------------------------------------------------------------------------

    async def _handle_index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def _handle_permalink(self, request: web.Request) -> web.Response:
        channel = request.match_info["channel"]
        digits = request.match_info["p"].lstrip("p")
        ts = f"{digits[:-6]}.{digits[-6:]}" if len(digits) > 6 else digits
        raise web.HTTPFound(f"/#{channel}/{ts}")

    def page_message(self, message: dict[str, Any]) -> dict[str, Any]:
        """A message as the page gets it: the Slack-shaped dict plus its rendered body in `html`."""
        return copy.deepcopy(message) | {"html": render_message(message, self.names)}

    def page_view(self, view: dict[str, Any], user: str) -> dict[str, Any]:
        """A modal as the page gets it: the view, its user, and its rendered blocks."""
        return {"user": user, "view": copy.deepcopy(view), "html": render_view(view, self.names)}

    async def _handle_state(self, request: web.Request) -> web.Response:
        snapshot = self.workspace.page_json()
        snapshot["messages"] = {
            cid: [self.page_message(m) for m in msgs] for cid, msgs in self.state.all_messages().items()
        }
        snapshot["views"] = [
            self.page_view(v, self.state.view_users.get(vid, "")) for vid, v in self.state.views.items()
        ]
        snapshot["app_connected"] = self.app_connected
        return web.json_response(snapshot)

    def _broadcast(self, event: Event) -> None:
        if not self._sockets:
            return
        payload = dict(event)
        if event["type"] == "message":
            payload["message"] = self.page_message(event["message"])
        elif event["type"] in {"view", "home"}:
            payload |= self.page_view(event["view"], event.get("user", ""))
        text = json.dumps(payload)
        for queue in self._sockets.values():
            queue.put_nowait(text)

    async def _handle_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._sockets[ws] = queue

        async def pump() -> None:
            while (item := await queue.get()) is not None:
                if ws.closed:
                    return
                await ws.send_str(item)

        sender = asyncio.create_task(pump())
        try:
            async for _ in ws:
                pass  # the page only listens
        finally:
            self._sockets.pop(ws, None)
            queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await sender
        return ws

    async def _close_sockets(self, app: web.Application) -> None:
        self._closing = True  # requests held by a `timeout` fault are let go, and new ones are not held
        self.faults.release_held()
        for ws in list(self._sockets):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"server shutdown")
        for conn in list(self._app_sockets):
            conn.abandon()
            await conn.ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"server shutdown")

    async def _handle_page_command(self, request: web.Request) -> web.Response:
        data = await request.json()
        line = str(data.get("text", "")).strip()
        if not line.startswith("/"):
            return web.json_response({"ok": False, "error": "not_a_command"}, status=400)
        command, _, text = line.partition(" ")
        try:
            user = self._user(str(data.get("user") or self.workspace.me))
            channel = self._channel(str(data.get("channel") or "#general"))
        except ValueError as error:
            return web.json_response({"ok": False, "error": str(error)}, status=400)
        if not self.app_connected:
            self._command_error(channel, user, f'{command} failed with the error "dispatch_failed"')
            return web.json_response({"ok": False, "error": "dispatch_failed"})
        result = await self.send_command(command=command, text=text.strip(), user_id=user.id, channel_id=channel.id)
        return web.json_response(
            {"ok": result.error is None and result.status == 200, "status": result.status, "error": result.error}
        )

    async def _handle_page_action(self, request: web.Request) -> web.Response:
        data = await request.json()
        if not self.app_connected:
            return web.json_response({"ok": False, "error": "dispatch_failed"})
        try:
            result = await self.send_block_action(
                channel=str(data.get("channel", "")),
                message_ts=str(data.get("message_ts", "")),
                action_id=str(data.get("action_id", "")),
                user_id=str(data.get("user") or self.workspace.me),
                value=data.get("value"),
                selected_option=data.get("selected_option"),
                block_id=data.get("block_id"),
            )
        except ValueError as error:
            return web.json_response({"ok": False, "error": str(error)}, status=400)
        return web.json_response(
            {"ok": result.error is None and result.status == 200, "status": result.status, "error": result.error}
        )

    async def _handle_page_message(self, request: web.Request) -> web.Response:
        data = await request.json()
        text = str(data.get("text", "")).strip()
        if not text:
            return web.json_response({"ok": False, "error": "no_text"}, status=400)
        try:
            # Typed text reaches the API escaped, as from Slack's own client (post_as_user takes mrkdwn as is).
            message = self.post_as_user(
                str(data.get("channel", "")),
                str(data.get("user") or self.workspace.me),
                escape(text),
                thread_ts=data.get("thread_ts") or None,
            )
        except ValueError as error:
            return web.json_response({"ok": False, "error": str(error)}, status=400)
        return web.json_response({"ok": True, "ts": message["ts"]})

    async def _handle_page_view(self, request: web.Request) -> web.Response:
        data = await request.json()
        view_id = str(data.get("view_id", ""))
        if view_id not in self.state.views:
            return web.json_response({"ok": False, "error": "not_found"}, status=404)
        if not self.app_connected:
            return web.json_response({"ok": False, "error": "dispatch_failed"})
        try:
            result = await self.send_view_submission(
                view_id=view_id, user_id=data.get("user") or None, values=data.get("values") or {}
            )
        except ValueError as error:
            return web.json_response({"ok": False, "error": str(error)}, status=400)
        answer = result.json or {}
        return web.json_response(
            {
                "ok": result.error is None and result.status == 200,
                "status": result.status,
                "error": result.error,
                "closed": view_id not in self.state.views,
                "errors": answer.get("errors") if answer.get("response_action") == "errors" else None,
            }
        )

    async def _handle_page_view_close(self, request: web.Request) -> web.Response:
        data = await request.json()
        await self.send_view_closed(view_id=str(data.get("view_id", "")), user_id=data.get("user") or None)
        return web.json_response({"ok": True})


def _token_type(token: str | None) -> str:
    if not token:
        return "none"
    for prefix, kind in (("xoxb-", "bot"), ("xapp-", "app"), ("xoxp-", "user")):
        if token.startswith(prefix):
            return kind
    return "other"


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


async def _read_args(request: web.Request) -> dict[str, Any]:
    """Query parameters, then the form or JSON body, merged the way Slack reads a call's arguments."""
    args: dict[str, Any] = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return args
    content_type = request.content_type
    if content_type == "application/json":
        raw = await request.text()
        if raw.strip():
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("JSON body must be an object")
            args.update(data)
    elif content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
        form = await request.post()
        for key, value in form.items():
            args[key] = value if isinstance(value, str) else getattr(value, "filename", "")
    return args


async def _read_hook_body(request: web.Request) -> dict[str, Any]:
    """A response_url body: JSON, or a form with `payload=<json>`."""
    if request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        data = json.loads(str(form.get("payload", "{}")))
    else:
        data = json.loads(await request.text() or "{}")
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")  # the caller answers ValueError with a 400
    return data


def _blocks_of(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Validated blocks of an answer or response_url body (ApiError `invalid_blocks` if they are not)."""
    if body.get("blocks") in (None, ""):
        return None
    try:
        blocks = parse_blocks(body["blocks"])
    except BlocksFormatError as error:
        raise ApiError("invalid_blocks_format") from error
    problems = validate_blocks(blocks)
    if problems:
        raise ApiError("invalid_blocks", messages=problems)
    return list(blocks)


def _hook_error(code: str, status: int) -> web.Response:
    return web.json_response({"ok": False, "error": code}, status=status)
