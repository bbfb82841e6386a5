"""External text reaches Slack escaped once: alert titles, labels and summaries from a real Alertmanager webhook,
pages, and what people type into /incident never become a mention, a broadcast or a link; the markup chatops
builds itself (`<@U…>`, `<#C…>`, `<!here>` from the configuration, links) keeps working. The bot's real web app,
the Slack emulator and a real Redis; the property tests need no network."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.incidents.render import user_text
from bot.shell.config import ChatopsConfig, parse_config
from bot.text.blocks import clip, external_text, link
from tests.conftest import BotHarness
from tests.state import state
from tests.waiting import eventually

TOKEN = "am-test-token-7e2d"
HOSTILE = "<!channel> <!here> <@U0ALICE> <https://evil.example|click> &amp; *bold*"
# Slack markup that would notify people, or the hostile link: none of it may come from external text.
MARKUP = re.compile(r"<[!@#]|<https://evil")
CONFIG = """
slack: {announce_channel: "#general"}
roles: {admins: [U0DEMO]}
alerts:
  default_channel: "#alerts"
  group_wait: 0s
  sources:
    alertmanager: {token_env: TEST_AM_TOKEN}
  routes:
    - {match: {severity: critical}, escalation: straight-to-alice}
oncall:
  escalation_policies:
    straight-to-alice: {steps: [{notify: U0ALICE, after: 0m}]}
incidents:
  announce_channel: "#incidents"
  channel_prefix: inc
  severities:
    sev1: {description: "Outage", respond_within: 15m}
    sev3: {description: "Minor feature broken", respond_within: 2h}
"""


@pytest.fixture
def bot_config(monkeypatch: pytest.MonkeyPatch) -> ChatopsConfig:
    monkeypatch.setenv("TEST_AM_TOKEN", TOKEN)
    return parse_config(CONFIG, "slack-text.yaml")


def hostile_alert(status: str = "firing") -> dict[str, Any]:
    body = json.loads((Path(__file__).parent / "fixtures" / f"alertmanager-{status}.json").read_text())
    body = copy.deepcopy(body)
    for alert in body["alerts"]:
        alert["labels"]["alertname"] = f"{HOSTILE} DB down"
        alert["labels"]["instance"] = "<!everyone>"
        alert["annotations"]["summary"] = f"summary {HOSTILE}"
        alert["fingerprint"] = "hostile-fp"
    return body


async def send(bot: BotHarness, body: dict[str, Any]) -> None:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{bot.url}/alerts/alertmanager", data=json.dumps(body), headers=headers) as response,
    ):
        assert response.status == 200, await response.text()


def markup_texts(message: dict[str, Any]) -> list[str]:
    """Every string of a message Slack parses as markup: `text`, and mrkdwn text objects in its blocks."""
    found = [str(message.get("text", ""))]

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("type") == "mrkdwn":
                found.append(str(value.get("text", "")))
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(message.get("blocks") or [])
    return found


def assert_no_foreign_markup(message: dict[str, Any], allowed: tuple[str, ...] = ()) -> None:
    for text in markup_texts(message):
        for markup in allowed:
            text = text.replace(markup, "")
        assert not MARKUP.search(text), f"external text reached Slack as markup: {text!r}"


def headers_of(message: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in message.get("blocks") or [] if b.get("type") == "header"]


# -- the escaping rule itself -------------------------------------------------------------------------------------


@given(st.text())
def test_external_text_never_yields_slack_markup(text: str) -> None:
    escaped = external_text(text)
    assert "<" not in escaped and ">" not in escaped
    assert escaped.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == text  # shown as typed


_PIECES = [
    "<",
    ">",
    "!",
    "@",
    "#",
    "|",
    "^",
    "&",
    "lt;",
    "gt;",
    "amp;",
    " ",
    "x",
    "here",
    "channel",
    "U0AB",
    "C0AB",
    "subteam",
    "<!here>",
    "<!channel>",
    "<@U0AB>",
    "<#C0AB|x>",
    "&lt;!here&gt;",
]


@given(st.lists(st.sampled_from(_PIECES)).map("".join))
def test_peoples_text_may_mention_people_but_never_broadcast(text: str) -> None:
    shown = user_text(text)
    assert "<!" not in shown and "<http" not in shown
    assert all(re.fullmatch(r"<[@#][UWCG][A-Z0-9]+>", m) for m in re.findall(r"<[^>]*>", shown)), shown


@given(st.text(), st.text())
def test_a_link_we_build_is_one_link_whatever_its_url_and_text(url: str, text: str) -> None:
    built = link("https://" + url, text)
    assert built.startswith("<https://") and built.endswith(">") and built.count("<") == 1 and built.count(">") == 1
    assert built[1:-1].split("|", 1)[1] == external_text(text)  # Slack splits at the first |: the url has none
    assert link("javascript:" + url, text) == external_text(text)


def test_clip_never_cuts_an_entity_in_half() -> None:
    assert clip("abc&amp;def", 7) == "abc…" and clip("abc&amp;def", 9) == "abc&amp;…"
    assert clip("abcdef", 10) == "abcdef"


# -- alerts from a real webhook, and their pages ------------------------------------------------------------------


async def test_a_hostile_alert_is_posted_paged_and_resolved_without_pinging_anyone(bot: BotHarness) -> None:
    await send(bot, hostile_alert())

    def posted() -> list[dict[str, Any]]:
        return [m for m in bot.emulator.messages("#alerts") if "blocks" in m and not m.get("thread_ts")]

    async def is_posted() -> bool:
        return bool(posted())

    await eventually(is_posted, "the alert's message in #alerts")
    (message,) = posted()
    assert_no_foreign_markup(message)
    assert "&lt;!channel&gt;" in message["text"] and "&amp;amp;" in message["text"]  # shown as the alert wrote it
    assert headers_of(message)[0].endswith(f"{HOSTILE} DB down")  # plain_text: literal, no entities
    assert "*bold*" in json.dumps(message["blocks"])
    assert any(c.args.get("channel") for c in bot.emulator.calls_to("chat.postMessage"))

    async def paged() -> bool:
        await bot.deps.pager.tick()
        im = bot.emulator.workspace.im_with("U0ALICE", create=False)
        return im is not None and any("blocks" in m for m in bot.emulator.messages(im.id))

    await eventually(paged, "the page DM to U0ALICE")
    im = bot.emulator.workspace.im_with("U0ALICE", create=False)
    assert im is not None
    page = next(m for m in bot.emulator.messages(im.id) if "blocks" in m)
    assert_no_foreign_markup(page, allowed=("<#C0ALERTS>",))  # where it fires: a channel link we built
    assert "&lt;@U0ALICE&gt;" in page["text"] and headers_of(page)[0] == f"📟 {HOSTILE} DB down"

    # The Acknowledge button in the page: the outcome replaces the buttons, still escaped.
    await bot.emulator.send_block_action(
        channel=im.id, message_ts=page["ts"], action_id="alerts.ack", user_id="U0ALICE"
    )

    async def closed() -> bool:
        found = bot.emulator.find_message(im.id, page["ts"]) or {}
        return "alerts.ack" not in json.dumps(found.get("blocks"))

    await eventually(closed, "the page to show the acknowledgement")
    assert_no_foreign_markup(bot.emulator.find_message(im.id, page["ts"]) or {}, allowed=("<@U0ALICE>",))


async def test_the_resolved_reply_of_a_hostile_alert_pings_nobody(bot: BotHarness) -> None:
    await send(bot, hostile_alert())
    await send(bot, hostile_alert("resolved"))

    def reply() -> dict[str, Any] | None:
        return next(
            (m for m in bot.emulator.messages("#alerts") if m.get("thread_ts") and "resolved" in m.get("text", "")),
            None,
        )

    async def replied() -> bool:
        return reply() is not None

    await eventually(replied, "the resolved reply in the alert's thread")
    message = reply()
    assert message is not None
    assert_no_foreign_markup(message)


# -- incidents ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "text"),
    [
        ("/alerts", "stats <!channel>"),
        ("/alerts", 'silence service=web <!channel> --reason "x"'),
        ("/oncall", "acks 7<!here>"),
    ],
)
async def test_a_hostile_duration_is_refused_without_pinging_anyone(bot: BotHarness, command: str, text: str) -> None:
    """Before: the parser's own message quoted the word as typed, so `/alerts stats <!channel>` answered with a live
    @channel (the word itself was escaped, the "(got ...)" after it was not)."""
    result = await bot.emulator.send_command(command=command, text=text, user_id="U0DEMO", channel_id="C0GENERAL")
    assert result.status == 200 and result.json is not None, result
    assert "is not a duration" in result.json["text"], result.json
    assert_no_foreign_markup(result.json)


@pytest.mark.parametrize("text", ["acks <!here>", "acks @<!channel>"])
async def test_a_hostile_person_is_refused_without_pinging_anyone(bot: BotHarness, text: str) -> None:
    """Before: `/oncall acks <!here>` answered "`<!here>` is not a person" with the word as typed."""
    result = await bot.emulator.send_command(command="/oncall", text=text, user_id="U0DEMO", channel_id="C0GENERAL")
    assert result.status == 200 and result.json is not None, result
    assert "person" in result.json["text"] or "nobody called" in result.json["text"], result.json
    assert_no_foreign_markup(result.json)


# Every subcommand, with hostile words where its arguments go: whatever the answer (most are errors, which is where
# commands quote what was typed), it carries no broadcast and no foreign link.
SWEEP = {
    "/alerts": [
        "",
        "list",
        "ack",
        "resolve",
        "silence",
        "silence service=web",
        "silences",
        "unsilence",
        "stats",
        "test",
    ],
    "/deploy": ["", "status", "history", "history web", "locks", "lock", "unlock", "web", "web 1.2.3 to"],
    "/backup": ["", "run", "list", "show", "verify", "restore", "restore appdb", "drill", "drills"],
    "/oncall": ["", "now", "who", "schedule", "override", "override primary", "overrides", "acks"],
    "/incident": ["", "list", "timeline", "update", "resolve", "severity", "commander", "role", "postmortem"],
    "/status": ["", "web"],
    "/chatops": ["", "help", "whoami", "audit", "audit --since"],
    "/rollback": ["", "web", "web production"],
}
BROADCAST = re.compile(r"<!|<https://evil")


@pytest.mark.parametrize("command", sorted(SWEEP))
async def test_no_command_echoes_a_broadcast_or_a_foreign_link(bot: BotHarness, command: str) -> None:
    for prefix in SWEEP[command]:
        for hostile in ("<!channel>", "<https://evil.example|x>", "x <!here>", "1d <!everyone> 2"):
            text = f"{prefix} {hostile}".strip()
            result = await bot.emulator.send_command(
                command=command, text=text, user_id="U0DEMO", channel_id="C0GENERAL"
            )
            assert result.status == 200, (command, text, result)
            for markup in markup_texts(result.json or {}):
                assert not BROADCAST.search(markup), f"{command} {text} answered with live markup: {markup!r}"
    for channel, messages in bot.emulator.state.all_messages().items():
        for message in messages:
            for markup in markup_texts(message):
                assert not BROADCAST.search(markup), f"a message in {channel} carries live markup: {markup!r}"


async def test_a_hostile_reason_is_stored_and_listed_without_pinging_anyone(bot: BotHarness) -> None:
    """What people type is kept as typed and escaped each time it is shown: a silence's reason, and the audit log."""
    for command, text in [
        ("/alerts", 'silence service=web 2h --reason "<!channel> maintenance <https://evil.example|x>"'),
        ("/alerts", "silences"),
        ("/chatops", "audit"),
    ]:
        result = await bot.emulator.send_command(command=command, text=text, user_id="U0DEMO", channel_id="C0GENERAL")
        assert result.status == 200 and result.json is not None, result
        for markup in markup_texts(result.json):
            assert not BROADCAST.search(markup), f"{command} {text} answered with live markup: {markup!r}"
    listed = await bot.emulator.send_command(
        command="/alerts", text="silences", user_id="U0DEMO", channel_id="C0GENERAL"
    )
    assert "&lt;!channel&gt; maintenance" in str(listed.json), listed.json


async def incident_command(bot: BotHarness, text: str, channel: str = "C0GENERAL") -> dict[str, Any]:
    result = await bot.emulator.send_command(command="/incident", text=text, user_id="U0DEMO", channel_id=channel)
    assert result.status == 200 and result.json is not None, result
    return result.json


async def test_a_hostile_incident_title_and_update_ping_nobody(bot: BotHarness) -> None:
    answer = await incident_command(bot, "declare sev3 <!channel> boom")
    assert "&lt;!channel&gt; boom" in answer["text"] and "<!channel>" not in answer["text"]

    async def set_up() -> bool:
        found = await state(bot).incidents.get("INC-1")
        return found is not None and found.setup_done

    await eventually(set_up, "the incident's Slack set-up")
    incident = await state(bot).incidents.get("INC-1")
    assert incident is not None and incident.channel_id and incident.summary_ts and incident.announce_ts

    (topic,) = [c.args["topic"] for c in bot.emulator.calls_to("conversations.setTopic")]
    assert "&lt;!channel&gt; boom" in topic and "<!channel>" not in topic
    summary = bot.emulator.find_message(incident.channel_id, incident.summary_ts)
    assert summary is not None
    assert_no_foreign_markup(summary, allowed=("<@U0DEMO>",))
    assert headers_of(summary) == ["INC-1: <!channel> boom"]
    announcement = bot.emulator.find_message("#incidents", incident.announce_ts)
    assert announcement is not None
    assert_no_foreign_markup(announcement, allowed=("<@U0DEMO>", f"<#{incident.channel_id}>"))
    declared = [m for m in bot.emulator.messages(incident.channel_id) if "Declared" in m.get("text", "")]
    for message in declared:
        assert_no_foreign_markup(message, allowed=("<@U0DEMO>",))

    await incident_command(
        bot, "update <!here> rolled back <@U0BOB> & <https://evil.example|click>", channel=incident.channel_id
    )

    def updates() -> list[dict[str, Any]]:
        return [
            m
            for m in [*bot.emulator.messages(incident.channel_id), *bot.emulator.messages("#incidents")]
            if "rolled back" in m.get("text", "")
        ]

    async def posted() -> bool:
        return len(updates()) == 2  # the incident channel and the announcement's thread

    await eventually(posted, "the update in the incident channel and the announce thread")
    for message in updates():
        assert "&lt;!here&gt;" in message["text"] and "&lt;https://evil.example|click&gt;" in message["text"]
        assert_no_foreign_markup(message, allowed=("<@U0DEMO>", "<@U0BOB>"))  # people may mention colleagues

    async def refreshed() -> bool:
        found = bot.emulator.find_message(incident.channel_id or "", incident.summary_ts or "") or {}
        return "rolled back" in json.dumps(found.get("blocks"))

    await eventually(refreshed, "the pinned summary to show the update")
    assert_no_foreign_markup(
        bot.emulator.find_message(incident.channel_id, incident.summary_ts) or {}, allowed=("<@U0DEMO>", "<@U0BOB>")
    )
