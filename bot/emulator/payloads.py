"""The requests Slack sends to an app, built exactly as Slack shapes them: a slash command's form fields, the
block_actions / view_submission / view_closed payloads, and the Events API envelope. Pure builders; signing and
sending live in `bot.emulator.server`."""

from __future__ import annotations

import secrets
import time
from typing import Any

from bot.emulator.workspace import Channel, User, Workspace

# Slack's deprecated verification token, still sent in every payload; Bolt ignores it.
VERIFICATION_TOKEN = "emulatorVerificationToken"


def command_form(
    workspace: Workspace, *, command: str, text: str, user: User, channel: Channel, response_url: str, trigger_id: str
) -> dict[str, str]:
    """The form fields of a slash command, in Slack's order."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": workspace.team_id,
        "team_domain": workspace.domain,
        "channel_id": channel.id,
        "channel_name": "directmessage" if channel.is_im else channel.name,
        "user_id": user.id,
        "user_name": user.name,
        "command": command,
        "text": text,
        "api_app_id": workspace.app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def _user_json(workspace: Workspace, user: User) -> dict[str, str]:
    return {"id": user.id, "username": user.name, "name": user.name, "team_id": workspace.team_id}


def find_action(
    message: dict[str, Any], action_id: str, block_id: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(block, element) of the interactive element with this action_id in the message; ValueError if absent."""
    for block in message.get("blocks") or []:
        if not isinstance(block, dict) or (block_id is not None and block.get("block_id") != block_id):
            continue
        candidates: list[Any] = []
        if block.get("type") == "actions":
            candidates = list(block.get("elements") or [])
        elif block.get("type") == "section" and isinstance(block.get("accessory"), dict):
            candidates = [block["accessory"]]
        elif block.get("type") == "input" and isinstance(block.get("element"), dict):
            candidates = [block["element"]]
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return block, element
    where = f" in block {block_id!r}" if block_id is not None else ""
    raise ValueError(f"no element with action_id {action_id!r}{where} in message {message.get('ts')}")


def options_of(element: dict[str, Any]) -> list[dict[str, Any]]:
    """Every option of a select or overflow, including those in option_groups."""
    options = [o for o in element.get("options") or [] if isinstance(o, dict)]
    for group in element.get("option_groups") or []:
        if isinstance(group, dict):
            options += [o for o in group.get("options") or [] if isinstance(o, dict)]
    return options


def choose_option(element: dict[str, Any], selected: str | dict[str, Any]) -> dict[str, Any]:
    """The option dict for a chosen value (or the dict itself); ValueError if the value is not offered."""
    if isinstance(selected, dict):
        return selected
    for option in options_of(element):
        if option.get("value") == selected:
            return {"text": option.get("text"), "value": option.get("value")}
    raise ValueError(f"{element.get('action_id')!r} offers no option with value {selected!r}")


def action_json(
    block: dict[str, Any],
    element: dict[str, Any],
    *,
    value: str | None,
    selected_option: str | dict[str, Any] | None,
    action_ts: str,
) -> dict[str, Any]:
    """One entry of a block_actions payload's `actions`."""
    kind = element.get("type", "button")
    action: dict[str, Any] = {"action_id": element.get("action_id"), "block_id": block.get("block_id"), "type": kind}
    if kind == "button":
        action["text"] = element.get("text")
        chosen = value if value is not None else element.get("value")
        if chosen is not None:
            action["value"] = chosen
        if element.get("style"):
            action["style"] = element["style"]
    elif kind in {"static_select", "overflow", "radio_buttons"}:
        if selected_option is None and value is not None:
            selected_option = value
        if selected_option is None:
            raise ValueError(f"{element.get('action_id')!r} is a {kind}: pass selected_option (a value or an option)")
        action["selected_option"] = choose_option(element, selected_option)
        if element.get("placeholder"):
            action["placeholder"] = element["placeholder"]
    elif kind == "users_select":
        action["selected_user"] = value
    elif kind in {"conversations_select", "channels_select"}:
        action["selected_conversation" if kind == "conversations_select" else "selected_channel"] = value
    elif kind == "datepicker":
        action["selected_date"] = value
    elif value is not None:
        action["value"] = value
    action["action_ts"] = action_ts
    return action


def block_actions(
    workspace: Workspace,
    *,
    user: User,
    channel: Channel,
    message: dict[str, Any],
    action: dict[str, Any],
    response_url: str,
    trigger_id: str,
) -> dict[str, Any]:
    """The `block_actions` payload Slack posts when a user clicks a button or picks an option in a message."""
    api_message = {k: v for k, v in message.items() if k not in {"channel", "ephemeral_to"}}
    return {
        "type": "block_actions",
        "user": _user_json(workspace, user),
        "api_app_id": workspace.app_id,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": channel.id,
            "is_ephemeral": bool(message.get("ephemeral_to")),
        },
        "trigger_id": trigger_id,
        "team": {"id": workspace.team_id, "domain": workspace.domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel.id, "name": "directmessage" if channel.is_im else channel.name},
        "message": api_message,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }


def message_action(
    workspace: Workspace,
    *,
    user: User,
    channel: Channel,
    message: dict[str, Any],
    callback_id: str,
    response_url: str,
    trigger_id: str,
    action_ts: str,
) -> dict[str, Any]:
    """The `message_action` payload Slack posts when a user picks a message shortcut from a message's menu."""
    api_message = {k: v for k, v in message.items() if k not in {"channel", "ephemeral_to"}}
    return {
        "type": "message_action",
        "token": VERIFICATION_TOKEN,
        "action_ts": action_ts,
        "team": {"id": workspace.team_id, "domain": workspace.domain},
        "user": _user_json(workspace, user),
        "channel": {"id": channel.id, "name": "directmessage" if channel.is_im else channel.name},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": trigger_id,
        "response_url": response_url,
        "message_ts": message["ts"],
        "message": api_message,
    }


def input_value(element: dict[str, Any], raw: Any) -> dict[str, Any]:
    """One input's entry in view.state.values, from what the user typed or picked (strings or lists of strings)."""
    kind = element.get("type")
    entry: dict[str, Any] = {"type": kind}
    values = raw if isinstance(raw, list) else ([] if raw in (None, "") else [raw])
    first = values[0] if values else None
    if kind in {"static_select", "radio_buttons"}:
        entry["selected_option"] = choose_option(element, first) if first is not None else None
    elif kind in {"multi_static_select", "checkboxes"}:
        entry["selected_options"] = [choose_option(element, v) for v in values]
    elif kind == "users_select":
        entry["selected_user"] = first
    elif kind == "multi_users_select":
        entry["selected_users"] = values
    elif kind == "conversations_select":
        entry["selected_conversation"] = first
    elif kind == "channels_select":
        entry["selected_channel"] = first
    elif kind == "datepicker":
        entry["selected_date"] = first
    elif kind == "timepicker":
        entry["selected_time"] = first
    else:
        entry["value"] = first
    return entry


def view_state(view: dict[str, Any], values: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """view.state.values for a submission: every input block, filled from `values[block_id][action_id]`."""
    state: dict[str, Any] = {}
    for block in view.get("blocks") or []:
        if not isinstance(block, dict) or block.get("type") != "input" or not isinstance(block.get("element"), dict):
            continue
        element = block["element"]
        raw = (values.get(block["block_id"]) or {}).get(element["action_id"])
        state[block["block_id"]] = {element["action_id"]: input_value(element, raw)}
    return {"values": state}


def view_submission(
    workspace: Workspace, *, user: User, view: dict[str, Any], values: dict[str, dict[str, Any]], trigger_id: str
) -> dict[str, Any]:
    """The `view_submission` payload Slack posts when a user presses a modal's Submit."""
    submitted = dict(view) | {"state": view_state(view, values)}
    return {
        "type": "view_submission",
        "team": {"id": workspace.team_id, "domain": workspace.domain},
        "user": _user_json(workspace, user),
        "api_app_id": workspace.app_id,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id,
        "view": submitted,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def view_closed(workspace: Workspace, *, user: User, view: dict[str, Any]) -> dict[str, Any]:
    """The `view_closed` payload (sent only for views with notify_on_close)."""
    return {
        "type": "view_closed",
        "team": {"id": workspace.team_id, "domain": workspace.domain},
        "user": _user_json(workspace, user),
        "api_app_id": workspace.app_id,
        "token": VERIFICATION_TOKEN,
        "view": view,
        "is_cleared": False,
        "is_enterprise_install": False,
        "enterprise": None,
    }


def event_envelope(workspace: Workspace, event: dict[str, Any]) -> dict[str, Any]:
    """The Events API `event_callback` envelope around one event."""
    now = int(time.time())
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": workspace.team_id,
        "context_team_id": workspace.team_id,
        "api_app_id": workspace.app_id,
        "event": {"event_ts": f"{time.time():.6f}"} | event,
        "type": "event_callback",
        "event_id": "Ev" + secrets.token_hex(5).upper(),
        "event_time": now,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": workspace.team_id,
                "user_id": workspace.bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-" + secrets.token_hex(12),
    }


# -- Socket Mode ------------------------------------------------------------------------------------------------

# The envelope types Slack sends over a Socket Mode connection, by what they carry.
SOCKET_TYPES = frozenset({"slash_commands", "interactive", "events_api"})
# Interactive payloads whose acknowledgement may carry an answer (a response_action, options); the others' may not.
INTERACTIVE_WITH_RESPONSE = frozenset({"view_submission", "block_suggestion"})


def socket_hello(workspace: Workspace, *, num_connections: int, connection_time: int) -> dict[str, Any]:
    """The `hello` message Slack sends first on every Socket Mode connection."""
    return {
        "type": "hello",
        "num_connections": num_connections,
        "debug_info": {
            "host": "applink-chatops-emulator",
            "build_number": 1,
            "approximate_connection_time": connection_time,
        },
        "connection_info": {"app_id": workspace.app_id},
    }


def socket_disconnect(reason: str) -> dict[str, Any]:
    """The `disconnect` message (`warning`, `refresh_requested`, `link_disabled`): the app should reconnect."""
    return {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-chatops-emulator"}}


def accepts_response_payload(kind: str, payload: dict[str, Any]) -> bool:
    """Whether Slack reads an answer in the ack of this envelope (slash commands, view submissions, options)."""
    if kind == "slash_commands":
        return True
    if kind == "interactive":
        return payload.get("type") in INTERACTIVE_WITH_RESPONSE
    return False


def socket_envelope(
    kind: str,
    payload: dict[str, Any],
    *,
    envelope_id: str,
    retry_attempt: int | None = None,
    retry_reason: str | None = None,
) -> dict[str, Any]:
    """One Socket Mode envelope around the payload the HTTP request would carry (a slash command's form fields as
    a JSON object, the interactive payload, or the event_callback envelope). Events API envelopes always carry
    retry_attempt / retry_reason (0 and "" the first time); the others only when they are a retry."""
    if kind not in SOCKET_TYPES:
        raise ValueError(f"not a Socket Mode envelope type: {kind!r}")
    envelope: dict[str, Any] = {
        "envelope_id": envelope_id,
        "payload": payload,
        "type": kind,
        "accepts_response_payload": accepts_response_payload(kind, payload),
    }
    if kind == "events_api" or retry_attempt is not None:
        envelope["retry_attempt"] = retry_attempt or 0
        envelope["retry_reason"] = retry_reason or ""
    return envelope
