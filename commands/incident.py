"""Declare and run incidents: a channel, roles, status updates, a timeline and a postmortem draft.

Declaring opens a channel `inc-<yyyymmdd>-<title>`, invites you, the people on call for the severity and the
configured responders, pins a summary, announces the incident (updates follow in the announcement's thread) and
pages the severity's on-call target. Anyone may declare; `/incident` alone opens a form, and every alert has a
Declare incident button. Inside an incident's channel, commands apply to that incident; elsewhere, name it right
after the subcommand: its id (`INC-7`), its channel (`#inc-…`) or its number. Only the incident's declarer,
commander, role holders and responders (and admins) may change it. Nobody takes command within the severity's
response time: the on-call target is paged again. The message shortcut "Add to timeline" adds any message of an
incident channel to its timeline.

`public` is the only text that leaves chatops: it goes to the public status page and, when configured, Statuspage
(the first one makes the incident public; its first sentence is the public title). After that, `status`,
`severity` and `resolve` update the public incident's status and components too, without any internal text.

Usage:
  /incident
  /incident declare <sev> <title>
  /incident commander [INC-n] @user
  /incident role [INC-n] <name> @user
  /incident update [INC-n] <text>
  /incident status [INC-n] investigating|identified|monitoring|resolved
  /incident severity [INC-n] <sev>
  /incident note [INC-n] <text>
  /incident public [INC-n] <text>
  /incident resolve [INC-n] [summary]
  /incident list [open|all]
  /incident timeline [INC-n]
  /incident postmortem [INC-n]
Examples:
  /incident declare sev2 Checkout errors on web
  /incident update Rolled back web to v1.4.1, watching error rate
  /incident update INC-7 Error rate back to normal
  /incident commander @alice
  /incident role scribe @bob
"""

from __future__ import annotations

import html
import json
import re

from bot.alerts.render import DECLARE
from bot.incidents.config import STATUSES
from bot.incidents.model import Incident
from bot.incidents.paging import incident_severity
from bot.incidents.render import (
    DECLARE_VIEW,
    channel_link,
    declare_modal,
    durations,
    list_line,
    timeline_text,
)
from bot.platform.errors import UsageError, UserFacingError
from bot.text.blocks import external_text, section
from commands.catalog import Shortcut
from commands.framework import (
    ActionContext,
    Command,
    CommandContext,
    Reply,
    ShortcutContext,
    ViewContext,
)

# Subcommands that only show something: answered without an idempotency record (commands/dispatch.py)
READ_ONLY_SUBCOMMANDS = frozenset({"list", "timeline"})
ADD_TO_TIMELINE = "incidents.add_to_timeline"
_ROLE = re.compile(r"[a-z][a-z0-9_-]{0,23}")
_REF = re.compile(r"(?i)INC-\d{1,9}|<#[CG][A-Z0-9]+(?:\|[^>]*)?>|#[a-z0-9][a-z0-9_-]*")
_CHANGES = {"commander", "role", "update", "status", "severity", "note", "resolve", "postmortem", "public"}
_SUBCOMMANDS = ("declare", *sorted(_CHANGES), "list", "timeline")


async def handle(ctx: CommandContext) -> Reply:
    """Routes `/incident …`."""
    text = html.unescape(ctx.args).strip()
    if not text:
        return await _open_form(ctx)
    sub, _, rest = text.partition(" ")
    sub = sub.lower()
    rest = rest.strip()
    if sub == "declare":
        return await _declare(ctx, rest)
    if sub == "list":
        return await _list(ctx, rest)
    if sub not in (*_CHANGES, "timeline"):
        raise UsageError(
            f"`{external_text(sub)}` is not an /incident command (try {', '.join(f'`{s}`' for s in _SUBCOMMANDS)})."
        )
    incident, rest = await _target(ctx, sub, rest)
    if sub == "timeline":
        entries = await ctx.deps.incidents.timeline(incident)
        return Reply(text=timeline_text(incident, entries))
    await ctx.deps.incidents.require_change(incident, ctx.user_id, action=sub)
    reply = await _change(ctx, sub, incident, rest)
    ctx.spawn(ctx.deps.incidents.sync(incident.id), name=f"incident-sync:{incident.id}")
    return reply


async def _open_form(ctx: CommandContext) -> Reply:
    view = declare_modal(ctx.deps.config.incidents, metadata={"channel": ctx.channel_id})
    await ctx.deps.replies.open_view(ctx.invocation.trigger_id, view)
    return Reply(
        text=":rotating_light: Fill in the form to declare an incident (or `/incident declare <sev> <title>`)."
    )


async def _declare(ctx: CommandContext, rest: str) -> Reply:
    usage = "/incident declare <sev> <title>"
    severity, _, title = rest.partition(" ")
    names = ", ".join(f"`{name}`" for name in ctx.deps.config.incidents.severities)
    if not severity:
        raise UsageError(f"Say how bad and what: a severity ({names}) and a title.", usage)
    try:
        severity = ctx.deps.incidents.severity(severity)
    except UserFacingError as error:
        raise UsageError(error.message, usage) from None
    if not title.strip():
        raise UsageError(
            f"An incident needs a title after the severity, e.g. `/incident declare {severity} Checkout errors "
            "on web`.",
            usage,
        )
    incident = await ctx.deps.incidents.declare(severity, title, ctx.user_id)
    ctx.spawn(ctx.deps.incidents.sync(incident.id), name=f"incident-sync:{incident.id}")
    return Reply(
        text=f":rotating_light: <@{ctx.user_id}> declared *{incident.id}* {incident.severity.upper()}: "
        f"{external_text(incident.title)}"
        f" — join {channel_link(incident)}",
        in_channel=True,
    )


async def _list(ctx: CommandContext, rest: str) -> Reply:
    which = rest.lower() or "open"
    if which not in ("open", "all"):
        raise UsageError("`list` takes `open` (the default) or `all`.", "/incident list [open|all]")
    incidents = await ctx.deps.incidents.listing(open_only=which == "open")
    if not incidents:
        return Reply(text="No open incidents. :tada:" if which == "open" else "No incidents yet.")
    now = ctx.deps.clock()
    title = (
        f"*{len(incidents)} open incident{'' if len(incidents) == 1 else 's'}*"
        if which == "open"
        else f"*The latest {len(incidents)} incidents*"
    )
    text = "\n".join([title, *(list_line(incident, now) for incident in incidents)])
    return Reply(text=text, blocks=[section(text)])


async def _target(ctx: CommandContext, sub: str, rest: str) -> tuple[Incident, str]:
    """The incident a subcommand is about (named first in `rest`, or this channel's) and the remaining text."""
    first, _, after = rest.partition(" ")
    if first and _REF.fullmatch(first) and (first.upper().startswith("INC-") or await _names_incident(ctx, first)):
        return await ctx.deps.incidents.get(first), after.strip()
    here = await ctx.deps.incidents.in_channel(ctx.channel_id)
    if here is not None:
        return here, rest
    open_ids = ", ".join(f"`{i.id}`" for i in await ctx.deps.incidents.listing(open_only=True)) or "none"
    raise UsageError(
        f"This is not an incident channel, so name the incident: `/incident {sub} INC-7 …` (or its #channel). "
        f"Open incidents: {open_ids}.",
        f"/incident {sub} [INC-n] …",
    )


async def _names_incident(ctx: CommandContext, word: str) -> bool:
    try:
        await ctx.deps.incidents.get(word)
    except UserFacingError:
        return False
    return True


async def _change(ctx: CommandContext, sub: str, incident: Incident, rest: str) -> Reply:
    changes = ctx.deps.incidents.changes
    who = ctx.user_id
    if sub == "commander":
        if len(rest.split()) != 1:
            raise UsageError(
                "`commander` takes one person, e.g. `/incident commander @alice`.", "/incident commander [INC-n] @user"
            )
        user = await ctx.deps.people.resolve(rest.strip())
        after = await changes.set_commander(incident, user, who)
        return Reply(text=f":crown: <@{user}> is {after.id}'s incident commander.", in_channel=True)
    if sub == "role":
        words = rest.split()
        if len(words) != 2 or not _ROLE.fullmatch(words[0].lower()):
            raise UsageError(
                "`role` takes a role name (letters, digits, - and _) and one person, e.g. `/incident role "
                "scribe @bob`.",
                "/incident role [INC-n] <name> @user",
            )
        user = await ctx.deps.people.resolve(words[1])
        after = await changes.set_role(incident, words[0].lower(), user, who)
        return Reply(
            text=f":bust_in_silhouette: <@{user}> is {external_text(words[0].lower())} for {after.id}.", in_channel=True
        )
    if sub in ("update", "note"):
        if not rest:
            raise UsageError(
                f"`{sub}` needs text, e.g. `/incident {sub} Rolled back web to v1.4.1`.",
                f"/incident {sub} [INC-n] <text>",
            )
        if sub == "update":
            after = await changes.update(incident, rest, who)
            return Reply(text=f":speech_balloon: Update posted for {after.id} here and in the announcement thread.")
        after = await changes.note(incident, rest, who)
        return Reply(text=f":memo: Noted on {after.id}'s timeline.")
    if sub == "public":
        if not rest:
            raise UsageError(
                "`public` needs the text customers see, e.g. `/incident public Checkout is failing for some "
                "customers. We are investigating.`",
                "/incident public [INC-n] <text>",
            )
        after = await changes.public(incident, rest, who)
        return Reply(text=_public_reply(ctx, after))
    if sub == "status":
        if rest.lower() not in STATUSES:
            raise UsageError(
                f"`status` takes one of: {', '.join(STATUSES)}.",
                "/incident status [INC-n] investigating|identified|monitoring|resolved",
            )
        after = await changes.set_status(incident, rest.lower(), who)
        return (
            _resolved(after)
            if after.status == "resolved"
            else Reply(text=f":arrows_counterclockwise: {after.id} is now *{after.status}*.", in_channel=True)
        )
    if sub == "severity":
        if len(rest.split()) != 1:
            raise UsageError(
                "`severity` takes one severity, e.g. `/incident severity sev1`.", "/incident severity [INC-n] <sev>"
            )
        try:
            after = await changes.set_severity(incident, rest, who)
        except UserFacingError as error:
            raise UsageError(error.message, "/incident severity [INC-n] <sev>") from None
        return Reply(text=f":warning: {after.id} is now *{after.severity.upper()}*.", in_channel=True)
    if sub == "resolve":
        return _resolved(await changes.resolve(incident, rest, who))
    file_id = await ctx.deps.incidents.postmortem(incident, who)
    return Reply(
        text=f":memo: Postmortem draft for {incident.id} uploaded to {channel_link(incident)} (file `{file_id}`)."
    )


def _public_reply(ctx: CommandContext | ViewContext, incident: Incident) -> str:
    where = " and queued for Statuspage" if ctx.deps.incidents.public is not None else ""
    return (
        f":globe_with_meridians: Public update for {incident.id} posted to the status page{where}"
        f" (public title: {external_text(incident.public_title)})."
    )


def _resolved(incident: Incident) -> Reply:
    return Reply(
        text=f":white_check_mark: {incident.id} resolved: {durations(incident)}. `/incident postmortem` writes "
        "the draft.",
        in_channel=True,
    )


# -- the form, the alert button and the shortcut ---------------------------------------------------------------


async def _on_declare_button(ctx: ActionContext) -> None:
    group = await ctx.deps.alerts.get(ctx.value)
    if group is None:
        raise UserFacingError(f"There is no alert `{external_text(ctx.value)}`.")
    config = ctx.deps.config.incidents
    first = next(iter(group.members.values()), None)
    view = declare_modal(
        config,
        title=group.title,
        severity=incident_severity(config, group.severity),
        service=(first.labels.get("service", "") if first else ""),
        metadata={"channel": ctx.channel_id, "alerts": [group.id]},
    )
    await ctx.deps.replies.open_view(ctx.trigger_id, view)


async def _on_declare_form(ctx: ViewContext) -> dict[str, str] | None:
    title = " ".join(ctx.value("title", "title").split())
    severity = ctx.value("severity", "severity")
    public = any(
        o.get("value") == "yes"
        for o in (ctx.values.get("public") or {}).get("public", {}).get("selected_options") or []
    )
    public_text = ctx.value("public_text", "public_text").strip()
    errors = {}
    if not title:
        errors["title"] = "Say what is broken, for whom."
    if severity not in ctx.deps.config.incidents.severities:
        errors["severity"] = "Pick a severity."
    if public and not public_text:
        errors["public_text"] = "Posting publicly needs the message customers see."
    elif public_text and not public:
        errors["public"] = "Tick Post publicly to publish the message, or clear it."
    if errors:
        return errors
    try:
        metadata = json.loads(ctx.private_metadata or "{}")
    except ValueError:
        metadata = {}
    alerts = [str(a) for a in metadata.get("alerts", []) if isinstance(a, str)] if isinstance(metadata, dict) else []
    try:
        incident = await ctx.deps.incidents.declare(
            severity, title, ctx.user_id, service=ctx.value("service", "service"), alert_ids=alerts
        )
    except UserFacingError as error:
        return {"title": error.message}
    if public:
        incident = await ctx.deps.incidents.changes.public(incident, public_text, ctx.user_id)
    ctx.spawn(ctx.deps.incidents.sync(incident.id), name=f"incident-sync:{incident.id}")
    ctx.spawn(
        ctx.respond(
            Reply(
                text=f":rotating_light: Declared *{incident.id}* {incident.severity.upper()}: "
                f"{external_text(incident.title)}"
                f" — join {channel_link(incident)}"
            )
        ),
        name="incident-declared-reply",
    )
    return None


async def _on_add_to_timeline(ctx: ShortcutContext) -> None:
    incident = await ctx.deps.incidents.in_channel(ctx.channel_id)
    if incident is None:
        raise UserFacingError('"Add to timeline" works on messages in an incident\'s channel; this channel is not one.')
    await ctx.deps.incidents.require_change(incident, ctx.user_id, action="note")
    text = str(ctx.message.get("text") or "").strip()
    if not text:
        raise UserFacingError("That message has no text to add.")
    author = str(ctx.message.get("user") or ctx.message.get("bot_id") or "")
    after = await ctx.deps.incidents.changes.note(
        incident, html.unescape(text), ctx.user_id, author=author, source_ts=str(ctx.message.get("ts") or "")
    )
    await ctx.respond(Reply(text=f":memo: Added to {after.id}'s timeline."))


COMMAND = Command(
    name="incident",
    doc=__doc__,
    handler=handle,
    usage_hint="declare <sev> <title> | update <text> | status … | resolve",
    actions={DECLARE: _on_declare_button},
    views={DECLARE_VIEW: _on_declare_form},
    shortcuts=(
        Shortcut(
            callback_id=ADD_TO_TIMELINE,
            name="Add to timeline",
            handler=_on_add_to_timeline,
            description="Adds this message to the incident's timeline (in an incident channel).",
        ),
    ),
    escapes_mentions=True,
    read_only_subcommands=READ_ONLY_SUBCOMMANDS,
)
