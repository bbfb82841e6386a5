"""The Slack app manifest, generated from the command registry (never kept by hand)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

BOT_SCOPES = (
    "commands",
    "chat:write",
    "chat:write.public",
    "channels:read",
    "channels:join",
    "channels:manage",
    "groups:read",
    "groups:write",
    "im:write",
    "pins:write",
    "users:read",
    "users:read.email",  # users.lookupByEmail: who acknowledged in PagerDuty, as a Slack user
    "usergroups:read",
    "files:write",
    # Reading back our own messages (their `metadata`) before re-posting after a crash or an ambiguous Slack error.
    "channels:history",
    "groups:history",
    "im:history",
)
BOT_EVENTS = ("app_home_opened",)


def build_manifest(
    commands: Sequence[dict[str, str]],
    *,
    url: str | None,
    socket_mode: bool,
    app_name: str = "chatops",
    shortcuts: Sequence[dict[str, str]] = (),
) -> dict[str, Any]:
    """The manifest as a dict: every slash command and shortcut, interactivity, events, scopes, and Socket Mode."""
    endpoint = f"{url.rstrip('/')}/slack/events" if url else None
    slash_commands = []
    for command in commands:
        entry = {
            "command": command["command"],
            "description": command["description"][:2000],
            "should_escape": bool(command.get("should_escape", False)),
        }
        if command.get("usage_hint"):
            entry["usage_hint"] = command["usage_hint"][:1000]
        if endpoint and not socket_mode:
            entry["url"] = endpoint
        slash_commands.append(entry)
    interactivity: dict[str, Any] = {"is_enabled": True}
    events: dict[str, Any] = {"bot_events": list(BOT_EVENTS)}
    if endpoint and not socket_mode:
        interactivity["request_url"] = endpoint
        events["request_url"] = endpoint
    return {
        "display_information": {
            "name": app_name,
            "description": "Deploys, alerts, on-call, incidents and backups from Slack.",
            "background_color": "#2c2d30",
        },
        "features": {
            "app_home": {"home_tab_enabled": True, "messages_tab_enabled": False},
            "bot_user": {"display_name": app_name, "always_online": True},
            "slash_commands": slash_commands,
            "shortcuts": [dict(shortcut) for shortcut in shortcuts],
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": socket_mode,
            "token_rotation_enabled": False,
        },
    }


def manifest_yaml(manifest: dict[str, Any]) -> str:
    """The manifest as YAML, ready to paste into api.slack.com/apps → Create New App → From a manifest."""
    return "_metadata:\n  major_version: 1\n  minor_version: 1\n" + yaml.safe_dump(
        manifest, sort_keys=False, allow_unicode=True, width=1000
    )
