"""The project's Slack emulator: Slack's Web API wire format, signed requests to the bot, and a page that looks
and behaves like a Slack channel. `chatops dev` mounts it on the bot's own server; the tests run it on a random
port and point the real slack_sdk AsyncWebClient at `emu.api_url`.

    emu = SlackEmulator(signing_secret="...", bot_token="xoxb-...", workspace=Workspace.demo())
    app = emu.make_app(page=True)   # or emu.install(existing_app)
"""

from bot.emulator.server import RecordedCall, SignedResult, SlackEmulator
from bot.emulator.workspace import Channel, User, Usergroup, Workspace

__all__ = ["Channel", "RecordedCall", "SignedResult", "SlackEmulator", "User", "Usergroup", "Workspace"]
