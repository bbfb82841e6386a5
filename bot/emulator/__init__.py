"""The project's Slack emulator: Slack's Web API wire format, signed requests to the bot, and a page that looks
and behaves like a Slack channel. `chatops dev` mounts it on the bot's own server; the tests run it on a random
port and point the real slack_sdk AsyncWebClient at `emu.api_url`.

    emu = SlackEmulator(signing_secret="...", bot_token="xoxb-...", workspace=Workspace.demo())
    app = emu.make_app(page=True)   # or emu.install(existing_app)

With `app_token="xapp-..."` it also speaks Socket Mode: apps.connections.open hands out a WebSocket URL, and while
the bot holds that connection, send_command / send_block_action / send_view_submission / send_event travel over it
as envelopes and the bot's acks are applied like HTTP answers.
"""

from bot.emulator.server import (
    RecordedCall,
    SignedResult,
    SlackEmulator,
    SocketDelivery,
)
from bot.emulator.workspace import Channel, User, Usergroup, Workspace

__all__ = [
    "Channel",
    "RecordedCall",
    "SignedResult",
    "SlackEmulator",
    "SocketDelivery",
    "User",
    "Usergroup",
    "Workspace",
]
