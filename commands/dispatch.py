"""Wires the catalog into a Bolt app: deduplicates retries and double clicks on buttons that change something (a
repeated click is answered "already done"; navigation and read-only buttons always run), routes commands and buttons,
turns every failure into a clear ephemeral answer (never a traceback), and counts outcomes.

Commands answer in Slack's acknowledgement itself (the app runs with process_before_response), so a reply
costs one HTTP round trip; button handlers acknowledge at once and continue in the background. Over HTTP, slash
commands skip Bolt's generic middleware chain (`CommandEndpoint`: signature and age checked, then straight to the
command); buttons, modals, shortcuts and events, and everything in Socket Mode, go through Bolt.

A command that changes nothing (help, and the read-only subcommands each command module lists in
`READ_ONLY_SUBCOMMANDS`) writes no idempotency record before its answer: Slack does not retry slash commands, and
running a read twice harms nothing. Commands that change something, and clicks on buttons that do, keep theirs.

Slack gives up on an answer after 3 seconds, and Redis can hang (a stopped or overloaded server answers nothing
until the socket timeout). So a request has a deadline, `ACK_DEADLINE_SECONDS` after it reaches the middleware:
the duplicate check that cannot finish by then answers "cannot reach its Redis store; nothing was changed", and a
command still running then is acknowledged with "Working on it…" and answers later through its response_url."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier

from bot.platform.errors import (
    PermissionDenied,
    StoreUnavailable,
    UsageError,
    UserFacingError,
    new_ref,
)
from bot.platform.request_guard import RequestGuard
from bot.shell.deps import Deps
from bot.text.blocks import escape
from commands import help as help_pages
from commands.catalog import (
    ActionHandler,
    Catalog,
    CommandSpec,
    EventHandler,
    Route,
    Shortcut,
    ViewHandler,
)
from commands.framework import (
    ActionContext,
    CommandContext,
    Invocation,
    Reply,
    ShortcutContext,
    ViewContext,
)

log = logging.getLogger(__name__)

DEPS = "chatops_deps"
DEADLINE = "chatops_deadline"
GUARD = "chatops_request_guard"  # the idempotency guard: the dispatcher's own, not in Deps
# Slack's limit is 3 s from its side; keep room for the network and the HTTP answer itself.
ACK_DEADLINE_SECONDS = 2.2
WORKING = ":hourglass_flowing_sand: Working on it… the answer will follow here."
STORE_UNREACHABLE = "chatops cannot reach its Redis store right now; nothing was changed. Try again in a minute."
ALREADY_DONE = ":ballot_box_with_check: Already done: you clicked that a moment ago, so the second click was ignored."
JSON = "application/json"
# What Bolt answers a request whose signature or age is wrong; the HTTP fast path answers the same.
INVALID_REQUEST = b'{"error": "invalid request"}'
MAX_REQUEST_AGE_SECONDS = 60 * 5


def install(app: AsyncApp, deps: Deps, catalog: Catalog, guard: RequestGuard) -> None:
    """Registers one middleware (deps + dedup), one listener for every command and one for every action.

    One listener each, routed here from the catalog, rather than one per command: Bolt evaluates every
    listener's matcher on every request, and that cost grows with the registry."""

    read_only = catalog.read_only_actions()

    async def prepare(req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[Any]]) -> Any:
        req.context[DEPS] = deps
        req.context[GUARD] = guard
        req.context[DEADLINE] = asyncio.get_running_loop().time() + ACK_DEADLINE_SECONDS
        body = req.body or {}
        if body.get("command") and changes_nothing(catalog.route(str(body["command"]), str(body.get("text") or ""))):
            return await next()
        return await _deduplicate(req, resp, next, guard, read_only=read_only)

    app.middleware(prepare)
    commands = "|".join(re.escape(spec.slash) for spec in catalog.specs)
    app.command(re.compile(f"^(?:{commands})$"))(_command_listener(catalog))
    routes = catalog.actions()
    if routes:
        action_ids = "|".join(re.escape(action_id) for action_id in routes)
        app.action(re.compile(f"^(?:{action_ids})$"))(_action_listener(catalog, routes))
    shortcuts = catalog.shortcuts()
    if shortcuts:
        app.shortcut(re.compile(f"^(?:{'|'.join(re.escape(c) for c in shortcuts)})$"))(
            _shortcut_listener(catalog, shortcuts)
        )
    views = catalog.views()
    if views:
        app.view(re.compile(f"^(?:{'|'.join(re.escape(c) for c in views)})$"))(_view_listener(catalog, views))
    for event_type, handler in catalog.events().items():
        app.event(event_type)(_event_listener(event_type, handler))


def _event_listener(event_type: str, handler: EventHandler) -> Callable[..., Awaitable[None]]:
    """Acknowledges an event at once and handles it in the background (Slack retries events it waits on)."""

    async def on_event(ack: Any, event: dict[str, Any], context: Any) -> None:
        deps: Deps = context[DEPS]
        await ack()
        deps.metrics.request_done(event_type, "ok")
        deps.tasks.spawn(handler(deps, event), name=f"event:{event_type}")

    return on_event


def request_identity(body: dict[str, Any], raw: str) -> tuple[str, str]:
    """The (kind, id) that is the same for a request and Slack's retries of it, and differs between requests."""
    if body.get("event_id"):
        return "event", str(body["event_id"])
    if body.get("command") and body.get("trigger_id"):
        return "command", str(body["trigger_id"])
    kind = str(body.get("type") or "")
    if kind == "block_actions":
        action = (body.get("actions") or [{}])[0]
        user = (body.get("user") or {}).get("id", "")
        return "action", f"{user}:{action.get('action_ts', '')}:{body.get('trigger_id', '')}"
    if kind in {"view_submission", "view_closed", "shortcut", "message_action"} and body.get("trigger_id"):
        return kind, str(body["trigger_id"])
    # Socket Mode requests carry no raw body: their parsed body identifies them instead.
    identity = raw or json.dumps(body, sort_keys=True, default=str)
    return "raw", hashlib.sha256(identity.encode()).hexdigest()


def click_identity(body: dict[str, Any]) -> tuple[str, str, str, str] | None:
    """(user, message, action, value) of a button press, to drop a second press of the same button."""
    if body.get("type") != "block_actions":
        return None
    action = (body.get("actions") or [{}])[0]
    container = body.get("container") or {}
    message_ref = f"{container.get('channel_id', '')}:{container.get('message_ts') or container.get('view_id', '')}"
    value = action.get("value") or (action.get("selected_option") or {}).get("value") or ""
    return (body.get("user") or {}).get("id", ""), message_ref, str(action.get("action_id", "")), str(value)


async def _deduplicate(
    req: AsyncBoltRequest,
    resp: BoltResponse,
    next: Callable[[], Awaitable[Any]],
    guard: RequestGuard,
    *,
    read_only: frozenset[str] = frozenset(),
) -> Any:
    """Answers a retry or replay with an empty 200 and runs nothing; a second click on a button that changes
    something, within a few seconds, runs nothing either and is answered "already done". Buttons in `read_only`
    (navigation, refresh) are never held back: clicking through help pages quickly must show every page."""
    deps: Deps = req.context[DEPS]
    body = req.body or {}
    kind, request_id = request_identity(body, req.raw_body)
    repeated_click = False

    async def claim() -> bool:
        nonlocal repeated_click
        first = await guard.claim_once(kind, request_id)
        click = click_identity(body)
        if first and click is not None and click[2] not in read_only:
            first = await guard.claim_click(*click)
            repeated_click = not first
        return first

    try:
        first = await asyncio.wait_for(claim(), timeout=_remaining(req.context))
    except (StoreUnavailable, TimeoutError) as error:
        ref = new_ref()
        reason = error if str(error) else "redis did not answer in time"
        log.error("cannot record request identity (ref %s): %s", ref, reason)
        deps.metrics.request_done(_label(body), "unavailable")
        if body.get("command"):
            reply = {"response_type": "ephemeral", "text": f":warning: {STORE_UNREACHABLE} (ref {ref})"}
            return BoltResponse(status=200, body=json.dumps(reply), headers={"content-type": "application/json"})
        return BoltResponse(status=503, body=f"store unavailable (ref {ref})")
    if not first:
        deps.metrics.request_done(_label(body), "duplicate")
        log.info(
            "ignored a repeated Slack request (%s %s, retry %s)", kind, request_id, req.headers.get("x-slack-retry-num")
        )
        if repeated_click and body.get("response_url"):
            deps.tasks.spawn(_answer_repeated_click(deps, str(body["response_url"])), name="action:repeated-click")
        return BoltResponse(status=200, body="")
    return await next()


async def _answer_repeated_click(deps: Deps, response_url: str) -> None:
    """Tells the user, only them, that their second click was not lost but had nothing left to do."""
    try:
        await deps.replies.to_response_url(
            response_url, text=ALREADY_DONE, response_type="ephemeral", replace_original=False
        )
    except Exception:
        log.exception("could not answer a repeated click")


def _label(body: dict[str, Any]) -> str:
    if body.get("command"):
        return str(body["command"]).lstrip("/")
    if body.get("type") == "block_actions":
        return str((body.get("actions") or [{}])[0].get("action_id", "action")).split(".")[0]
    return str(body.get("type") or "other")


def _command_listener(catalog: Catalog) -> Callable[..., Awaitable[None]]:
    async def on_command(ack: Any, body: dict[str, Any], context: Any) -> None:
        deps: Deps = context[DEPS]
        route = catalog.route(str(body.get("command") or ""), str(body.get("text") or ""))
        await ack(**await answer_command(deps, catalog, body, route, _remaining(context), context[GUARD]))

    return on_command


def changes_nothing(route: Route) -> bool:
    """True for a command that only shows something (help, or a subcommand its module lists as read-only): it
    needs no idempotency record. Unknown words count as changing something, so the guard stays by default."""
    if route.help:
        return True
    read_only = route.spec.read_only_subcommands
    if "*" in read_only:
        return True
    words = route.args.split(maxsplit=1)
    return (words[0].lower() if words else "") in read_only


async def answer_command(
    deps: Deps,
    catalog: Catalog,
    body: Mapping[str, Any],
    route: Route,
    within: float,
    guard: RequestGuard,
) -> dict[str, Any]:
    """The acknowledgement of one slash command: its reply, or, if it is still running after `within` seconds
    (a slow or hung Redis, a slow API), "Working on it…" with the reply following through its response_url."""
    invocation = Invocation.from_body(body)
    ctx = CommandContext(
        user_id=invocation.user_id,
        channel_id=invocation.channel_id,
        response_url=invocation.response_url,
        deps=deps,
        catalog=catalog,
        spec=route.spec,
        invocation=invocation,
        args=route.args,
    )
    running = asyncio.ensure_future(run_command(ctx, help_requested=route.help))
    if not changes_nothing(route):
        done, _ = await asyncio.wait({running}, timeout=within)
    else:
        # A read has no idempotency record to tell that Redis hangs; halfway to the deadline it asks Redis itself.
        done, _ = await asyncio.wait({running}, timeout=within / 2)
        if not done:
            probe = asyncio.ensure_future(guard.ping())
            done, _ = await asyncio.wait({running}, timeout=within / 2)
            if not done and not _answered(probe):
                running.cancel()
                ref = new_ref()
                log.error("cannot read the Redis store in time (ref %s) for %s", ref, route.spec.slash)
                deps.metrics.request_done(route.spec.name, "unavailable")
                return {"text": f":warning: {STORE_UNREACHABLE} (ref {ref})", "response_type": "ephemeral"}
    if done:
        reply, outcome = running.result()
        deps.metrics.request_done(route.spec.name, outcome)
        return reply.as_ack()
    deps.tasks.spawn(_reply_later(ctx, running), name=f"command:{route.spec.name}:late")
    return Reply(text=WORKING).as_ack()


def _answered(probe: asyncio.Future[Any]) -> bool:
    """True when the Redis probe succeeded; a probe still waiting is cancelled (and counts as no answer)."""
    if not probe.done():
        probe.cancel()
        return False
    return not probe.cancelled() and probe.exception() is None


class CommandEndpoint:
    """Slash commands over HTTP, without Bolt's generic middleware chain (its cost was most of an
    acknowledgement's; see bench/README.md): the signature and age are checked exactly as Bolt checks them
    (HMAC-SHA256 compared in constant time, at most five minutes old), then the command runs. Help is rendered
    once per command (it depends only on the catalog and the configuration) and kept as encoded JSON."""

    def __init__(self, deps: Deps, catalog: Catalog, signing_secret: str, guard: RequestGuard) -> None:
        self._deps = deps
        self._guard = guard
        self._catalog = catalog
        self._verifier = SignatureVerifier(signing_secret)
        self._names = help_pages.config_names(deps.config)
        self._help: dict[tuple[str, bool], bytes] = {}

    async def answer(self, raw: bytes, headers: Mapping[str, str]) -> tuple[int, bytes, str] | None:
        """(status, body, content type) of the answer to a slash command; None for any other request (Bolt
        answers those: buttons, modals, events, Slack's ssl_check)."""
        if b"command=" not in raw or b"payload=" in raw or b"ssl_check=" in raw:
            return None
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return None
        if not self._verified(text, headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature")):
            return 401, INVALID_REQUEST, JSON
        # Routing needs two fields; the whole form is decoded only for a command that runs (a third of the
        # fast path's time went to decoding every field of every help request).
        fields = form_fields(text, ("command", "text"))
        if not fields.get("command"):
            return None
        deadline = asyncio.get_running_loop().time() + ACK_DEADLINE_SECONDS
        route = self._catalog.route(fields["command"], fields.get("text", ""))
        if route.help:
            self._deps.metrics.request_done(route.spec.name, "help")
            return 200, self._help_page(route), JSON
        body = dict(parse_qsl(text, keep_blank_values=True))
        if not changes_nothing(route):
            refused = await self._claim(body, text, deadline)
            if refused is not None:
                return refused
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        answer = await answer_command(self._deps, self._catalog, body, route, remaining, self._guard)
        return 200, _encode(answer), JSON

    def _verified(self, raw: str, timestamp: str | None, signature: str | None) -> bool:
        """Slack's signature over `v0:timestamp:body`, from the last five minutes (either way)."""
        if not timestamp or not signature:
            return False
        try:
            # Checked here as well as by the verifier: a timestamp that is no integer is refused, not a 500.
            age = abs(self._verifier.clock.now() - int(timestamp))
        except ValueError:
            return False
        return age <= MAX_REQUEST_AGE_SECONDS and self._verifier.is_valid(raw, timestamp, signature)

    async def _claim(self, body: dict[str, str], raw: str, deadline: float) -> tuple[int, bytes, str] | None:
        """None when this command is seen for the first time; otherwise the answer to its repeat (nothing) or
        to a Redis that cannot record it in time ("nothing was changed")."""
        kind, request_id = request_identity(body, raw)
        try:
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            first = await asyncio.wait_for(self._guard.claim_once(kind, request_id), timeout=remaining)
        except (StoreUnavailable, TimeoutError) as error:
            ref = new_ref()
            log.error(
                "cannot record request identity (ref %s): %s",
                ref,
                error if str(error) else "redis did not answer in time",
            )
            self._deps.metrics.request_done(_label(body), "unavailable")
            reply = {"response_type": "ephemeral", "text": f":warning: {STORE_UNREACHABLE} (ref {ref})"}
            return 200, json.dumps(reply).encode(), JSON
        if first:
            return None
        self._deps.metrics.request_done(_label(body), "duplicate")
        log.info("ignored a repeated Slack request (%s %s)", kind, request_id)
        return 200, b"", "text/plain"

    def _help_page(self, route: Route) -> bytes:
        """The encoded help answer for this route, rendered on first use."""
        overview = route.spec is self._catalog.umbrella and not route.args
        key = (route.spec.name, overview)
        page = self._help.get(key)
        if page is None:
            reply = help_pages.overview(self._catalog) if overview else help_pages.command_help(route.spec, self._names)
            page = self._help[key] = _encode(reply.as_ack())
        return page


def form_fields(form: str, names: tuple[str, ...]) -> dict[str, str]:
    """The values of `names` in a URL-encoded form, as `dict(parse_qsl(form, keep_blank_values=True))` has them."""
    found: dict[str, str] = {}
    for pair in form.split("&"):
        name, _, value = pair.partition("=")
        if name in names:
            found[name] = unquote_plus(value)
    return found


def _encode(answer: dict[str, Any]) -> bytes:
    """The JSON body of an acknowledgement, byte for byte as Bolt's `ack(**answer)` writes it (no empty blocks)."""
    if "blocks" in answer and not answer["blocks"]:
        answer = {key: value for key, value in answer.items() if key != "blocks"}
    return json.dumps(answer).encode()


async def _reply_later(ctx: CommandContext, running: asyncio.Future[tuple[Reply, str]]) -> None:
    """Delivers the reply of a command that outlived its acknowledgement through its response_url."""
    reply, outcome = await running
    ctx.deps.metrics.request_done(ctx.spec.name, outcome)
    if not ctx.response_url:
        return
    try:
        await ctx.respond(reply)
    except Exception:
        log.exception("could not deliver the late answer to %s of user %s", ctx.spec.slash, ctx.user_id)


def _remaining(context: Any) -> float:
    """Seconds left before this request must be answered (never negative)."""
    deadline = context.get(DEADLINE) if hasattr(context, "get") else None
    if deadline is None:
        return ACK_DEADLINE_SECONDS
    return max(0.0, float(deadline) - asyncio.get_running_loop().time())


async def run_command(ctx: CommandContext, *, help_requested: bool) -> tuple[Reply, str]:
    """Runs one command and returns the reply and its outcome label; never raises."""
    spec = ctx.spec
    try:
        if help_requested:
            if spec.name == ctx.catalog.umbrella.name and not ctx.args:
                return help_pages.overview(ctx.catalog), "help"
            return help_pages.command_help(spec, help_pages.config_names(ctx.deps.config)), "help"
        if spec.handler is None:
            return help_pages.not_available(spec), "not_available"
        return await spec.handler(ctx), "ok"
    except UsageError as error:
        return usage_reply(error, spec, hint=did_you_mean(ctx)), "usage_error"
    except PermissionDenied as error:
        return Reply(text=f":no_entry: {error.message}"), "denied"
    except UserFacingError as error:
        return Reply(text=f":warning: {error.message}{did_you_mean(ctx)}"), "refused"
    except Exception:
        ref = new_ref()
        log.exception("command %s failed (ref %s)", spec.slash, ref, extra={"ref": ref, "user": ctx.user_id})
        return internal_error_reply(ref), "error"


def did_you_mean(ctx: CommandContext) -> str:
    """For a command that failed on a mistyped command or subcommand word: "Did you mean `/deploy history web`?"
    (as typed: through /chatops or not); for an unknown /chatops word nothing is close to: the real commands."""
    suggestion = ctx.catalog.suggest(ctx.spec, ctx.args)
    umbrella = ctx.catalog.umbrella
    if suggestion is None:
        words = ctx.args.split()
        unknown = ctx.spec is umbrella and bool(words) and words[0].lower() not in umbrella.subcommands
        return f"\nThe commands are {ctx.catalog.slash_commands()}." if unknown else ""
    typed = ctx.invocation.command.lower()
    prefix = (
        umbrella.slash
        if ctx.spec is umbrella
        else (f"{umbrella.slash} {ctx.spec.name}" if typed == umbrella.slash else ctx.spec.slash)
    )
    return f"\nDid you mean `{escape(f'{prefix} {suggestion}')}`?"


def usage_reply(error: UsageError, spec: CommandSpec, *, hint: str = "") -> Reply:
    """The ephemeral answer to a mistyped command: what was wrong (and what was probably meant) and the usage."""
    usage = escape(error.usage or spec.usage_text)
    return Reply(text=f":warning: {error.message}{hint}\nUsage:\n```{usage}```\nMore: `{spec.slash} help`")


def internal_error_reply(ref: str) -> Reply:
    """The answer when chatops itself failed: a reference to find the log line, never a traceback."""
    return Reply(
        text=f":boom: Something went wrong on our side (ref {ref}). Nothing was changed; try again, or give the "
        "ref to your chatops admins."
    )


def _action_listener(
    catalog: Catalog, routes: dict[str, tuple[CommandSpec, ActionHandler]]
) -> Callable[..., Awaitable[None]]:
    async def on_action(ack: Any, body: dict[str, Any], context: Any) -> None:
        await ack()
        deps: Deps = context[DEPS]
        action = (body.get("actions") or [{}])[0]
        spec, handler = routes[str(action.get("action_id", ""))]
        container = body.get("container") or {}
        ctx = ActionContext(
            user_id=(body.get("user") or {}).get("id", ""),
            channel_id=container.get("channel_id") or (body.get("channel") or {}).get("id", ""),
            response_url=str(body.get("response_url") or ""),
            deps=deps,
            catalog=catalog,
            spec=spec,
            action_id=str(action.get("action_id", "")),
            value=str(action.get("value") or (action.get("selected_option") or {}).get("value") or ""),
            message_ts=str(container.get("message_ts") or ""),
            is_ephemeral=bool(container.get("is_ephemeral")),
            trigger_id=str(body.get("trigger_id") or ""),
            message=body.get("message") or {},
        )
        deps.tasks.spawn(run_action(ctx, handler), name=f"action:{ctx.action_id}")

    return on_action


async def run_action(ctx: ActionContext, handler: ActionHandler) -> None:
    """Runs a button handler after the ack; failures reach the user as an ephemeral message."""
    await _run_after_ack(ctx, handler(ctx), ctx.action_id)


async def _run_after_ack(ctx: ActionContext | ShortcutContext | ViewContext, work: Awaitable[Any], label: str) -> None:
    """Runs a handler after Slack got its answer; failures reach the user as an ephemeral message."""
    outcome = "ok"
    reply: Reply | None = None
    try:
        await work
    except UsageError as error:
        outcome, reply = "usage_error", Reply(text=f":warning: {error.message}")
    except PermissionDenied as error:
        outcome, reply = "denied", Reply(text=f":no_entry: {error.message}")
    except UserFacingError as error:
        outcome, reply = "refused", Reply(text=f":warning: {escape(error.message)}")
    except Exception:
        ref = new_ref()
        log.exception("%s failed (ref %s)", label, ref, extra={"ref": ref, "user": ctx.user_id})
        outcome, reply = "error", internal_error_reply(ref)
    ctx.deps.metrics.request_done(ctx.spec.name, outcome)
    if reply is not None and (ctx.response_url or isinstance(ctx, ViewContext)):
        try:
            await ctx.respond(reply)
        except Exception:
            log.exception("could not tell user %s about a failed %s", ctx.user_id, label)


def _shortcut_listener(
    catalog: Catalog, routes: dict[str, tuple[CommandSpec, Shortcut]]
) -> Callable[..., Awaitable[None]]:
    async def on_shortcut(ack: Any, body: dict[str, Any], context: Any) -> None:
        await ack()
        deps: Deps = context[DEPS]
        spec, shortcut = routes[str(body.get("callback_id", ""))]
        ctx = ShortcutContext(
            user_id=(body.get("user") or {}).get("id", ""),
            channel_id=(body.get("channel") or {}).get("id", ""),
            response_url=str(body.get("response_url") or ""),
            deps=deps,
            catalog=catalog,
            spec=spec,
            callback_id=shortcut.callback_id,
            trigger_id=str(body.get("trigger_id") or ""),
            message=body.get("message") or {},
        )
        deps.tasks.spawn(
            _run_after_ack(ctx, shortcut.handler(ctx), f"shortcut {shortcut.callback_id}"),
            name=f"shortcut:{shortcut.callback_id}",
        )

    return on_shortcut


def _view_listener(
    catalog: Catalog, routes: dict[str, tuple[CommandSpec, ViewHandler]]
) -> Callable[..., Awaitable[None]]:
    """Modal submissions are validated before the answer, so errors show under the inputs and the modal stays
    open; the handler spawns whatever takes longer."""

    async def on_view(ack: Any, body: dict[str, Any], context: Any) -> None:
        deps: Deps = context[DEPS]
        view = body.get("view") or {}
        spec, handler = routes[str(view.get("callback_id", ""))]
        metadata = str(view.get("private_metadata") or "")
        try:
            channel = str(json.loads(metadata).get("channel") or "") if metadata.startswith("{") else ""
        except ValueError:
            channel = ""
        ctx = ViewContext(
            user_id=(body.get("user") or {}).get("id", ""),
            channel_id=channel,
            response_url="",
            deps=deps,
            catalog=catalog,
            spec=spec,
            callback_id=str(view.get("callback_id", "")),
            values=(view.get("state") or {}).get("values") or {},
            private_metadata=metadata,
            trigger_id=str(body.get("trigger_id") or ""),
        )
        errors: dict[str, str] | None = None
        reply: Reply | None = None
        outcome = "ok"
        try:
            errors = await handler(ctx)
        except PermissionDenied as error:
            outcome, reply = "denied", Reply(text=f":no_entry: {error.message}")
        except UserFacingError as error:
            outcome, reply = "refused", Reply(text=f":warning: {escape(error.message)}")
        except Exception:
            ref = new_ref()
            log.exception("view %s failed (ref %s)", ctx.callback_id, ref, extra={"ref": ref, "user": ctx.user_id})
            outcome, reply = "error", internal_error_reply(ref)
        if errors:
            deps.metrics.request_done(spec.name, "usage_error")
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        deps.metrics.request_done(spec.name, outcome)
        if reply is not None:
            deps.tasks.spawn(ctx.respond(reply), name=f"view:{ctx.callback_id}:reply")

    return on_view
