"""A deploy's Slack message as the tests read it: the record is written first and the message edited a moment
later, so a test that has seen the record reach a state waits for the message to show that state too."""

from __future__ import annotations

from typing import Any

from bot.deploys.model import DeployRecord
from bot.deploys.render import STATE_LABELS
from bot.emulator import SlackEmulator
from tests.waiting import eventually


def message_showing_state(emulator: SlackEmulator, record: DeployRecord) -> dict[str, Any] | None:
    """The deploy's message if it already shows the record's state (its fallback text ends with the state's label)."""
    if not (record.channel and record.message_ts):
        return None
    message = emulator.find_message(record.channel, record.message_ts)
    label = STATE_LABELS[record.state][1]
    return message if message is not None and str(message.get("text", "")).endswith(f": {label}") else None


async def request_deploy(emulator: SlackEmulator, text: str, user: str = "U0ALICE") -> str:
    """Sends `/deploy <text>` from #general as `user`; returns the deploy id the answer names."""
    ack = await emulator.send_command(command="/deploy", text=text, user_id=user, channel_id="C0GENERAL")
    assert ack.json is not None and "`" in ack.json["text"], ack.json
    return str(ack.json["text"]).split("`")[1]


async def shown_message(emulator: SlackEmulator, record: DeployRecord) -> dict[str, Any]:
    """Waits for the deploy's message to show the record's state and returns it."""
    return await eventually(
        lambda: message_showing_state(emulator, record),
        f"the message of {record.id} to show {record.state.value}",
    )
